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

which for weights of 1 is exactly `biased_mf`'s objective. Local models start from the global
model's biases and small random factors (ids without training ratings at zero, as in BiasedMF)
and are trained `anchor_batch` at a time in one graph (a [anchors, users, rank] tensor), each
group early-stopping on its kernel-weighted validation RMSE. A prediction is the
kernel-weighted average of the local models' predictions; where the total weight is 0 (an id
without training ratings, or a pair far from every anchor) it is the global BiasedMF's, so unseen ids get BiasedMF's
default. The paper's local models have no biases; here they keep BiasedMF's so that one anchor
with an infinite kernel width is the global model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_autorec import cli_flags, lbfgs
from keras_autorec.baselines import biased_mf, command
from keras_autorec.data.ratings import Ratings
from keras_autorec.data.splits import RatingsSplit, load_splits

# Pairs scored at once at prediction time: bounds the [anchors, pairs, rank] gathers.
PREDICTION_CHUNK = 20000


@dataclasses.dataclass(frozen=True)
class LlormaConfig:
  """LLORMA hyper-parameters and how to fit them.

  Defaults: the paper's 50 anchors and h = 0.8, the top of its rank range (20) and BiasedMF's L2
  tuned on ML-100K; not tuned on validation for LLORMA itself (README, Results).

  Attributes:
    anchors: number of local models (anchor points).
    rank: factors of the global model and of every local model.
    kernel_width: h of the Epanechnikov kernels, in radians of arc-cosine distance (math.inf
      weighs every rating 1).
    l2_weight: per-rating L2 weight of the global and local models (see the module docstring).
    epochs: most L-BFGS iterations of the global model and of every group of local models.
    patience: iterations without a better validation RMSE before a fit stops (best kept).
    anchor_batch: local models trained together in one graph (memory grows with it).
    init_stddev: standard deviation of the normal initial factors (global and local).
    seed: seeds the global model and the anchor draw.
  """

  anchors: int = 50
  rank: int = 20
  kernel_width: float = 0.8
  l2_weight: float = 0.1
  epochs: int = 300
  patience: int = 10
  anchor_batch: int = 10
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


