r"""LLORMA: local low-rank matrix approximation (Lee, Kim, Lebanon and Singer, ICML 2013).

  python -m keras_autorec.baselines.llorma --dataset=ml1m --data_dir=../shared/data --repeats=1

The parallel variant (JMLR 2016): a global BiasedMF gives user and item vectors (`plain_factors`);
anchor points are (user, item) pairs drawn from the training ratings; the distance between two
users (items) is the arc-cosine of their vectors, and the Epanechnikov kernel

    K_h(d) = 3/4 (1 - (d / h)^2) for d < h, else 0

of the distance to the anchor's user times that of the distance to the anchor's item weighs every
rating for that anchor's local model. Each local model is a weighted BiasedMF (mean + biases + a
rank-`rank` dot product) minimising

    sum_j w_j (r_j - prediction_j)^2 / sum_j w_j
      + l2_weight * sum_j w_j (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2) / sum_j w_j,

which for weights of 1 is exactly `biased_mf`'s objective, by alternating least squares
(`weighted_als`) over its ratings of positive weight, from the global model's biases and freshly
drawn factors, early-stopping on its kernel-weighted validation RMSE. A prediction is the
kernel-weighted average of the local models' predictions; where the total weight is 0 (an id
without training ratings, or a pair far from every anchor) it is the global BiasedMF's, so unseen
ids get BiasedMF's default. The paper's local models have no biases; here they keep BiasedMF's so
that one anchor with an infinite kernel width is the global model.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent import futures
import math
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_autorec.baselines import biased_mf, command, weighted_als
from keras_autorec.data.ratings import Ratings
from keras_autorec.data.splits import RatingsSplit

# Pairs scored at once at prediction time: bounds the [anchors, pairs, rank] gathers.
PREDICTION_CHUNK = 20000


@dataclasses.dataclass(frozen=True)
class LlormaConfig:
  """LLORMA hyper-parameters and how to fit them.

  Defaults: the paper's 50 anchors and the top of its rank range (20); the global model is
  BiasedMF with the tuned 50 factors and the L2 weights validation chose for it on ML-1M (0.06)
  and ML-100K (0.1); the kernel width was chosen on seed 0's validation RMSE
  (benchmarks/README.md, "LLORMA fit time").

  Attributes:
    anchors: number of local models (anchor points).
    rank: factors of every local model.
    kernel_width: h of the Epanechnikov kernels, in radians of arc-cosine distance (math.inf
      weighs every rating 1).
    l2_weights: per-rating L2 weights (see the module docstring) tried for the global BiasedMF;
      the one of lowest validation RMSE is the global and the local models' (the first without
      validation ratings).
    global_factors: factors of the global BiasedMF (kernels and fallback).
    sweeps: most ALS sweeps (a user then an item half-sweep) of every local model.
    patience: sweeps without a validation RMSE `min_delta` below the last such drop before a
      local model stops (the best sweep is kept).
    min_delta: the smallest validation RMSE drop that resets the patience.
    init_stddev: standard deviation of the normal initial factors (global and local).
    threads: local models fitted at once (scipy's sparse products and numpy's solves release
      the GIL); each anchor draws its initial factors from its own seed, so any count gives the
      same model.
    seed: seeds the global model, the anchor draw and the local models' initial factors.
  """

  anchors: int = 50
  rank: int = 20
  kernel_width: float = 1.0
  l2_weights: tuple[float, ...] = (0.06, 0.1)
  global_factors: int = 50
  sweeps: int = 50
  patience: int = 3
  min_delta: float = 1e-4
  init_stddev: float = 0.1
  threads: int = 2
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
  l2_weight: float
  local_best_sweeps: list[int]
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


def _weighted(ratings: Ratings, user_kernel: np.ndarray, item_kernel: np.ndarray,
              shape: tuple[int, int], mean: float) -> weighted_als.WeightedRatings:
  """`ratings` weighted by one anchor's kernels, the pairs of zero weight left out."""
  weights = user_kernel[ratings.user_index] * item_kernel[ratings.item_index]
  return weighted_als.WeightedRatings.build(ratings.user_index, ratings.item_index,
                                            ratings.rating, weights, shape, mean)


