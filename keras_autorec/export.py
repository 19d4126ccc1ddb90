"""Export of a trained AutoRec as a versioned SavedModel for TensorFlow Serving.

The export is a biased dot-product model precomputed from the trained network:

    rating(u, i) = clip(f(user_vector[u] . item_vector[i] + user_bias[u] + item_bias[i]))

  I-AutoRec (rows are items): item_vector[i] = z_i, the last hidden code of item i's training
    ratings; user_vector[u] = W_out[:, u], user_bias[u] = b_out[u], item_bias = 0.
  U-AutoRec (rows are users): user_vector[u] = z_u; item_vector[i] = W_out[:, i],
    item_bias[i] = b_out[i], user_bias = 0.

so a rating costs O(hidden units) and top-K over all items one matrix product. f is the decoder
activation and the clip is to the rating scale, exactly as `AutoRec.predict_ratings`.

Signatures (method predict, named inputs, dict outputs):
  serving_default        user_id str [B], item_id str [B] -> rating float32 [B]; the fallback's
                         rating (`keras_autorec.fallback`) when the user or the item has no
                         training ratings. Exported with a rare-rows blend
                         (`keras_autorec.blend`), the blended rating, as evaluated; the other
                         signatures rank and rate by the model alone.
  recommend              user_id str [B] -> item_ids str [B, K], scores float32 [B, K],
                         ratings float32 [B, K]; items the user rated in training are excluded.
  recommend_for_ratings  item_ids str [B, L], ratings float32 [B, L] ("" pads) -> item_ids,
                         scores, ratings; a user not seen in training, folded in without
                         retraining; the given items are excluded and unknown item ids ignored.
                         List each item once: a repeated item counts twice (I-AutoRec) or has its
                         ratings summed (U-AutoRec).
  similar_items          item_id str [B] -> item_ids, scores: cosine similarity of item vectors,
                         the item itself excluded.

Inputs are checked in the graph, so TF Serving answers INVALID_ARGUMENT (and
`tf.saved_model.load` raises InvalidArgumentError) instead of broadcasting: every input must have
exactly the rank above, paired inputs (user_id and item_id; item_ids and ratings) the same shape,
the top-K signatures at most `ExportConfig.max_batch_size` rows and recommend_for_ratings at most
`ExportConfig.max_rating_slots` values; a rating of a known item must be finite and within the
rating scale, while ratings on padding and unknown items are ignored whatever their value.

Top-K lists are sorted by score, best first. The recommendation score of an item is

    score(u, i) = f(user_vector[u] . item_vector[i] + user_bias[u] + item_bias[i])
                  + popularity_weight * popularity[i],

the unclipped predicted rating plus a popularity bonus, popularity[i] being log(1 + training
ratings of item i) standardised over the items (`ExportConfig.popularity_weight`): a predicted
rating alone ranks rarely rated items first, which seldom are the ones users rate next. `ratings`
are the listed items' predicted ratings, clipped like serving_default. Slots with no candidate left
(K exceeds the items not excluded) have item id "", score -inf and rating -inf; an unknown item_id
gets only such slots from similar_items.

Cold start: a user id unknown to `recommend` gets the same list as `recommend_for_ratings` with no
ratings. For U-AutoRec that is the model's reconstruction of an empty rating vector; for I-AutoRec
the decoder column of the average training user (the mean of W_out's columns and of b_out), which
is also the prior the I-AutoRec fold-in shrinks towards.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os

import numpy as np
import tensorflow as tf
from keras import ops

import keras_autorec
from keras_autorec import fallback as fallback_lib
from keras_autorec.blend import RatingBlend, ServingBlend
from keras_autorec.data import input as data_input
from keras_autorec.data.layout import RowLayout, SparseRows, sparse_rows
from keras_autorec.model import AutoRec, encode, output_activation
from keras_autorec.serving import publish
from keras_autorec.serving.publish import existing_versions  # noqa: F401 (public API)

SIGNATURE_NAMES = ("serving_default", "recommend", "recommend_for_ratings", "similar_items")
PADDING_ID = ""
ASSETS_EXTRA = "assets.extra"
METADATA_FILE = "metadata.json"
EXPORT_BASE = "saved_models"  # Default parent of the model base paths.
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses to load a model with more warmup records.
# Cosine similarity of a zero vector is taken as 0, not NaN.
_MIN_NORM = 1e-12

_SELU_SCALE = 1.0507009873554805
_SELU_ALPHA = 1.6732632423543772
_INVERSE_EPSILON = 1e-6


def _inverse_activation(name: str, outputs: tf.Tensor, rating_scale) -> tf.Tensor:
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


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """How to export a model for TF Serving.

  Attributes:
    export_dir: the TF Serving model base path; versions go to `export_dir/<integer>/`.
    top_k: K of recommend, recommend_for_ratings and similar_items (at most the number of items).
    default_rating: serving_default's rating when the user or item has no training ratings, if
      `export_model` gets no fallback.
    popularity_weight: beta of the `scores` that recommend and recommend_for_ratings rank by,
      (unclipped predicted rating) + beta * popularity, popularity being log(1 + the item's
      training ratings) standardised over the items; beta is in rating points per standard
      deviation of log popularity, and 0 ranks by predicted rating alone. Their `ratings` output
      is the predicted rating either way. The default maximised the validation recall@10 of
      held-out ratings >= 4, averaged over recommend and the fold-in and over ML-100K seeds 0
      and 1 (flat from 1.5 to 3; figures in the README's Serving section).
    fold_in_l2: ridge penalty lambda of the I-AutoRec fold-in, which fits a new user's decoder
      column (w, b) to f^-1(ratings) ~ z_i . w + b over the rated items' codes z_i, minimising
      squared error + lambda * ||(w, b) - (mean trained column, mean trained bias)||^2. Larger
      values trust few ratings less. None (the default) uses the penalty a trained column had,
      (training ratings) * l2_weight (see `keras_autorec.losses`), at least 1. Must be positive,
      which keeps the solve well posed with any number of ratings.
    warmup_requests: whether to write assets.extra/tf_serving_warmup_requests.
    rating_table_max_cells: when users x items is at most this, every rating is computed at
      export (4 bytes each: 100 MB at the default) and serving_default only looks it up;
      above it, serving_default computes each rating from the tables in O(k).
    max_batch_size: the most users or items one recommend, recommend_for_ratings or
      similar_items request may hold; more is INVALID_ARGUMENT. These signatures hold a few
      [batch, items] float32 matrices, so this bounds a request's memory (about 20 bytes x
      batch x items: 76 MB for ML-1M's 3706 items at the default). The client splits larger
      batches into requests of at most this many rows.
    max_rating_slots: the most (user, rating) slots, batch x list length with padding, one
      recommend_for_ratings request may hold; more is INVALID_ARGUMENT. The I-AutoRec fold-in
      holds slots x (hidden units + 1) float64 values.
  """

  export_dir: str = "saved_models/autorec"
  top_k: int = 100
  default_rating: float = 3.0
  popularity_weight: float = 1.75
  fold_in_l2: float | None = None
  warmup_requests: bool = True
  rating_table_max_cells: int = 25_000_000
  max_batch_size: int = 1024
  max_rating_slots: int = 100_000


def fold_in_l2(config: ExportConfig, model: AutoRec, layout: RowLayout) -> float:
  """The fold-in ridge penalty: the configured one, or the one the training objective implies."""
  if config.fold_in_l2 is not None:
    return float(config.fold_in_l2)
  return max(1.0, layout.train.nnz * model.l2_weight)


@dataclasses.dataclass(frozen=True)
class _ServingArrays:
  """The numpy tables of the export (see the module docstring for their meaning)."""

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


def _row_codes(model: AutoRec, layout: RowLayout, batch_size: int = 1024) -> np.ndarray:
  """The last hidden code of every row's training ratings, float32 [rows, k]."""
  codes = np.zeros((layout.num_rows, model.hidden_units[-1]), dtype=np.float32)
  row_positions = np.arange(layout.num_rows)
  for row_ids, inputs in data_input.rows_dataset(layout.train, row_positions, batch_size):
    codes[row_ids.numpy()] = ops.convert_to_numpy(model.encode(inputs, training=False))
  return codes


def _standardised_log_counts(counts: np.ndarray) -> np.ndarray:
  """log(1 + counts), shifted and scaled to mean 0 and standard deviation 1 (0 if constant)."""
  log_counts = np.log1p(counts.astype(np.float64))
  spread = log_counts.std()
  return ((log_counts - log_counts.mean()) / (spread if spread > 0 else 1.0)).astype(np.float32)


def _serving_arrays(model: AutoRec, layout: RowLayout) -> _ServingArrays:
  """Precomputes the export's tables from the model and its training layout."""
  if model.item_based != layout.item_based:
    raise ValueError(f"model item_based={model.item_based} but layout "
                     f"item_based={layout.item_based}")
  if model.num_inputs != layout.num_columns:
    raise ValueError(f"model has {model.num_inputs} inputs but the layout "
                     f"{layout.num_columns} columns")
  codes = _row_codes(model, layout)
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
  return _ServingArrays(
      user_ids=layout.user_ids().astype(str), item_ids=layout.item_ids().astype(str),
      user_vectors=user_vectors.astype(np.float32), user_biases=user_biases,
      item_vectors=item_vectors, item_biases=item_biases,
      item_popularity=_standardised_log_counts(item_counts), training_items=training_items,
      encoder_kernels=encoder_kernels, encoder_biases=encoder_biases)


def _index_table(ids: np.ndarray) -> tf.lookup.StaticHashTable:
  """Raw string id -> position, -1 for unknown ids."""
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(tf.constant(ids, tf.string),
                                          tf.range(ids.shape[0], dtype=tf.int64)),
      default_value=-1)


