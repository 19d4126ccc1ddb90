"""Sparse training path: AutoRec epochs in O(nnz x k) time, never a dense rows x columns matrix.

The dense path reconstructs every (row, column) cell, O(rows x columns x k) per epoch. The masked
loss only reads observed cells, so here

  * the first hidden layer's pre-activation X V is a CSR sparse-dense matmul (SpMM) of the
    training ratings X [rows, columns] with V [columns, k];
  * the decoder is evaluated only at observed (row, column) pairs: a sampled dense-dense product
    (SDDMM) computed in chunks, so no [nnz, k] tensor ever exists whole;
  * the gradients of those two products are SpMMs in closed form (dV = X^T dA; with E the sparse
    matrix of loss gradients at observed cells, dH = E W^T and dW = H^T E); the rest of the graph
    (activations, extra hidden layers) is small and left to the tape.

The loss is exactly the dense masked formulation of `AutoRec.compute_loss`: squared error summed
over observed cells, divided by their count, plus `l2_weight` times the squared kernels.

User activity and item popularity follow power laws, so a few columns hold most observed pairs.
The decoder's logits at the pairs of a block's densest columns (`DENSE_COLUMN_DENSITY`) are
cheaper as bounded row blocks of a dense matmul (GEMM) of those columns followed by a gather; the
other pairs get gathered dots.

Mixed precision (bfloat16 or float16) applies to the decoder's SDDMM gathers, which move most of
its bytes, to extra hidden layers, and to the decoder's GEMM on CPUs that multiply the dtype
natively (`native_matmul`; bfloat16 with AMX: ~3x float32; without, it would be slower than
float32). TensorFlow's CSR kernels accept only float32/float64, so the SpMMs stay float32, as do
variables, the residuals and the loss. float16 trains with Keras' dynamic loss scaling (the
gradients of extra hidden layers are float16).

The SpMMs run on oneDNN's CSR kernel (see ONEDNN_SPMM) when TensorFlow has it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.ops import handle_data_util

from keras_autorec import distribution
from keras_autorec import model as model_lib
from keras_autorec.data.layout import SparseRows, build_layout
from keras_autorec.data.splits import RatingsSplit
from keras_autorec.optimizers import Rprop, irprop_minus, make_optimizer

# TensorFlow rewrites SparseMatrixMatMul ops without transpose flags to oneDNN's CSR SpMM when this
# is set (opt-in since TF 2.16): 1.4x faster than the Eigen kernel at ML-1M shape (k = 500, 2
# threads: 40 vs 58 ms), 1.2-1.4x at Netflix width, same results up to summation order. TensorFlow
# reads it once, when it first meets a SparseMatrixMatMul in a graph, so it is set on import
# (unless the user set it); builds without oneDNN ignore it.
ONEDNN_SPMM = "TF_ENABLE_ONEDNN_SPMM"
os.environ.setdefault(ONEDNN_SPMM, "1")

SDDMM_CHUNK = 8192  # Pairs per SDDMM chunk: two [chunk, k] gathers stay in the 4 MB L2 cache.
# The decoder is evaluated by GEMM at the pairs of the columns that more than this share of a
# block's rows observe, by gather-dots at the others: per column, the GEMM costs 2 x rows x k FLOPs
# (~250 GFLOP/s here) whatever its pairs, the gather-dots k x ~0.6 ns per pair (ML-10M shape):
# they break even at ~1.4% observed. 0.7%, 1% and 1.5% measured the same at ML-10M.
DENSE_COLUMN_DENSITY = 0.01
# The GEMM also takes the remaining columns when they cost less by GEMM than splitting the pairs
# into the two sets and merging them back (~10 passes over the pairs, about what the gather-dots
# of this share of all pairs cost at k = 500).
SPLIT_COST_SHARE = 0.04
# Blocks of more columns are not split either: the gather-dots read a transposed copy of the output
# kernel (400 MB at k = 500), and the split's per-pair temporaries come on top; at Netflix scale
# they raised the peak RSS from 12.5 to 13.2 GB (4 row groups, fused Adam).
SPLIT_MAX_COLUMNS = 200_000
# Up to this many ratings in all, blocks keep the CSR matrices of X and X^T (8 bytes per rating
# each) and the int64 coordinates that CSR builds of the residual take (16 bytes per rating each,
# in both orders) from step to step: up to 1.2 GB. Larger data sets rebuild them in every step.
CSR_CACHE_RATINGS = 25_000_000
DECODER_BLOCK_CELLS = 1 << 25  # Cells of one block of the decoder's GEMM (128 MB float32).
COMPUTE_DTYPES = {"off": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}
EXECUTIONS = ("auto", "dense", "sparse")
# "auto" trains sparse above this many rows x columns cells. At the ML-1M shape (22M cells)
# `training.fit` with the defaults took 10.6-12.8 s sparse against 38.9-42.0 s dense for 30
# epochs, to the same validation RMSE (0.8827 vs 0.8825; synthetic data, 2 cores). Smaller data
# trains in seconds either way and stays on the dense path, the Keras reference the sparse path is
# tested against (at the ML-100K shape sparse was also faster: 2.7-4.5 s vs 7.2-11.6 s for 60
# epochs).
AUTO_SPARSE_CELLS = 10_000_000
# Strategies whose devices have no CSR kernels.
SPARSE_UNSUPPORTED_STRATEGIES = ("tpu",)


def use_sparse(execution: str, num_rows: int, num_columns: int, supported: bool = True) -> bool:
  """Whether `execution` ('auto', 'dense' or 'sparse') trains a rows x columns layout sparse.

  'auto' picks sparse for large layouts when the run is `supported` (see `unsupported_reason`).
  """
  if execution not in EXECUTIONS:
    raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
  if execution == "auto":
    return supported and num_rows * num_columns > AUTO_SPARSE_CELLS
  return execution == "sparse"


def unsupported_reason(model_config, train_config) -> str | None:
  """Why the sparse path cannot train this configuration, or None when it can."""
  if model_config.input_dropout:
    return "the sparse path does not support input_dropout"
  if train_config.strategy in SPARSE_UNSUPPORTED_STRATEGIES:
    return f"TensorFlow has no CSR kernels for the {train_config.strategy!r} strategy"
  if train_config.mixed_precision not in COMPUTE_DTYPES:
    return (f"the sparse path supports mixed_precision {sorted(COMPUTE_DTYPES)}, got "
            f"{train_config.mixed_precision!r}")
  return None


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


def _csr(indices: tf.Tensor, values: tf.Tensor, shape) -> tf.Tensor:
  """A CSRSparseMatrix from int64 [n, 2] coordinates in row-major order."""
  return tf.raw_ops.SparseTensorToCSRSparseMatrix(
      indices=indices, values=values, dense_shape=tf.cast(tf.stack(shape), tf.int64))


def _coordinates(block_tensors: tuple) -> tf.Tensor:
  """int64 coordinates of a block's entries: cached, or else built now (transient)."""
  rows, columns = block_tensors[:2]
  cached = block_tensors[8]
  if cached is not None:
    return cached
  return tf.stack([tf.cast(rows, tf.int64), tf.cast(columns, tf.int64)], axis=1)


