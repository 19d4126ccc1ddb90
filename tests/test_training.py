"""Tests for keras_autorec.training: fitting, early stopping, resuming and mixed precision."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest

from keras_autorec import fallback, training
from keras_autorec.data import row_datasets
from keras_autorec.data import splits
from keras_autorec.data.layout import build_layout
from keras_autorec.optimizers import make_optimizer

MODEL = training.ModelConfig(hidden_units=(16,), l2_weight=1e-4)


def _config(**kwargs):
  return training.TrainConfig(**{"epochs": 60, "patience": 100, "verbose": 0, **kwargs})


def _global_mean_rmse(split):
  return float(np.sqrt(np.mean((split.validation.rating - split.train.rating.mean()) ** 2)))


def test_fit_beats_global_mean(split):
  trained = training.fit(split, MODEL, _config(epochs=30, optimizer="adam", learning_rate=0.05,
                                               batch_size=4))
  metrics = training.evaluate(trained, split)
  assert metrics["validation_rmse"] < 0.92 * _global_mean_rmse(split)


def test_early_stopping_restores_best_weights(split):
  trained = training.fit(split, training.ModelConfig(hidden_units=(4,)),
                         _config(epochs=40, patience=2, optimizer="adam", learning_rate=0.3))
  history = trained.history["val_rmse"]
  assert trained.epochs_run == len(history) < 60
  best = min(history)
  assert history[-1] > best and trained.best_epoch == history.index(best) + 1
  targets, _ = trained.layout.targets(split.validation)
  dataset = row_datasets.evaluation_dataset(trained.layout.train, targets, 1000)
  rmse = trained.model.evaluate(dataset, return_dict=True, verbose=0)["rmse"]
  assert rmse == pytest.approx(best, rel=1e-5)


def test_evaluate_keys_and_unseen_counts(ratings):
  # User 0's ratings are all held out for test, so each of them needs the default rating.
  of_user0 = ratings.user_index == 0
  rest = splits.random_split(ratings.subset(np.flatnonzero(~of_user0)), 0.1, 0.1, seed=0)
  test = ratings.subset(np.concatenate([np.flatnonzero(of_user0), np.arange(0)]))
  split = splits.RatingsSplit(rest.train, rest.validation, test)
  model_config = training.ModelConfig(hidden_units=(4,))
  trained_model = training.fit(split, model_config, _config(epochs=2, fallback="constant"))
  metrics = training.evaluate(trained_model, split)
  assert set(metrics) == {
      "validation_rmse", "validation_mae", "validation_ratings",
      "validation_default_predictions", "validation_fallback_rmse", "test_rmse", "test_mae",
      "test_ratings", "test_default_predictions", "test_fallback_rmse", "epochs_run",
      "best_epoch", "train_seconds", "train_ratings"}
  assert metrics["test_default_predictions"] == metrics["test_ratings"] == of_user0.sum()
  assert metrics["test_rmse"] == pytest.approx(np.sqrt(np.mean((test.rating - 3.0) ** 2)))
  assert metrics["test_fallback_rmse"] == pytest.approx(metrics["test_rmse"])
  # The default fallback, user 0 being unknown, predicts each item's shrunk mean.
  trained_model = training.fit(split, model_config, _config(epochs=2))
  biases = fallback.fit_biases(split.train)
  expected = np.clip(biases.global_mean + biases.new_user_bias
                     + biases.item_bias[test.item_index], 1, 5)
  assert training.evaluate(trained_model, split)["test_rmse"] == pytest.approx(
      np.sqrt(np.mean((test.rating - expected) ** 2)), rel=1e-5)
  rows, columns = trained_model.layout.positions(split.validation)
  assert metrics["validation_default_predictions"] == np.sum((rows < 0) | (columns < 0))
  assert metrics["epochs_run"] == 2 and metrics["train_ratings"] == split.train.num_ratings


class _EpochRecorder(keras.callbacks.Callback):
  """Stands in for TensorBoard: records epochs begun, and crashes after `crash_after` epochs."""

  begun: list[int] = []
  crash_after: int | None = None
  weights_at_crash = None

  def __init__(self, log_dir):
    super().__init__()

  def on_epoch_begin(self, epoch, logs=None):
    _EpochRecorder.begun.append(epoch)

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 == _EpochRecorder.crash_after:
      _EpochRecorder.weights_at_crash = self.model.get_weights()
      raise KeyboardInterrupt("simulated crash")


@pytest.mark.parametrize("batch_size", [0, 16])
def test_resume_after_crash_matches_uninterrupted_run(split, tmp_path, monkeypatch, batch_size):
  monkeypatch.setattr(keras.callbacks, "TensorBoard", _EpochRecorder)
  model_config = training.ModelConfig(hidden_units=(8,), l2_weight=1e-3)
  monkeypatch.setattr(_EpochRecorder, "begun", [])
  reference = training.fit(split, model_config,
                           _config(epochs=8, batch_size=batch_size,
                                   model_dir=str(tmp_path / "reference")))
  crashed_dir = str(tmp_path / "crashed")
  monkeypatch.setattr(_EpochRecorder, "crash_after", 5)
  with pytest.raises(KeyboardInterrupt):
    training.fit(split, model_config, _config(epochs=8, batch_size=batch_size,
                                              model_dir=crashed_dir))
  monkeypatch.setattr(_EpochRecorder, "crash_after", None)
  monkeypatch.setattr(_EpochRecorder, "begun", [])
  resumed = training.fit(split, model_config, _config(epochs=8, batch_size=batch_size,
                                                      model_dir=crashed_dir))
  assert _EpochRecorder.begun == [5, 6, 7]
  assert resumed.epochs_run == 8 and len(resumed.history["loss"]) == 8
  for key in ("loss", "val_rmse"):
    np.testing.assert_allclose(resumed.history[key], reference.history[key], rtol=1e-5)
  for a, b in zip(resumed.model.get_weights(), reference.model.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_resumed_rprop_continues_with_its_step_sizes(split, tmp_path, monkeypatch, recwarn):
  """Rprop's per-weight steps are restored, not restarted at the initial step size."""
  monkeypatch.setattr(keras.callbacks, "TensorBoard", _EpochRecorder)
  model_config = training.ModelConfig(hidden_units=(8,), l2_weight=1e-3)
  reference = training.fit(split, model_config,
                           _config(epochs=6, model_dir=str(tmp_path / "reference")))
  crashed_dir = str(tmp_path / "crashed")
  monkeypatch.setattr(_EpochRecorder, "crash_after", 3)
  with pytest.raises(KeyboardInterrupt):
    training.fit(split, model_config, _config(epochs=6, model_dir=crashed_dir))
  monkeypatch.setattr(_EpochRecorder, "crash_after", None)
  resumed = training.fit(split, model_config, _config(epochs=6, model_dir=crashed_dir))
  steps = [step.numpy() for step in resumed.model.optimizer._steps]
  reference_steps = [step.numpy() for step in reference.model.optimizer._steps]
  # After 6 full-batch epochs the steps have grown and shrunk away from the initial 0.01.
  assert not np.allclose(steps[0], 0.01)
  for step, reference_step in zip(steps, reference_steps):
    np.testing.assert_allclose(step, reference_step, rtol=1e-6)
  assert int(resumed.model.optimizer.iterations) == int(reference.model.optimizer.iterations)
  assert not [w for w in recwarn if "Skipping variable loading" in str(w.message)]


