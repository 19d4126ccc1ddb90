"""Row layout: ratings arranged as item rows over users (I-AutoRec) or user rows over items.

Only users and items with at least one training rating get a row or a column; anything else is
"unseen" and is predicted as the default rating.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_autorec.data.ratings import Ratings


@dataclasses.dataclass(frozen=True)
class SparseRows:
  """Compressed sparse rows: row r holds columns[row_splits[r]:row_splits[r+1]] and values."""

  row_splits: np.ndarray  # int64 [num_rows + 1]
  columns: np.ndarray  # int32 [nnz]
  values: np.ndarray  # float32 [nnz]
  num_columns: int

  @property
  def num_rows(self) -> int:
    return int(self.row_splits.shape[0] - 1)

  @property
  def nnz(self) -> int:
    return int(self.values.shape[0])

  def row_lengths(self) -> np.ndarray:
    return np.diff(self.row_splits)

  def row_index(self) -> np.ndarray:
    """Row of each stored value, int32 [nnz]."""
    return np.repeat(np.arange(self.num_rows, dtype=np.int32), self.row_lengths())

  def to_dense(self) -> np.ndarray:
    """Dense float32 [num_rows, num_columns]; for small data and tests only."""
    dense = np.zeros((self.num_rows, self.num_columns), dtype=np.float32)
    dense[self.row_index(), self.columns] = self.values
    return dense


def sparse_rows(rows: np.ndarray, columns: np.ndarray, values: np.ndarray, num_rows: int,
                num_columns: int) -> SparseRows:
  """Builds SparseRows from coordinate arrays (rows and columns must be in range)."""
  order = np.lexsort((columns, rows))
  counts = np.bincount(rows, minlength=num_rows)
  row_splits = np.zeros(num_rows + 1, dtype=np.int64)
  np.cumsum(counts, out=row_splits[1:])
  return SparseRows(row_splits=row_splits, columns=columns[order].astype(np.int32),
                    values=values[order].astype(np.float32), num_columns=int(num_columns))


@dataclasses.dataclass(frozen=True)
class RowLayout:
  """Training ratings as rows, plus the maps from dataset indices to rows and columns.

  Attributes:
    item_based: rows are items and columns users (I-AutoRec) if True, else the reverse.
    row_ids: raw ids of the rows (items if item_based), those with a training rating.
    column_ids: raw ids of the columns.
    train: the training ratings as SparseRows over (row, column).
    row_of: int32 [dataset rows vocabulary] -> row position, -1 when unseen in training.
    column_of: int32 [dataset columns vocabulary] -> column position, -1 when unseen.
    rating_scale: (lowest, highest) rating.
  """

  item_based: bool
  row_ids: np.ndarray
  column_ids: np.ndarray
  train: SparseRows
  row_of: np.ndarray
  column_of: np.ndarray
  rating_scale: tuple[float, float]

  @property
  def num_rows(self) -> int:
    return int(self.row_ids.shape[0])

  @property
  def num_columns(self) -> int:
    return int(self.column_ids.shape[0])

  def user_ids(self) -> np.ndarray:
    return self.column_ids if self.item_based else self.row_ids

  def item_ids(self) -> np.ndarray:
    return self.row_ids if self.item_based else self.column_ids

  def positions(self, ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Maps ratings (of the same dataset) to (row, column) positions; -1 where unseen."""
    row_index, column_index = _orient(ratings, self.item_based)
    return self.row_of[row_index], self.column_of[column_index]

  def targets(self, ratings: Ratings) -> tuple[SparseRows, np.ndarray]:
    """Held-out ratings as SparseRows over seen pairs, and the mask of ratings that are seen."""
    rows, columns = self.positions(ratings)
    seen = (rows >= 0) & (columns >= 0)
    return sparse_rows(rows[seen], columns[seen], ratings.rating[seen], self.num_rows,
                       self.num_columns), seen


def _orient(ratings: Ratings, item_based: bool) -> tuple[np.ndarray, np.ndarray]:
  if item_based:
    return ratings.item_index, ratings.user_index
  return ratings.user_index, ratings.item_index


def build_layout(train: Ratings, item_based: bool = True) -> RowLayout:
  """Arranges training ratings as rows; rows and columns are the ids seen in training."""
  row_index, column_index = _orient(train, item_based)
  row_vocab = train.item_ids if item_based else train.user_ids
  column_vocab = train.user_ids if item_based else train.item_ids
  seen_rows = np.unique(row_index)
  seen_columns = np.unique(column_index)
  row_of = np.full(row_vocab.shape[0], -1, dtype=np.int32)
  row_of[seen_rows] = np.arange(seen_rows.shape[0], dtype=np.int32)
  column_of = np.full(column_vocab.shape[0], -1, dtype=np.int32)
  column_of[seen_columns] = np.arange(seen_columns.shape[0], dtype=np.int32)
  rows = sparse_rows(row_of[row_index], column_of[column_index], train.rating,
                     seen_rows.shape[0], seen_columns.shape[0])
  return RowLayout(item_based=item_based, row_ids=row_vocab[seen_rows],
                   column_ids=column_vocab[seen_columns], train=rows, row_of=row_of,
                   column_of=column_of, rating_scale=train.rating_scale)
