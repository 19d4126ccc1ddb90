"""User and item rating biases by alternating least squares (Surprise's baseline_als).

    b_ui = mu + b_u + b_i,  fitted jointly: each sweep b_i from the residuals after b_u, then b_u
    from those after b_i, each shrunk by a regularisation count.

The kNN baseline and the rare-rows blend use these joint biases. The fallback for unseen users and
items (`keras_autorec.fallback.fit_biases`) fits each side on its own instead, which predicts
pairs with an unseen side better (see its module docstring); BiasedMF learns its biases together
with its factors. They are three estimators, not three copies of one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_autorec.data.ratings import Ratings


@dataclasses.dataclass(frozen=True)
class Baselines:
  """mu + b_u + b_i over a dataset's vocabularies (0 biases for ids without training ratings)."""

  global_mean: float
  user_bias: np.ndarray  # float64 [num_users]
  item_bias: np.ndarray  # float64 [num_items]

  def predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
    """Unclipped b_ui at dataset (user, item) indices."""
    return self.global_mean + self.user_bias[user_index] + self.item_bias[item_index]


def fit_baselines(train: Ratings, item_regularisation: float = 10.0,
                  user_regularisation: float = 15.0, epochs: int = 10) -> Baselines:
  """Biases of `train` by alternating least squares (see `als_biases`)."""
  return als_biases(train.user_index, train.item_index, train.rating, train.num_users,
                    train.num_items, item_regularisation, user_regularisation, epochs)


def als_biases(user_index: np.ndarray, item_index: np.ndarray, rating: np.ndarray,
               num_users: int, num_items: int, item_regularisation: float = 10.0,
               user_regularisation: float = 15.0, epochs: int = 10) -> Baselines:
  """Biases by alternating least squares as Surprise's baseline_als: items, then users, per sweep.

  b_i = sum_u (r_ui - mu - b_u) / (reg_i + |R(i)|), then b_u likewise with b_i and reg_u.
  """
  rating = np.asarray(rating, np.float64)
  mu = float(rating.mean())
  user_count = np.bincount(user_index, minlength=num_users)
  item_count = np.bincount(item_index, minlength=num_items)
  user_bias = np.zeros(num_users)
  item_bias = np.zeros(num_items)
  for _ in range(epochs):
    item_bias = (np.bincount(item_index, rating - mu - user_bias[user_index], num_items)
                 / (item_regularisation + item_count))
    user_bias = (np.bincount(user_index, rating - mu - item_bias[item_index], num_users)
                 / (user_regularisation + user_count))
  return Baselines(mu, user_bias, item_bias)