def test_restore_loads_checkpointed_weights(split, tmp_path, monkeypatch):
  monkeypatch.setattr(keras.callbacks, "TensorBoard", _EpochRecorder)
  monkeypatch.setattr(_EpochRecorder, "crash_after", 3)
  model_config = training.ModelConfig(hidden_units=(8,))
  with pytest.raises(KeyboardInterrupt):
    training.fit(split, model_config, _config(epochs=6, model_dir=str(tmp_path)))
  layout = build_layout(split.train, item_based=True)
  model = training.build_model(model_config, layout)
  model.compile(optimizer=make_optimizer("rprop", 0.01))
  early_stopping = training.ResumableEarlyStopping(str(tmp_path), patience=100)
  assert early_stopping.restore(model) == 3
  for a, b in zip(model.get_weights(), _EpochRecorder.weights_at_crash):
    np.testing.assert_array_equal(a, b)
  assert len(early_stopping.history["loss"]) == 3


def test_finished_run_is_not_rerun(split, tmp_path, monkeypatch):
  monkeypatch.setattr(keras.callbacks, "TensorBoard", _EpochRecorder)
  config = _config(epochs=4, model_dir=str(tmp_path))
  first = training.fit(split, MODEL, config)
  monkeypatch.setattr(_EpochRecorder, "begun", [])
  again = training.fit(split, MODEL, config)
  assert _EpochRecorder.begun == [] and again.epochs_run == 4
  assert again.history == first.history
  for a, b in zip(again.model.get_weights(), first.model.get_weights()):
    np.testing.assert_array_equal(a, b)


