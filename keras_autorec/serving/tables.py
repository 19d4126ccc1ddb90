"""The export's tables: the trained AutoRec as vectors and biases per user and item.

See `keras_autorec.export` for what they mean and how the signatures use them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
from keras import ops

from keras_autorec import fallback as fallback_lib
from keras_autorec.config import ExportConfig
from keras_autorec.data import row_datasets
from keras_autorec.data.layout import RowLayout, SparseRows, sparse_rows
from keras_autorec.model import AutoRec

_SELU_SCALE = 1.0507009873554805
_SELU_ALPHA = 1.6732632423543772
_INVERSE_EPSILON = 1e-6


def inverse_activation(name: str, outputs: tf.Tensor, rating_scale) -> tf.Tensor:
  """Pre-activations whose decoder activation gives `outputs`, clamped into f's range.

  relu is not invertible below 0; ratings are taken as they are there.
  """
  if name in ("identity", "relu"):
    return outputs
  low, high = rating_scale
  if name == "sigmoid":
    probability = tf.clip_by_value((outputs - low) / (high - low), _INVERSE_EPSILON,
                                   1.0 - _INVERSE_EPSILON)
    return tf.math.log(probability) - tf.math.log1p(-probability)
  if name == "tanh":
    unit = 2.0 * (outputs - low) / (high - low) - 1.0
    return tf.atanh(tf.clip_by_value(unit, -1.0 + _INVERSE_EPSILON, 1.0 - _INVERSE_EPSILON))
  scale, alpha = (_SELU_SCALE, _SELU_ALPHA) if name == "selu" else (1.0, 1.0)
  negative = tf.math.log1p(tf.maximum(outputs / (scale * alpha), -1.0 + _INVERSE_EPSILON))
  return tf.where(outputs > 0, outputs / scale, negative)


def fold_in_l2(config: ExportConfig, model: AutoRec, layout: RowLayout) -> float:
  """The fold-in ridge penalty: the configured one, or the one the training objective implies."""
  if config.fold_in_l2 is not None:
    return float(config.fold_in_l2)
  return max(1.0, layout.train.nnz * model.l2_weight)


@dataclasses.dataclass(frozen=True)
class ServingArrays:
  """The numpy tables of the export (`keras_autorec.export` says what they mean)."""

  user_ids: np.ndarray  # str [U]
  item_ids: np.ndarray  # str [I]
  user_vectors: np.ndarray  # float32 [U + 1, k]; the last row is the cold-start user
  user_biases: np.ndarray  # float32 [U + 1]
  item_vectors: np.ndarray  # float32 [I, k]
  item_biases: np.ndarray  # float32 [I]
  item_popularity: np.ndarray  # float32 [I], standardised log(1 + training ratings)
  training_items: SparseRows  # the items of each user, [U + 1 rows (the last empty), I]
  encoder_kernels: list[np.ndarray]  # U-AutoRec only: the encoder, for the fold-in
  encoder_biases: list[np.ndarray]


def row_codes(model: AutoRec, layout: RowLayout, batch_size: int = 1024) -> np.ndarray:
  """The last hidden code of every row's training ratings, float32 [rows, k]."""
  codes = np.zeros((layout.num_rows, model.hidden_units[-1]), dtype=np.float32)
  row_positions = np.arange(layout.num_rows)
  for row_ids, inputs in row_datasets.rows_dataset(layout.train, row_positions, batch_size):
    codes[row_ids.numpy()] = ops.convert_to_numpy(model.encode(inputs, training=False))
  return codes


def standardised_log_counts(counts: np.ndarray) -> np.ndarray:
  """log(1 + counts), shifted and scaled to mean 0 and standard deviation 1 (0 if constant)."""
  log_counts = np.log1p(counts.astype(np.float64))
  spread = log_counts.std()
  return ((log_counts - log_counts.mean()) / (spread if spread > 0 else 1.0)).astype(np.float32)