def _check(condition: tf.Tensor, message: str, *data: tf.Tensor) -> tf.Operation:
  """An assertion that fails the request with INVALID_ARGUMENT and `message` (plus int32 `data`)."""
  return tf.debugging.Assert(condition, [message, *data])


def _unknown_shape(tensor: tf.Tensor) -> tf.Tensor:
  """`tensor` with a shape unknown to shape inference.

  The rank of a signature input is its declared one to tracing and to Grappler, which fold
  `tf.rank` (even of this copy) to it; the size of this copy's shape is read at run time.
  """
  return tf.raw_ops.PlaceholderWithDefault(input=tensor, shape=tf.TensorShape(None))


def _checked_inputs(inputs: dict[str, tf.Tensor], rank: int, max_rows: int | None = None,
                    max_size: int | None = None) -> list[tf.Tensor]:
  """`inputs` once each has exactly `rank` dimensions and all the same shape, within the limits.

  The input signature declares the ranks, but TF Serving and `tf.saved_model.load` feed whatever
  shape a request holds, so the checks run in the graph; no work depends on the inputs before
  they pass, so a rejected request costs nothing.
  """
  names = list(inputs)
  rank_checks = [_check(tf.equal(tf.size(tf.shape(_unknown_shape(tensor))), rank),
                        f"input {name} must have rank {rank}, got the shape", tf.shape(tensor))
                 for name, tensor in inputs.items()]
  with tf.control_dependencies(rank_checks):
    shape = tf.shape(inputs[names[0]])
    checks = [_check(tf.reduce_all(tf.equal(tf.shape(inputs[name]), shape)),
                     f"inputs {names[0]} and {name} must have the same shape, got",
                     shape, tf.shape(inputs[name]))
              for name in names[1:]]
    if max_rows is not None:
      checks.append(_check(shape[0] <= max_rows,
                           f"input {names[0]} may hold at most {max_rows} rows (max_batch_size "
                           f"of the export); split the request. Got the shape", shape))
    if max_size is not None:
      checks.append(_check(tf.size(inputs[names[0]]) <= max_size,
                           f"input {names[0]} may hold at most {max_size} values, padding "
                           f"included (max_rating_slots of the export); split the request. Got "
                           f"the shape", shape))
  with tf.control_dependencies(rank_checks + checks):
    return [tf.identity(tensor) for tensor in inputs.values()]


