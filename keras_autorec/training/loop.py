"""The epoch loop of the trainers that run their own steps (sparse, L-BFGS, BiasedMF, the
baselines' RBM and LLORMA, the implicit AutoRec).

Each epoch takes one optimizer step (or pass), validates, updates the early stopping (which
checkpoints when it has a model_dir), reports progress and writes TensorBoard summaries. The dense
path runs the same callbacks under Keras' `Model.fit`, Keras' own epoch loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import tensorflow as tf

from keras_autorec import progress
from keras_autorec.training.early_stopping import ResumableEarlyStopping


def tensorboard_writers(model_dir: str | None) -> dict | None:
  """Summary writers where Keras' TensorBoard callback writes (`model_dir/logs/<split>`)."""
  if model_dir is None:
    return None
  os.makedirs(model_dir, exist_ok=True)
  logs_dir = os.path.join(model_dir, "logs")
  return {split_name: tf.summary.create_file_writer(os.path.join(logs_dir, split_name))
          for split_name in ("train", "validation")}


def write_epoch_summaries(writers: dict, logs: dict, epoch: int) -> None:
  """Writes an epoch's logs where Keras' TensorBoard callback does (train/ and validation/)."""
  for name, value in logs.items():
    split_name, name = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
    with writers[split_name].as_default():
      tf.summary.scalar(f"epoch_{name}", value, step=epoch)
    writers[split_name].flush()


def run_epochs(model, step: Callable[[], float], validate: Callable[[], float] | None,
               early_stopping: ResumableEarlyStopping, epochs: int, first_epoch: int = 0,
               report: progress.EpochProgress | None = None,
               converged: Callable[[], bool] | None = None, writers: dict | None = None,
               validation_name: str = "val_rmse") -> None:
  """Runs epochs first_epoch..epochs-1 of `step` until early stopping or `converged()`.

  Runs no epoch when `model.stop_training` is already set (a resumed run out of patience).

  Args:
    model: the Keras model whose weights `early_stopping` keeps (the best are restored at the end).
    step: one epoch of training; returns its loss.
    validate: the validation RMSE now (logged as `validation_name`; lower is better), or None
      without validation data.
    early_stopping: decides when to stop; a restored one carries on from its saved state.
    report: epoch progress, if any.
    converged: whether the optimizer can make no further progress (L-BFGS).
    writers: TensorBoard writers from `tensorboard_writers`, if any.
    validation_name: the log key of `validate`'s value, which `early_stopping` monitors.
  """
  early_stopping.set_model(model)
  if report is not None:
    report.on_train_begin()
  for epoch in range(first_epoch, epochs):
    if model.stop_training:
      break
    logs = {"loss": step()}
    if validate is not None:
      logs[validation_name] = validate()
    early_stopping.on_epoch_end(epoch, logs)
    if report is not None:
      report.on_epoch_end(epoch, logs)
    if writers:
      write_epoch_summaries(writers, logs, epoch)
    if converged is not None and converged():
      break
  early_stopping.on_train_end()
  if report is not None:
    report.on_train_end()
