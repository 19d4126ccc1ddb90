"""CSR and sampled-matmul kernels of the sparse path (see `keras_autorec.training.sparse`)."""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import tensorflow as tf
from tensorflow.python.ops import handle_data_util


# TensorFlow rewrites SparseMatrixMatMul ops without transpose flags to oneDNN's CSR SpMM when this
# is set (opt-in since TF 2.16): 1.4x faster than the Eigen kernel at ML-1M shape (k = 500, 2
# threads: 40 vs 58 ms), 1.2-1.4x at Netflix width, same results up to summation order. TensorFlow
# reads it once, when it first meets a SparseMatrixMatMul in a graph, so it is set on import
# (unless the user set it); builds without oneDNN ignore it.
ONEDNN_SPMM = "TF_ENABLE_ONEDNN_SPMM"
os.environ.setdefault(ONEDNN_SPMM, "1")

SDDMM_CHUNK = 8192  # Pairs per SDDMM chunk: two [chunk, k] gathers stay in the 4 MB L2 cache.
DECODER_BLOCK_CELLS = 1 << 25  # Cells of one block of the decoder's GEMM (128 MB float32).

# CPU flags (/proc/cpuinfo) under which a dtype's GEMM beats float32's. Measured on an AMX-BF16
# CPU (decoder GEMM of ML-1M shape): bfloat16 0.035 s, float32 0.111 s; float16 0.101 s with
# AVX512-FP16 but no AMX-FP16, so AVX512-FP16 alone does not count. AVX512-BF16 without AMX is
# not measured here (its dot-product instructions do twice float32's multiply-adds).
NATIVE_MATMUL_FLAGS = {tf.bfloat16: {"amx_bf16", "avx512_bf16"}, tf.float16: {"amx_fp16"}}


@functools.cache
def _cpu_flags() -> frozenset:
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      return frozenset(cpuinfo.read().split())
  except OSError:
    return frozenset()


def native_matmul(dtype: tf.DType) -> bool:
  """Whether this CPU's GEMM in `dtype` beats float32's (see NATIVE_MATMUL_FLAGS)."""
  return dtype == tf.float32 or bool(_cpu_flags() & NATIVE_MATMUL_FLAGS.get(dtype, set()))


def csr_matrix(indices: tf.Tensor, values: tf.Tensor, shape) -> tf.Tensor:
  """A CSRSparseMatrix from int64 [n, 2] coordinates in row-major order."""
  return tf.raw_ops.SparseTensorToCSRSparseMatrix(
      indices=indices, values=values, dense_shape=tf.cast(tf.stack(shape), tf.int64))


class BlockTensors(NamedTuple):
  """The tensors of a `blocks.SparseBlock` that a traced step reads (what tf.function and
  strategies take); the optional ones are None unless the block caches its CSR matrices."""

  rows: tf.Tensor
  columns: tf.Tensor
  values: tf.Tensor
  transpose_order: tf.Tensor | None
  dense_columns: tf.Tensor
  num_rows: tf.Tensor
  csr: tf.Tensor | None
  csr_transpose: tf.Tensor | None
  indices: tf.Tensor | None
  transpose_indices: tf.Tensor | None


def coordinates(block: BlockTensors) -> tf.Tensor:
  """int64 coordinates of a block's entries: cached, or else built now (transient)."""
  rows, columns, cached = block.rows, block.columns, block.indices
  if cached is not None:
    return cached
  return tf.stack([tf.cast(rows, tf.int64), tf.cast(columns, tf.int64)], axis=1)


def transposed_csr(csr: tf.Tensor, values: tf.Tensor, block: BlockTensors, shape) -> tf.Tensor:
  """The transpose of `csr`, a block's [rows, columns] CSR matrix with `values` at its entries.

  From the cached coordinates of X^T when the block has them; else by SparseMatrixTranspose,
  which needs no coordinates (building them in transpose order took ~1 GB of transient int32 and
  int64 tensors for 25M ratings).
  """
  transpose_order, transpose_indices = block.transpose_order, block.transpose_indices
  if transpose_indices is None:
    return tf.raw_ops.SparseMatrixTranspose(input=csr, type=tf.float32)
  return csr_matrix(transpose_indices, tf.gather(values, transpose_order), shape[::-1])