@pytest.mark.usefixtures("reset_policy")
@pytest.mark.parametrize("mode, compute_dtype", [("bfloat16", "bfloat16"),
                                                 ("float16", "float16")])
def test_mixed_precision(split, mode, compute_dtype):
  config = _config(epochs=6, optimizer="adam", learning_rate=0.01)
  reference = training.fit(split, MODEL, config)
  mixed = training.fit(split, MODEL, _config(epochs=6, optimizer="adam", learning_rate=0.01,
                                             mixed_precision=mode))
  model = mixed.model
  assert all(v.dtype == "float32" for v in model.trainable_variables)
  assert all(layer.compute_dtype == compute_dtype for layer in model.hidden_layers)
  assert model.output_layer.compute_dtype == "float32"
  assert model(np.zeros((2, model.num_inputs), np.float32)).dtype == "float32"
  assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (mode == "float16")
  losses = mixed.history["loss"]
  assert losses[-1] < 0.9 * losses[0]
  np.testing.assert_allclose(losses, reference.history["loss"], rtol=0.02)
  np.testing.assert_allclose(mixed.history["val_rmse"], reference.history["val_rmse"], rtol=0.02)
  assert keras.mixed_precision.global_policy().name == "float32"


def test_fit_and_evaluate_refits_on_train_and_validation(split):
  model_config = training.ModelConfig(hidden_units=(4,))
  train_config = training.TrainConfig(epochs=6, patience=2, verbose=0)
  early_stopped, plain = training.fit_and_evaluate(split, model_config, train_config, refit=False)
  refitted, metrics = training.fit_and_evaluate(split, model_config, train_config)
  assert metrics["refit_epochs"] == metrics["best_epoch"] == plain["best_epoch"]
  # Validation metrics are the early-stopped model's; the refit model saw validation ratings.
  assert metrics["validation_rmse"] == pytest.approx(plain["validation_rmse"], abs=1e-5)
  assert refitted.layout.train.nnz > early_stopped.layout.train.nnz
  assert metrics["test_rmse"] == pytest.approx(
      training.evaluate(refitted, split)["test_rmse"], abs=1e-6)


