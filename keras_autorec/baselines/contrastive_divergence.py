"""Contrastive divergence for RBM-CF (`keras_autorec.baselines.rbm`): the mini-batch update.

The model is an `rbm.RBMCF`, taken without importing it so that `rbm` can import this module.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def row_ragged(rows: np.ndarray, units: np.ndarray, num_rows: int) -> tf.RaggedTensor:
  """Each row's visible units (column * K + rating level) as one ragged [num_rows, None]."""
  order = np.argsort(rows, kind="stable")
  return tf.RaggedTensor.from_value_rowids(units[order].astype(np.int32),
                                           rows[order].astype(np.int64), nrows=num_rows)


def make_train_step(model, train_units: tf.RaggedTensor, momentum: float, weight_decay: float,
                    seed: int):
  """The tf.function (row ids, CD steps T, learning rate) that applies one CD-T update.

  It returns the squared error of the batch's first reconstruction and its number of ratings.
  """
  num_values, num_units = model.num_values, model.num_columns * model.num_values
  variables = model.parameters
  increments = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
  generator = tf.random.Generator.from_seed(seed)

  def sample_visible(hidden, batch_rows, columns):
    logits = model.visible_logits(tf.gather(hidden, batch_rows), columns)
    levels = tf.cast(tf.random.stateless_categorical(
        logits, 1, generator.make_seeds(1)[:, 0])[:, 0], tf.int32)
    return logits, columns * num_values + levels

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
                                tf.TensorSpec([], tf.float32)])
  def train_step(row_ids, cd_steps, learning_rate):
    batch = tf.gather(train_units, row_ids)
    batch_rows = tf.cast(batch.value_rowids(), tf.int32)
    data_units = batch.flat_values
    columns = data_units // num_values
    num_rows = tf.shape(row_ids)[0]
    positive_hidden = model.hidden_probabilities(batch_rows, data_units, num_rows)
    hidden = tf.cast(generator.uniform(tf.shape(positive_hidden)) < positive_hidden, tf.float32)
    logits, model_units = sample_visible(hidden, batch_rows, columns)
    # Squared error of the first reconstruction's expected rating: the training signal to watch.
    data_values = tf.gather(model.values, data_units % num_values)
    squared_error = tf.reduce_sum(tf.square(model.expected_rating(logits) - data_values))
    negative_hidden = model.hidden_probabilities(batch_rows, model_units, num_rows)
    for _ in tf.range(cd_steps - 1):
      hidden = tf.cast(generator.uniform(tf.shape(negative_hidden)) < negative_hidden, tf.float32)
      _, model_units = sample_visible(hidden, batch_rows, columns)
      negative_hidden = model.hidden_probabilities(batch_rows, model_units, num_rows)

    def statistics(units, hidden_probabilities):
      weights = tf.math.unsorted_segment_sum(tf.gather(hidden_probabilities, batch_rows), units,
                                             num_units)
      visible = tf.math.unsorted_segment_sum(tf.ones_like(units, tf.float32), units, num_units)
      return weights, tf.reshape(visible, [-1, num_values]), tf.reduce_sum(hidden_probabilities, 0)

    scale = 1.0 / tf.cast(num_rows, tf.float32)
    positive = statistics(data_units, positive_hidden)
    negative = statistics(model_units, negative_hidden)
    for variable, increment, plus, minus, decay in zip(variables, increments, positive, negative,
                                                       (weight_decay, 0.0, 0.0)):
      gradient = (plus - minus) * scale - decay * variable
      increment.assign(momentum * increment + learning_rate * gradient)
      variable.assign_add(increment)
    return squared_error, tf.cast(tf.size(data_units), tf.float32)

  return train_step


def initial_visible_bias(units: np.ndarray, num_columns: int, num_values: int) -> np.ndarray:
  """Log of each column's smoothed rating-value frequencies, so the softmax starts at the data."""
  counts = np.bincount(units, minlength=num_columns * num_values).reshape(num_columns, num_values)
  overall = counts.sum(axis=0) + 1.0
  smoothed = counts + overall / overall.sum()
  return np.log(smoothed / smoothed.sum(axis=1, keepdims=True)).astype(np.float32)