def fit_local_models(split: RatingsSplit, global_model: biased_mf.BiasedMF, config: LlormaConfig,
                     l2_weight: float) -> tuple[Llorma, list[int]]:
  """The anchors' kernels and local models (per-rating L2 `l2_weight`) around a fitted global
  model, and each local model's best ALS sweep."""
  start = time.time()
  train, mean = split.train, global_model.global_mean
  user_kernels, item_kernels = _kernels(global_model, train, config)
  # Local models start from the global biases and fresh factors (zero for ids without training
  # ratings, as in biased_mf).
  sides = [(np.any(factors.embeddings.numpy() != 0, axis=1, keepdims=True),
            bias.embeddings.numpy().astype(np.float64))
           for factors, bias in ((global_model.user_factors, global_model.user_bias),
                                 (global_model.item_factors, global_model.item_bias))]
  settings = weighted_als.AlsSettings(l2_weight, config.sweeps, config.patience,
                                      config.min_delta)
  shape = (train.num_users, train.num_items)

  def fit_anchor(anchor: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The anchor's local user and item tables and best sweep."""
    rng = np.random.default_rng([config.seed, anchor])
    users, items = (np.hstack([rng.normal(scale=config.init_stddev,
                                           size=(seen.shape[0], config.rank)) * seen, bias])
                    for seen, bias in sides)
    kernels = user_kernels[anchor], item_kernels[anchor]
    fitted = weighted_als.fit(_weighted(train, *kernels, shape, mean),
                              _weighted(split.validation, *kernels, shape, mean), users, items,
                              mean, settings, train.rating_scale)
    logging.info("LLORMA local model %d of %d: best sweep %d (%.0f s so far)", anchor + 1,
                 user_kernels.shape[0], fitted[2], time.time() - start)
    return fitted

  with futures.ThreadPoolExecutor(config.threads) as pool:
    users, items, best_sweeps = zip(*pool.map(fit_anchor, range(user_kernels.shape[0])))
  users, items = np.stack(users).astype(np.float32), np.stack(items).astype(np.float32)
  local = LocalModels(users[..., :-1], items[..., :-1], users[..., -1], items[..., -1])
  model = Llorma(global_model, user_kernels.astype(np.float32), item_kernels.astype(np.float32),
                 local, train.rating_scale)
  return model, list(best_sweeps)


def fit(split: RatingsSplit, config: LlormaConfig) -> TrainedLlorma:
  """Fits a global BiasedMF per candidate L2 weight, keeps the best on validation RMSE, then
  fits the local models with that L2 weight."""
  for name in ("anchors", "rank", "global_factors", "threads"):
    if getattr(config, name) < 1:
      raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
  if not config.kernel_width > 0:
    raise ValueError(f"kernel_width must be positive, got {config.kernel_width}")
  if not config.l2_weights:
    raise ValueError("l2_weights must hold at least one L2 weight")
  start = time.time()
  candidates = [biased_mf.fit(split, biased_mf.BiasedMFConfig(
      factors=config.global_factors, l2_weight=l2_weight, optimizer="lbfgs",
      init_stddev=config.init_stddev, seed=config.seed)) for l2_weight in config.l2_weights]
  scores = [biased_mf.rmse(trained.model, split.validation) if split.validation.num_ratings
            else 0.0 for trained in candidates]
  chosen = int(np.argmin(scores))
  logging.info("LLORMA global BiasedMF validation RMSE by L2 weight %s: %s, chosen %s",
               config.l2_weights, np.round(scores, 4).tolist(), config.l2_weights[chosen])
  global_trained, l2_weight = candidates[chosen], config.l2_weights[chosen]
  model, best_sweeps = fit_local_models(split, global_trained.model, config, l2_weight)
  return TrainedLlorma(model=model, global_history=global_trained.history, l2_weight=l2_weight,
                       local_best_sweeps=best_sweeps, seconds=time.time() - start)


def evaluate(trained: TrainedLlorma, split: RatingsSplit) -> dict:
  """Validation and test RMSE of a fitted LLORMA, with its training record."""
  model = trained.model
  return {"validation_rmse": rmse(model, split.validation), "test_rmse": rmse(model, split.test),
          "global_validation_rmse": biased_mf.rmse(model.global_model, split.validation),
          "global_test_rmse": biased_mf.rmse(model.global_model, split.test),
          "test_coverage": model.coverage(split.test), "l2_weight": trained.l2_weight,
          "best_epoch": max(trained.local_best_sweeps, default=0),  # The latest best ALS sweep.
          "epochs_run": len(trained.global_history.get("loss", [])),
          "train_seconds": trained.seconds}


FLAGS = flags.FLAGS


def _define_flags() -> None:
  defaults = LlormaConfig()
  flags.DEFINE_integer("anchors", defaults.anchors, "Anchor points (local models).")
  flags.DEFINE_integer("rank", defaults.rank, "Rank of the local models.")
  flags.DEFINE_float("kernel_width", defaults.kernel_width, "Epanechnikov kernel width h.")
  flags.DEFINE_list("l2_weights", [str(w) for w in defaults.l2_weights],
                    "Per-rating L2 weights; validation picks one for all models.")
  flags.DEFINE_integer("global_factors", defaults.global_factors, "Factors of the global model.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.getLogger().setLevel(logging.INFO)

  def fit_and_evaluate(split: RatingsSplit, repeat: int) -> dict:
    config = LlormaConfig(anchors=FLAGS.anchors, rank=FLAGS.rank,
                          kernel_width=FLAGS.kernel_width,
                          l2_weights=tuple(float(w) for w in FLAGS.l2_weights),
                          global_factors=FLAGS.global_factors, seed=FLAGS.seed + repeat)
    return evaluate(fit(split, config), split)

  return command.run_repeats(
      "LLORMA",
      fit_and_evaluate,
      lambda m: (f"validation RMSE {m['validation_rmse']:.4f}, test RMSE {m['test_rmse']:.4f} "
                 f"(L2 {m['l2_weight']}; global BiasedMF {m['global_test_rmse']:.4f}, coverage "
                 f"{m['test_coverage']:.3f}, {m['train_seconds']:.0f} s)"))


if __name__ == "__main__":
  command.define_flags()
  _define_flags()
  app.run(main)
