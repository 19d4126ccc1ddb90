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


# Evaluation batches are the same every epoch: keep them in memory up to this many cells (three
# float32 tensors each, so 240 MB), rather than densifying them again for every validation pass.
CACHE_MAX_CELLS = 20_000_000


def _pad_rows(tensors: tuple[tf.Tensor, ...], row_multiple: int) -> tuple[tf.Tensor, ...]:
  """Appends all-zero rows (no inputs, no observed targets) up to a multiple of row_multiple.

  Replicas of a distribution strategy each need the same number of rows; zero rows add nothing
  to the loss, whose denominator counts observed entries only.
  """
  if row_multiple <= 1:
    return tensors
  padding = -tf.shape(tensors[0])[0] % row_multiple
  return tuple(tf.pad(t, [[0, padding], [0, 0]]) for t in tensors)


def _as_tensors(rows: SparseRows) -> dict[str, tf.Tensor]:
  return {"row_splits": tf.constant(rows.row_splits, tf.int64),
          "columns": tf.constant(rows.columns, tf.int32),
          "values": tf.constant(rows.values, tf.float32)}


def training_dataset(train: SparseRows, batch_size: int, seed: int, shuffle: bool = True,
                     first_epoch: int = 0, num_epochs: int = 1,
                     row_multiple: int = 1) -> tf.data.Dataset:
  """Batches of training rows that reconstruct themselves, for epochs first_epoch onwards.

  `row_multiple` pads each batch with empty rows to a multiple of it (the number of replicas).

  Each epoch is ceil(num_rows / batch_size) batches of rows in an order that depends only on
  (seed, epoch), never on how many iterators were made before: a run resumed at an epoch and a
  distributed run (Keras iterates once more to build the model) see the same batches.
  """
  tensors = _as_tensors(train)

  def epoch_rows(epoch):
    ids = tf.range(train.num_rows, dtype=tf.int64)
    if shuffle:
      keys = tf.random.stateless_uniform(
          [train.num_rows], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
      ids = tf.gather(ids, tf.argsort(keys))
    return tf.data.Dataset.from_tensor_slices(ids).batch(batch_size)

  def to_batch(ids):
    values, mask = _densify(tensors, ids, train.num_columns)
    values, mask = _pad_rows((values, mask), row_multiple)
    return values, values, mask

  epochs = tf.data.Dataset.range(first_epoch, first_epoch + num_epochs)
  return (epochs.flat_map(epoch_rows).map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def evaluation_dataset(train: SparseRows, targets: SparseRows, batch_size: int,
                       row_multiple: int = 1) -> tf.data.Dataset:
  """Batches of the rows that have targets: training ratings in, held-out ratings as targets."""
  if targets.num_rows != train.num_rows or targets.num_columns != train.num_columns:
    raise ValueError("targets must share the training layout's rows and columns")
  train_tensors, target_tensors = _as_tensors(train), _as_tensors(targets)
  rows_with_targets = np.flatnonzero(targets.row_lengths() > 0).astype(np.int64)

  def to_batch(ids):
    inputs, _ = _densify(train_tensors, ids, train.num_columns)
    values, mask = _densify(target_tensors, ids, targets.num_columns)
    return _pad_rows((inputs, values, mask), row_multiple)

  batches = (tf.data.Dataset.from_tensor_slices(rows_with_targets).batch(batch_size)
             .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE))
  if rows_with_targets.shape[0] * train.num_columns <= CACHE_MAX_CELLS:
    batches = batches.cache()
  return batches.prefetch(tf.data.AUTOTUNE)


def rows_dataset(train: SparseRows, row_ids: np.ndarray, batch_size: int) -> tf.data.Dataset:
  """Batches of `(row_ids, inputs)` for the given rows, in order (for prediction and export)."""
  tensors = _as_tensors(train)

  def to_batch(ids):
    inputs, _ = _densify(tensors, ids, train.num_columns)
    return ids, inputs

  return (tf.data.Dataset.from_tensor_slices(np.asarray(row_ids, dtype=np.int64))
          .batch(batch_size).map(to_batch).prefetch(tf.data.AUTOTUNE))