def _constant_variable(value, dtype) -> tf.Variable:
  # Variables, not constants, so large tables go to the checkpoint, not the 2 GiB GraphDef.
  return tf.Variable(value, dtype=dtype, trainable=False)


class _ServingModule(tf.Module):
  """The exported signatures over the precomputed tables."""

  def __init__(self, arrays: _ServingArrays, model: AutoRec, config: ExportConfig,
               fallback: _FallbackTables, blend: ServingBlend | None = None):
    super().__init__(name="autorec_serving")
    self.blend = blend
    self.item_based = model.item_based
    self.decoder_activation = model.decoder_activation
    self.encoder_activation = model.encoder_activation
    self.rating_scale = model.rating_scale
    self.fallback_mean = fallback.global_mean
    self.fallback_new_user_bias = fallback.new_user_bias
    self.fallback_new_item_bias = fallback.new_item_bias
    self.fallback_user_bias = _constant_variable(fallback.user_bias, tf.float32)
    self.fallback_item_bias = _constant_variable(fallback.item_bias, tf.float32)
    self.popularity_weight = float(config.popularity_weight)
    self.fold_in_l2 = float(config.fold_in_l2)
    self.max_batch_size = int(config.max_batch_size)
    self.max_rating_slots = int(config.max_rating_slots)
    self.num_users = int(arrays.user_ids.shape[0])
    self.num_items = int(arrays.item_ids.shape[0])
    self.k = min(int(config.top_k), self.num_items)
    # Tracked by the module, so the tables and ids are saved and restored with it.
    self.user_table = _index_table(arrays.user_ids)
    self.item_table = _index_table(arrays.item_ids)
    self.user_ids = _constant_variable(arrays.user_ids, tf.string)
    self.item_ids = _constant_variable(arrays.item_ids, tf.string)
    self.user_vectors = _constant_variable(arrays.user_vectors, tf.float32)
    self.user_biases = _constant_variable(arrays.user_biases, tf.float32)
    self.item_vectors = _constant_variable(arrays.item_vectors, tf.float32)
    self.item_biases = _constant_variable(arrays.item_biases, tf.float32)
    self.item_popularity = _constant_variable(arrays.item_popularity, tf.float32)
    self.rating_table = None
    if self.num_users * self.num_items <= config.rating_table_max_cells:
      # The same float32 arithmetic as the O(k) path, done once for every pair.
      table = self._decode(self._scores_for_users(self.user_vectors[:self.num_users],
                                                  self.user_biases[:self.num_users]))
      self.rating_table = _constant_variable(
          table if blend is None else blend.table(table), tf.float32)
    norms = np.linalg.norm(arrays.item_vectors, axis=1, keepdims=True)
    self.item_unit_vectors = _constant_variable(
        arrays.item_vectors / np.maximum(norms, _MIN_NORM), tf.float32)
    self.training_item_splits = _constant_variable(arrays.training_items.row_splits, tf.int64)
    self.training_items = _constant_variable(arrays.training_items.columns, tf.int64)
    self.encoder_kernels = [_constant_variable(kernel, tf.float32)
                            for kernel in arrays.encoder_kernels]
    self.encoder_biases = [_constant_variable(bias, tf.float32) for bias in arrays.encoder_biases]

  def _activate(self, pre_activations: tf.Tensor) -> tf.Tensor:
    return output_activation(self.decoder_activation, self.rating_scale)(pre_activations)

  def _decode(self, pre_activations: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(self._activate(pre_activations), *self.rating_scale)

  def _scores_for_users(self, user_vectors: tf.Tensor, user_biases: tf.Tensor) -> tf.Tensor:
    """Pre-activations of every item for users given as vectors [B, k] and biases [B]."""
    return (tf.matmul(user_vectors, self.item_vectors, transpose_b=True)
            + user_biases[:, tf.newaxis] + self.item_biases[tf.newaxis, :])

  def _top_k(self, scores: tf.Tensor, excluded: tf.Tensor,
             **per_item: tf.Tensor) -> dict[str, tf.Tensor]:
    """The K items of highest `scores` that are not excluded, with their `per_item` values."""
    scores = tf.where(excluded, tf.constant(-np.inf, tf.float32), scores)
    top = tf.math.top_k(scores, k=self.k, sorted=True)
    available = top.values > -np.inf
    outputs = {"item_ids": tf.where(available, tf.gather(self.item_ids, top.indices), PADDING_ID),
               "scores": top.values}
    for name, values in per_item.items():
      outputs[name] = tf.where(available, tf.gather(values, top.indices, batch_dims=1), -np.inf)
    return outputs

  def _recommend(self, pre_activations: tf.Tensor, excluded: tf.Tensor) -> dict[str, tf.Tensor]:
    ratings = self._activate(pre_activations)
    scores = ratings + self.popularity_weight * self.item_popularity[tf.newaxis, :]
    return self._top_k(scores, excluded,
                       ratings=tf.clip_by_value(ratings, *self.rating_scale))

  def _mask(self, batch: tf.Tensor, items: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor:
    """bool [batch_size, I], True at (batch[n], items[n])."""
    indices = tf.stack([batch, items], axis=1)
    shape = tf.stack([tf.cast(batch_size, tf.int64), self.num_items])
    return tf.scatter_nd(indices, tf.ones_like(batch, tf.float32), shape) > 0

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.string, name="item_id")])
  def rate(self, user_id, item_id):
    user_id, item_id = _checked_inputs({"user_id": user_id, "item_id": item_id}, rank=1)
    users = self.user_table.lookup(user_id)
    items = self.item_table.lookup(item_id)
    user_known, item_known = users >= 0, items >= 0
    known = user_known & item_known
    users, items = tf.maximum(users, 0), tf.maximum(items, 0)
    fallback = tf.clip_by_value(
        self.fallback_mean
        + tf.where(user_known, tf.gather(self.fallback_user_bias, users),
                   self.fallback_new_user_bias)
        + tf.where(item_known, tf.gather(self.fallback_item_bias, items),
                   self.fallback_new_item_bias), *self.rating_scale)
    if self.rating_table is not None:
      rating = tf.gather_nd(self.rating_table, tf.stack([users, items], axis=1))
    else:
      rating = self._decode(
          tf.reduce_sum(tf.gather(self.user_vectors, users) * tf.gather(self.item_vectors, items),
                        axis=1)
          + tf.gather(self.user_biases, users) + tf.gather(self.item_biases, items))
      if self.blend is not None:
        rating = self.blend.pairs(users, items, rating)
    return {"rating": tf.where(known, rating, fallback)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
  def recommend(self, user_id):
    user_id, = _checked_inputs({"user_id": user_id}, rank=1, max_rows=self.max_batch_size)
    users = self.user_table.lookup(user_id)
    users = tf.where(users >= 0, users, self.num_users)  # the cold-start user
    pre_activations = self._scores_for_users(tf.gather(self.user_vectors, users),
                                             tf.gather(self.user_biases, users))
    starts = tf.gather(self.training_item_splits, users)
    limits = tf.gather(self.training_item_splits, users + 1)
    positions = tf.ragged.range(starts, limits)
    excluded = self._mask(positions.value_rowids(),
                          tf.gather(self.training_items, positions.flat_values),
                          tf.size(user_id))
    return self._recommend(pre_activations, excluded)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="item_ids"),
                                tf.TensorSpec([None, None], tf.float32, name="ratings")])
  def recommend_for_ratings(self, item_ids, ratings):
    item_ids, ratings = _checked_inputs({"item_ids": item_ids, "ratings": ratings}, rank=2,
                                        max_rows=self.max_batch_size,
                                        max_size=self.max_rating_slots)
    items = self.item_table.lookup(item_ids)
    rated = items >= 0  # padding and unknown items are ignored, whatever their ratings
    low, high = self.rating_scale
    valid = tf.math.is_finite(ratings) & (ratings >= low) & (ratings <= high)
    with tf.control_dependencies([_check(
        tf.reduce_all(valid | ~rated),
        f"input ratings must be finite and within the rating scale [{low:g}, {high:g}] for "
        f"every known item (padding and unknown item ids are ignored)")]):
      ratings = tf.where(rated, ratings, 0.0)
    coordinates = tf.where(rated)
    batch_size = tf.shape(item_ids, out_type=tf.int64)[0]
    rated_items = tf.gather_nd(items, coordinates)
    excluded = self._mask(coordinates[:, 0], rated_items, batch_size)
    if self.item_based:
      user_vectors, user_biases = self._fold_in_decoder_columns(items, ratings, rated)
    else:
      dense = tf.scatter_nd(tf.stack([coordinates[:, 0], rated_items], axis=1),
                            tf.gather_nd(ratings, coordinates),
                            tf.stack([batch_size, self.num_items]))
      user_vectors = self._encode(dense)
      user_biases = tf.zeros(tf.shape(user_vectors)[:1])
    return self._recommend(self._scores_for_users(user_vectors, user_biases), excluded)

  def _encode(self, ratings: tf.Tensor) -> tf.Tensor:
    return encode(list(zip(self.encoder_kernels, self.encoder_biases)), ratings,
                  self.encoder_activation)

  def _fold_in_decoder_columns(self, items, ratings, rated) -> tuple[tf.Tensor, tf.Tensor]:
    """Ridge fit of each user's decoder column (w, b) around the average user's, [B, k], [B].

    Solves min ||t - X theta||^2 + l2 ||theta - theta0||^2 over theta = (w, b), X = [z_i, 1]
    of the rated items, t = f^-1(ratings), in float64 and in whichever of the primal (k+1 square)
    or dual (L square) form is smaller; padded rows of X are zero and so change nothing.
    """
    weights = tf.cast(rated, tf.float64)[..., tf.newaxis]
    codes = tf.cast(tf.gather(self.item_vectors, tf.maximum(items, 0)), tf.float64)
    design = tf.concat([codes, tf.ones_like(weights)], axis=-1) * weights  # [B, L, k+1]
    prior = tf.cast(tf.concat([self.user_vectors[-1], self.user_biases[-1:]], axis=0), tf.float64)
    targets = tf.cast(_inverse_activation(self.decoder_activation, ratings, self.rating_scale),
                      tf.float64)
    residuals = (targets[..., tf.newaxis] - tf.matmul(design, prior[:, tf.newaxis])) * weights
    num_parameters = design.shape[-1]
    num_ratings = tf.shape(design)[1]

    def primal():
      gram = tf.matmul(design, design, transpose_a=True)
      regularised = gram + self.fold_in_l2 * tf.eye(num_parameters, dtype=tf.float64)
      return tf.linalg.cholesky_solve(tf.linalg.cholesky(regularised),
                                      tf.matmul(design, residuals, transpose_a=True))

    def dual():
      gram = tf.matmul(design, design, transpose_b=True)
      regularised = gram + self.fold_in_l2 * tf.eye(num_ratings, dtype=tf.float64)
      coefficients = tf.linalg.cholesky_solve(tf.linalg.cholesky(regularised), residuals)
      return tf.matmul(design, coefficients, transpose_a=True)

    delta = tf.cond(num_ratings < num_parameters, dual, primal)[..., 0]
    theta = tf.cast(prior + delta, tf.float32)
    return theta[:, :-1], theta[:, -1]

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="item_id")])
  def similar_items(self, item_id):
    item_id, = _checked_inputs({"item_id": item_id}, rank=1, max_rows=self.max_batch_size)
    items = self.item_table.lookup(item_id)
    known = items >= 0
    items = tf.maximum(items, 0)
    similarities = tf.matmul(tf.gather(self.item_unit_vectors, items), self.item_unit_vectors,
                             transpose_b=True)
    excluded = (tf.one_hot(items, self.num_items, on_value=True, off_value=False)
                | ~known[:, tf.newaxis])
    return self._top_k(similarities, excluded)

  def serving_signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
    return {"serving_default": self.rate.get_concrete_function(),
            "recommend": self.recommend.get_concrete_function(),
            "recommend_for_ratings": self.recommend_for_ratings.get_concrete_function(),
            "similar_items": self.similar_items.get_concrete_function()}


