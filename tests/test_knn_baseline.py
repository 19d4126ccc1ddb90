"""Item-based kNN with baseline against a case computed by hand, and its neighbour selection."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from keras_autorec.baselines import knn_baseline
from keras_autorec.data import ratings as ratings_lib

# Users A, B, C (indices 0, 1, 2) and items x, y, z (0, 1, 2); the mean rating is 21 / 7 = 3.
HAND_RATINGS = (("A", "x", 5), ("A", "y", 3), ("A", "z", 4), ("B", "x", 3), ("B", "y", 1),
                ("C", "x", 3), ("C", "z", 2))
# reg_i = reg_u = 1 and one ALS sweep keep the arithmetic short; shrinkage 1.
HAND_CONFIG = knn_baseline.KNNBaselineConfig(k=40, shrinkage=1.0, item_regularisation=1.0,
                                             user_regularisation=1.0, als_epochs=1)


def hand_ratings(extra=()) -> ratings_lib.Ratings:
  users, items, values = zip(*(HAND_RATINGS + tuple(extra)))
  return ratings_lib.from_raw(np.array(users), np.array(items), np.array(values, np.float32),
                              timestamp=None, rating_scale=(1.0, 5.0), source="hand")


def test_baselines_similarities_and_prediction_match_the_hand_computation():
  trained = knn_baseline.fit_ratings(hand_ratings(), HAND_CONFIG)
  baselines = trained.baselines
  # Items first (b_u = 0): b_x = (2 + 0 + 0) / (1 + 3), b_y = (0 - 2) / (1 + 2), b_z = (1 - 1) / 3.
  assert baselines.global_mean == pytest.approx(3.0)
  np.testing.assert_allclose(baselines.item_bias, [0.5, -2 / 3, 0.0], atol=1e-6)
  # Then users: b_A = (1.5 + 2/3 + 1) / 4 = 19/24, b_B = (-0.5 - 4/3) / 3 = -11/18,
  # b_C = (-0.5 - 1) / 3 = -1/2.
  np.testing.assert_allclose(baselines.user_bias, [19 / 24, -11 / 18, -0.5], atol=1e-6)
  # Residuals e = r - b_ui: A: x 17/24, y -1/8, z 5/24; B: x 1/9, y -13/18; C: x 0, z -1/2.
  # s_xz: users A, C; (17/24 * 5/24) / sqrt((17/24)^2 * ((5/24)^2 + 1/4)) = 85 / (17 * 13) = 5/13,
  # shrunk by (2 - 1) / (2 - 1 + 1) = 1/2: 5/26.
  # s_xy: users A, B; (-17/192 - 13/162) / sqrt((289/576 + 1/81) (1/64 + 169/324)) = -0.321179,
  # shrunk by 1/2. s_yz: one common user, shrunk by 0 / (0 + 1) to 0.
  expected = np.array([[1.0, -0.160590, 5 / 26], [-0.160590, 1.0, 0.0], [5 / 26, 0.0, 1.0]])
  np.testing.assert_allclose(trained.similarity, expected, atol=1e-5)
  # B rates z: neighbours x (5/26) and y (0, not positive): 3 - 11/18 + 0 + (5/26 * 1/9) / (5/26)
  # = 2.5. C rates y: neighbours x (negative) and z (0): the baseline 3 - 1/2 - 2/3 = 11/6.
  np.testing.assert_allclose(trained.predict(np.array([1, 2]), np.array([2, 1])), [2.5, 11 / 6],
                             atol=1e-5)


def test_keeps_the_k_most_similar_positive_neighbours():
  baselines = knn_baseline.Baselines(3.0, np.zeros(1), np.zeros(4))
  # User 0 rated items 1, 2, 3 with residuals +1, -1, +2; item 0 is predicted.
  train = ratings_lib.from_raw(np.array(["u"] * 3), np.array(["b", "c", "d"]),
                               np.array([4.0, 2.0, 5.0], np.float32), None, (1.0, 5.0), "t")
  train = dataclasses.replace(train, item_index=train.item_index + 1,
                              item_ids=np.array(["a", "b", "c", "d"]))
  similarity = np.eye(4, dtype=np.float32)
  similarity[0, 1:] = [0.2, 0.6, -0.4]

  def predict(**changes):
    config = knn_baseline.KNNBaselineConfig(**changes)
    trained = knn_baseline.TrainedKNNBaseline(config, baselines, similarity, train, 0.0)
    return float(trained.predict(np.array([0]), np.array([0]))[0])

  # k = 40: items 1, 2 count (item 3's similarity is negative): 3 + (0.2 - 0.6) / 0.8.
  assert predict() == pytest.approx(2.5)
  # k = 1: only item 2: 3 - 1.
  assert predict(k=1) == pytest.approx(2.0)
  # min_k = 3 positive neighbours are not available: the baseline.
  assert predict(min_k=3) == pytest.approx(3.0)


def test_unseen_ids_get_the_mean_plus_the_known_bias():
  ratings = hand_ratings(extra=(("D", "w", 5),))
  # Train without D and w: D (index 3) and w (index 0) are unseen.
  keep = np.flatnonzero(ratings.user_ids[ratings.user_index] != "D")
  trained = knn_baseline.fit_ratings(ratings.subset(keep), HAND_CONFIG)
  baselines = trained.baselines
  user_d, item_w, item_x = 3, 0, 1
  prediction = trained.predict(np.array([user_d, 0]), np.array([item_x, item_w]))
  np.testing.assert_allclose(
      prediction, [3.0 + baselines.item_bias[item_x], 3.0 + baselines.user_bias[0]], atol=1e-6)


def test_user_blocks_do_not_change_similarities(split, monkeypatch):
  whole = knn_baseline.fit(split).similarity
  monkeypatch.setattr(knn_baseline, "_USER_BLOCK_CELLS", 7 * split.train.num_items)
  np.testing.assert_allclose(knn_baseline.fit(split).similarity, whole, atol=1e-5)


def test_beats_the_baselines_alone_on_low_rank_data(split):
  trained = knn_baseline.fit(split)
  biases_only = np.clip(trained.baselines.predict(split.test.user_index, split.test.item_index),
                        1.0, 5.0)
  baseline_rmse = float(np.sqrt(np.mean(np.square(split.test.rating - biases_only))))
  assert knn_baseline.evaluate(trained, split)["test_rmse"] < baseline_rmse - 0.02