def serving_arrays(model: AutoRec, layout: RowLayout) -> ServingArrays:
  """Precomputes the export's tables from the model and its training layout."""
  if model.item_based != layout.item_based:
    raise ValueError(f"model item_based={model.item_based} but layout "
                     f"item_based={layout.item_based}")
  if model.num_inputs != layout.num_columns:
    raise ValueError(f"model has {model.num_inputs} inputs but the layout "
                     f"{layout.num_columns} columns")
  codes = row_codes(model, layout)
  kernel_columns = ops.convert_to_numpy(model.output_layer.kernel).astype(np.float32).T
  output_bias = ops.convert_to_numpy(model.output_layer.bias).astype(np.float32)
  num_users, num_items = layout.user_ids().shape[0], layout.item_ids().shape[0]
  if model.item_based:
    user_vectors = np.concatenate([kernel_columns, kernel_columns.mean(0, keepdims=True)])
    user_biases = np.append(output_bias, output_bias.mean()).astype(np.float32)
    item_vectors, item_biases = codes, np.zeros(num_items, np.float32)
    # Transposes the item rows into the users' rated items.
    training_items = sparse_rows(layout.train.columns, layout.train.row_index(),
                                 layout.train.values, num_users + 1, num_items)
    item_counts = layout.train.row_lengths()
    encoder_kernels, encoder_biases = [], []
  else:
    empty_code = ops.convert_to_numpy(
        model.encode(np.zeros((1, layout.num_columns), np.float32), training=False))
    user_vectors = np.concatenate([codes, empty_code.astype(np.float32)])
    user_biases = np.zeros(num_users + 1, np.float32)
    item_vectors, item_biases = kernel_columns, output_bias
    training_items = SparseRows(np.append(layout.train.row_splits, layout.train.nnz),
                                layout.train.columns, layout.train.values, num_items)
    item_counts = np.bincount(layout.train.columns, minlength=num_items)
    encoder_kernels = [ops.convert_to_numpy(layer.kernel).astype(np.float32)
                       for layer in model.hidden_layers]
    encoder_biases = [ops.convert_to_numpy(layer.bias).astype(np.float32)
                      for layer in model.hidden_layers]
  return ServingArrays(
      user_ids=layout.user_ids().astype(str), item_ids=layout.item_ids().astype(str),
      user_vectors=user_vectors.astype(np.float32), user_biases=user_biases,
      item_vectors=item_vectors, item_biases=item_biases,
      item_popularity=standardised_log_counts(item_counts), training_items=training_items,
      encoder_kernels=encoder_kernels, encoder_biases=encoder_biases)


@dataclasses.dataclass(frozen=True)
class FallbackTables:
  """serving_default's fallback (`keras_autorec.fallback.RatingBiases`) in the export's id order."""

  global_mean: float
  user_bias: np.ndarray  # float32 [U]
  item_bias: np.ndarray  # float32 [I]
  new_user_bias: float
  new_item_bias: float


def fallback_tables(fallback: fallback_lib.RatingBiases | None, layout: RowLayout,
                     default_rating: float) -> FallbackTables:
  """The fallback's biases of the layout's users and items; without one, `default_rating`."""
  num_users, num_items = layout.user_ids().shape[0], layout.item_ids().shape[0]
  if fallback is None:
    return FallbackTables(float(default_rating), np.zeros(num_users, np.float32),
                           np.zeros(num_items, np.float32), 0.0, 0.0)
  # The layout's users and items are the vocabulary's ids with training ratings, in order.
  user_of, item_of = ((layout.column_of, layout.row_of) if layout.item_based
                      else (layout.row_of, layout.column_of))
  return FallbackTables(fallback.global_mean, fallback.user_bias[np.flatnonzero(user_of >= 0)],
                         fallback.item_bias[np.flatnonzero(item_of >= 0)],
                         fallback.new_user_bias, fallback.new_item_bias)