def _warmup_inputs(arrays: _ServingArrays, rating: float, max_batch_size: int,
                   max_rating_slots: int) -> list[tuple[str, dict[str, np.ndarray]]]:
  """Requests of batch size 1 and 8 per signature, one id unknown, as (signature, inputs).

  Within the export's limits, since TF Serving refuses to load a model whose warmup fails.
  """
  unknown = "__unknown_warmup_id__"
  fold_in_rows = min(2, max_batch_size, max_rating_slots)
  size = min(8, arrays.user_ids.shape[0] + 1, arrays.item_ids.shape[0] + 1, max_batch_size,
             max_rating_slots // fold_in_rows)
  users = np.append(arrays.user_ids[:size - 1], unknown).astype(object)
  items = np.append(arrays.item_ids[:size - 1], unknown).astype(object)
  requests = []
  for batch in (slice(0, 1), slice(0, size)):
    requests += [
        ("serving_default", {"user_id": users[batch], "item_id": items[batch]}),
        ("recommend", {"user_id": users[batch]}),
        ("recommend_for_ratings", {"item_ids": np.tile(items[batch], (fold_in_rows, 1)),
                                   "ratings": np.full((fold_in_rows, items[batch].shape[0]),
                                                      rating, np.float32)}),
        ("similar_items", {"item_id": items[batch]}),
    ]
  return requests


def _write_warmup_requests(path: str, requests) -> None:
  """Writes (signature, inputs) pairs as TF Serving's PredictionLog warmup TFRecord.

  Skipped with a warning when tensorflow-serving-api (the `serving` extra) is not installed:
  training and export need only TensorFlow, and TF Serving loads a model without warmup records.
  """
  if len(requests) > MAX_WARMUP_RECORDS:
    raise ValueError(f"{len(requests)} warmup requests exceed TF Serving's {MAX_WARMUP_RECORDS}")
  try:
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2
  except ImportError:
    logging.warning("No warmup requests in the export: tensorflow-serving-api is not installed "
                    "(pip install 'keras-autorec[serving]' writes them)")
    return
  with tf.io.TFRecordWriter(path) as writer:
    for signature_name, inputs in requests:
      request = predict_pb2.PredictRequest()
      request.model_spec.signature_name = signature_name
      for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())