def typed_csr(csr: tf.Tensor, shape) -> tf.Tensor:
  """A float32 CSR matrix built outside the traced function, usable by CSR ops inside it.

  A variant tensor passed into a tf.function loses the type information (element type, shape)
  that CSR ops read when traced; it is copied from a never-run empty CSR of the same shape.
  """
  if tf.executing_eagerly():
    return csr
  template = tf.raw_ops.SparseTensorToCSRSparseMatrix(
      indices=tf.zeros([0, 2], tf.int64), values=tf.zeros([0], tf.float32),
      dense_shape=tf.cast(tf.stack(shape), tf.int64))
  csr = tf.identity(csr)
  handle_data_util.copy_handle_data(template, csr)
  return csr



def spmm(csr, make_csr_transpose, dense: tf.Tensor) -> tf.Tensor:
  """X @ dense for a constant sparse X, differentiable in `dense` (gradient X^T @ upstream)."""

  @tf.custom_gradient
  def product(dense):
    def gradient(upstream):
      # X^T is built only here so that it does not stay alive from forward to backward.
      return tf.raw_ops.SparseMatrixMatMul(a=make_csr_transpose(), b=upstream)
    return tf.raw_ops.SparseMatrixMatMul(a=csr, b=dense), gradient

  return product(dense)


def gather_dot(left: tf.Tensor, right: tf.Tensor, left_index: tf.Tensor, right_index: tf.Tensor,
                chunk: int) -> tf.Tensor:
  """Row-wise dots left[left_index[n]] . right[right_index[n]], float32 [n], in chunks."""
  count = tf.shape(left_index)[0]
  # At least one (maybe empty) chunk: a TensorArray of none cannot be concatenated.
  num_chunks = tf.maximum((count + chunk - 1) // chunk, 1)
  dots = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False,
                        element_shape=tf.TensorShape([None]))

  def body(i, dots):
    span = slice(i * chunk, tf.minimum((i + 1) * chunk, count))
    # Only the gathers (the random reads) use the compute dtype; products accumulate in float32.
    products = (tf.cast(tf.gather(left, left_index[span]), tf.float32)
                * tf.cast(tf.gather(right, right_index[span]), tf.float32))
    return i + 1, dots.write(i, tf.reduce_sum(products, axis=1))

  _, dots = tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(0), dots),
                          parallel_iterations=2)
  return tf.reshape(dots.concat(), [count])


