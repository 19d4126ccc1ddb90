"""Tests for keras_autorec.losses."""

from __future__ import annotations

import numpy as np
import pytest

from keras_autorec import losses


def _data():
  targets = np.array([[1.0, 4.0, 0.0], [5.0, 0.0, 2.0]], np.float32)
  predictions = np.array([[0.2, 4.5, 3.0], [6.5, 9.0, 2.5]], np.float32)
  mask = np.array([[1, 1, 0], [1, 0, 1]], np.float32)
  return targets, predictions, mask


@pytest.mark.parametrize("kind", ["rmse", "mae"])
def test_clipped_metric_matches_numpy(kind):
  targets, predictions, mask = _data()
  metric = losses.ClippedRatingMetric((1.0, 5.0), kind)
  metric.update_state(targets[:1], predictions[:1], sample_weight=mask[:1])
  metric.update_state(targets[1:], predictions[1:], sample_weight=mask[1:])
  error = (targets - np.clip(predictions, 1.0, 5.0))[mask == 1]
  expected = np.sqrt(np.mean(error ** 2)) if kind == "rmse" else np.mean(np.abs(error))
  # Errors of the observed entries after clipping: 0.8->1 is 0, 0.5, 6.5->5 is 0, 0.5.
  assert float(metric.result()) == pytest.approx(expected, rel=1e-6)
  assert float(metric.result()) == pytest.approx(np.sqrt(0.125) if kind == "rmse" else 0.25)
  metric.reset_state()
  assert float(metric.result()) == 0.0


def test_masked_mean_squared_error():
  targets, predictions, mask = _data()
  expected = np.sum(mask * (targets - predictions) ** 2) / mask.sum()
  assert float(losses.masked_mean_squared_error(targets, predictions, mask)) == pytest.approx(
      expected, rel=1e-6)
  assert float(losses.masked_mean_squared_error(targets, predictions, 0 * mask)) == 0.0


def test_invalid_kind():
  with pytest.raises(ValueError, match="kind"):
    losses.ClippedRatingMetric(kind="mse")
