"""Row blocks of the training ratings as the tensors a sparse step reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_autorec.data.layout import SparseRows
from keras_autorec.training.sparse.kernels import BlockTensors, csr_matrix

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


@dataclasses.dataclass(frozen=True)
class SparseBlock:
  """A block of rows' training ratings as int32 coordinates and float32 values.

  The CSR matrices of X and X^T, and the int64 coordinates of X and X^T that CSR builds of the
  residual take, are built once when given (see `trainer.CSR_CACHE_RATINGS`); `transpose_order`
  then lists the entries in column-major order, for the residual's transpose. Otherwise X's CSR
  matrix is built inside each traced step (about 10 ns per rating) and transposed there. The
  decoder is evaluated by GEMM at the pairs of `dense_columns` (see `training.sparse`).
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

  def structure(self) -> BlockTensors:
    """The tensors a traced step needs (what tf.function and strategies take)."""
    return BlockTensors(self.rows, self.columns, self.values, self.transpose_order,
                        self.dense_columns, self.num_rows, self.csr, self.csr_transpose,
                        self.indices, self.transpose_indices)


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
      cache = {"csr": csr_matrix(indices, values_t, shape),
               "csr_transpose": csr_matrix(transpose_indices, tf.gather(values_t, order_t),
                                     shape[::-1]),
               "indices": indices, "transpose_indices": transpose_indices}
    return SparseBlock(rows_t, columns_t, values_t, order_t, tf.constant(dense_columns),
                       tf.constant(end - start), **cache)


def row_blocks(num_rows: int, row_splits: np.ndarray, num_blocks: int) -> list[tuple[int, int]]:
  """Splits rows into `num_blocks` contiguous ranges of about equal numbers of ratings."""
  targets = np.linspace(0, row_splits[-1], num_blocks + 1)
  bounds = np.searchsorted(row_splits, targets).clip(0, num_rows)
  bounds[0], bounds[-1] = 0, num_rows
  bounds = np.maximum.accumulate(bounds)
  return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
