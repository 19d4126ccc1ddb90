"""Predictions for pairs AutoRec cannot rate: a user or an item without training ratings.

AutoRec has no row or column for such a user or item. The default fallback predicts

    clip(global_mean + user_bias[u] + item_bias[i])

where a known user's bias is the mean of their training ratings minus the global mean, shrunk
towards 0 as if `SHRINKAGE_RATINGS` more ratings at the global mean had been seen (each side fitted
on its own: for these pairs that beat biases fitted jointly, whose user bias is net of the items
the user rated; ML-1M validation, user side alone: 1.037 vs 1.059 RMSE), and likewise for known
items. A user or item without training ratings is taken to be like the rarely rated ones: its bias
is the mean residual, after the other side's bias, of the ratings of users (items) with at most
`RARE_RATINGS` training ratings (0 if there are none). Items unseen in training are mostly obscure
ones rated low: on the validation ratings of such items (5 seeds; ML-100K 178, ML-1M 64 ratings)
the known user's bias alone scored 1.146 / 1.232 RMSE, with the rare-item bias 1.006 / 1.116,
where the paper's constant 3 scores 1.497 / 1.305. `constant` is that paper's fallback.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_autorec.config import DEFAULT_RATING
from keras_autorec.data.ratings import Ratings

FALLBACKS = ("biases", "constant")
# Chosen on validation RMSE (ML-100K and ML-1M, seeds 0 and 1 and fold u1; mean + one side's
# bias) among 0.5, 1, 2, 3, 5, 10, 25: 2 to 5 scored within 0.0003 of each other.
SHRINKAGE_RATINGS = 3.0
# Chosen on the validation ratings of items unseen in training (above) among 1, 2, 3, 5, 10: 2, 5
# and 10 within 0.002 on both data sets, 1 and 3 worse on one.
RARE_RATINGS = 5


@dataclasses.dataclass(frozen=True)
class RatingBiases:
  """global_mean + user bias + item bias, clipped to the scale.

  Attributes:
    global_mean: the mean training rating.
    user_bias: float32 [num_users] over the dataset's user vocabulary; users without training
      ratings hold `new_user_bias`.
    item_bias: float32 [num_items], likewise.
    new_user_bias: the bias of a user without training ratings (also of ids outside the
      vocabulary, at serving time).
    new_item_bias: the same for items.
    rating_scale: (lowest, highest) rating.
  """

  global_mean: float
  user_bias: np.ndarray
  item_bias: np.ndarray
  new_user_bias: float
  new_item_bias: float
  rating_scale: tuple[float, float]

  def predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
    """Predictions for (user, item) vocabulary indices, float32."""
    predictions = self.global_mean + self.user_bias[user_index] + self.item_bias[item_index]
    return np.clip(predictions, *self.rating_scale).astype(np.float32)


def fit_biases(train: Ratings, shrinkage_ratings: float = SHRINKAGE_RATINGS,
               rare_ratings: int = RARE_RATINGS) -> RatingBiases:
  """The biases fallback fitted on `train` (see the module docstring)."""
  if not shrinkage_ratings >= 0:
    raise ValueError(f"shrinkage_ratings must be non-negative, got {shrinkage_ratings}")
  if train.num_ratings == 0:
    raise ValueError("cannot fit rating biases without training ratings")
  ratings = train.rating.astype(np.float64)
  global_mean = float(ratings.mean())
  user_counts = np.bincount(train.user_index, minlength=train.num_users)
  item_counts = np.bincount(train.item_index, minlength=train.num_items)

  def shrunk_means(index: np.ndarray, counts: np.ndarray) -> np.ndarray:
    sums = np.bincount(index, weights=ratings - global_mean, minlength=counts.shape[0])
    return sums / np.maximum(counts + shrinkage_ratings, 1e-12)

  user_bias = shrunk_means(train.user_index, user_counts)
  item_bias = shrunk_means(train.item_index, item_counts)

  def new_bias(counts: np.ndarray, index: np.ndarray, other_bias: np.ndarray) -> float:
    rare = counts[index] <= rare_ratings
    if not rare.any():
      return 0.0
    return float(np.mean(ratings[rare] - global_mean - other_bias[rare]))

  new_user = new_bias(user_counts, train.user_index, item_bias[train.item_index])
  new_item = new_bias(item_counts, train.item_index, user_bias[train.user_index])
  user_bias[user_counts == 0] = new_user
  item_bias[item_counts == 0] = new_item
  return RatingBiases(global_mean, user_bias.astype(np.float32), item_bias.astype(np.float32),
                      new_user, new_item, tuple(float(v) for v in train.rating_scale))


def constant(rating: float, train: Ratings) -> RatingBiases:
  """The paper's fallback: `rating` for every pair."""
  return RatingBiases(float(rating), np.zeros(train.num_users, np.float32),
                      np.zeros(train.num_items, np.float32), 0.0, 0.0,
                      tuple(float(v) for v in train.rating_scale))


def make_fallback(kind: str, train: Ratings,
                  default_rating: float = DEFAULT_RATING) -> RatingBiases:
  """The fallback called `kind` (one of FALLBACKS) for a model trained on `train`."""
  if kind == "biases":
    return fit_biases(train)
  if kind == "constant":
    return constant(default_rating, train)
  raise ValueError(f"fallback must be one of {FALLBACKS}, got {kind!r}")
