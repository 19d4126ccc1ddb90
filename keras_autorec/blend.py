"""Rare rows: AutoRec blended with user and item biases, weighted by the row's training count.

A row with a handful of training ratings (an item for I-AutoRec) gives the encoder almost nothing
to code, and AutoRec's prediction for it is poor, while mu + b_u + b_i with shrunk biases (fitted
by alternating least squares, `keras_autorec.biases.als_biases`) is about as good
as anything from so little. So, for a pair whose row has n training ratings,

    rating = a + w(n) * (b - a),   a = AutoRec's clipped rating, b = clip(mu + b_u + b_i),

where w(n) = sigmoid(offset - slope * log n) cannot rise with the count, its two parameters the
least-squares fit on VALIDATION ratings (`fit_blend`). Where AutoRec is good on rows with many
ratings, as on ML-100K and ML-1M, their weight comes out small; where AutoRec is weak at every
count (the rare-items set of `keras_autorec.data.rare_items`), the slope comes out near 0 and the
blend leans on the biases throughout.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_autorec import evaluation
from keras_autorec.biases import als_biases
from keras_autorec.data.layout import RowLayout
from keras_autorec.data.ratings import Ratings


@dataclasses.dataclass(frozen=True)
class RowBiases:
  """mu + row bias + column bias over a layout's rows and columns."""

  global_mean: float
  row_bias: np.ndarray  # float32 [rows]
  column_bias: np.ndarray  # float32 [columns]
  rating_scale: tuple[float, float]

  def predict(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Clipped biases' ratings at seen (row, column) layout positions."""
    return np.clip(self.global_mean + self.row_bias[rows] + self.column_bias[columns],
                   *self.rating_scale).astype(np.float32)


def fit_row_biases(layout: RowLayout) -> RowBiases:
  """Biases of the layout's training ratings (`als_biases` with Surprise's regularisation)."""
  train = layout.train
  rows, columns = train.row_index(), train.columns
  users, items = (columns, rows) if layout.item_based else (rows, columns)
  num_users, num_items = ((layout.num_columns, layout.num_rows) if layout.item_based
                          else (layout.num_rows, layout.num_columns))
  biases = als_biases(users, items, train.values, num_users, num_items)
  user_bias, item_bias = biases.user_bias.astype(np.float32), biases.item_bias.astype(np.float32)
  row_bias, column_bias = (item_bias, user_bias) if layout.item_based else (user_bias, item_bias)
  return RowBiases(biases.global_mean, row_bias, column_bias, layout.rating_scale)


@dataclasses.dataclass(frozen=True)
class CountBlend:
  """The weight of the biases against AutoRec, w(n) = sigmoid(offset - slope * log(n))."""

  offset: float
  slope: float

  def row_weights(self, counts: np.ndarray) -> np.ndarray:
    """Weight of the biases for rows with these training counts (at least 1), float32."""
    log_counts = np.log(np.maximum(np.asarray(counts, np.float64), 1.0))
    return (1.0 / (1.0 + np.exp(self.slope * log_counts - self.offset))).astype(np.float32)

  def apply(self, autorec: np.ndarray, biases: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Blended ratings of pairs whose rows have `counts` training ratings."""
    return (autorec + self.row_weights(counts) * (biases - autorec)).astype(np.float32)


# The search grid of fit_blend: the weight at one rating, sigmoid(offset), spans 0.0003..0.9997,
# and a slope of 2 makes the weight fall by about e^2 per e-fold of the count.
OFFSETS = np.linspace(-8.0, 8.0, 65)
SLOPES = np.linspace(0.0, 4.0, 33)


def fit_blend(targets: np.ndarray, autorec: np.ndarray, biases: np.ndarray,
              counts: np.ndarray) -> CountBlend:
  """The (offset, slope) of the grid with the least squared error on held-out ratings.

  Two parameters and a weight that can only fall as the count grows keep the fit stable on a few
  thousand validation ratings. Ties go to the smallest weights (AutoRec alone).

  Args:
    targets: [n] held-out ratings (validation, never test).
    autorec: [n] AutoRec's clipped predictions of them.
    biases: [n] the biases' clipped predictions.
    counts: [n] training ratings of each pair's row.
  """
  log_counts, index = np.unique(np.log(np.maximum(np.asarray(counts, np.float64), 1.0)),
                                return_inverse=True)
  difference = (biases - autorec).astype(np.float64)
  residual = (targets - autorec).astype(np.float64)
  # Squared error is sum (residual - w d)^2 = const - 2 sum w d r + sum w^2 d^2; with w a function
  # of the count, sums per distinct count make every grid point cost O(distinct counts).
  cross = np.bincount(index, difference * residual, log_counts.size)
  square = np.bincount(index, difference * difference, log_counts.size)
  best, best_error = CountBlend(OFFSETS[0], SLOPES[-1]), np.inf
  for slope in SLOPES[::-1]:
    weights = 1.0 / (1.0 + np.exp(slope * log_counts[None, :] - OFFSETS[:, None]))
    errors = (weights * weights) @ square - 2.0 * weights @ cross
    position = int(np.argmin(errors))
    if errors[position] < best_error - 1e-12:
      best, best_error = CountBlend(float(OFFSETS[position]), float(slope)), errors[position]
  return best


@dataclasses.dataclass(frozen=True)
class RatingBlend:
  """A fitted count blend with the biases and row counts of the model it is applied to."""

  count_blend: CountBlend
  biases: RowBiases
  row_counts: np.ndarray  # int [rows]: training ratings of each layout row

  def apply(self, rows: np.ndarray, columns: np.ndarray, autorec: np.ndarray) -> np.ndarray:
    """Blended ratings at seen (row, column) layout positions from AutoRec's clipped ratings."""
    return self.count_blend.apply(autorec, self.biases.predict(rows, columns),
                                  self.row_counts[rows])

  def user_item_tables(self, item_based: bool) -> dict[str, np.ndarray]:
    """Biases and blend weights per user and per item (the weight of the non-row side is 0)."""
    row_weight = self.count_blend.row_weights(self.row_counts)
    tables = {"row_bias": self.biases.row_bias, "column_bias": self.biases.column_bias,
              "row_weight": row_weight,
              "column_weight": np.zeros_like(self.biases.column_bias, np.float32)}
    user, item = ("column", "row") if item_based else ("row", "column")
    return {f"{kind}_{name}": tables[f"{side}_{name}"]
            for kind, side in (("user", user), ("item", item)) for name in ("bias", "weight")}


def for_layout(count_blend: CountBlend, layout: RowLayout) -> RatingBlend:
  """The blend with biases and counts of `layout`'s training ratings."""
  return RatingBlend(count_blend, fit_row_biases(layout), layout.train.row_lengths())


def fit_rating_blend(model, layout: RowLayout, validation: Ratings) -> RatingBlend | None:
  """Fits the count blend of `model` on validation ratings with a seen user and item.

  Returns None when there are none to fit on.
  """
  rows, columns = layout.positions(validation)
  seen = (rows >= 0) & (columns >= 0)
  if not seen.any():
    return None
  rows, columns = rows[seen], columns[seen]
  autorec = evaluation.predict_pairs(model, layout, rows, columns)
  biases = fit_row_biases(layout)
  counts = layout.train.row_lengths()
  count_blend = fit_blend(validation.rating[seen], autorec, biases.predict(rows, columns),
                          counts[rows])
  return RatingBlend(count_blend, biases, counts)


def cross_fitted_errors(model, layout: RowLayout, validation: Ratings,
                        default_rating: float = 3.0, fallback=None
                        ) -> evaluation.RatingErrors | None:
  """Validation errors of the blend, each half of the ratings scored by the blend of the other.

  A blend fitted on all validation ratings and scored on them is optimistic (its two parameters
  were chosen there); this two-fold cross-fit is an honest estimate of the blended model's error
  on new ratings. The halves are a fixed seeded permutation. None with fewer than 2 ratings.
  """
  if validation.num_ratings < 2:
    return None
  order = np.random.default_rng(0).permutation(validation.num_ratings)
  halves = (order[:order.size // 2], order[order.size // 2:])
  squared, absolute, default, fallback_squared = 0.0, 0.0, 0, 0.0
  for fitted_on, scored_on in (halves, halves[::-1]):
    rating_blend = fit_rating_blend(model, layout, validation.subset(fitted_on))
    errors = evaluation.evaluate_ratings(model, layout, validation.subset(scored_on),
                                         default_rating, fallback=fallback, blend=rating_blend)
    squared += errors.rmse ** 2 * errors.num_ratings
    absolute += errors.mae * errors.num_ratings
    default += errors.num_default
    if errors.num_default:
      fallback_squared += errors.fallback_rmse ** 2 * errors.num_default
  count = validation.num_ratings
  return evaluation.RatingErrors(
      rmse=float(np.sqrt(squared / count)), mae=absolute / count, num_ratings=count,
      num_default=default,
      fallback_rmse=float(np.sqrt(fallback_squared / default)) if default else float("nan"))


class ServingBlend(tf.Module):
  """The blend in TensorFlow over the export's user and item positions."""

  def __init__(self, rating_blend: RatingBlend, item_based: bool, rating_scale):
    super().__init__(name="rare_rows_blend")
    tables = rating_blend.user_item_tables(item_based)
    self.global_mean = tf.constant(rating_blend.biases.global_mean, tf.float32)
    self.rating_scale = tuple(float(v) for v in rating_scale)
    for name, values in tables.items():
      # Variables, so large tables go to the checkpoint rather than the GraphDef.
      setattr(self, name, tf.Variable(values.astype(np.float32), trainable=False, name=name))

  def pairs(self, users: tf.Tensor, items: tf.Tensor, ratings: tf.Tensor) -> tf.Tensor:
    """Blended ratings of (user, item) position pairs from AutoRec's clipped ratings."""
    biases = tf.clip_by_value(self.global_mean + tf.gather(self.user_bias, users)
                              + tf.gather(self.item_bias, items), *self.rating_scale)
    weight = tf.gather(self.user_weight, users) + tf.gather(self.item_weight, items)
    return ratings + weight * (biases - ratings)

  def table(self, ratings: tf.Tensor) -> tf.Tensor:
    """Blended [users, items] ratings from AutoRec's clipped [users, items] ratings."""
    biases = tf.clip_by_value(self.global_mean + self.user_bias[:, tf.newaxis]
                              + self.item_bias[tf.newaxis, :], *self.rating_scale)
    weight = self.user_weight[:, tf.newaxis] + self.item_weight[tf.newaxis, :]
    return ratings + weight * (biases - ratings)
