"""BiasedMF: recovers planted biases, predicts unseen ids from biases, early-stops on validation."""

from __future__ import annotations

import numpy as np
import pytest

from keras_autorec.baselines import biased_mf
from keras_autorec.data import ratings as ratings_lib
from keras_autorec.data.splits import random_split


def planted_bias_ratings(num_users=40, num_items=30, seed=0):
  """Ratings mu + b_u + b_i + small noise on 80% of all pairs, with the planted biases."""
  rng = np.random.default_rng(seed)
  user_bias = rng.normal(scale=0.3, size=num_users)
  item_bias = rng.normal(scale=0.3, size=num_items)
  user_bias -= user_bias.mean()
  item_bias -= item_bias.mean()
  pairs = rng.choice(num_users * num_items, size=int(0.8 * num_users * num_items), replace=False)
  users, items = pairs // num_items, pairs % num_items
  rating = 3.0 + user_bias[users] + item_bias[items] + rng.normal(scale=0.05, size=pairs.size)
  ratings = ratings_lib.from_raw(
      np.array([f"u{u:03d}" for u in users]), np.array([f"i{i:03d}" for i in items]),
      np.clip(rating, 1.0, 5.0), timestamp=None, rating_scale=(1.0, 5.0), source="planted")
  return ratings, user_bias, item_bias


def test_recovers_planted_biases():
  ratings, user_bias, item_bias = planted_bias_ratings()
  split = random_split(ratings, test_fraction=0.1, validation_fraction=0.1, seed=0)
  config = biased_mf.BiasedMFConfig(factors=1, l2_weight=1e-4, epochs=80, patience=80)
  trained = biased_mf.fit(split, config)
  # Ids are zero-padded, so vocabulary order is the planted order.
  learned_users = trained.model.user_bias.embeddings.numpy()[:, 0]
  learned_items = trained.model.item_bias.embeddings.numpy()[:, 0]
  np.testing.assert_allclose(learned_users - learned_users.mean(), user_bias, atol=0.03)
  np.testing.assert_allclose(learned_items - learned_items.mean(), item_bias, atol=0.03)
  metrics = biased_mf.evaluate(trained, split)
  assert metrics["test_rmse"] < 0.08


def test_unseen_users_get_the_mean_plus_the_item_bias():
  ratings, _, _ = planted_bias_ratings()
  split = random_split(ratings, test_fraction=0.1, validation_fraction=0.1, seed=0)
  unseen_user = 0
  keep = np.flatnonzero(split.train.user_index != unseen_user)
  split = type(split)(train=split.train.subset(keep), validation=split.validation,
                      test=split.test)
  trained = biased_mf.fit(split, biased_mf.BiasedMFConfig(factors=3, epochs=50))
  model = trained.model
  item = 5
  expected = model.global_mean + float(model.item_bias.embeddings.numpy()[item, 0])
  prediction = float(model.predict_ratings(np.array([[unseen_user, item]], np.int32))[0])
  assert prediction == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("optimizer", biased_mf.OPTIMIZERS)
def test_early_stopping_keeps_the_best_validation_weights(split, optimizer):
  config = biased_mf.BiasedMFConfig(factors=8, l2_weight=0.01, optimizer=optimizer,
                                    learning_rate=0.05, epochs=200, patience=5)
  trained = biased_mf.fit(split, config)
  validation = trained.history["val_rmse"]
  assert trained.best_epoch == int(np.argmin(validation)) + 1
  assert biased_mf.rmse(trained.model, split.validation) == pytest.approx(min(validation),
                                                                           abs=1e-5)


def test_rejects_unknown_optimizers(split):
  with pytest.raises(ValueError, match="optimizer"):
    biased_mf.fit(split, biased_mf.BiasedMFConfig(optimizer="sgd"))
