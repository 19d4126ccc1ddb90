"""One progress report for every training loop: Keras `fit`, the sparse path and L-BFGS.

Each epoch shows the loss, the validation RMSE, the best validation RMSE so far and the elapsed
time. On a terminal the line is rewritten in place under a bar; elsewhere (a log file, CI) each
epoch is one plain line without terminal control codes. When training ends, one line says why
and which epoch was best, e.g. `stopped at epoch 111: best validation RMSE 0.8968 at epoch 81`.
"""

from __future__ import annotations

import math
import sys
import time

import keras

BAR_WIDTH = 20
# Erases the rest of a rewritten terminal line (a shorter line would leave old characters).
CLEAR_TO_END = "\x1b[K"


def announce(message: str, verbose: int = 1, stream=None) -> None:
  """Prints a stage of the run (e.g. the start of the refit) unless `verbose` is 0."""
  if verbose:
    print(message, file=stream or sys.stdout, flush=True)


class EpochProgress(keras.callbacks.Callback):
  """Reports epochs as described in the module docstring.

  Args:
    epochs: the most epochs of this fit (the bar's length and the `/N` of each line).
    verbose: 0 silent; 1 a live line on a terminal, else a line per epoch; 2 a line per epoch.
    monitor: the validation metric, lower is better.
    best: (value, 0-based epoch) of the best monitored value before this fit (a resumed run).
    stream: where to write; sys.stdout (looked up when writing) by default.
  """

  def __init__(self, epochs: int, verbose: int = 1, monitor: str = "val_rmse",
               best: tuple[float, int] | None = None, stream=None):
    super().__init__()
    self.epochs = epochs
    self.verbose = verbose
    self.monitor = monitor
    self.best_value, self.best_epoch = best if best else (math.inf, -1)
    self.last_epoch = -1
    self._stream = stream
    self._start = time.monotonic()
    self._line_open = False

  @property
  def stream(self):
    return self._stream or sys.stdout

  def _live(self) -> bool:
    isatty = getattr(self.stream, "isatty", None)
    return self.verbose == 1 and bool(isatty and isatty())

  def on_train_begin(self, logs=None):
    self._start = time.monotonic()

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    self.last_epoch = epoch
    value = logs.get(self.monitor)
    if value is not None and value < self.best_value:
      self.best_value, self.best_epoch = float(value), epoch
    if not self.verbose:
      return
    line = self.format_epoch(epoch, logs)
    if self._live():
      done = min(BAR_WIDTH, (epoch + 1) * BAR_WIDTH // max(self.epochs, 1))
      bar = "[" + "=" * done + " " * (BAR_WIDTH - done) + "] "
      self.stream.write("\r" + bar + line + CLEAR_TO_END)
      self.stream.flush()
      self._line_open = True
    else:
      print(line, file=self.stream, flush=True)

  def format_epoch(self, epoch: int, logs: dict) -> str:
    """`epoch 12/500: loss 0.8123, validation RMSE 0.9012 (best 0.8990 at epoch 10), 3.2 s`."""
    parts = [f"loss {logs['loss']:.4f}"] if "loss" in logs else []
    if logs.get(self.monitor) is not None:
      parts.append(f"validation RMSE {logs[self.monitor]:.4f} (best {self.best_value:.4f} at "
                   f"epoch {self.best_epoch + 1})")
    parts.append(f"{time.monotonic() - self._start:.1f} s elapsed")
    return f"epoch {epoch + 1}/{self.epochs}: " + ", ".join(parts)

  def on_train_end(self, logs=None):
    if not self.verbose:
      return
    if self._line_open:
      self.stream.write("\n")
      self._line_open = False
    summary = self.summary()
    if summary:
      print(summary, file=self.stream, flush=True)

  def summary(self) -> str | None:
    """Why the fit ended and its best epoch, or None when it ran no epoch or had no validation."""
    if self.last_epoch < 0 or self.best_epoch < 0:
      return None
    ended = (f"stopped at epoch {self.last_epoch + 1}" if self.last_epoch + 1 < self.epochs
             else f"ran all {self.epochs} epochs")
    return f"{ended}: best validation RMSE {self.best_value:.4f} at epoch {self.best_epoch + 1}"
