"""Tests for keras_autorec.implicit.fit: training on binary rows with early stopping."""

import numpy as np
from scipy import sparse

from keras_autorec.implicit import fit


def _rows(seed: int = 0) -> sparse.csr_matrix:
  rng = np.random.default_rng(seed)
  return sparse.csr_matrix((rng.random((40, 30)) < 0.2).astype(np.float32))


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
  scores = iter([0.1, 0.3, 0.2, 0.25, 0.9])  # The 0.9 would come after the stop.
  weights_seen = []

  def validate(model):
    weights_seen.append([w.copy() for w in model.get_weights()])
    return next(scores)

  config = fit.FitConfig(hidden_units=(8,), epochs=10, patience=2, batch_size=16, seed=0)
  model, history = fit.fit(_rows(), config, validate)
  assert [record["validation"] for record in history] == [0.1, 0.3, 0.2, 0.25]
  assert [record["epoch"] for record in history] == [1, 2, 3, 4]
  for kept, best in zip(model.get_weights(), weights_seen[1]):
    np.testing.assert_array_equal(kept, best)
  assert not np.array_equal(model.get_weights()[0], weights_seen[3][0])


def test_without_validation_every_epoch_runs_and_the_loss_falls():
  config = fit.FitConfig(hidden_units=(8,), epochs=6, batch_size=16, seed=0,
                         loss="weighted_squared", input_dropout=0.0, learning_rate=1e-2)
  _, history = fit.fit(_rows(), config)
  assert len(history) == 6 and "validation" not in history[0]
  assert history[-1]["loss"] < 0.8 * history[0]["loss"]
