"""Rating predictions for (user, item) pairs and their RMSE/MAE, with a fallback for unseen ids."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from keras_autorec.data import input as data_input
from keras_autorec.fallback import RatingBiases
from keras_autorec.data.layout import RowLayout
from keras_autorec.data.ratings import Ratings


@dataclasses.dataclass(frozen=True)
class RatingErrors:
  """RMSE and MAE of predictions; how many pairs took the fallback, and its RMSE on them."""

  rmse: float
  mae: float
  num_ratings: int
  num_default: int
  fallback_rmse: float = math.nan  # NaN when no pair took the fallback.

  def as_dict(self, prefix: str) -> dict[str, float | int]:
    return {f"{prefix}_rmse": self.rmse, f"{prefix}_mae": self.mae,
            f"{prefix}_ratings": self.num_ratings, f"{prefix}_default_predictions": self.num_default,
            f"{prefix}_fallback_rmse": self.fallback_rmse}


def predict_pairs(model, layout: RowLayout, rows: np.ndarray, columns: np.ndarray,
                  default_rating: float = 3.0, batch_size: int = 256) -> np.ndarray:
  """Clipped predictions at (row, column) layout positions; -1 positions get the default rating.

  The model sees only the training ratings of each row, whatever pairs are asked for.
  """
  predictions = np.full(rows.shape[0], default_rating, dtype=np.float32)
  seen = np.flatnonzero((rows >= 0) & (columns >= 0))
  if seen.size == 0:
    return predictions
  order = seen[np.argsort(rows[seen], kind="stable")]
  needed_rows, pairs_per_row = np.unique(rows[order], return_counts=True)
  # Each batch's pairs are read as soon as it is reconstructed, so memory stays bounded by one
  # batch of dense rows however many rows are needed.
  first_pair = 0
  first_row = 0
  for _, inputs in data_input.rows_dataset(layout.train, needed_rows, batch_size):
    reconstruction = model.predict_ratings(inputs).numpy()
    counts = pairs_per_row[first_row:first_row + reconstruction.shape[0]]
    pairs = order[first_pair:first_pair + counts.sum()]
    offsets = np.repeat(np.arange(counts.shape[0]), counts)
    predictions[pairs] = reconstruction[offsets, columns[pairs]]
    first_row += reconstruction.shape[0]
    first_pair += pairs.shape[0]
  return predictions


def evaluate_ratings(model, layout: RowLayout, ratings: Ratings, default_rating: float = 3.0,
                     batch_size: int = 256, fallback: RatingBiases | None = None,
                     blend=None) -> RatingErrors:
  """RMSE and MAE of the model on held-out ratings.

  Pairs whose user or item has no training ratings get `fallback`'s prediction (see
  `keras_autorec.fallback`), or `default_rating` without one. With a
  `keras_autorec.blend.RatingBlend`, pairs of a seen user and item are scored blended.
  """
  if ratings.num_ratings == 0:
    return RatingErrors(math.nan, math.nan, 0, 0)
  rows, columns = layout.positions(ratings)
  predictions = predict_pairs(model, layout, rows, columns, default_rating, batch_size)
  unseen = (rows < 0) | (columns < 0)
  if blend is not None:
    predictions[~unseen] = blend.apply(rows[~unseen], columns[~unseen], predictions[~unseen])
  if fallback is not None:
    predictions[unseen] = fallback.predict(ratings.user_index[unseen], ratings.item_index[unseen])
  error = ratings.rating - predictions
  fallback_rmse = float(np.sqrt(np.mean(np.square(error[unseen])))) if unseen.any() else math.nan
  return RatingErrors(rmse=float(np.sqrt(np.mean(np.square(error)))),
                      mae=float(np.mean(np.abs(error))), num_ratings=ratings.num_ratings,
                      num_default=int(np.sum(unseen)), fallback_rmse=fallback_rmse)


def mean_and_ci95(values) -> tuple[float, float]:
  """Mean and half-width of the 95% Student-t confidence interval (0 for one value)."""
  values = np.asarray(values, dtype=np.float64)
  if values.size < 2:
    return float(values.mean()), 0.0
  # Two-sided 97.5% Student-t quantiles for 1..30 degrees of freedom; 1.96 beyond.
  t_table = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
             2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
             2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
  dof = values.size - 1
  t = t_table[dof - 1] if dof <= len(t_table) else 1.96
  return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(values.size))
