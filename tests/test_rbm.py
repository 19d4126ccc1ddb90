"""RBM-CF: a hand-computed prediction, learning on planted data, fallback, early stopping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from keras_autorec.baselines import rbm
from keras_autorec.data import ratings as ratings_lib
from keras_autorec.data.splits import RatingsSplit, random_split

# Few epochs of plain CD-1 and CD-3: enough to learn the planted blocks in seconds.
QUICK = rbm.RBMConfig(hidden_units=8, learning_rate=0.1, batch_rows=10, init_stddev=0.1,
                      cd_schedule=((0, 1), (8, 3)), epochs=15, patience=15)


def planted_block_ratings(num_users=60, num_items=40, seed=0):
  """Two user groups and two item groups: 5 within a group's own items, 1 or 2 across."""
  rng = np.random.default_rng(seed)
  user_group = np.arange(num_users) % 2
  item_group = np.arange(num_items) % 2
  pairs = rng.choice(num_users * num_items, size=int(0.6 * num_users * num_items), replace=False)
  users, items = pairs // num_items, pairs % num_items
  across = 1.0 + rng.integers(0, 2, users.size)
  rating = np.where(user_group[users] == item_group[items], 5.0, across)
  return ratings_lib.from_raw(
      np.array([f"u{u:03d}" for u in users]), np.array([f"i{i:03d}" for i in items]), rating,
      timestamp=None, rating_scale=(1.0, 5.0), source="planted blocks")


@pytest.fixture(scope="module")
def blocks() -> RatingsSplit:
  return random_split(planted_block_ratings(), test_fraction=0.1, validation_fraction=0.1, seed=0)


def test_rating_values_and_levels_follow_the_scale():
  values = rbm.rating_values((0.5, 5.0), 0.5)
  np.testing.assert_allclose(values, np.arange(1, 11) * 0.5)
  np.testing.assert_array_equal(rbm.rating_levels(np.array([0.5, 3.4, 3.8, 5.0]), values),
                                [0, 6, 7, 9])


def test_prediction_equals_a_hand_computation():
  values = rbm.rating_values((1.0, 3.0), 1.0)
  # Rows are users (U-RBM): 2 users, 3 items, 3 rating values, 2 hidden units.
  model = rbm.RBMCF(num_rows=2, num_columns=3, values=values, hidden_units=2, item_based=False)
  weights = np.arange(18, dtype=np.float32).reshape(3, 3, 2) / 20.0 - 0.4
  visible_bias = np.array([[0.1, -0.2, 0.3], [0.0, 0.5, -0.5], [0.2, 0.2, -0.1]], np.float32)
  hidden_bias = np.array([-0.3, 0.4], np.float32)
  model.weights.assign(weights.reshape(9, 2))
  model.visible_bias.assign(visible_bias)
  model.hidden_bias.assign(hidden_bias)
  # User 0 rated item 0 with 3 and item 1 with 1; user 1 rated item 2 with 2.
  model.set_inputs(np.array([0, 0, 1]), np.array([0, 1, 2]), np.array([2, 0, 1]))

  def expected(hidden_input, item):
    hidden = 1.0 / (1.0 + np.exp(-(hidden_bias + hidden_input)))
    logits = visible_bias[item] + weights[item] @ hidden
    softmax = np.exp(logits) / np.exp(logits).sum()
    return float(softmax @ values)

  user0 = weights[0, 2] + weights[1, 0]
  user1 = weights[2, 1]
  pairs = np.array([[0, 2], [1, 0], [1, 1], [0, 0]], np.int32)
  predictions = model.predict_ratings(tf.constant(pairs)).numpy()
  np.testing.assert_allclose(predictions, [expected(user0, 2), expected(user1, 0),
                                           expected(user1, 1), expected(user0, 0)], rtol=1e-5)


def test_exact_prediction_sums_out_every_hidden_state():
  values = rbm.rating_values((1.0, 3.0), 1.0)
  hidden_units = 3
  model = rbm.RBMCF(num_rows=2, num_columns=3, values=values, hidden_units=hidden_units,
                    item_based=False, exact_prediction=True)
  rng = np.random.default_rng(0)
  weights = rng.normal(scale=0.8, size=(3, 3, hidden_units)).astype(np.float32)
  visible_bias = rng.normal(size=(3, 3)).astype(np.float32)
  hidden_bias = rng.normal(size=hidden_units).astype(np.float32)
  model.weights.assign(weights.reshape(9, hidden_units))
  model.visible_bias.assign(visible_bias)
  model.hidden_bias.assign(hidden_bias)
  # User 0 rated item 0 with 3 and item 1 with 1; user 1 rated item 2 with 2.
  model.set_inputs(np.array([0, 0, 1]), np.array([0, 1, 2]), np.array([2, 0, 1]))
  rated = {0: [(0, 2), (1, 0)], 1: [(2, 1)]}
  states = np.array(np.meshgrid(*[[0.0, 1.0]] * hidden_units)).reshape(hidden_units, -1).T

  def expected(user, item):
    # p(v_item = k | V) by summing exp(-energy) of (V, v_item = k, h) over all 2^3 hidden states.
    unnormalised = []
    for level in range(3):
      visible = rated[user] + [(item, level)]
      energies = [sum(visible_bias[c, k] + h @ weights[c, k] for c, k in visible) + h @ hidden_bias
                  for h in states]
      unnormalised.append(np.sum(np.exp(energies)))
    return float(np.array(unnormalised) @ values / np.sum(unnormalised))

  pairs = np.array([[0, 2], [1, 0], [1, 1]], np.int32)
  predictions = model.predict_ratings(tf.constant(pairs)).numpy()
  np.testing.assert_allclose(predictions, [expected(0, 2), expected(1, 0), expected(1, 1)],
                             rtol=1e-5)
  mean_field = rbm.RBMCF(num_rows=2, num_columns=3, values=values, hidden_units=hidden_units,
                         item_based=False)
  for source, target in zip(model.parameters, mean_field.parameters):
    target.assign(source)
  mean_field.set_inputs(np.array([0, 0, 1]), np.array([0, 1, 2]), np.array([2, 0, 1]))
  # The approximation differs, so the test above would catch a mean-field prediction.
  assert np.max(np.abs(mean_field.predict_ratings(tf.constant(pairs)).numpy() - predictions)) > 1e-3