def _blocked_dense_dot(hidden: tf.Tensor, kernel: tf.Tensor, rows: tf.Tensor,
                       columns: tf.Tensor) -> tf.Tensor:
  """(hidden @ kernel) at row-sorted (rows, columns), one bounded block of rows at a time."""
  num_rows, num_columns = tf.shape(hidden)[0], tf.shape(kernel)[1]
  block_rows = tf.maximum(1, DECODER_BLOCK_CELLS // tf.maximum(num_columns, 1))
  num_blocks = (num_rows + block_rows - 1) // block_rows
  bounds = tf.searchsorted(rows, tf.range(num_blocks + 1) * block_rows, side="left")
  dots = tf.TensorArray(tf.float32, size=num_blocks, infer_shape=False,
                        element_shape=tf.TensorShape([None]))

  def body(i, dots):
    first_row = i * block_rows
    logits = tf.matmul(hidden[first_row:first_row + block_rows], kernel)
    entries = slice(bounds[i], bounds[i + 1])
    # A flat index (below DECODER_BLOCK_CELLS): gather_nd's [n, 2] index would be a stack of
    # n two-element rows, which TensorFlow copies row by row (~50 ms per 1M pairs).
    index = (rows[entries] - first_row) * num_columns + columns[entries]
    return i + 1, dots.write(i, tf.cast(tf.gather(tf.reshape(logits, [-1]), index), tf.float32))

  _, dots = tf.while_loop(lambda i, _: i < num_blocks, body, (tf.constant(0), dots))
  return tf.reshape(dots.concat(), tf.shape(rows))


def hybrid_dot(hidden: tf.Tensor, kernel: tf.Tensor, rows: tf.Tensor, columns: tf.Tensor,
                dense_columns: tf.Tensor, compute_dtype: tf.DType, chunk: int) -> tf.Tensor:
  """(hidden @ kernel) at row-sorted pairs: by GEMM blocks at dense_columns, else gather-dots.

  Gather-dots in `compute_dtype`, the GEMM too where it multiplies natively; float32 dots. When
  every column is dense, the split into two sets of pairs and the gather-dots' transposed kernel
  are skipped. Both loops always run (the gather-dots then over no pairs) and the conds hold no
  loop: a block's shapes are static in the first trace, so Grappler folds the predicate to a
  constant, and a while loop in the branch that folding makes dead fails its dependency
  optimizer's topological sort (`dependency_optimizer.cc ... topological sort failed`, logged on
  ML-1M), which then leaves the training step unoptimised.
  """
  gemm_dtype = compute_dtype if native_matmul(compute_dtype) else tf.float32
  num_columns = tf.shape(kernel)[1]
  all_dense = tf.equal(tf.size(dense_columns), num_columns)

  def split_pairs():
    # Slot of each column among dense_columns, -1 for the others.
    slots = tf.scatter_nd(dense_columns[:, None], tf.range(1, tf.size(dense_columns) + 1),
                          num_columns[None]) - 1
    pair_slots = tf.gather(slots, columns)
    sparse_pairs, dense_pairs = tf.dynamic_partition(
        tf.range(tf.size(rows)), tf.cast(pair_slots >= 0, tf.int32), 2)
    return (sparse_pairs, dense_pairs, tf.gather(rows, dense_pairs),
            tf.gather(pair_slots, dense_pairs), tf.gather(kernel, dense_columns, axis=1),
            tf.transpose(kernel))

  def all_pairs():
    no_pairs = tf.zeros([0], tf.int32)
    return (no_pairs, no_pairs, rows, columns, kernel,
            tf.zeros([0, tf.shape(kernel)[0]], kernel.dtype))

  sparse_pairs, dense_pairs, dense_rows, dense_slots, dense_kernel, kernel_t = tf.cond(
      all_dense, all_pairs, split_pairs)
  dense_dots = _blocked_dense_dot(tf.cast(hidden, gemm_dtype), tf.cast(dense_kernel, gemm_dtype),
                                  dense_rows, dense_slots)
  sparse_dots = gather_dot(tf.cast(hidden, compute_dtype), tf.cast(kernel_t, compute_dtype),
                            tf.gather(rows, sparse_pairs), tf.gather(columns, sparse_pairs), chunk)
  return tf.cond(all_dense, lambda: dense_dots,
                 lambda: tf.dynamic_stitch([sparse_pairs, dense_pairs], [sparse_dots, dense_dots]))


def pair_gradients(upstream: tf.Tensor, hidden: tf.Tensor, kernel: tf.Tensor,
                    block: BlockTensors, transpose_kernel: bool = True) -> tuple:
  """Gradients of (hidden @ kernel) at a block's pairs, given `upstream` at those pairs.

  Those of hidden and of kernel, or with transpose_kernel=False of kernel^T ([columns, k], the
  SpMM's own layout: transposing it costs another copy of the kernel).
  """
  shape = [tf.shape(hidden)[0], tf.shape(kernel)[1]]
  residual = csr_matrix(coordinates(block), upstream, shape)
  residual_t = transposed_csr(residual, upstream, block, shape)
  # Explicit transposes rather than the SpMM's transpose flags: oneDNN's SpMM (see
  # ONEDNN_SPMM) takes no flags, and the Eigen fallback that does is ~1.5x slower here.
  d_hidden = tf.raw_ops.SparseMatrixMatMul(a=residual, b=tf.transpose(kernel))
  # Not alongside: the transposed kernel above is as big as this one's output (1 GB each at
  # Netflix scale).
  with tf.control_dependencies([d_hidden]):
    d_kernel_t = tf.raw_ops.SparseMatrixMatMul(a=residual_t, b=hidden)
  return d_hidden, tf.transpose(d_kernel_t) if transpose_kernel else d_kernel_t


def sampled_matmul(hidden: tf.Tensor, kernel: tf.Tensor, block: BlockTensors,
                    compute_dtype: tf.DType, chunk: int = SDDMM_CHUNK) -> tf.Tensor:
  """(hidden @ kernel) at each observed pair of a block; SpMM gradients."""
  rows, columns, dense_columns = block.rows, block.columns, block.dense_columns

  @tf.custom_gradient
  def product(hidden, kernel):
    dots = hybrid_dot(hidden, kernel, rows, columns, dense_columns, compute_dtype, chunk)
    return dots, lambda upstream: pair_gradients(upstream, hidden, kernel, block)

  return product(hidden, kernel)