def test_resume_with_a_changed_architecture_names_model_dir_and_setting(split, tmp_path):
  model_dir = str(tmp_path / "run")
  training.fit(split, MODEL, _config(epochs=2, model_dir=model_dir))
  wider = training.ModelConfig(hidden_units=(24,), l2_weight=1e-4)
  with pytest.raises(training.CheckpointMismatchError) as error:
    training.fit(split, wider, _config(epochs=4, model_dir=model_dir))
  assert str(error.value) == (
      f"--model_dir {model_dir} holds a checkpoint made with other settings: hidden_units is "
      "[16] there but [24] now. Resume with the checkpoint's settings, or pass a new "
      "--model_dir to start afresh.")
  with pytest.raises(training.CheckpointMismatchError, match=r"item_based is True there but "
                     r"False now; num_columns is \d+ there but \d+ now"):
    training.fit(split, training.ModelConfig(hidden_units=(16,), l2_weight=1e-4,
                                             item_based=False),
                 _config(epochs=4, model_dir=model_dir))
  fresh = training.fit(split, wider, _config(epochs=2, model_dir=str(tmp_path / "new")))
  assert fresh.epochs_run == 2


def test_checkpoint_without_settings_that_does_not_fit_names_model_dir(split, tmp_path):
  model_dir = str(tmp_path / "old")
  training.fit(split, MODEL, _config(epochs=1, model_dir=model_dir))
  state_path = tmp_path / "old" / "training_state.json"
  state = json.loads(state_path.read_text())
  del state["settings"]  # As written before the settings were stored.
  state_path.write_text(json.dumps(state))
  with pytest.raises(training.CheckpointMismatchError, match=(
      rf"--model_dir {re.escape(model_dir)}: its checkpoint checkpoint-1 does not fit this model "
      r"\(.*\); resume with the settings it was made with, or pass a new --model_dir")):
    training.fit(split, training.ModelConfig(hidden_units=(24,)), _config(epochs=2,
                                                                          model_dir=model_dir))


def test_l2_lambda_is_scaled_by_the_training_ratings_unless_l2_weight_is_given(split):
  assert training.ModelConfig(l2_lambda=200.0).l2_weight_for(80_000) == pytest.approx(1.25e-3)
  assert training.ModelConfig(l2_lambda=200.0).l2_weight_for(800_000) == pytest.approx(1.25e-4)
  assert training.ModelConfig(l2_lambda=200.0, l2_weight=1e-3).l2_weight_for(800_000) == 1e-3
  # Small data sets are treated as having L2_LAMBDA_MIN_RATINGS ratings.
  assert training.ModelConfig(l2_lambda=200.0).l2_weight_for(500) == pytest.approx(
      200.0 / (2 * training.L2_LAMBDA_MIN_RATINGS))
  layout = build_layout(split.train, item_based=True)
  model = training.build_model(training.ModelConfig(hidden_units=(4,), l2_lambda=10.0), layout)
  assert model.l2_weight == pytest.approx(10.0 / (2 * training.L2_LAMBDA_MIN_RATINGS))
  for field in ("l2_lambda", "l2_weight"):
    with pytest.raises(ValueError, match=field):
      training.ModelConfig(**{field: -1.0})


class _ConstantModel(keras.Model):
  """A one-weight model whose weight records the epoch it was saved at."""

  def __init__(self):
    super().__init__()
    self.w = self.add_weight(shape=(), initializer="zeros")


def test_early_stopping_min_delta_stops_a_creeping_plateau_and_keeps_the_best():
  model = _ConstantModel()
  stopping = training.ResumableEarlyStopping(None, patience=3, min_delta=1e-3)
  stopping.set_model(model)
  model.stop_training = False  # As Keras' fit sets it.
  # Falls by 0.1 twice, then creeps down by 1e-4 an epoch: each creeping step is a new best
  # (whose weights are kept) but not an improvement of min_delta.
  values = [1.0, 0.9, 0.8, 0.7999, 0.7998, 0.7997, 0.7996, 0.7995]
  epochs = 0
  for epoch, value in enumerate(values):
    model.w.assign(float(epoch))
    stopping.on_epoch_end(epoch, {"val_rmse": value})
    epochs += 1
    if model.stop_training:
      break
  assert epochs == 6
  stopping.on_train_end()
  assert stopping.best_epoch == 5 and float(model.w.numpy()) == 5.0
