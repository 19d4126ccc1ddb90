"""The loop the baseline commands share: fit and score each repeat's split, then the mean."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

from keras_autorec import evaluation
from keras_autorec.data.splits import RatingsSplit


def run_repeats(name: str, dataset: str, load_splits: Callable[[], Iterable[RatingsSplit]],
                fit_and_evaluate: Callable[[RatingsSplit, int], dict],
                describe: Callable[[dict], str]) -> int:
  """Prints `name`'s metrics per split and the mean test RMSE; returns the exit status.

  Args:
    load_splits: the repeats' splits (called inside the error handling: bad data or flags are
      reported, not raised).
    fit_and_evaluate: (split, repeat index) -> metrics with at least `test_rmse`.
    describe: metrics -> the rest of the split's line after "<split>: <name> ".
  """
  test_rmse = []
  try:
    for repeat, split in enumerate(load_splits()):
      metrics = fit_and_evaluate(split, repeat)
      test_rmse.append(metrics["test_rmse"])
      print(f"{split.description}: {name} {describe(metrics)}", flush=True)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  mean, ci95 = evaluation.mean_and_ci95(test_rmse)
  print(f"{name} on {dataset} ({len(test_rmse)} run(s)): test RMSE {mean:.4f} "
        f"+/- {ci95:.4f}")
  return 0