def _json_value(value):
  if isinstance(value, (np.generic, np.ndarray)):
    return value.tolist()
  return str(value)


def _write_metadata(path: str, model: AutoRec, layout: RowLayout, config: ExportConfig,
                    metadata: dict | None) -> None:
  record = {
      "keras_autorec_version": keras_autorec.__version__,
      "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
      "model_config": model.get_config(),
      "export_config": dataclasses.asdict(config),
      "item_based": layout.item_based,
      "num_users": int(layout.user_ids().shape[0]),
      "num_items": int(layout.item_ids().shape[0]),
      "training_ratings": layout.train.nnz,
      "rating_scale": list(layout.rating_scale),
      "signatures": list(SIGNATURE_NAMES),
      **(metadata or {}),
  }
  with open(path, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True, default=_json_value)


@dataclasses.dataclass(frozen=True)
class _FallbackTables:
  """serving_default's fallback (`keras_autorec.fallback.RatingBiases`) in the export's id order."""

  global_mean: float
  user_bias: np.ndarray  # float32 [U]
  item_bias: np.ndarray  # float32 [I]
  new_user_bias: float
  new_item_bias: float


def _fallback_tables(fallback: fallback_lib.RatingBiases | None, layout: RowLayout,
                     default_rating: float) -> _FallbackTables:
  """The fallback's biases of the layout's users and items; without one, `default_rating`."""
  num_users, num_items = layout.user_ids().shape[0], layout.item_ids().shape[0]
  if fallback is None:
    return _FallbackTables(float(default_rating), np.zeros(num_users, np.float32),
                           np.zeros(num_items, np.float32), 0.0, 0.0)
  # The layout's users and items are the vocabulary's ids with training ratings, in order.
  user_of, item_of = ((layout.column_of, layout.row_of) if layout.item_based
                      else (layout.row_of, layout.column_of))
  return _FallbackTables(fallback.global_mean, fallback.user_bias[np.flatnonzero(user_of >= 0)],
                         fallback.item_bias[np.flatnonzero(item_of >= 0)],
                         fallback.new_user_bias, fallback.new_item_bias)


