"""Tests for keras_autorec.implicit.losses."""

from __future__ import annotations

import numpy as np
import pytest

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
