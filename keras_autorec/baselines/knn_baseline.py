"""Item-based kNN with baseline (Koren 2010; Surprise's KNNBaseline with pearson_baseline).

    b_ui   = mu + b_u + b_i                      (biases fitted by alternating least squares)
    r_ui^  = b_ui + sum_j s_ij (r_uj - b_uj) / sum_j s_ij

over N_k(i; u), the k items the user rated in training that are most similar to i, of which only
those with s_ij > 0 contribute (the baseline alone when fewer than min_k do). The similarity is
the shrunk Pearson correlation of baseline residuals over the users who rated both items:

    s_ij = (n_ij - 1) / (n_ij - 1 + shrinkage) * sum_u e_ui e_uj / sqrt(sum_u e_ui^2 sum_u e_uj^2)

with e_ui = r_ui - b_ui and n_ij the number of common users (0 when n_ij < min_support). Users or
items without training ratings get the mean plus the known side's bias, as BiasedMF.

Similarities are dense [items, items] float32 (ML-1M: 55 MB; 10k items: 400 MB), accumulated over
blocks of users with three matrix products, so memory stays bounded for large rating sets.

  python -m keras_autorec.baselines.knn_baseline --dataset=ml1m --data_dir=../shared/data \
      --repeats=5
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from absl import app, flags

from keras_autorec.biases import Baselines, fit_baselines
from keras_autorec.baselines import command
from keras_autorec.data.ratings import Ratings
from keras_autorec.data.splits import RatingsSplit

_USER_BLOCK_CELLS = 16_000_000  # users x items cells of one dense residual block (64 MB)


@dataclasses.dataclass(frozen=True)
class KNNBaselineConfig:
  """Hyper-parameters, Surprise's KNNBaseline defaults except k and shrinkage as named.

  Attributes:
    k: most neighbours per prediction.
    min_k: fewest positively similar neighbours for the neighbourhood term (else baseline only).
    shrinkage: pulls similarities of items with few common users towards 0.
    min_support: fewest common users for a non-zero similarity.
    item_regularisation: reg_i of the ALS bias fit.
    user_regularisation: reg_u of the ALS bias fit.
    als_epochs: ALS sweeps (items then users each sweep).
  """

  k: int = 40
  min_k: int = 1
  shrinkage: float = 100.0
  min_support: int = 1
  item_regularisation: float = 10.0
  user_regularisation: float = 15.0
  als_epochs: int = 10


def pearson_baseline_similarity(train: Ratings, baselines: Baselines, shrinkage: float = 100.0,
                                min_support: int = 1) -> np.ndarray:
  """Shrunk Pearson correlation of baseline residuals between items, float32 [items, items]."""
  num_items = train.num_items
  residual = (train.rating - baselines.predict(train.user_index, train.item_index)).astype(
      np.float32)
  products = np.zeros((num_items, num_items), np.float32)
  common = np.zeros((num_items, num_items), np.float32)
  squares = np.zeros((num_items, num_items), np.float32)  # [i, j]: sum over common u of e_ui^2
  order = np.argsort(train.user_index, kind="stable")
  users = train.user_index[order]
  block = max(1, _USER_BLOCK_CELLS // max(1, num_items))
  for first in range(0, train.num_users, block):
    start, stop = np.searchsorted(users, [first, first + block])
    rows = users[start:stop] - first
    columns = train.item_index[order[start:stop]]
    errors = np.zeros((min(block, train.num_users - first), num_items), np.float32)
    rated = np.zeros_like(errors)
    errors[rows, columns] = residual[order[start:stop]]
    rated[rows, columns] = 1.0
    products += errors.T @ errors
    common += rated.T @ rated
    squares += np.square(errors).T @ rated
  denominator = np.sqrt(squares * squares.T)
  with np.errstate(divide="ignore", invalid="ignore"):
    similarity = np.where(denominator > 0, products / denominator, 0.0)
    similarity *= np.where(common > 0, (common - 1.0) / (common - 1.0 + shrinkage), 0.0)
  similarity[common < max(1, min_support)] = 0.0
  np.fill_diagonal(similarity, 1.0)
  return similarity.astype(np.float32)


@dataclasses.dataclass
class TrainedKNNBaseline:
  """A fitted item-based kNN with its training ratings (the neighbours' ratings)."""

  config: KNNBaselineConfig
  baselines: Baselines
  similarity: np.ndarray  # float32 [items, items]
  train: Ratings
  seconds: float

  def predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
    """Predictions clipped to the rating scale at dataset (user, item) indices."""
    user_index = np.asarray(user_index)
    item_index = np.asarray(item_index)
    prediction = self.baselines.predict(user_index, item_index)
    train = self.train
    train_residual = train.rating - self.baselines.predict(train.user_index, train.item_index)
    order = np.argsort(train.user_index, kind="stable")
    splits = np.searchsorted(train.user_index[order], np.arange(train.num_users + 1))
    pair_order = np.argsort(user_index, kind="stable")
    pair_splits = np.searchsorted(user_index[pair_order], np.arange(train.num_users + 1))
    for user in np.flatnonzero(np.diff(pair_splits) * np.diff(splits)):
      pairs = pair_order[pair_splits[user]:pair_splits[user + 1]]
      rated = order[splits[user]:splits[user + 1]]
      prediction[pairs] += self._neighbourhood(
          self.similarity[np.ix_(item_index[pairs], train.item_index[rated])],
          train_residual[rated])
    return np.clip(prediction, *train.rating_scale).astype(np.float32)

  def _neighbourhood(self, similarity: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """sum_j s_ij e_uj / sum_j s_ij over each row's k most similar, positive-similarity items."""
    k = self.config.k
    if similarity.shape[1] > k:
      top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
      similarity = np.take_along_axis(similarity, top, axis=1)
      residual = residual[top]
    else:
      residual = np.broadcast_to(residual, similarity.shape)
    positive = np.maximum(similarity, 0.0).astype(np.float64)
    weight = positive.sum(axis=1)
    enough = (np.count_nonzero(positive, axis=1) >= self.config.min_k) & (weight > 0)
    return np.where(enough, (positive * residual).sum(axis=1) / np.where(enough, weight, 1.0),
                    0.0)


def fit_ratings(train: Ratings, config: KNNBaselineConfig = KNNBaselineConfig()
                ) -> TrainedKNNBaseline:
  """Fits the baselines and the item similarities on `train`."""
  start = time.time()
  baselines = fit_baselines(train, config.item_regularisation, config.user_regularisation,
                            config.als_epochs)
  similarity = pearson_baseline_similarity(train, baselines, config.shrinkage,
                                           config.min_support)
  return TrainedKNNBaseline(config, baselines, similarity, train, time.time() - start)


def fit(split: RatingsSplit, config: KNNBaselineConfig = KNNBaselineConfig()
        ) -> TrainedKNNBaseline:
  """Fits on `split.train` (no hyper-parameter is chosen here, so validation is unused)."""
  return fit_ratings(split.train, config)


def rmse(trained: TrainedKNNBaseline, ratings: Ratings) -> float:
  """RMSE of the clipped predictions on `ratings`."""
  predictions = trained.predict(ratings.user_index, ratings.item_index)
  return float(np.sqrt(np.mean(np.square(ratings.rating - predictions))))


def evaluate(trained: TrainedKNNBaseline, split: RatingsSplit) -> dict:
  """Validation and test RMSE of a fitted kNN, with its fit time."""
  return {"validation_rmse": rmse(trained, split.validation),
          "test_rmse": rmse(trained, split.test), "train_seconds": trained.seconds}


def biases_rmse(trained: TrainedKNNBaseline, ratings: Ratings) -> float:
  """RMSE of the baselines alone (mu + b_u + b_i, clipped) on `ratings`."""
  predictions = np.clip(trained.baselines.predict(ratings.user_index, ratings.item_index),
                        *trained.train.rating_scale)
  return float(np.sqrt(np.mean(np.square(ratings.rating - predictions))))


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")

  def fit_and_evaluate(split: RatingsSplit, repeat: int) -> dict:
    del repeat  # Deterministic: the same fit on every repeat's split.
    trained = fit(split)
    return {**evaluate(trained, split), "biases_test_rmse": biases_rmse(trained, split.test)}

  return command.run_repeats(
      "item kNN with baseline",
      fit_and_evaluate,
      lambda m: (f"validation RMSE {m['validation_rmse']:.4f}, test RMSE {m['test_rmse']:.4f} "
                 f"({m['train_seconds']:.1f} s); biases alone test RMSE "
                 f"{m['biases_test_rmse']:.4f}"))


if __name__ == "__main__":
  command.define_flags()
  app.run(main)
