r"""RMSE and MAE of an exported SavedModel, recomputed through its serving_default signature.

  python -m keras_autorec.evaluate --saved_model=saved_models/ml100k/1 --dataset=ml100k \
      --data_dir=../shared/data --split=random --seed=0 [--metrics_file=metrics.json]

The data and split flags are those of `keras_autorec.train` (`keras_autorec.cli_flags`), and the
split is rebuilt by the same code, so the same flags give the same validation and test ratings the
model was evaluated on. A model exported after the refit (train's default, recorded in its
assets.extra/metadata.json) was trained on the validation ratings too: its validation RMSE is
then a training error, not a held-out one, and the output says so.
"""

from __future__ import annotations

# First, before anything imports TensorFlow.
from keras_autorec import quiet_tensorflow  # noqa: F401  pylint: disable=unused-import

import json
import sys

from absl import app
from absl import flags

from keras_autorec import cli_flags, cli_help, evaluation, export
from keras_autorec.data.splits import load_splits
from keras_autorec.evaluation import evaluate_saved_model

FLAGS = flags.FLAGS


def was_refit(saved_model_dir: str) -> bool:
  """Whether the export was refit on train + validation (per its metadata.json)."""
  metadata = export.version_metadata(saved_model_dir)
  # Exports from before metadata recorded "refit" did refit when they list refit epochs.
  return bool(metadata.get("refit", "refit_epochs" in metadata.get("metrics", {})))


def _define_flags() -> list[cli_help.HelpGroup]:
  """Defines the flags (not at import: train defines --metrics_file too); returns their groups."""
  groups = [cli_flags.define_data_flags(), cli_flags.define_split_flags()]
  flags.DEFINE_string("saved_model", None,
                      "An exported version directory, e.g. saved_models/ml100k/1.")
  flags.DEFINE_integer("predict_batch_size", evaluation.DEFAULT_BATCH_SIZE,
                       "Ratings per signature call.")
  flags.DEFINE_string("metrics_file", None, "Where to write the metrics as JSON.")
  flags.mark_flag_as_required("saved_model")
  return groups + [cli_help.HelpGroup(
      "evaluation", ("saved_model", "predict_batch_size", "metrics_file"))]


def main(argv) -> int:
  """Rebuilds the split from the flags and prints (and optionally writes) the export's errors."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    split = next(load_splits(cli_flags.data_config(), cli_flags.split_config()))
    metrics = {"saved_model": FLAGS.saved_model, "split": split.description,
               "validation_in_training": was_refit(FLAGS.saved_model)}
    for name, ratings in (("validation", split.validation), ("test", split.test)):
      errors = evaluate_saved_model(FLAGS.saved_model, ratings, FLAGS.predict_batch_size)
      metrics.update(errors.as_dict(name))
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(f"{FLAGS.saved_model} on {split.description}: test RMSE {metrics['test_rmse']:.4f}, "
        f"MAE {metrics['test_mae']:.4f}; validation RMSE {metrics['validation_rmse']:.4f}, "
        f"MAE {metrics['validation_mae']:.4f}; {metrics['test_default_predictions']} test "
        f"ratings got the default rating")
  if metrics["validation_in_training"]:
    print("note: this model was refit on train + validation, so its validation RMSE is a "
          "training error; the test RMSE is the held-out score (train's validation RMSE is the "
          "early-stopped model's)")
  if FLAGS.metrics_file:
    with open(FLAGS.metrics_file, "w") as f:
      json.dump(metrics, f, indent=2)
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli_help.flags_parser(_define_flags(), __doc__))
