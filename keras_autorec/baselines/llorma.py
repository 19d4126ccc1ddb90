r"""LLORMA: local low-rank matrix approximation (Lee, Kim, Lebanon and Singer, ICML 2013).

  python -m keras_autorec.baselines.llorma --dataset=ml1m --data_dir=../shared/data --repeats=1

The parallel variant (JMLR 2016): a global BiasedMF gives user and item vectors (`plain_factors`);
anchor points are (user, item) pairs drawn from the training ratings; the distance between two
users (items) is the arc-cosine of their vectors, and the Epanechnikov kernel

    K_h(d) = 3/4 (1 - (d / h)^2) for d < h, else 0

of the distance to the anchor's user times that of the distance to the anchor's item weighs every
rating for that anchor's local model. Each local model is a weighted BiasedMF (mean + biases + a
rank-`rank` dot product) fitted full batch with L-BFGS on

    sum_j w_j (r_j - prediction_j)^2 / sum_j w_j
      + l2_weight * sum_j w_j (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2) / sum_j w_j,

which for weights of 1 is exactly `biased_mf`'s objective. Every local model starts from the
global model's biases and fresh random factors (or, with `warm_start`, at the global model) and
sees only the ratings of positive weight; they are trained `anchor_batch` at a time in one graph (an [anchors * users, rank + 1] table
per side), each group early-stopping on its kernel-weighted validation RMSE. A prediction is the
kernel-weighted average of the local models' predictions; where the total weight is 0 (an id
without training ratings, or a pair far from every anchor) it is the global BiasedMF's, so unseen
ids get BiasedMF's default. The paper's local models have no biases; here they keep BiasedMF's so that one anchor
with an infinite kernel width is the global model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_autorec import lbfgs
from keras_autorec.baselines import biased_mf, command
from keras_autorec.data.ratings import Ratings
from keras_autorec.data.splits import RatingsSplit
from keras_autorec.training import loop
from keras_autorec.training.early_stopping import ResumableEarlyStopping

# Pairs scored at once at prediction time: bounds the [anchors, pairs, rank] gathers.
PREDICTION_CHUNK = 20000


@dataclasses.dataclass(frozen=True)
class LlormaConfig:
  """LLORMA hyper-parameters and how to fit them.

  Defaults: the paper's 50 anchors, the top of its rank range (20) and BiasedMF's L2 tuned on
  ML-100K; h = 0.8 and freshly drawn local factors chosen on ML-100K seed 0's validation RMSE
  over h in {0.5, 0.6, 0.8} x {fresh, warm start} (README, Results).

  Attributes:
    anchors: number of local models (anchor points).
    rank: factors of the global model and of every local model.
    kernel_width: h of the Epanechnikov kernels, in radians of arc-cosine distance (math.inf
      weighs every rating 1).
    l2_weight: per-rating L2 weight of the global and local models (see the module docstring).
    epochs: most L-BFGS iterations of the global model and of every group of local models.
    patience: iterations without a validation RMSE `min_delta` below the last such drop before
      a fit stops (the best weights are kept).
    min_delta: the smallest validation RMSE drop that resets the patience.
    anchor_batch: local models trained together in one graph (memory grows with it).
    warm_start: start the local factors at the global ones instead of drawing them afresh
      (on ML-100K the local models then barely leave the global model; README, Results).
    init_stddev: standard deviation of the global model's normal initial factors.
    seed: seeds the global model and the anchor draw.
  """

  anchors: int = 50
  rank: int = 20
  kernel_width: float = 0.8
  l2_weight: float = 0.1
  epochs: int = 300
  patience: int = 10
  min_delta: float = 1e-4
  anchor_batch: int = 10
  warm_start: bool = False
  init_stddev: float = 0.1
  seed: int = 0


def epanechnikov(distance, width: float):
  """3/4 (1 - (d / h)^2) where d < h, else 0; 3/4 everywhere for an infinite width."""
  distance = np.asarray(distance, dtype=np.float64)
  if math.isinf(width):
    return np.full(distance.shape, 0.75)
  scaled = distance / width
  return np.where(scaled < 1.0, 0.75 * (1.0 - np.square(scaled)), 0.0)


def arc_cosine(vectors: np.ndarray, anchors: np.ndarray) -> np.ndarray:
  """[anchors, rows] angles between each anchor vector and each row; zero vectors are at pi/2."""
  norms = np.linalg.norm(vectors, axis=1)
  anchor_norms = np.linalg.norm(anchors, axis=1)
  denominator = np.maximum(anchor_norms[:, None] * norms[None, :], 1e-12)
  return np.arccos(np.clip(anchors @ vectors.T / denominator, -1.0, 1.0))


@dataclasses.dataclass
class LocalModels:
  """Factors and biases of a stack of local models, the leading axis indexing the anchor."""

  user_factors: np.ndarray  # [anchors, users, rank]
  item_factors: np.ndarray  # [anchors, items, rank]
  user_bias: np.ndarray  # [anchors, users]
  item_bias: np.ndarray  # [anchors, items]

  def predict(self, anchors: np.ndarray, users: np.ndarray, items: np.ndarray,
              global_mean: float) -> np.ndarray:
    """Unclipped predictions of local model anchors[j] for (users[j], items[j])."""
    dots = np.einsum("nr,nr->n", self.user_factors[anchors, users],
                     self.item_factors[anchors, items])
    return global_mean + self.user_bias[anchors, users] + self.item_bias[anchors, items] + dots


@dataclasses.dataclass
class Llorma:
  """A fitted LLORMA: the global model, the anchors' kernels and the local models."""

  global_model: biased_mf.BiasedMF
  user_kernels: np.ndarray  # [anchors, users]
  item_kernels: np.ndarray  # [anchors, items]
  local: LocalModels
  rating_scale: tuple[float, float]

  def kernel_weights(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[anchors, pairs] weights: user kernel times item kernel."""
    return self.user_kernels[:, users] * self.item_kernels[:, items]

  def predict_ratings(self, pairs) -> np.ndarray:
    """Clipped predictions for int [n, 2] (user index, item index) pairs."""
    pairs = np.asarray(pairs)
    mean = self.global_model.global_mean
    predictions = np.empty(pairs.shape[0], dtype=np.float64)
    for start in range(0, pairs.shape[0], PREDICTION_CHUNK):
      users, items = pairs[start:start + PREDICTION_CHUNK, 0], pairs[start:start + PREDICTION_CHUNK, 1]
      weights = self.kernel_weights(users, items)
      anchors, positions = np.nonzero(weights)
      local = self.local.predict(anchors, users[positions], items[positions], mean)
      weighted = np.bincount(positions, weights[anchors, positions] * local, minlength=users.size)
      total = weights.sum(axis=0)
      chunk = self.global_model(tf.constant(np.stack([users, items], 1), tf.int32)).numpy()
      covered = total > 0
      chunk[covered] = weighted[covered] / total[covered]
      predictions[start:start + users.size] = chunk
    return np.clip(predictions, *self.rating_scale)

  def coverage(self, ratings: Ratings) -> float:
    """Share of `ratings` with a positive total kernel weight (the rest take the global model)."""
    weights = self.kernel_weights(ratings.user_index, ratings.item_index)
    return float(np.mean(weights.sum(axis=0) > 0))


@dataclasses.dataclass
class TrainedLlorma:
  """A fitted LLORMA with its training record."""

  model: Llorma
  global_history: dict[str, list[float]]
  local_best_epochs: list[int]
  seconds: float


def rmse(model: Llorma, ratings: Ratings) -> float:
  """RMSE of clipped predictions on `ratings`."""
  predictions = model.predict_ratings(np.stack([ratings.user_index, ratings.item_index], 1))
  return float(np.sqrt(np.mean(np.square(ratings.rating - predictions))))


def plain_factors(model: biased_mf.BiasedMF) -> tuple[np.ndarray, np.ndarray]:
  """User and item vectors whose dot products are the BiasedMF's predictions.

  [p_u, b_u, 1, sqrt(mean)] . [q_i, 1, b_i, sqrt(mean)] = mean + b_u + b_i + p_u . q_i: the global
  model as the paper's plain low-rank factorisation, whose shared mean direction puts arc-cosine
  distances on the scale of its kernel widths (centred BiasedMF factors alone sit near pi/2).
  """
  users, items = model.num_users, model.num_items
  root_mean = math.sqrt(max(model.global_mean, 0.0))
  user = np.hstack([model.user_factors.embeddings.numpy(), model.user_bias.embeddings.numpy(),
                    np.ones((users, 1)), np.full((users, 1), root_mean)])
  item = np.hstack([model.item_factors.embeddings.numpy(), np.ones((items, 1)),
                    model.item_bias.embeddings.numpy(), np.full((items, 1), root_mean)])
  return user, item


def sample_anchors(train: Ratings, count: int, seed: int) -> np.ndarray:
  """Positions of `count` distinct training ratings drawn uniformly (all if there are fewer)."""
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(train.num_ratings, size=min(count, train.num_ratings), replace=False))


class _WeightedRatings:
  """The (anchor, rating) pairs of positive weight of a group of anchors, as flat tensors.

  Rows of a group's [anchors * users] and [anchors * items] tables are anchor * users + user and
  anchor * items + item.
  """

  def __init__(self, ratings: Ratings, user_kernels: np.ndarray, item_kernels: np.ndarray):
    anchors_count, num_users = user_kernels.shape
    num_items = item_kernels.shape[1]
    weights = user_kernels[:, ratings.user_index] * item_kernels[:, ratings.item_index]
    anchors, positions = np.nonzero(weights)
    self.count = anchors.size
    user_rows = anchors * num_users + ratings.user_index[positions]
    item_rows = anchors * num_items + ratings.item_index[positions]
    self.user_row = tf.constant(user_rows, tf.int32)
    self.item_row = tf.constant(item_rows, tf.int32)
    self.rating = tf.constant(ratings.rating[positions], tf.float32)
    weight = weights[anchors, positions]
    totals = np.bincount(anchors, weight, minlength=anchors_count)
    # Each anchor's weights sum to 1, so every local objective is a weighted mean.
    weight = weight / np.maximum(totals[anchors], 1e-12)
    self.weight = tf.constant(weight, tf.float32)
    # The per-rating L2 term summed per row: sum_j w_j |row_j|^2 = sum_row W_row |row|^2.
    self.user_row_weight = tf.constant(
        np.bincount(user_rows, weight, minlength=anchors_count * num_users)[:, None], tf.float32)
    self.item_row_weight = tf.constant(
        np.bincount(item_rows, weight, minlength=anchors_count * num_items)[:, None], tf.float32)


class _LocalGroup(keras.Model):
  """A group's local models as two tables, rows anchor * ids + id, the bias as the last column."""

  def __init__(self, users: np.ndarray, items: np.ndarray, global_mean: float):
    super().__init__()
    self.rank = users.shape[1] - 1
    self.global_mean = global_mean
    self.users = self.add_weight(shape=users.shape, initializer="zeros", name="users")
    self.items = self.add_weight(shape=items.shape, initializer="zeros", name="items")
    self.users.assign(users)
    self.items.assign(items)

  def predictions(self, data: _WeightedRatings) -> tf.Tensor:
    """Unclipped predictions of the ratings in `data`, each by its anchor's model."""
    user, item = tf.gather(self.users, data.user_row), tf.gather(self.items, data.item_row)
    rank = self.rank
    return (self.global_mean + user[:, rank] + item[:, rank]
            + tf.reduce_sum(user[:, :rank] * item[:, :rank], 1))


def _fit_group(train: _WeightedRatings, validation: _WeightedRatings, group: _LocalGroup,
               config: LlormaConfig, rating_scale: tuple[float, float]) -> int:
  """Fits a group's local models jointly by L-BFGS, leaving the best; returns the best epoch."""
  if train.count == 0:
    return 0

  def loss_fn():
    error = tf.reduce_sum(train.weight * tf.square(train.rating - group.predictions(train)))
    penalty = (tf.reduce_sum(train.user_row_weight * tf.square(group.users))
               + tf.reduce_sum(train.item_row_weight * tf.square(group.items)))
    return error + config.l2_weight * penalty

  @tf.function
  def validation_rmse():
    prediction = tf.clip_by_value(group.predictions(validation), *rating_scale)
    squared = tf.reduce_sum(validation.weight * tf.square(validation.rating - prediction))
    return tf.sqrt(squared / tf.maximum(tf.reduce_sum(validation.weight), 1e-12))

  minimizer = lbfgs.LbfgsMinimizer(loss_fn, group.trainable_variables)
  early_stopping = ResumableEarlyStopping(None, config.patience, min_delta=config.min_delta)
  group.stop_training = False
  loop.run_epochs(group, minimizer.step,
                  (lambda: float(validation_rmse())) if validation.count else None,
                  early_stopping, config.epochs, converged=lambda: minimizer.converged)
  return early_stopping.best_epoch + 1 if validation.count else early_stopping.completed_epochs


def _kernels(global_model: biased_mf.BiasedMF, train: Ratings,
             config: LlormaConfig) -> tuple[np.ndarray, np.ndarray]:
  """[anchors, users] and [anchors, items] Epanechnikov kernels of randomly drawn anchors."""
  user_embeddings, item_embeddings = plain_factors(global_model)
  anchor_ratings = sample_anchors(train, config.anchors, config.seed)
  kernels = []
  for embeddings, index in ((user_embeddings, train.user_index),
                            (item_embeddings, train.item_index)):
    kernel = epanechnikov(arc_cosine(embeddings, embeddings[index[anchor_ratings]]),
                          config.kernel_width)
    # Ids without training ratings are near no anchor: their pairs take the global model.
    kernel[:, np.bincount(index, minlength=embeddings.shape[0]) == 0] = 0.0
    kernels.append(kernel)
  return kernels[0], kernels[1]


def _initial_table(global_table: np.ndarray, size: int, config: LlormaConfig,
                   rng: np.random.Generator) -> np.ndarray:
  """`size` stacked copies of a global [ids, rank + 1] table, factors redrawn unless warm_start.

  Ids without training ratings keep zero factors (biased_mf), so do their local models.
  """
  table = np.tile(global_table, (size, 1))
  if not config.warm_start:
    seen = np.any(table[:, :-1] != 0, axis=1, keepdims=True)
    table[:, :-1] = rng.normal(scale=config.init_stddev, size=table[:, :-1].shape) * seen
  return table


def fit(split: RatingsSplit, config: LlormaConfig) -> TrainedLlorma:
  """Fits the global BiasedMF, then the local models, early-stopping on validation RMSE."""
  if config.anchors < 1 or config.rank < 1 or config.anchor_batch < 1:
    raise ValueError(f"anchors, rank and anchor_batch must be positive, got {config.anchors}, "
                     f"{config.rank} and {config.anchor_batch}")
  if not config.kernel_width > 0:
    raise ValueError(f"kernel_width must be positive, got {config.kernel_width}")
  start = time.time()
  train = split.train
  global_trained = biased_mf.fit(split, biased_mf.BiasedMFConfig(
      factors=config.rank, l2_weight=config.l2_weight, optimizer="lbfgs", epochs=config.epochs,
      patience=config.patience, init_stddev=config.init_stddev, seed=config.seed))
  global_model = global_trained.model
  user_kernels, item_kernels = _kernels(global_model, train, config)
  rng = np.random.default_rng(config.seed)
  global_users, global_items = (
      np.hstack([factors.embeddings.numpy(), bias.embeddings.numpy()])
      for factors, bias in ((global_model.user_factors, global_model.user_bias),
                            (global_model.item_factors, global_model.item_bias)))
  parts, best_epochs = [], []
  for first in range(0, user_kernels.shape[0], config.anchor_batch):
    group_kernels = user_kernels[first:first + config.anchor_batch], item_kernels[
        first:first + config.anchor_batch]
    size = group_kernels[0].shape[0]
    group = _LocalGroup(*(_initial_table(table, size, config, rng)
                          for table in (global_users, global_items)), global_model.global_mean)
    best_epochs.append(_fit_group(_WeightedRatings(train, *group_kernels),
                                  _WeightedRatings(split.validation, *group_kernels), group,
                                  config, train.rating_scale))
    parts.append([table.numpy().reshape(size, -1, config.rank + 1)
                  for table in (group.users, group.items)])
    logging.info("LLORMA local models %d-%d of %d: best epoch %d (%.0f s so far)", first + 1,
                 first + size, user_kernels.shape[0], best_epochs[-1], time.time() - start)
  users, items = (np.concatenate(tables, axis=0) for tables in zip(*parts))
  local = LocalModels(users[..., :-1], items[..., :-1], users[..., -1], items[..., -1])
  model = Llorma(global_model, user_kernels.astype(np.float32), item_kernels.astype(np.float32),
                 local, train.rating_scale)
  return TrainedLlorma(model=model, global_history=global_trained.history,
                       local_best_epochs=best_epochs, seconds=time.time() - start)


def evaluate(trained: TrainedLlorma, split: RatingsSplit) -> dict:
  """Validation and test RMSE of a fitted LLORMA, with its training record."""
  model = trained.model
  return {"validation_rmse": rmse(model, split.validation), "test_rmse": rmse(model, split.test),
          "global_validation_rmse": biased_mf.rmse(model.global_model, split.validation),
          "global_test_rmse": biased_mf.rmse(model.global_model, split.test),
          "test_coverage": model.coverage(split.test),
          "best_epoch": max(trained.local_best_epochs, default=0),
          "epochs_run": len(trained.global_history.get("loss", [])),
          "train_seconds": trained.seconds}


FLAGS = flags.FLAGS


def _define_flags() -> None:
  defaults = LlormaConfig()
  flags.DEFINE_integer("anchors", defaults.anchors, "Anchor points (local models).")
  flags.DEFINE_integer("rank", defaults.rank, "Rank of the global and local models.")
  flags.DEFINE_float("kernel_width", defaults.kernel_width, "Epanechnikov kernel width h.")
  flags.DEFINE_float("l2_weight", defaults.l2_weight, "Per-rating L2 weight.")
  flags.DEFINE_integer("anchor_batch", defaults.anchor_batch, "Local models fitted together.")
  flags.DEFINE_bool("warm_start", defaults.warm_start, "Start local models at the global one.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.getLogger().setLevel(logging.INFO)

  def fit_and_evaluate(split: RatingsSplit, repeat: int) -> dict:
    config = LlormaConfig(anchors=FLAGS.anchors, rank=FLAGS.rank,
                          kernel_width=FLAGS.kernel_width, l2_weight=FLAGS.l2_weight,
                          anchor_batch=FLAGS.anchor_batch, warm_start=FLAGS.warm_start,
                          seed=FLAGS.seed + repeat)
    return evaluate(fit(split, config), split)

  return command.run_repeats(
      "LLORMA",
      fit_and_evaluate,
      lambda m: (f"validation RMSE {m['validation_rmse']:.4f}, test RMSE {m['test_rmse']:.4f} "
                 f"(global BiasedMF {m['global_test_rmse']:.4f}, coverage "
                 f"{m['test_coverage']:.3f}, {m['train_seconds']:.0f} s)"))


if __name__ == "__main__":
  command.define_flags()
  _define_flags()
  app.run(main)
