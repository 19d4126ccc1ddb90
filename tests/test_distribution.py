"""MirroredStrategy over two logical CPUs trains exactly like the default strategy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_autorec import distribution, training

from conftest import num_logical_cpus

pytestmark = pytest.mark.skipif(num_logical_cpus() < 2, reason="needs two logical CPUs")


def test_mirrored_uses_both_cpus_and_is_shared():
  strategy = distribution.make_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2
  assert distribution.make_strategy("mirrored") is strategy


@pytest.mark.parametrize("batch_size", [0, 16])
def test_mirrored_matches_default(split, batch_size):
  # A large L2 weight makes a per-replica double count of the penalty visible in the loss.
  model_config = training.ModelConfig(hidden_units=(8,), l2_weight=1e-2)
  results = {}
  for name in ("default", "mirrored"):
    config = training.TrainConfig(optimizer="adam", learning_rate=0.01, epochs=3,
                                  batch_size=batch_size, patience=100, strategy=name, verbose=0)
    results[name] = training.fit(split, model_config, config)
  default, mirrored = results["default"], results["mirrored"]
  assert isinstance(mirrored.model.distribute_strategy, type(
      distribution.make_strategy("mirrored")))
  for key in ("loss", "rmse", "val_rmse"):
    np.testing.assert_allclose(mirrored.history[key], default.history[key], rtol=1e-5)
  for a, b in zip(mirrored.model.get_weights(), default.model.get_weights()):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())


def test_invalid_names():
  with pytest.raises(ValueError, match="strategy"):
    distribution.make_strategy("parameter_server")
  with pytest.raises(ValueError, match="mixed_precision"):
    distribution.set_mixed_precision("int8")
  assert keras.mixed_precision.global_policy().name == "float32"
