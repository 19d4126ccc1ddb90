"""Early stopping on validation RMSE whose state, like the weights, survives a crash."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import keras
import numpy as np

from keras_autorec import progress
from keras_autorec.config import ModelConfig, TrainConfig
from keras_autorec.data.layout import RowLayout


class CheckpointMismatchError(ValueError):
  """A model_dir's checkpoint does not fit the model being trained: the message says why."""


def checkpoint_settings(model_config: ModelConfig, train_config: TrainConfig,
                        layout: RowLayout) -> dict:
  """The settings a checkpoint is only valid for: architecture, data shape and optimizer."""
  return {**dataclasses.asdict(model_config), "num_rows": layout.num_rows,
          "num_columns": layout.num_columns, "optimizer": train_config.optimizer,
          "mixed_precision": train_config.mixed_precision}


class ResumableEarlyStopping(keras.callbacks.Callback):
  """Early stopping on validation RMSE whose state, like the weights, survives a crash.

  It stops after `patience` epochs without a value `min_delta` below the last value that was;
  the weights of the lowest value are restored at the end.

  After every epoch it writes a checkpoint of the model and the optimizer's state, the best weights so far
  and a small JSON state (epoch, best RMSE, history, the `settings` it was made with). `restore()`
  before `fit` picks all of that up again, so a killed run resumes after its last completed epoch;
  a checkpoint made with other settings is a CheckpointMismatchError naming them.
  """

  def __init__(self, model_dir: str | None, patience: int, monitor: str = "val_rmse",
               min_delta: float = 0.0, settings: dict | None = None):
    super().__init__()
    self.model_dir = model_dir
    # Through JSON so that tuples compare equal to the lists a saved state holds.
    self.settings = json.loads(json.dumps(settings or {}))
    self.patience = patience
    self.monitor = monitor
    self.min_delta = min_delta
    self.best_value = np.inf
    self.reference_value = np.inf  # The value at the last drop of at least min_delta.
    self.best_epoch = -1
    self.best_weights = None
    self.wait = 0
    self.history: dict[str, list[float]] = {}
    self.completed_epochs = 0

  def _paths(self):
    return (os.path.join(self.model_dir, "training_state.json"),
            os.path.join(self.model_dir, "best_weights.npz"))

  def restore(self, model) -> int:
    """Loads a previous run's state from model_dir into `model`; returns epochs already done."""
    if self.model_dir is None:
      return 0
    state_path, best_path = self._paths()
    if not os.path.exists(state_path):
      return 0
    with open(state_path) as f:
      state = json.load(f)
    self._check_settings(state.get("settings", {}))
    try:
      # Built first: the weights file holds the optimizer's variables too, and an unbuilt
      # optimizer (no slots yet) would skip them with a warning.
      model.optimizer.build(model.trainable_variables)
      model.load_weights(os.path.join(self.model_dir, state["checkpoint"] + ".weights.h5"))
      with np.load(os.path.join(self.model_dir, state["checkpoint"] + ".optimizer.npz")) as saved:
        for index, variable in enumerate(model.optimizer.variables):
          variable.assign(saved[f"v{index}"])
    except (ValueError, KeyError, OSError) as error:
      reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
      raise CheckpointMismatchError(
          f"--model_dir {self.model_dir}: its checkpoint {state['checkpoint']} does not fit this "
          f"model ({reason}); resume with the settings it was made with, or pass a new "
          "--model_dir to start afresh") from error
    self.best_value = state["best_value"]
    self.reference_value = state.get("reference_value", self.best_value)
    self.best_epoch = state["best_epoch"]
    self.wait = state["wait"]
    self.history = state["history"]
    self.completed_epochs = state["epoch"]
    if os.path.exists(best_path):
      with np.load(best_path) as saved:
        self.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]
    logging.info("Resuming from %s after epoch %d (best %s %.4f at epoch %d)", self.model_dir,
                 self.completed_epochs, self.monitor, self.best_value, self.best_epoch + 1)
    return self.completed_epochs

  def _check_settings(self, saved: dict) -> None:
    differences = [f"{key} is {saved[key]!r} there but {self.settings[key]!r} now"
                   for key in sorted(self.settings.keys() & saved.keys())
                   if saved[key] != self.settings[key]]
    if differences:
      raise CheckpointMismatchError(
          f"--model_dir {self.model_dir} holds a checkpoint made with other settings: "
          f"{'; '.join(differences)}. Resume with the checkpoint's settings, or pass a new "
          "--model_dir to start afresh.")

  def progress(self, train_config: TrainConfig) -> progress.EpochProgress:
    """The epoch report of a fit under `train_config`, carrying on from any restored best."""
    return progress.EpochProgress(train_config.epochs, train_config.verbose, self.monitor,
                                  best=(self.best_value, self.best_epoch))

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    for key, value in logs.items():
      self.history.setdefault(key, []).append(float(value))
    self.completed_epochs = epoch + 1
    value = logs.get(self.monitor)
    if value is not None:
      if value < self.best_value:
        self.best_value, self.best_epoch = float(value), epoch
        self.best_weights = self.model.get_weights()
        if self.model_dir is not None:
          self._write_best_weights()
      if value < self.reference_value - self.min_delta:
        self.reference_value, self.wait = float(value), 0
      else:
        self.wait += 1
        if self.wait >= self.patience:
          self.model.stop_training = True
    if self.model_dir is not None:
      self._write_state()

  def on_train_end(self, logs=None):
    if self.best_weights is not None:
      self.model.set_weights(self.best_weights)

  def _write_best_weights(self):
    _, best_path = self._paths()
    partial = best_path.replace(".npz", ".partial.npz")
    np.savez(partial, **{f"w{i}": w for i, w in enumerate(self.best_weights)})
    os.replace(partial, best_path)

  def _write_state(self):
    checkpoint = f"checkpoint-{self.completed_epochs}"
    checkpoint_path = os.path.join(self.model_dir, checkpoint)
    self.model.save_weights(checkpoint_path + ".weights.h5")
    # The optimizer's variables (step count and slots) in their creation order.
    np.savez(checkpoint_path + ".optimizer.npz",
             **{f"v{i}": v.numpy() for i, v in enumerate(self.model.optimizer.variables)})
    state_path, _ = self._paths()
    previous = self._read_checkpoint_name(state_path)
    state = {"epoch": self.completed_epochs, "checkpoint": checkpoint,
             "best_value": self.best_value, "reference_value": self.reference_value,
             "best_epoch": self.best_epoch, "wait": self.wait,
             "history": self.history, "settings": self.settings}
    with open(state_path + ".partial", "w") as f:
      json.dump(state, f)
    # The state names a checkpoint that is complete on disk, so a crash at any point leaves
    # either the previous or the new state, never a state pointing at a partial checkpoint.
    os.replace(state_path + ".partial", state_path)
    if previous and previous != checkpoint:
      for suffix in (".weights.h5", ".optimizer.npz"):
        path = os.path.join(self.model_dir, previous + suffix)
        if os.path.exists(path):
          os.remove(path)

  @staticmethod
  def _read_checkpoint_name(state_path: str) -> str | None:
    if not os.path.exists(state_path):
      return None
    with open(state_path) as f:
      return json.load(f)["checkpoint"]
