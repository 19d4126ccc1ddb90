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


def test_masked_reconstruction_loss_by_hand():
  targets, predictions, mask = _data()
  layer = losses.MaskedReconstructionLoss()
  total, count = layer(targets, predictions, mask)
  # Observed errors: 0.8, -0.5, -1.5, -0.5 -> squares 0.64 + 0.25 + 2.25 + 0.25.
  assert float(total) == pytest.approx(3.39, rel=1e-6)
  assert float(count) == 4.0
  total, count = layer(targets, predictions, 0 * mask)
  assert (float(total), float(count)) == (0.0, 0.0)


def test_masked_reconstruction_loss_config_round_trip():
  layer = losses.MaskedReconstructionLoss(name="loss")
  restored = losses.MaskedReconstructionLoss.from_config(layer.get_config())
  assert restored.name == "loss"
  targets, predictions, mask = _data()
  assert float(restored(targets, predictions, mask)[0]) == pytest.approx(3.39, rel=1e-6)


def test_invalid_kind():
  with pytest.raises(ValueError, match="kind"):
    losses.ClippedRatingMetric(kind="mse")