def _write_saved_model(directory: str, model: AutoRec, layout: RowLayout, config: ExportConfig,
                       metadata: dict | None, blend: RatingBlend | None = None,
                       fallback: fallback_lib.RatingBiases | None = None) -> None:
  """Writes the complete SavedModel with its assets.extra into `directory`."""
  arrays = _serving_arrays(model, layout)
  serving_blend = (None if blend is None
                   else ServingBlend(blend, model.item_based, model.rating_scale))
  module = _ServingModule(arrays, model, config,
                          _fallback_tables(fallback, layout, config.default_rating), serving_blend)
  tf.saved_model.save(module, directory, signatures=module.serving_signatures())
  extra = os.path.join(directory, ASSETS_EXTRA)
  os.makedirs(extra, exist_ok=True)
  _write_metadata(os.path.join(extra, METADATA_FILE), model, layout, config, metadata)
  if config.warmup_requests:
    _write_warmup_requests(os.path.join(extra, WARMUP_FILE),
                           _warmup_inputs(arrays, float(np.mean(model.rating_scale)),
                                          config.max_batch_size, config.max_rating_slots))


def data_name(data: dict) -> str:
  """A short name for the data of a `sources.DataConfig` (as a dict): a model name for TF Serving.

  The dataset, or for csv the ratings file's name without extension, or synthetic_<shape>.
  """
  if data.get("dataset") == "csv" and data.get("ratings_file"):
    return os.path.splitext(os.path.basename(data["ratings_file"]))[0]
  if data.get("dataset") == "synthetic":
    return f"synthetic_{data.get('synthetic_shape')}"
  return str(data.get("dataset"))