def _fit_group(train: _WeightedRatings, validation: _WeightedRatings,
               init: list[np.ndarray], global_mean: float, config: LlormaConfig,
               rating_scale: tuple[float, float]) -> tuple[list[np.ndarray], int]:
  """Fits a group's local models jointly by L-BFGS; returns their best weights and best epoch.

  `init` is [user factors, item factors, user biases, item biases], each with a leading anchor
  axis; so is the result.
  """
  anchors, num_users, rank = init[0].shape
  num_items = init[1].shape[1]
  # One table per side, the bias as the last column: one gather per side and rating.
  users = tf.Variable(np.concatenate([init[0], init[2][..., None]], -1).reshape(
      anchors * num_users, rank + 1), dtype=tf.float32)
  items = tf.Variable(np.concatenate([init[1], init[3][..., None]], -1).reshape(
      anchors * num_items, rank + 1), dtype=tf.float32)
  variables = [users, items]

  def predict(data: _WeightedRatings):
    user, item = tf.gather(users, data.user_row), tf.gather(items, data.item_row)
    return (global_mean + user[:, rank] + item[:, rank]
            + tf.reduce_sum(user[:, :rank] * item[:, :rank], 1))

  def loss_fn():
    error = tf.reduce_sum(train.weight * tf.square(train.rating - predict(train)))
    penalty = (tf.reduce_sum(train.user_row_weight * tf.square(users))
               + tf.reduce_sum(train.item_row_weight * tf.square(items)))
    return error + config.l2_weight * penalty

  @tf.function
  def validation_rmse():
    prediction = tf.clip_by_value(predict(validation), *rating_scale)
    squared = tf.reduce_sum(validation.weight * tf.square(validation.rating - prediction))
    return tf.sqrt(squared / tf.maximum(tf.reduce_sum(validation.weight), 1e-12))

  def weights():
    user = users.numpy().reshape(anchors, num_users, rank + 1)
    item = items.numpy().reshape(anchors, num_items, rank + 1)
    return [user[..., :rank], item[..., :rank], user[..., rank], item[..., rank]]

  best = weights()
  if train.count == 0:
    return best, 0
  minimizer = lbfgs.LbfgsMinimizer(loss_fn, variables)
  best_rmse, best_epoch, wait = math.inf, 0, 0
  for epoch in range(1, config.epochs + 1):
    minimizer.step()
    value = float(validation_rmse()) if validation.count else -float(epoch)
    if value < best_rmse:
      best_rmse, best_epoch, wait = value, epoch, 0
      best = weights()
    else:
      wait += 1
    if wait >= config.patience or minimizer.converged:
      break
  return best, best_epoch


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
  user_factors = global_model.user_factors.embeddings.numpy()
  item_factors = global_model.item_factors.embeddings.numpy()
  user_embeddings, item_embeddings = plain_factors(global_model)
  anchor_ratings = sample_anchors(train, config.anchors, config.seed)
  user_kernels = epanechnikov(arc_cosine(user_embeddings, user_embeddings[
      train.user_index[anchor_ratings]]), config.kernel_width)
  item_kernels = epanechnikov(arc_cosine(item_embeddings, item_embeddings[
      train.item_index[anchor_ratings]]), config.kernel_width)
  # Ids without training ratings are near no anchor: their pairs take the global model.
  user_kernels[:, np.bincount(train.user_index, minlength=train.num_users) == 0] = 0.0
  item_kernels[:, np.bincount(train.item_index, minlength=train.num_items) == 0] = 0.0
  biases = [global_model.user_bias.embeddings.numpy()[:, 0],
            global_model.item_bias.embeddings.numpy()[:, 0]]
  rng = np.random.default_rng(config.seed)
  parts, best_epochs = [], []
  for first in range(0, anchor_ratings.size, config.anchor_batch):
    group = slice(first, first + config.anchor_batch)
    size = user_kernels[group].shape[0]
    # Global factors of ids without training ratings are zero (biased_mf); so are their local ones.
    init = [rng.normal(scale=config.init_stddev, size=(size, *factors.shape))
            * np.any(factors != 0, axis=1, keepdims=True) for factors in (user_factors, item_factors)]
    weights, best_epoch = _fit_group(
        _WeightedRatings(train, user_kernels[group], item_kernels[group]),
        _WeightedRatings(split.validation, user_kernels[group], item_kernels[group]),
        init + [np.repeat(b[None], size, axis=0) for b in biases], global_model.global_mean,
        config, train.rating_scale)
    parts.append(weights)
    best_epochs.append(best_epoch)
    logging.info("LLORMA local models %d-%d of %d: best epoch %d (%.0f s so far)", first + 1,
                 first + size, anchor_ratings.size, best_epoch, time.time() - start)
  local = LocalModels(*(np.concatenate(stack, axis=0) for stack in zip(*parts)))
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.getLogger().setLevel(logging.INFO)

  def fit_and_evaluate(split: RatingsSplit, repeat: int) -> dict:
    config = LlormaConfig(anchors=FLAGS.anchors, rank=FLAGS.rank,
                          kernel_width=FLAGS.kernel_width, l2_weight=FLAGS.l2_weight,
                          anchor_batch=FLAGS.anchor_batch, seed=FLAGS.seed + repeat)
    return evaluate(fit(split, config), split)

  return command.run_repeats(
      "LLORMA", FLAGS.dataset,
      lambda: load_splits(cli_flags.data_config(), cli_flags.split_config(), FLAGS.repeats),
      fit_and_evaluate,
      lambda m: (f"validation RMSE {m['validation_rmse']:.4f}, test RMSE {m['test_rmse']:.4f} "
                 f"(global BiasedMF {m['global_test_rmse']:.4f}, coverage "
                 f"{m['test_coverage']:.3f}, {m['train_seconds']:.0f} s)"))


if __name__ == "__main__":
  cli_flags.define_data_flags()
  cli_flags.define_split_flags()
  cli_flags.define_repeats_flag()
  _define_flags()
  app.run(main)