@pytest.mark.parametrize("item_based", [True, False])
def test_learns_planted_blocks_and_beats_the_global_mean(blocks, item_based):
  trained = rbm.fit(blocks, dataclasses.replace(QUICK, item_based=item_based))
  reconstruction = trained.history["reconstruction_rmse"]
  # Reconstruction error falls over the CD updates, by far more than epoch-to-epoch noise.
  assert reconstruction[-1] < 0.6 * reconstruction[0]
  test = blocks.test
  global_mean_rmse = float(np.sqrt(np.mean(np.square(test.rating - blocks.train.rating.mean()))))
  assert rbm.evaluate(trained, blocks)["test_rmse"] < 0.5 * global_mean_rmse


def test_unseen_users_and_items_take_the_fallback(blocks):
  train = blocks.train
  unseen_user, unseen_item = 0, 1
  keep = np.flatnonzero((train.user_index != unseen_user) & (train.item_index != unseen_item))
  split = dataclasses.replace(blocks, train=train.subset(keep))
  trained = rbm.fit(split, dataclasses.replace(QUICK, epochs=2))
  users = np.array([unseen_user, 3, unseen_user])
  items = np.array([4, unseen_item, unseen_item])
  np.testing.assert_allclose(trained.predict(users, items), trained.fallback.predict(users, items))
  seen = trained.predict(np.array([3]), np.array([4]))
  direct = trained.model.predict_ratings(tf.constant([[3, 4]], tf.int32)).numpy()
  np.testing.assert_allclose(seen, direct, rtol=1e-6)


def test_early_stopping_keeps_the_best_validation_weights(blocks):
  config = dataclasses.replace(QUICK, learning_rate=0.3, epochs=12, patience=3)
  trained = rbm.fit(blocks, config)
  validation = trained.history["val_rmse"]
  assert trained.best_epoch == int(np.argmin(validation)) + 1
  assert rbm.rmse(trained, blocks.validation) == pytest.approx(min(validation), abs=1e-5)


def test_max_train_seconds_stops_after_the_epoch_past_it(blocks):
  trained = rbm.fit(blocks, dataclasses.replace(QUICK, epochs=5, max_train_seconds=0.0))
  assert trained.epochs_run == 1 and len(trained.history["val_rmse"]) == 1


def test_cd_schedule_grows_and_is_checked():
  config = rbm.RBMConfig(cd_schedule=((0, 1), (5, 3), (9, 9)))
  assert [config.cd_steps(epoch) for epoch in (0, 4, 5, 8, 9, 50)] == [1, 1, 3, 3, 9, 9]
  with pytest.raises(ValueError, match="cd_schedule"):
    rbm.RBMConfig(cd_schedule=((2, 1),)).validate()
  with pytest.raises(ValueError, match="hidden_units"):
    rbm.RBMConfig(hidden_units=0).validate()
  with pytest.raises(ValueError, match="prediction"):
    rbm.RBMConfig(prediction="mode").validate()


def test_learning_rate_decays_per_epoch(blocks):
  # Decay 0 leaves a step only in the first epoch (0.0 ** 0 == 1): without momentum the weights,
  # hence the validation RMSE, then stay put.
  trained = rbm.fit(blocks, dataclasses.replace(QUICK, epochs=3, learning_rate_decay=0.0,
                                                momentum=0.0))
  first, *rest = trained.history["val_rmse"]
  assert rest == [first, first]
  moving = rbm.fit(blocks, dataclasses.replace(QUICK, epochs=3, momentum=0.0))
  assert len(set(moving.history["val_rmse"])) == 3


def test_default_configs_are_valid_and_differ_only_in_learning_rate():
  item, user = rbm.default_config(item_based=True), rbm.default_config(item_based=False)
  item.validate()
  user.validate()
  differing = {field.name for field in dataclasses.fields(rbm.RBMConfig)
               if getattr(item, field.name) != getattr(user, field.name)}
  assert differing == {"item_based", "learning_rate"}
  assert rbm.default_config(item_based=True, hidden_units=7).hidden_units == 7