def _transposed_csr(csr: tf.Tensor, values: tf.Tensor, block_tensors: tuple, shape) -> tf.Tensor:
  """The transpose of `csr`, a block's [rows, columns] CSR matrix with `values` at its entries.

  From the cached coordinates of X^T when the block has them; else by SparseMatrixTranspose,
  which needs no coordinates (building them in transpose order took ~1 GB of transient int32 and
  int64 tensors for 25M ratings).
  """
  transpose_order, transpose_indices = block_tensors[3], block_tensors[9]
  if transpose_indices is None:
    return tf.raw_ops.SparseMatrixTranspose(input=csr, type=tf.float32)
  return _csr(transpose_indices, tf.gather(values, transpose_order), shape[::-1])


def _typed_csr(csr: tf.Tensor, shape) -> tf.Tensor:
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


@dataclasses.dataclass(frozen=True)
class SparseBlock:
  """A block of rows' training ratings as int32 coordinates and float32 values.

  The CSR matrices of X and X^T, and the int64 coordinates of X and X^T that CSR builds of the
  residual take, are built once when given (see CSR_CACHE_RATINGS); `transpose_order` then lists
  the entries in column-major order, for the residual's transpose. Otherwise X's CSR matrix is
  built inside each traced step (about 10 ns per rating) and transposed there. The decoder is
  evaluated by GEMM at the pairs of `dense_columns` (see the module docstring).
  """

  rows: tf.Tensor  # int32 [nnz], block-local row of each entry, row-major order.
  columns: tf.Tensor  # int32 [nnz]
  values: tf.Tensor  # float32 [nnz]
  transpose_order: tf.Tensor | None  # int32 [nnz], with the cached CSR matrices only.
  dense_columns: tf.Tensor  # int32 [dense columns], ascending.
  num_rows: tf.Tensor  # int32 scalar
  csr: tf.Tensor | None = None  # CSRSparseMatrix variant of X,
  csr_transpose: tf.Tensor | None = None  # and of X^T.
  indices: tf.Tensor | None = None  # int64 [nnz, 2] (row, column),
  transpose_indices: tf.Tensor | None = None  # and (column, row) in transpose order.

  @property
  def nnz(self) -> int:
    return int(self.values.shape[0])

  def structure(self) -> tuple:
    """The tensors a traced step needs, as a flat tuple (what tf.function and strategies take)."""
    return (self.rows, self.columns, self.values, self.transpose_order, self.dense_columns,
            self.num_rows, self.csr, self.csr_transpose, self.indices, self.transpose_indices)


