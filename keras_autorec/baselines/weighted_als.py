r"""Weighted BiasedMF fitted by alternating least squares: LLORMA's local models.

For ratings r_j of user u and item i with weights w_j summing to 1, it minimises

    sum_j w_j (r_j - mu - b_u - b_i - p_u . q_i)^2
      + l2_weight * sum_j w_j (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2),

`biased_mf`'s objective when every weight is 1 / n. With the item side fixed, each user's
[p_u, b_u] is a ridge regression of r_j - mu - b_i on [q_i, 1] with weights w_j and penalty
l2_weight * (the user's total weight), solved in closed form; then the same for the items. The
normal matrices come from one sparse-dense product with the other side's outer products (their
upper triangles), so a sweep costs (rated pairs of positive weight) x (rank + 1)(rank + 2) / 2
multiply-adds.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import sparse

from keras_autorec.training import loop
from keras_autorec.training.early_stopping import ResumableEarlyStopping

# Added to every normal matrix: an id without weight gets zero factors and bias, not a singular solve.
_JITTER = 1e-12


@dataclasses.dataclass(frozen=True)
class WeightedRatings:
  """Ratings of positive weight: the pairs, and sparse [rows, columns] matrices of the weights w
  and of w * (r - mu)."""

  rows: np.ndarray
  columns: np.ndarray
  rating: np.ndarray
  weight: np.ndarray
  weight_matrix: sparse.csr_matrix
  weighted_centred: sparse.csr_matrix

  @classmethod
  def build(cls, rows: np.ndarray, columns: np.ndarray, ratings: np.ndarray,
            weights: np.ndarray, shape: tuple[int, int], mean: float) -> "WeightedRatings":
    """Keeps the pairs of positive weight, the weights scaled to sum to 1."""
    keep = weights > 0
    weight = weights[keep] / max(float(np.sum(weights[keep])), 1e-300)
    rows, columns, rating = rows[keep], columns[keep], ratings[keep].astype(np.float64)
    return cls(rows, columns, rating, weight,
               sparse.csr_matrix((weight, (rows, columns)), shape=shape),
               sparse.csr_matrix((weight * (rating - mean), (rows, columns)), shape=shape))

  @property
  def count(self) -> int:
    return self.weight.size

  def transpose(self) -> "WeightedRatings":
    """The same ratings with the columns as rows."""
    return WeightedRatings(self.columns, self.rows, self.rating, self.weight,
                           self.weight_matrix.T.tocsr(), self.weighted_centred.T.tocsr())


def half_sweep(ratings: WeightedRatings, other: np.ndarray, l2_weight: float) -> np.ndarray:
  """New [rows, rank + 1] table ([factors, bias]) of the rows of `ratings`, the other side's
  [columns, rank + 1] table fixed."""
  rank = other.shape[1] - 1
  features = np.hstack([other[:, :rank], np.ones((other.shape[0], 1))])
  # The normal matrices are symmetric: weighing only the upper triangle's products halves the
  # sparse product, the sweep's main cost.
  row, column = np.triu_indices(rank + 1)
  packed = np.asarray(ratings.weight_matrix @ (features[:, row] * features[:, column]))
  normal = np.empty((packed.shape[0], rank + 1, rank + 1))
  normal[:, row, column] = packed
  normal[:, column, row] = packed
  row_weight = np.asarray(ratings.weight_matrix.sum(axis=1)).ravel()
  normal += (l2_weight * row_weight + _JITTER)[:, None, None] * np.eye(rank + 1)
  target = (np.asarray(ratings.weighted_centred @ features)
            - np.asarray(ratings.weight_matrix @ (other[:, rank:] * features)))
  return np.linalg.solve(normal, target[..., None])[..., 0]


def weighted_rmse(ratings: WeightedRatings, users: np.ndarray, items: np.ndarray, mean: float,
                  rating_scale: tuple[float, float]) -> float:
  """Weighted RMSE of the clipped predictions of the tables on `ratings` (rows are users)."""
  rank = users.shape[1] - 1
  user, item = users[ratings.rows], items[ratings.columns]
  prediction = mean + user[:, rank] + item[:, rank] + np.sum(user[:, :rank] * item[:, :rank], 1)
  squared = ratings.weight * np.square(ratings.rating - np.clip(prediction, *rating_scale))
  return float(np.sqrt(np.sum(squared)))


@dataclasses.dataclass(frozen=True)
class AlsSettings:
  """How long to run: at most `sweeps`, stopping after `patience` sweeps without a validation
  RMSE `min_delta` below the last such drop (the best tables are kept)."""

  l2_weight: float
  sweeps: int
  patience: int
  min_delta: float


class _Tables:
  """The user and item tables as the model `training.loop.run_epochs` keeps the best of."""

  def __init__(self, users: np.ndarray, items: np.ndarray):
    self.users, self.items = users, items
    self.stop_training = False

  def get_weights(self) -> list[np.ndarray]:
    # A half-sweep returns new arrays, so the kept ones are never overwritten.
    return [self.users, self.items]

  def set_weights(self, weights: list[np.ndarray]) -> None:
    self.users, self.items = weights


def fit(train: WeightedRatings, validation: WeightedRatings, users: np.ndarray,
        items: np.ndarray, mean: float, settings: AlsSettings,
        rating_scale: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, int]:
  """Alternates user and item sweeps from the given tables; returns the best tables (by
  weighted validation RMSE; the last without validation ratings) and the best sweep."""
  by_item = train.transpose()
  tables = _Tables(users, items)

  def sweep() -> float:
    tables.users = half_sweep(train, tables.items, settings.l2_weight)
    tables.items = half_sweep(by_item, tables.users, settings.l2_weight)
    # Each half-sweep solves its side exactly; a training loss would only cost time.
    return float("nan")

  early_stopping = ResumableEarlyStopping(None, settings.patience, min_delta=settings.min_delta)
  loop.run_epochs(
      tables, sweep,
      (lambda: weighted_rmse(validation, tables.users, tables.items, mean, rating_scale))
      if validation.count else None,
      early_stopping, settings.sweeps)
  best_sweep = (early_stopping.best_epoch + 1 if early_stopping.best_weights is not None
                else early_stopping.completed_epochs)
  return tables.users, tables.items, best_sweep
