"""Tests for keras_autorec.implicit.losses."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_autorec.implicit import losses

TARGETS = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
OUTPUTS = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], dtype=np.float32)


def test_multinomial_by_hand():
  log_softmax = OUTPUTS - np.log(np.exp(OUTPUTS).sum(axis=1, keepdims=True))
  expected = -(log_softmax[0, 0] + log_softmax[0, 2] + log_softmax[1, 1]) / 2
  assert float(losses.reconstruction_loss("multinomial", TARGETS, OUTPUTS)) == pytest.approx(
      expected, rel=1e-6)


def test_weighted_squared_by_hand():
  # row 0: (1-2)^2 + 0.1 (0-0)^2 + (1+1)^2 = 5; row 1: 0.1*0.25 + 0.25 + 0.1*9 = 1.175
  value = losses.reconstruction_loss("weighted_squared", TARGETS, OUTPUTS, zero_weight=0.1)
  assert float(value) == pytest.approx((5.0 + 1.175) / 2, rel=1e-6)


def test_unknown_loss():
  with pytest.raises(ValueError, match="loss must be one of"):
    losses.reconstruction_loss("hinge", TARGETS, OUTPUTS)


def _loss_and_gradients(loss_fn, hidden, kernel, bias):
  variables = [tf.Variable(value) for value in (hidden, kernel, bias)]
  with tf.GradientTape() as tape:
    value = loss_fn(*variables)
  return float(value), [g.numpy() for g in tape.gradient(value, variables)]


@pytest.mark.parametrize("zero_weight", [0.1, 0.5])
def test_factored_weighted_squared_matches_the_dense_loss_and_gradients(zero_weight):
  rng = np.random.default_rng(3)
  targets = (rng.random((7, 40)) < 0.15).astype(np.float32)
  targets[0] = 0.0  # a row with no items
  hidden = rng.normal(size=(7, 5)).astype(np.float32)
  kernel = rng.normal(size=(5, 40)).astype(np.float32)
  bias = rng.normal(size=40).astype(np.float32)
  sparse_targets = tf.sparse.from_dense(targets)

  dense_value, dense_gradients = _loss_and_gradients(
      lambda h, w, b: losses.weighted_squared(targets, tf.matmul(h, w) + b, zero_weight),
      hidden, kernel, bias)
  factored_value, factored_gradients = _loss_and_gradients(
      lambda h, w, b: losses.factored_weighted_squared(sparse_targets, h, w, b, zero_weight),
      hidden, kernel, bias)
  assert factored_value == pytest.approx(dense_value, rel=1e-5)
  for factored, dense in zip(factored_gradients, dense_gradients):
    np.testing.assert_allclose(factored, dense, rtol=1e-4, atol=1e-5 * np.abs(dense).max())
