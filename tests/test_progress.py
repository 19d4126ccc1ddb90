"""Tests for keras_autorec.progress: one epoch report on the dense, sparse and L-BFGS paths."""

import io
import re

import pytest

from keras_autorec import progress, training

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): loss \d+\.\d{4}, validation RMSE \d+\.\d{4} "
                        r"\(best (\d+\.\d{4}) at epoch (\d+)\), \d+\.\d s elapsed$")


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def _report(stream, verbose=1, epochs=10, values=(1.0, 0.9, 0.95, 0.92)):
  report = progress.EpochProgress(epochs, verbose, stream=stream)
  report.on_train_begin()
  for epoch, value in enumerate(values):
    report.on_epoch_end(epoch, {"loss": 2.0 - epoch / 10, "val_rmse": value})
  report.on_train_end()
  return stream.getvalue()


def test_log_output_is_one_plain_line_per_epoch_with_elapsed_time_and_best():
  lines = _report(io.StringIO()).splitlines()
  assert "\x1b" not in "".join(lines) and "\r" not in "".join(lines)
  assert len(lines) == 5
  bests = [EPOCH_LINE.match(line).group(3, 4) for line in lines[:4]]
  assert bests == [("1.0000", "1"), ("0.9000", "2"), ("0.9000", "2"), ("0.9000", "2")]
  assert lines[4] == "stopped at epoch 4: best validation RMSE 0.9000 at epoch 2"


def test_a_terminal_gets_one_line_rewritten_in_place():
  output = _report(_Terminal())
  assert output.count("\r") == 4 and output.count("\n") == 2
  assert output.splitlines()[-1] == "stopped at epoch 4: best validation RMSE 0.9000 at epoch 2"
  # Asked for one line per epoch (verbose 2), a terminal gets plain lines too.
  assert "\r" not in _report(_Terminal(), verbose=2)


def test_summary_of_a_full_run_and_silence():
  assert _report(io.StringIO(), epochs=4).splitlines()[-1] == (
      "ran all 4 epochs: best validation RMSE 0.9000 at epoch 2")
  assert _report(io.StringIO(), verbose=0) == ""


def test_a_resumed_fit_carries_on_from_the_restored_best():
  stream = io.StringIO()
  report = progress.EpochProgress(10, 2, best=(0.85, 4), stream=stream)
  report.on_epoch_end(7, {"loss": 1.0, "val_rmse": 0.9})
  assert "(best 0.8500 at epoch 5)" in stream.getvalue()


@pytest.mark.parametrize("optimizer, execution", [("rprop", "dense"), ("rprop", "sparse"),
                                                  ("lbfgs", "dense")])
def test_every_training_path_reports_the_same_way(split, capsys, optimizer, execution):
  config = training.TrainConfig(optimizer=optimizer, execution=execution, epochs=6, patience=2,
                                verbose=1)
  trained = training.fit(split, training.ModelConfig(hidden_units=(8,)), config)
  lines = capsys.readouterr().out.splitlines()
  epochs = [EPOCH_LINE.match(line) for line in lines[:-1]]
  assert all(epochs) and [int(m.group(1)) for m in epochs] == list(range(1, len(lines)))
  assert len(epochs) == trained.epochs_run
  ended = "ran all 6 epochs" if trained.epochs_run == 6 else f"stopped at epoch {trained.epochs_run}"
  assert lines[-1] == (f"{ended}: best validation RMSE "
                       f"{min(trained.history['val_rmse']):.4f} at epoch {trained.best_epoch}")