def dense_columns_of(columns: np.ndarray, num_rows: int, num_columns: int,
                     density: float = DENSE_COLUMN_DENSITY) -> np.ndarray:
  """The columns whose decoder GEMM is cheaper than gather-dots (int32, ascending).

  Those observed in more than `density` of `num_rows` rows; or all columns, when the GEMM of the
  others costs less (at `density` per observed pair) than their gather-dots and the split, or
  when there are more than SPLIT_MAX_COLUMNS columns and some would be dense.
  """
  counts = np.bincount(columns, minlength=num_columns)
  dense = np.flatnonzero(counts > density * num_rows)
  others = num_columns - dense.size
  if others and ((dense.size and num_columns > SPLIT_MAX_COLUMNS)
                 or (density * num_rows * others
                     <= columns.size - counts[dense].sum() + SPLIT_COST_SHARE * columns.size)):
    return np.arange(num_columns, dtype=np.int32)
  return dense.astype(np.int32)


def make_block(sparse: SparseRows, start: int = 0, end: int | None = None,
               dense_density: float = DENSE_COLUMN_DENSITY, cache_csr: bool = False) -> SparseBlock:
  """Rows [start, end) of `sparse` as a SparseBlock (row indices relative to start)."""
  end = sparse.num_rows if end is None else end
  low, high = int(sparse.row_splits[start]), int(sparse.row_splits[end])
  lengths = np.diff(sparse.row_splits[start:end + 1])
  rows = np.repeat(np.arange(end - start, dtype=np.int32), lengths)
  columns = sparse.columns[low:high].astype(np.int32)
  values = sparse.values[low:high].astype(np.float32)
  dense_columns = dense_columns_of(columns, end - start, sparse.num_columns, dense_density)
  with tf.device("CPU:0"):
    rows_t, columns_t, values_t = tf.constant(rows), tf.constant(columns), tf.constant(values)
    order_t, cache = None, {}
    if cache_csr:
      transpose_order = np.lexsort((rows, columns)).astype(np.int32)
      order_t = tf.constant(transpose_order)
      shape = [end - start, sparse.num_columns]
      indices = tf.constant(np.stack([rows, columns], axis=1).astype(np.int64))
      transpose_indices = tf.constant(
          np.stack([columns[transpose_order], rows[transpose_order]], axis=1).astype(np.int64))
      cache = {"csr": _csr(indices, values_t, shape),
               "csr_transpose": _csr(transpose_indices, tf.gather(values_t, order_t),
                                     shape[::-1]),
               "indices": indices, "transpose_indices": transpose_indices}
    return SparseBlock(rows_t, columns_t, values_t, order_t, tf.constant(dense_columns),
                       tf.constant(end - start), **cache)


def _spmm(csr, make_csr_transpose, dense: tf.Tensor) -> tf.Tensor:
  """X @ dense for a constant sparse X, differentiable in `dense` (gradient X^T @ upstream)."""

  @tf.custom_gradient
  def product(dense):
    def gradient(upstream):
      # X^T is built only here so that it does not stay alive from forward to backward.
      return tf.raw_ops.SparseMatrixMatMul(a=make_csr_transpose(), b=upstream)
    return tf.raw_ops.SparseMatrixMatMul(a=csr, b=dense), gradient

  return product(dense)


