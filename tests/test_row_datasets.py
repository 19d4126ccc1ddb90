"""Tests for keras_autorec.data.row_datasets."""

from __future__ import annotations

import numpy as np
import pytest

from keras_autorec.data import row_datasets
from keras_autorec.data import layout as layout_lib


@pytest.fixture(scope="module")
def layout(split):
  return layout_lib.build_layout(split.train, item_based=True)


def _rows_seen(batches):
  return np.concatenate([inputs for inputs, _, _ in batches])


@pytest.mark.parametrize("batch_size", [7, 1000])
def test_training_batches_densify_exactly(layout, batch_size):
  dense = layout.train.to_dense()
  observed = np.zeros_like(dense)
  observed[layout.train.row_index(), layout.train.columns] = 1.0
  # A rating equal to the scale minimum must still be marked observed.
  assert np.any(layout.train.values == 1.0)
  batches = [tuple(t.numpy() for t in batch)
             for batch in row_datasets.training_dataset(layout.train, batch_size, seed=0)]
  assert len(batches) == -(-layout.num_rows // batch_size)
  for inputs, targets, mask in batches:
    np.testing.assert_array_equal(inputs, targets)
    rows = [int(np.flatnonzero((dense == row).all(axis=1))[0]) for row in inputs]
    np.testing.assert_array_equal(inputs, dense[rows])
    np.testing.assert_array_equal(mask, observed[rows])
  order = _rows_seen(batches)
  assert order.shape == dense.shape
  np.testing.assert_array_equal(np.sort(order.sum(axis=1)), np.sort(dense.sum(axis=1)))


def test_training_order_depends_on_seed_and_epoch_only(layout):
  def order(seed, first_epoch, num_epochs=1):
    return _rows_seen([tuple(t.numpy() for t in b) for b in row_datasets.training_dataset(
        layout.train, 16, seed=seed, first_epoch=first_epoch, num_epochs=num_epochs)])

  two_epochs = order(0, 0, num_epochs=2)
  np.testing.assert_array_equal(two_epochs[:layout.num_rows], order(0, 0))
  np.testing.assert_array_equal(two_epochs[layout.num_rows:], order(0, 1))
  assert not np.array_equal(order(0, 0), order(0, 1))
  assert not np.array_equal(order(0, 0), order(1, 0))
  np.testing.assert_array_equal(order(0, 0), order(0, 0))


def test_unshuffled_training_dataset_in_row_order(layout):
  inputs = _rows_seen([tuple(t.numpy() for t in b) for b in row_datasets.training_dataset(
      layout.train, 16, seed=0, shuffle=False)])
  np.testing.assert_array_equal(inputs, layout.train.to_dense())


def test_evaluation_inputs_are_training_ratings(split, layout):
  targets, seen = layout.targets(split.validation)
  assert seen.sum() == targets.nnz > 0
  dense_train, dense_targets = layout.train.to_dense(), targets.to_dense()
  rows_with_targets = np.flatnonzero(targets.row_lengths() > 0)
  batches = [tuple(t.numpy() for t in b)
             for b in row_datasets.evaluation_dataset(layout.train, targets, batch_size=8)]
  inputs, values, mask = (np.concatenate(parts) for parts in zip(*batches))
  np.testing.assert_array_equal(inputs, dense_train[rows_with_targets])
  np.testing.assert_array_equal(values, dense_targets[rows_with_targets])
  assert mask.sum() == targets.nnz
  # Held-out ratings never enter the model: their positions are empty in the inputs.
  assert np.all(inputs[mask == 1] == 0.0)


def test_evaluation_full_batch(split, layout):
  targets, _ = layout.targets(split.test)
  batches = list(row_datasets.evaluation_dataset(layout.train, targets, layout.num_rows))
  assert len(batches) == 1
  assert batches[0][2].numpy().sum() == targets.nnz


def test_rows_dataset_in_given_order(layout):
  rows = np.array([5, 0, 3])
  batches = list(row_datasets.rows_dataset(layout.train, rows, batch_size=2))
  ids = np.concatenate([b[0].numpy() for b in batches])
  inputs = np.concatenate([b[1].numpy() for b in batches])
  np.testing.assert_array_equal(ids, rows)
  np.testing.assert_array_equal(inputs, layout.train.to_dense()[rows])