def default_export_dir(data: dict) -> str:
  """saved_models/<data name> (see `data_name`): each data set gets its own TF Serving model."""
  return os.path.join(EXPORT_BASE, data_name(data))


def version_metadata(version_dir: str) -> dict:
  """The `assets.extra/metadata.json` of an exported version; {} if it has none."""
  path = os.path.join(version_dir, ASSETS_EXTRA, METADATA_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def export_model(model: AutoRec, layout: RowLayout, config: ExportConfig,
                 metadata: dict | None = None, blend: RatingBlend | None = None,
                 fallback: fallback_lib.RatingBiases | None = None) -> str:
  """Exports a new integer version under config.export_dir atomically; returns its path.

  Args:
    model: the trained AutoRec.
    layout: the training layout the model was fitted on (ids, training ratings).
    config: where and how to export.
    metadata: JSON-serialisable facts to record, e.g. the dataset, split and metrics; written
      with the model and export configuration to `<version>/assets.extra/metadata.json`.
    blend: the rare-rows blend the model was evaluated with (`TrainedModel.blend`):
      serving_default then serves the blended ratings.
    fallback: serving_default's predictor for a user or item without training ratings, fitted on
      the model's training ratings (`TrainedModel.fallback`); None: `config.default_rating`.
  """
  if config.top_k < 1:
    raise ValueError(f"top_k must be positive, got {config.top_k}")
  if not np.isfinite(config.popularity_weight):
    raise ValueError(f"popularity_weight must be finite, got {config.popularity_weight}")
  if config.fold_in_l2 is not None and not config.fold_in_l2 > 0:
    raise ValueError(f"fold_in_l2 must be positive, got {config.fold_in_l2}")
  if config.max_batch_size < 1 or config.max_rating_slots < 1:
    raise ValueError(f"max_batch_size and max_rating_slots must be positive, got "
                     f"{config.max_batch_size} and {config.max_rating_slots}")
  config = dataclasses.replace(config, fold_in_l2=fold_in_l2(config, model, layout))
  with publish.partial_directory(config.export_dir) as partial_dir:
    _write_saved_model(partial_dir, model, layout, config, metadata, blend, fallback)
    return publish.publish_version(partial_dir, config.export_dir)
