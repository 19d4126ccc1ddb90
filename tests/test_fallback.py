"""Tests for keras_autorec.fallback on a hand-checkable case."""

from __future__ import annotations

import numpy as np
import pytest

from keras_autorec import fallback
from keras_autorec.data import ratings as ratings_lib


def _ratings():
  # Users a, b, c and items x, y, z, w; user d and item v are in the vocabulary but unrated.
  # Item z has one rating (1), item w one (2): with rare_ratings=1 they are the rare items.
  triples = [("a", "x", 5), ("a", "y", 4), ("b", "x", 4), ("b", "z", 1), ("c", "y", 3),
             ("c", "w", 2), ("d", "v", 3)]
  users, items, stars = (np.array(column) for column in zip(*triples))
  ratings = ratings_lib.from_raw(users, items, stars.astype(float), None, rating_scale=(1.0, 5.0),
                                 source="test")
  return ratings.subset(np.arange(6))  # Drops (d, v), keeping d and v in the vocabularies.


def test_fit_biases_by_hand():
  train = _ratings()
  user, item = ({name: i for i, name in enumerate(ids)}
                for ids in (train.user_ids, train.item_ids))
  biases = fallback.fit_biases(train, shrinkage_ratings=1.0, rare_ratings=1)
  # Mean 19 / 6; a user's bias is the sum of their deviations over (count + 1).
  mean = 19 / 6
  assert biases.global_mean == pytest.approx(mean)
  assert biases.user_bias[user["a"]] == pytest.approx((9 - 2 * mean) / 3)
  assert biases.item_bias[item["x"]] == pytest.approx((9 - 2 * mean) / 3)
  assert biases.item_bias[item["z"]] == pytest.approx((1 - mean) / 2)
  # A new item is like the rare items z and w: their ratings' mean residual after the user bias.
  b_user, c_user = biases.user_bias[user["b"]], biases.user_bias[user["c"]]
  new_item = np.mean([1 - mean - b_user, 2 - mean - c_user])
  assert biases.new_item_bias == pytest.approx(new_item, abs=1e-6)
  assert biases.item_bias[item["v"]] == pytest.approx(new_item, abs=1e-6)
  # Every user has 2 ratings, none is rare: a new user gets bias 0.
  assert biases.new_user_bias == 0.0 and biases.user_bias[user["d"]] == 0.0
  # User a rating the new item v; the new user d rating item x.
  predictions = biases.predict(np.array([user["a"], user["d"]]), np.array([item["v"], item["x"]]))
  np.testing.assert_allclose(
      predictions, [mean + biases.user_bias[user["a"]] + new_item,
                    mean + biases.item_bias[item["x"]]], rtol=1e-6)


def test_predictions_are_clipped_to_the_scale():
  train = _ratings()
  biases = fallback.fit_biases(train, shrinkage_ratings=0.0, rare_ratings=0)
  high = fallback.RatingBiases(4.5, biases.user_bias + 1, biases.item_bias + 1, 0.0, 0.0,
                               (1.0, 5.0))
  assert high.predict(np.array([0]), np.array([0]))[0] == 5.0


def test_constant_is_the_papers_default_rating():
  train = _ratings()
  constant = fallback.make_fallback("constant", train, default_rating=3.0)
  np.testing.assert_array_equal(constant.predict(np.arange(4), np.arange(4)), 3.0)


def test_bad_arguments_fail_clearly():
  with pytest.raises(ValueError, match="fallback must be one of"):
    fallback.make_fallback("median", _ratings())
  with pytest.raises(ValueError, match="shrinkage_ratings"):
    fallback.fit_biases(_ratings(), shrinkage_ratings=-1.0)