def _gather_dot(left: tf.Tensor, right: tf.Tensor, left_index: tf.Tensor, right_index: tf.Tensor,
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


def _hybrid_dot(hidden: tf.Tensor, kernel: tf.Tensor, rows: tf.Tensor, columns: tf.Tensor,
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
  sparse_dots = _gather_dot(tf.cast(hidden, compute_dtype), tf.cast(kernel_t, compute_dtype),
                            tf.gather(rows, sparse_pairs), tf.gather(columns, sparse_pairs), chunk)
  return tf.cond(all_dense, lambda: dense_dots,
                 lambda: tf.dynamic_stitch([sparse_pairs, dense_pairs], [sparse_dots, dense_dots]))


def _pair_gradients(upstream: tf.Tensor, hidden: tf.Tensor, kernel: tf.Tensor,
                    block_tensors: tuple, transpose_kernel: bool = True) -> tuple:
  """Gradients of (hidden @ kernel) at a block's pairs, given `upstream` at those pairs.

  Those of hidden and of kernel, or with transpose_kernel=False of kernel^T ([columns, k], the
  SpMM's own layout: transposing it costs another copy of the kernel).
  """
  shape = [tf.shape(hidden)[0], tf.shape(kernel)[1]]
  residual = _csr(_coordinates(block_tensors), upstream, shape)
  residual_t = _transposed_csr(residual, upstream, block_tensors, shape)
  # Explicit transposes rather than the SpMM's transpose flags: oneDNN's SpMM (see
  # ONEDNN_SPMM) takes no flags, and the Eigen fallback that does is ~1.5x slower here.
  d_hidden = tf.raw_ops.SparseMatrixMatMul(a=residual, b=tf.transpose(kernel))
  # Not alongside: the transposed kernel above is as big as this one's output (1 GB each at
  # Netflix scale).
  with tf.control_dependencies([d_hidden]):
    d_kernel_t = tf.raw_ops.SparseMatrixMatMul(a=residual_t, b=hidden)
  return d_hidden, tf.transpose(d_kernel_t) if transpose_kernel else d_kernel_t


def _sampled_matmul(hidden: tf.Tensor, kernel: tf.Tensor, block_tensors: tuple,
                    compute_dtype: tf.DType, chunk: int = SDDMM_CHUNK) -> tf.Tensor:
  """(hidden @ kernel) at each observed pair of a block; SpMM gradients."""
  rows, columns, _, _, dense_columns = block_tensors[:5]

  @tf.custom_gradient
  def product(hidden, kernel):
    dots = _hybrid_dot(hidden, kernel, rows, columns, dense_columns, compute_dtype, chunk)
    return dots, lambda upstream: _pair_gradients(upstream, hidden, kernel, block_tensors)

  return product(hidden, kernel)


def _encode(model, block_tensors: tuple, compute_dtype: tf.DType) -> tf.Tensor:
  """The last hidden layer's code (float32) of every row of a block."""
  values, num_rows, csr, csr_transpose = block_tensors[2], *block_tensors[5:8]
  shape = [num_rows, model.num_inputs]
  csr = _csr(_coordinates(block_tensors), values, shape) if csr is None else _typed_csr(csr, shape)

  def make_csr_transpose():
    if csr_transpose is None:
      return _transposed_csr(csr, values, block_tensors, shape)
    return _typed_csr(csr_transpose, shape[::-1])

  first, *rest = model.hidden_layers
  params = [(tf.convert_to_tensor(first.kernel), first.bias),
            *((tf.cast(layer.kernel, compute_dtype), tf.cast(layer.bias, compute_dtype))
              for layer in rest)]
  hidden = model_lib.encode(params, csr, model.encoder_activation,
                            first_product=lambda _, kernel: _spmm(csr, make_csr_transpose, kernel))
  return tf.cast(hidden, tf.float32)


def reconstruct_pairs(model, block_tensors: tuple, rows: tf.Tensor, columns: tf.Tensor,
                      compute_dtype: tf.DType) -> tf.Tensor:
  """Unclipped reconstructions at (rows, columns) of a block, from its training ratings.

  Gather-dots only: held-out pairs are too few to pay for a dense column's GEMM.
  """
  hidden = _encode(model, block_tensors, compute_dtype)
  output = model.output_layer
  logits = _gather_dot(tf.cast(hidden, compute_dtype),
                       tf.cast(tf.transpose(output.kernel), compute_dtype), rows, columns,
                       SDDMM_CHUNK)
  return output.activation(logits + tf.gather(output.bias, columns))


def _decode(model, hidden: tf.Tensor, block_tensors: tuple, compute_dtype: tf.DType) -> tf.Tensor:
  """The output layer's unclipped values at a block's training pairs."""
  output = model.output_layer
  logits = _sampled_matmul(hidden, tf.convert_to_tensor(output.kernel), block_tensors,
                           compute_dtype)
  return output.activation(logits + tf.gather(output.bias, block_tensors[1]))


def l2_penalty(model, layers: list | None = None) -> tf.Tensor:
  """l2_weight times the summed squared kernels (of `layers`, by default all), as in Keras."""
  if not model.l2_weight:
    return tf.constant(0.0)
  layers = [*model.hidden_layers, model.output_layer] if layers is None else layers
  kernels = [layer.kernel for layer in layers]
  # l2_loss (half the summed squares) is one fused reduction: tf.square would be a temporary
  # the size of each kernel (1 GB at Netflix scale), also in the gradient.
  return 2.0 * model.l2_weight * tf.add_n([tf.nn.l2_loss(k) for k in kernels])


def squared_error_and_gradients(model, block_tensors: tuple, count: tf.Tensor,
                                penalty_share: float, compute_dtype: tf.DType,
                                loss_scale: tf.Tensor | float = 1.0) -> tuple[tf.Tensor, list]:
  """A block's summed squared error, and gradients of its share of the step's objective.

  The share is squared error / `count` (the count of every block in the step, not this block's)
  plus `penalty_share` of the L2 penalty, so summing blocks' or replicas' gradients gives the
  gradient of the whole step's objective. The penalty is on this tape rather than added after:
  at Netflix scale every extra gradient-sized tensor is another 2 GB. The gradients are of
  `loss_scale` times the share (float16 loss scaling; the optimizer unscales them).
  """
  with tf.GradientTape() as tape:
    predictions = _decode(model, _encode(model, block_tensors, compute_dtype), block_tensors,
                          compute_dtype)
    squared_error = tf.reduce_sum(tf.square(block_tensors[2] - predictions))
    share = (squared_error / count + penalty_share * l2_penalty(model)) * loss_scale
  gradients = tape.gradient(share, model.trainable_variables)
  # The output bias is read by a gather, whose gradient comes as IndexedSlices.
  return squared_error, [tf.convert_to_tensor(g) for g in gradients]


def sparse_loss_and_gradients(model, blocks: list[SparseBlock],
                              compute_dtype: tf.DType = tf.float32) -> tuple[tf.Tensor, list]:
  """The full objective over `blocks` (mean squared error + L2) and its gradients."""
  count = tf.constant(float(sum(block.nnz for block in blocks)))
  total, gradients = tf.constant(0.0), None
  for block in blocks:
    squared_error, block_gradients = squared_error_and_gradients(
        model, block.structure(), count, 1.0 / len(blocks), compute_dtype)
    total += squared_error
    gradients = block_gradients if gradients is None else [
        a + b for a, b in zip(gradients, block_gradients)]
  return total / count + l2_penalty(model), gradients


def row_blocks(num_rows: int, row_splits: np.ndarray, num_blocks: int) -> list[tuple[int, int]]:
  """Splits rows into `num_blocks` contiguous ranges of about equal numbers of ratings."""
  targets = np.linspace(0, row_splits[-1], num_blocks + 1)
  bounds = np.searchsorted(row_splits, targets).clip(0, num_rows)
  bounds[0], bounds[-1] = 0, num_rows
  bounds = np.maximum.accumulate(bounds)
  return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def fusable_adam(optimizer, strategy: tf.distribute.Strategy) -> bool:
  """Whether `optimizer` is a plain Keras Adam on unreplicated variables (see `adam_updates`)."""
  return (type(optimizer) is keras.optimizers.Adam and not optimizer.amsgrad
          and _plain(optimizer, strategy))


def fusable_rprop(optimizer, strategy: tf.distribute.Strategy) -> bool:
  """Whether `optimizer` is a plain Rprop on unreplicated variables (see `rprop_updates`)."""
  return type(optimizer) is Rprop and _plain(optimizer, strategy)


def _plain(optimizer, strategy: tf.distribute.Strategy) -> bool:
  """Whether `optimizer` uses none of Keras' generic update options, on unreplicated variables."""
  return (strategy.num_replicas_in_sync == 1 and not optimizer.use_ema
          and not optimizer.gradient_accumulation_steps and optimizer.weight_decay is None
          and optimizer.clipnorm is None and optimizer.clipvalue is None
          and optimizer.global_clipnorm is None and optimizer.loss_scale_factor is None
          and not any(isinstance(v.value, tf.distribute.DistributedValues)
                      for v in optimizer._trainable_variables))


@tf.function(jit_compile=True)
def _adam_update(variable, momentum, velocity, gradient, decay, learning_rate, beta_1, beta_2,
                 epsilon, step, transposed):
  """Keras Adam's `update_step` on gradient (or its transpose) + decay x variable, XLA-fused.

  One pass over the variable and its slots: the L2 term and the transpose, as separate ops,
  would each be a temporary the size of the variable (1 GB at Netflix scale). Returns a scalar
  for later ops to depend on.
  """
  if transposed:
    gradient = tf.transpose(gradient)
  gradient += decay * variable
  alpha = learning_rate * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
  momentum.assign_add((gradient - momentum) * (1 - beta_1))
  velocity.assign_add((tf.square(gradient) - velocity) * (1 - beta_2))
  variable.assign_sub(momentum * alpha / (tf.sqrt(velocity) + epsilon))
  return tf.zeros([])


def adam_updates(optimizer, updates: list, after: list) -> list:
  """Keras Adam's update for each (variable, gradient, L2 decay, gradient transposed) of `updates`.

  Applied after the ops `after`, one at a time, by `_adam_update`. Returns [the last update];
  `iterations` is left to the caller.
  """
  step = tf.cast(optimizer.iterations + 1, tf.float32)
  learning_rate = tf.cast(optimizer._get_current_learning_rate(), tf.float32)
  for variable, gradient, decay, transposed in updates:
    index = optimizer._get_variable_index(variable)
    # Chained, so that no two updates' inputs need be alive at once; the output bias's gradient
    # comes as IndexedSlices (it is read by a gather).
    with tf.control_dependencies(after):
      after = [_adam_update(
          variable.value, optimizer._momentums[index].value, optimizer._velocities[index].value,
          tf.convert_to_tensor(gradient), tf.constant(decay, tf.float32), learning_rate,
          tf.constant(optimizer.beta_1, tf.float32), tf.constant(optimizer.beta_2, tf.float32),
          tf.constant(optimizer.epsilon, tf.float32), step, transposed)]
  return after


@tf.function(jit_compile=True)
def _rprop_update(variable, step, previous, gradient, learning_rate, increase_factor,
                  decrease_factor, min_step, max_step):
  """`optimizers.Rprop.update_step`, which XLA fuses into one pass without temporaries."""
  new_step, kept_gradient, decrement = irprop_minus(
      gradient, previous, step, learning_rate, increase_factor, decrease_factor, min_step,
      max_step)
  step.assign(new_step)
  previous.assign(kept_gradient)
  variable.assign_sub(decrement)


def rprop_updates(optimizer, gradients: list, variables: list) -> None:
  """The same update as Keras applying `optimizer` (a plain Rprop), fused per variable.

  Keras' update is a chain of ~12 elementwise ops over the variable, each a full-size temporary;
  the fused one reads the weight, gradient, step and previous gradient once and writes three.
  """
  learning_rate = tf.cast(optimizer._get_current_learning_rate(), tf.float32)
  for gradient, variable in zip(gradients, variables):
    index = optimizer._get_variable_index(variable)
    _rprop_update(variable.value, optimizer._steps[index].value,
                  optimizer._previous_gradients[index].value, gradient, learning_rate,
                  optimizer.increase_factor, optimizer.decrease_factor, optimizer.min_step,
                  optimizer.max_step)
  optimizer.iterations.assign_add(1)


def adam_step(model, block_tensors: tuple, count: tf.Tensor, compute_dtype: tf.DType) -> tf.Tensor:
  """One fused-Adam step on a block (the whole step); returns its summed squared error.

  The same update as Keras Adam on `squared_error_and_gradients`, but the output layer is updated
  as soon as its gradients exist, before the encoder's backward pass starts (which needs only the
  gradient of the hidden code), so the two GB-sized kernel gradients of Netflix are never alive
  together; the L2 terms and the output kernel's transpose are left to `_adam_update`.
  """
  optimizer = model.optimizer
  output = model.output_layer
  kernel, columns, values = tf.convert_to_tensor(output.kernel), block_tensors[1], block_tensors[2]
  decay = 2.0 * model.l2_weight  # The gradient of l2_penalty, per unit of kernel.
  with tf.GradientTape() as encoder_tape:
    hidden = _encode(model, block_tensors, compute_dtype)
  logits = _hybrid_dot(hidden, kernel, block_tensors[0], columns, block_tensors[4],
                       compute_dtype, SDDMM_CHUNK)
  with tf.GradientTape() as decoder_tape:
    decoder_tape.watch(logits)
    predictions = output.activation(logits + tf.gather(output.bias, columns))
    squared_error = tf.reduce_sum(tf.square(values - predictions))
    share = squared_error / count
  d_logits, d_bias = decoder_tape.gradient(share, [logits, output.bias])
  d_hidden, d_kernel_t = _pair_gradients(d_logits, hidden, kernel, block_tensors,
                                         transpose_kernel=False)
  updates = adam_updates(optimizer, [(output.kernel, d_kernel_t, decay, True),
                                     (output.bias, d_bias, 0.0, False)], [])
  encoder = [pair for layer in model.hidden_layers
             for pair in ((layer.kernel, decay), (layer.bias, 0.0))]
  with tf.control_dependencies(updates):
    encoder_gradients = encoder_tape.gradient(hidden, [v for v, _ in encoder],
                                              output_gradients=d_hidden)
  updates = adam_updates(optimizer, [(variable, gradient, variable_decay, False)
                                     for (variable, variable_decay), gradient
                                     in zip(encoder, encoder_gradients)], updates)
  with tf.control_dependencies(updates):
    optimizer.iterations.assign_add(1)
  return squared_error


class SparseTrainer:
  """Runs optimizer steps and validation of an AutoRec on the sparse path under a strategy.

  Each step covers one group of `strategy.num_replicas_in_sync` row blocks, one per replica;
  replicas return gradients of their share, which are summed (`strategy.reduce` SUM) before one
  optimizer update of the (mirrored) variables. Full-batch training is a single group. On a
  single replica, a plain Keras Adam is applied by the fused `adam_step` and a plain Rprop by
  `rprop_updates` (same updates, less memory and time).
  """

  def __init__(self, model, sparse: SparseRows, strategy: tf.distribute.Strategy,
               batch_size: int = 0, compute_dtype: tf.DType = tf.float32,
               dense_density: float = DENSE_COLUMN_DENSITY):
    self.model = model
    self.strategy = strategy
    self.compute_dtype = compute_dtype
    with strategy.scope():  # Optimizer slots must mirror the variables they update.
      model.optimizer.build(model.trainable_variables)
    self.fused_adam = fusable_adam(model.optimizer, strategy)
    self.fused_rprop = fusable_rprop(model.optimizer, strategy)
    replicas = strategy.num_replicas_in_sync
    num_groups = 1 if not batch_size else max(1, math.ceil(sparse.num_rows / batch_size))
    ranges = row_blocks(sparse.num_rows, sparse.row_splits, num_groups * replicas)
    self.row_starts = [start for start, _ in ranges]
    cache_csr = replicas == 1 and sparse.nnz <= CSR_CACHE_RATINGS
    blocks = [make_block(sparse, start, end, dense_density, cache_csr) for start, end in ranges]
    self.groups = [blocks[g * replicas:(g + 1) * replicas] for g in range(num_groups)]
    # Blocks differ in size: one trace with unknown sizes serves them all.
    self._step = tf.function(self._step_fn, reduce_retracing=True)

  def _distribute(self, group: list[SparseBlock]):
    return self.strategy.experimental_distribute_values_from_function(
        lambda context: group[context.replica_id_in_sync_group].structure())

  def _step_fn(self, distributed_blocks, count):
    if self.fused_adam:
      squared_error = self.strategy.run(
          adam_step, args=(self.model, distributed_blocks, count, self.compute_dtype))
      return squared_error / count + l2_penalty(self.model)
    # 1 unless the optimizer scales the loss (a LossScaleOptimizer, or loss_scale_factor).
    loss_scale = self.model.optimizer.scale_loss(tf.constant(1.0))
    squared_error, gradients = self.strategy.run(
        squared_error_and_gradients,
        args=(self.model, distributed_blocks, count, 1.0 / self.strategy.num_replicas_in_sync,
              self.compute_dtype, loss_scale))
    squared_error = self.strategy.reduce(tf.distribute.ReduceOp.SUM, squared_error, axis=None)
    gradients = [self.strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None)
                 for g in gradients]
    if self.fused_rprop:
      rprop_updates(self.model.optimizer, gradients, self.model.trainable_variables)
    else:
      self.model.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
    return squared_error / count + l2_penalty(self.model)

  def run_epoch(self, rng: np.random.Generator | None = None,
                max_steps: int | None = None) -> float:
    """One pass over all groups (shuffled when rng is given), or its first max_steps; mean loss."""
    order = rng.permutation(len(self.groups)) if rng is not None else range(len(self.groups))
    losses = []
    for g in list(order)[:max_steps]:
      group = self.groups[g]
      count = tf.constant(float(sum(block.nnz for block in group)))
      losses.append(float(self._step(self._distribute(group), count)))
    return float(np.mean(losses))

  def predict_pairs(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Clipped predictions at (row, column) layout positions (all >= 0), block by block."""
    predictions = np.empty(rows.shape[0], dtype=np.float32)
    block_of = np.searchsorted(self.row_starts, rows, side="right") - 1
    blocks = [block for group in self.groups for block in group]
    for b, block in enumerate(blocks):
      pairs = np.flatnonzero(block_of == b)
      if pairs.size == 0:
        continue
      local_rows = (rows[pairs] - self.row_starts[b]).astype(np.int32)
      local_columns = columns[pairs].astype(np.int32)
      predictions[pairs] = self._predict(block.structure(), tf.constant(local_rows),
                                         tf.constant(local_columns)).numpy()
    return np.clip(predictions, *self.model.rating_scale)

  @tf.function
  def _predict(self, block_tensors, rows, columns):
    return reconstruct_pairs(self.model, block_tensors, rows, columns, self.compute_dtype)

  def rmse(self, targets: SparseRows) -> float:
    """RMSE of clipped predictions against held-out targets in the training layout."""
    predictions = self.predict_pairs(targets.row_index(), targets.columns)
    return float(np.sqrt(np.mean(np.square(targets.values - predictions))))


def write_epoch_summaries(writers: dict, logs: dict, epoch: int) -> None:
  """Writes an epoch's logs where Keras' TensorBoard callback does (train/ and validation/)."""
  for name, value in logs.items():
    split_name, name = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
    with writers[split_name].as_default():
      tf.summary.scalar(f"epoch_{name}", value, step=epoch)
    writers[split_name].flush()


def fit_sparse(split: RatingsSplit, model_config, train_config,
               strategy: tf.distribute.Strategy | None = None):
  """`training.fit` on the sparse path: same early stopping, checkpoints and TrainedModel."""
  from keras_autorec import training  # Imported here: training dispatches to this module.

  reason = unsupported_reason(model_config, train_config)
  if reason:
    raise ValueError(f"{reason}; use execution='dense'")
  start = time.time()
  keras.utils.set_random_seed(train_config.seed)
  strategy = strategy or distribution.make_strategy(train_config.strategy)
  layout = build_layout(split.train, item_based=model_config.item_based)
  with strategy.scope():
    model = training.build_model(model_config, layout)
    optimizer = make_optimizer(train_config.optimizer, train_config.learning_rate)
    if train_config.mixed_precision == "float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer)
  trainer = SparseTrainer(model, layout.train, strategy, train_config.batch_size,
                          COMPUTE_DTYPES[train_config.mixed_precision])
  validation_targets, _ = layout.targets(split.validation)
  writers = None
  if train_config.model_dir is not None:
    os.makedirs(train_config.model_dir, exist_ok=True)
    logs_dir = os.path.join(train_config.model_dir, "logs")
    writers = {split_name: tf.summary.create_file_writer(os.path.join(logs_dir, split_name))
               for split_name in ("train", "validation")}
  early_stopping = training.ResumableEarlyStopping(
      train_config.model_dir, train_config.patience, min_delta=train_config.min_delta,
      settings=training.checkpoint_settings(model_config, train_config, layout))
  early_stopping.set_model(model)
  with strategy.scope():
    initial_epoch = early_stopping.restore(model)
  model.stop_training = early_stopping.wait >= train_config.patience
  rng = np.random.default_rng(train_config.seed) if len(trainer.groups) > 1 else None
  report = early_stopping.progress(train_config)
  report.on_train_begin()
  for epoch in range(initial_epoch, train_config.epochs):
    if model.stop_training:
      break
    logs = {"loss": trainer.run_epoch(rng)}
    if validation_targets.nnz:
      logs["val_rmse"] = trainer.rmse(validation_targets)
    early_stopping.on_epoch_end(epoch, logs)
    report.on_epoch_end(epoch, logs)
    if writers:
      write_epoch_summaries(writers, logs, epoch)
  early_stopping.on_train_end()
  report.on_train_end()
  return training.TrainedModel(model=model, layout=layout, history=early_stopping.history,
                               epochs_run=early_stopping.completed_epochs,
                               best_epoch=early_stopping.best_epoch + 1,
                               seconds=time.time() - start)
