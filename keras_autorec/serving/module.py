"""The exported signatures (see `keras_autorec.export`) as a tf.Module over the tables."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_autorec.blend import ServingBlend
from keras_autorec.config import ExportConfig
from keras_autorec.model import AutoRec, encode, output_activation
from keras_autorec.serving.tables import FallbackTables, ServingArrays, inverse_activation

PADDING_ID = ""
_MIN_NORM = 1e-12


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


def _index_table(ids: np.ndarray) -> tf.lookup.StaticHashTable:
  """Raw string id -> position, -1 for unknown ids."""
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(tf.constant(ids, tf.string),
                                          tf.range(ids.shape[0], dtype=tf.int64)),
      default_value=-1)


def ridge_solve(design: tf.Tensor, targets: tf.Tensor, l2: float) -> tf.Tensor:
  """argmin over theta of ||targets - design theta||^2 + l2 ||theta||^2, per batch row.

  design float64 [B, L, P], targets [B, L, 1] -> theta [B, P]; by Cholesky in whichever of the
  primal (P square) or dual (L square) form is smaller.
  """
  num_parameters = design.shape[-1]
  num_ratings = tf.shape(design)[1]

  def primal():
    gram = tf.matmul(design, design, transpose_a=True)
    regularised = gram + l2 * tf.eye(num_parameters, dtype=tf.float64)
    return tf.linalg.cholesky_solve(tf.linalg.cholesky(regularised),
                                    tf.matmul(design, targets, transpose_a=True))

  def dual():
    gram = tf.matmul(design, design, transpose_b=True)
    regularised = gram + l2 * tf.eye(num_ratings, dtype=tf.float64)
    coefficients = tf.linalg.cholesky_solve(tf.linalg.cholesky(regularised), targets)
    return tf.matmul(design, coefficients, transpose_a=True)

  return tf.cond(num_ratings < num_parameters, dual, primal)[..., 0]


class ServingModule(tf.Module):
  """The exported signatures over the precomputed tables."""

  def __init__(self, arrays: ServingArrays, model: AutoRec, config: ExportConfig,
               fallback: FallbackTables, blend: ServingBlend | None = None):
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
    of the rated items, t = f^-1(ratings), in float64 (`ridge_solve`); padded rows of X are zero
    and so change nothing.
    """
    weights = tf.cast(rated, tf.float64)[..., tf.newaxis]
    codes = tf.cast(tf.gather(self.item_vectors, tf.maximum(items, 0)), tf.float64)
    design = tf.concat([codes, tf.ones_like(weights)], axis=-1) * weights  # [B, L, k+1]
    prior = tf.cast(tf.concat([self.user_vectors[-1], self.user_biases[-1:]], axis=0), tf.float64)
    targets = tf.cast(inverse_activation(self.decoder_activation, ratings, self.rating_scale),
                      tf.float64)
    residuals = (targets[..., tf.newaxis] - tf.matmul(design, prior[:, tf.newaxis])) * weights
    delta = ridge_solve(design, residuals, self.fold_in_l2)
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
