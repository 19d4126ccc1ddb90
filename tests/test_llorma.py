"""LLORMA: kernels by hand, one global anchor is the global model, local models beat the mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_autorec.baselines import biased_mf, llorma
from keras_autorec.data import ratings as ratings_lib
from keras_autorec.data.splits import random_split


def test_epanechnikov_matches_a_hand_computation():
  # 3/4 (1 - (d/h)^2): d = 0 -> 0.75, d = h/2 -> 0.5625, d = 0.6 of h = 1 -> 0.48, d >= h -> 0.
  values = llorma.epanechnikov([0.0, 0.4, 0.48, 0.8, 1.5], width=0.8)
  np.testing.assert_allclose(values, [0.75, 0.5625, 0.48, 0.0, 0.0], atol=1e-12)
  np.testing.assert_allclose(llorma.epanechnikov([0.0, 3.0], width=math.inf), [0.75, 0.75])


def test_arc_cosine_matches_a_hand_computation():
  vectors = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
  angles = llorma.arc_cosine(vectors, vectors[:1])
  # A zero vector has no direction: it is put at a right angle to everything.
  np.testing.assert_allclose(angles, [[0.0, math.pi / 2, math.pi / 4, math.pi, math.pi / 2]],
                             atol=1e-6)


def test_plain_factors_reproduce_the_global_predictions(split):
  model = biased_mf.fit(split, biased_mf.BiasedMFConfig(factors=3, epochs=10)).model
  users, items = llorma.plain_factors(model)
  assert users.shape == (split.train.num_users, 6) and items.shape == (split.train.num_items, 6)
  pairs = np.stack([split.test.user_index, split.test.item_index], 1).astype(np.int32)
  np.testing.assert_allclose(np.sum(users[pairs[:, 0]] * items[pairs[:, 1]], axis=1),
                             model(pairs).numpy(), atol=1e-4)


def test_kernel_weights_are_the_product_of_user_and_item_kernels(split):
  config = llorma.LlormaConfig(anchors=3, rank=2, kernel_width=0.8, l2_weights=(0.1,),
                               global_factors=2, sweeps=5, patience=5)
  model = llorma.fit(split, config).model
  user_factors, item_factors = llorma.plain_factors(model.global_model)
  anchor_user, anchor_item = np.argmax(model.user_kernels[0]), np.argmax(model.item_kernels[0])
  user, item = 7, 11
  expected = (llorma.epanechnikov(llorma.arc_cosine(user_factors[[user]],
                                                    user_factors[[anchor_user]]), 0.8)
              * llorma.epanechnikov(llorma.arc_cosine(item_factors[[item]],
                                                      item_factors[[anchor_item]]), 0.8))
  weights = model.kernel_weights(np.array([user]), np.array([item]))
  assert weights.shape == (3, 1)
  assert weights[0, 0] == pytest.approx(float(expected[0, 0]), abs=1e-6)


def test_one_anchor_with_infinite_width_is_the_global_weighted_mf(split):
  # Without validation ratings both fits run every iteration, long enough to converge from
  # their different starting factors to the same regularised optimum.
  split = type(split)(train=split.train, validation=split.train.subset(np.arange(0)),
                      test=split.test)
  config = llorma.LlormaConfig(anchors=1, rank=2, kernel_width=math.inf, l2_weights=(0.1,),
                               global_factors=2, sweeps=80)
  trained = llorma.fit(split, config)
  model = trained.model
  # llorma.fit's global model is biased_mf.fit's with the same settings.
  reference = model.global_model
  pairs = np.stack([split.test.user_index, split.test.item_index], 1).astype(np.int32)
  seen = (np.isin(split.test.user_index, split.train.user_index)
          & np.isin(split.test.item_index, split.train.item_index))
  assert model.coverage(split.test) == pytest.approx(np.mean(seen))
  local = model.local.predict(np.zeros(len(pairs), int), pairs[:, 0], pairs[:, 1],
                              reference.global_mean)
  np.testing.assert_allclose(local, reference(pairs).numpy(), atol=1e-3)
  np.testing.assert_allclose(model.predict_ratings(pairs),
                             reference.predict_ratings(pairs).numpy(), atol=1e-3)


def planted_local_ratings(num_users=80, num_items=60, seed=0):
  """Two user groups with opposite tastes over two item groups, seen on 60% of the pairs."""
  rng = np.random.default_rng(seed)
  user_group, item_group = rng.integers(0, 2, num_users), rng.integers(0, 2, num_items)
  user_factors = rng.normal(size=(num_users, 2))
  item_factors = rng.normal(size=(num_items, 2))
  pairs = rng.choice(num_users * num_items, size=int(0.6 * num_users * num_items), replace=False)
  users, items = pairs // num_items, pairs % num_items
  sign = np.where(user_group[users] == item_group[items], 1.0, -1.0)
  expected = 3.0 + sign + 0.5 * np.sum(user_factors[users] * item_factors[items], axis=1)
  rating = np.clip(expected + rng.normal(scale=0.2, size=users.size), 1.0, 5.0)
  return ratings_lib.from_raw(
      np.array([f"u{u:03d}" for u in users]), np.array([f"i{i:03d}" for i in items]), rating,
      timestamp=None, rating_scale=(1.0, 5.0), source="planted")


def test_beats_the_global_mean_on_planted_data():
  split = random_split(planted_local_ratings(), test_fraction=0.1, validation_fraction=0.1, seed=0)
  config = llorma.LlormaConfig(anchors=8, rank=3, kernel_width=0.8, l2_weights=(0.02,),
                               global_factors=3, sweeps=100, patience=10)
  metrics = llorma.evaluate(llorma.fit(split, config), split)
  mean_rmse = float(np.sqrt(np.mean(np.square(split.test.rating - split.train.rating.mean()))))
  assert metrics["test_rmse"] < 0.5 * mean_rmse
  assert metrics["test_coverage"] > 0.5


def test_unseen_users_take_biased_mfs_default(split):
  unseen_user = 0
  keep = np.flatnonzero(split.train.user_index != unseen_user)
  split = type(split)(train=split.train.subset(keep), validation=split.validation,
                      test=split.test)
  # An unseen user is near no anchor, so its pairs take the global model: mean + item bias.
  model = llorma.fit(split, llorma.LlormaConfig(anchors=4, rank=2, kernel_width=math.inf,
                                                l2_weights=(0.1,), global_factors=2,
                                                sweeps=20)).model
  item = 5
  assert np.all(model.kernel_weights(np.array([unseen_user]), np.array([item])) == 0.0)
  expected = model.global_model.global_mean + model.global_model.item_bias.embeddings.numpy()[
      item, 0]
  prediction = model.predict_ratings(np.array([[unseen_user, item]]))[0]
  assert prediction == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("changes", [{"anchors": 0}, {"rank": 0}, {"kernel_width": 0.0},
                                     {"global_factors": 0}, {"threads": 0},
                                     {"l2_weights": ()}])
def test_rejects_bad_settings(split, changes):
  with pytest.raises(ValueError, match=next(iter(changes))):
    llorma.fit(split, llorma.LlormaConfig(**changes))
