"""tf.data input: batches of rows densified per batch, never a full dense rating matrix.

Each element is `(inputs, targets, target_mask)`, all float32 [batch, num_columns]: `inputs` is the
rows' training ratings (zero where unobserved), `targets` the ratings to reconstruct and
`target_mask` 1 where a target is observed. For training, targets are the inputs; for evaluation,
targets are held-out ratings and inputs are still the training ratings, so held-out ratings never
enter the model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_autorec.data.layout import SparseRows


def _densify(sparse: dict[str, tf.Tensor], row_ids: tf.Tensor,
             num_columns: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Dense values and observed mask of the given rows of a SparseRows held as tensors."""
  starts = tf.gather(sparse["row_splits"], row_ids)
  limits = tf.gather(sparse["row_splits"], row_ids + 1)
  positions = tf.ragged.range(starts, limits)
  batch_row = tf.cast(positions.value_rowids(), tf.int32)
  flat = positions.flat_values
  indices = tf.stack([batch_row, tf.gather(sparse["columns"], flat)], axis=1)
  shape = tf.stack([tf.shape(row_ids)[0], num_columns])
  values = tf.scatter_nd(indices, tf.gather(sparse["values"], flat), shape)
  mask = tf.scatter_nd(indices, tf.ones_like(flat, dtype=tf.float32), shape)
  return values, mask


def _as_tensors(rows: SparseRows) -> dict[str, tf.Tensor]:
  return {"row_splits": tf.constant(rows.row_splits, tf.int64),
          "columns": tf.constant(rows.columns, tf.int32),
          "values": tf.constant(rows.values, tf.float32)}


def training_dataset(train: SparseRows, batch_size: int, seed: int,
                     shuffle: bool = True) -> tf.data.Dataset:
  """Batches of training rows that reconstruct themselves, reshuffled every epoch."""
  tensors = _as_tensors(train)
  row_ids = tf.data.Dataset.range(train.num_rows)
  if shuffle:
    row_ids = row_ids.shuffle(train.num_rows, seed=seed, reshuffle_each_iteration=True)

  def to_batch(ids):
    values, mask = _densify(tensors, ids, train.num_columns)
    return values, values, mask

  return (row_ids.batch(batch_size).map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def evaluation_dataset(train: SparseRows, targets: SparseRows, batch_size: int) -> tf.data.Dataset:
  """Batches of the rows that have targets: training ratings in, held-out ratings as targets."""
  if targets.num_rows != train.num_rows or targets.num_columns != train.num_columns:
    raise ValueError("targets must share the training layout's rows and columns")
  train_tensors, target_tensors = _as_tensors(train), _as_tensors(targets)
  rows_with_targets = np.flatnonzero(targets.row_lengths() > 0).astype(np.int64)

  def to_batch(ids):
    inputs, _ = _densify(train_tensors, ids, train.num_columns)
    values, mask = _densify(target_tensors, ids, targets.num_columns)
    return inputs, values, mask

  return (tf.data.Dataset.from_tensor_slices(rows_with_targets).batch(batch_size)
          .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def rows_dataset(train: SparseRows, row_ids: np.ndarray, batch_size: int) -> tf.data.Dataset:
  """Batches of `(row_ids, inputs)` for the given rows, in order (for prediction and export)."""
  tensors = _as_tensors(train)

  def to_batch(ids):
    inputs, _ = _densify(tensors, ids, train.num_columns)
    return ids, inputs

  return (tf.data.Dataset.from_tensor_slices(np.asarray(row_ids, dtype=np.int64))
          .batch(batch_size).map(to_batch).prefetch(tf.data.AUTOTUNE))
