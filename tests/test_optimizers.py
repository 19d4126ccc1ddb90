"""Tests for keras_autorec.optimizers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_autorec import optimizers


def _quadratic_trajectory(optimizer, start, target, steps):
  weight = keras.Variable(np.array([start], np.float32))
  trajectory = []
  for _ in range(steps):
    gradient = 2.0 * (weight.numpy() - target)
    optimizer.apply_gradients([(tf.constant(gradient, tf.float32), weight)])
    trajectory.append(float(weight.numpy()[0]))
  return trajectory


def test_irprop_minus_steps_on_quadratic():
  # f(w) = (w - 1)^2 from w = 0 with an initial step of 0.4: steps 0.4, 0.48, 0.576 while the
  # gradient stays negative; the sign flip halves the step to 0.288 and skips the update; the
  # next step uses 0.288 unchanged (the flip reset the memory), then grows to 0.3456.
  trajectory = _quadratic_trajectory(optimizers.Rprop(0.4), 0.0, 1.0, 6)
  np.testing.assert_allclose(trajectory, [0.4, 0.88, 1.456, 1.456, 1.168, 0.8224], rtol=1e-6)


def test_steps_respect_max_and_min():
  trajectory = _quadratic_trajectory(optimizers.Rprop(0.4, max_step=0.5, min_step=0.3),
                                     0.0, 1.0, 6)
  # Steps 0.4, 0.48, 0.5 (capped); flip: max(0.25, 0.3) = 0.3, skipped; then 0.3, then 0.36.
  np.testing.assert_allclose(trajectory, [0.4, 0.88, 1.38, 1.38, 1.08, 0.72], rtol=1e-6)


def test_converges_on_least_squares():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(30, 3)).astype(np.float32)
  b = (a @ np.array([1.5, -2.0, 0.5]) + 0.1 * rng.normal(size=30)).astype(np.float32)
  weights = keras.Variable(np.zeros(3, np.float32))
  optimizer = optimizers.Rprop(0.1)
  for _ in range(150):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(tf.linalg.matvec(a, weights) - b))
    optimizer.apply_gradients([(tape.gradient(loss, weights), weights)])
  np.testing.assert_allclose(weights.numpy(), np.linalg.lstsq(a, b, rcond=None)[0], atol=1e-3)


def test_get_config_round_trip():
  optimizer = optimizers.Rprop(0.02, increase_factor=1.3, decrease_factor=0.4, min_step=1e-5,
                               max_step=2.0)
  config = optimizer.get_config()
  assert optimizers.Rprop.from_config(config).get_config() == config
  restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
  assert isinstance(restored, optimizers.Rprop) and restored.get_config() == config
  assert config["learning_rate"] == pytest.approx(0.02)


def test_make_optimizer():
  assert isinstance(optimizers.make_optimizer("rprop", 0.1), optimizers.Rprop)
  assert isinstance(optimizers.make_optimizer("adam", 0.1), keras.optimizers.Adam)
  with pytest.raises(ValueError, match="optimizer"):
    optimizers.make_optimizer("lbfgs", 0.1)
