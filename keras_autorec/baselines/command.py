"""What the baseline commands share: their data flags, and fitting and scoring each repeat's
split, then the mean."""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import flags

from keras_autorec import cli_flags, evaluation
from keras_autorec.data.splits import RatingsSplit, load_splits

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The data, split and --repeats flags every baseline command takes."""
  cli_flags.define_data_flags()
  cli_flags.define_split_flags()
  cli_flags.define_repeats_flag()


def run_repeats(name: str, fit_and_evaluate: Callable[[RatingsSplit, int], dict],
                describe: Callable[[dict], str]) -> int:
  """Prints `name`'s metrics on each split the flags name and the mean test RMSE; returns the
  exit status (bad data or flags are reported, not raised).

  Args:
    fit_and_evaluate: (split, repeat index) -> metrics with at least `test_rmse`.
    describe: metrics -> the rest of the split's line after "<split>: <name> ".
  """
  test_rmse = []
  try:
    splits = load_splits(cli_flags.data_config(), cli_flags.split_config(), FLAGS.repeats)
    for repeat, split in enumerate(splits):
      metrics = fit_and_evaluate(split, repeat)
      test_rmse.append(metrics["test_rmse"])
      print(f"{split.description}: {name} {describe(metrics)}", flush=True)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  mean, ci95 = evaluation.mean_and_ci95(test_rmse)
  print(f"{name} on {FLAGS.dataset} ({len(test_rmse)} run(s)): test RMSE {mean:.4f} "
        f"+/- {ci95:.4f}")
  return 0
