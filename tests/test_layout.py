"""Tests for keras_autorec.data.layout."""

from __future__ import annotations

import numpy as np

from keras_autorec.data import layout as layout_lib
from keras_autorec.data import ratings as ratings_lib


def _ratings():
  # Users a, b, c; items x, y, z. Training has no rating by c or of z.
  return ratings_lib.from_raw(
      np.array(["a", "a", "b", "c", "a", "b"]), np.array(["x", "y", "y", "x", "z", "x"]),
      np.array([1, 2, 3, 4, 5, 1], np.float32), None, (1.0, 5.0), "src")


def test_layout_uses_train_only_and_maps_unseen_to_minus_one():
  ratings = _ratings()
  train, held_out = ratings.subset(np.array([0, 1, 2, 5])), ratings.subset(np.array([3, 4]))
  layout = layout_lib.build_layout(train, item_based=True)
  assert list(layout.row_ids) == ["x", "y"] and list(layout.column_ids) == ["a", "b"]
  assert list(layout.item_ids()) == ["x", "y"] and list(layout.user_ids()) == ["a", "b"]
  np.testing.assert_array_equal(layout.train.to_dense(), [[1, 1], [2, 3]])
  rows, columns = layout.positions(held_out)
  np.testing.assert_array_equal(rows, [0, -1])  # item x seen, item z unseen
  np.testing.assert_array_equal(columns, [-1, 0])  # user c unseen, user a seen
  targets, seen = layout.targets(held_out)
  assert not seen.any() and targets.nnz == 0 and targets.num_rows == 2


def test_user_based_layout_is_the_transpose():
  ratings = _ratings()
  items = layout_lib.build_layout(ratings, item_based=True)
  users = layout_lib.build_layout(ratings, item_based=False)
  np.testing.assert_array_equal(users.train.to_dense(), items.train.to_dense().T)
  assert list(users.row_ids) == list(items.column_ids)


def test_sparse_rows_sorted_by_row_then_column():
  rows = layout_lib.sparse_rows(np.array([2, 0, 2, 0]), np.array([1, 3, 0, 0]),
                                np.array([1, 2, 3, 4], np.float32), num_rows=4, num_columns=4)
  np.testing.assert_array_equal(rows.row_splits, [0, 2, 2, 4, 4])
  np.testing.assert_array_equal(rows.columns, [0, 3, 0, 1])
  np.testing.assert_array_equal(rows.values, [4, 2, 3, 1])
  np.testing.assert_array_equal(rows.row_index(), [0, 0, 2, 2])
