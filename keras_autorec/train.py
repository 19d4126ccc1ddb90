"""Trains AutoRec, reports validation and test RMSE, and exports a SavedModel for TF Serving.

  python -m keras_autorec.train --dataset=ml100k --data_dir=../shared/data --seed=0
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

from absl import app, flags

from keras_autorec import cli_flags, evaluation, export, training
from keras_autorec.data import sources
from keras_autorec.data.splits import SplitConfig, load_splits

FLAGS = flags.FLAGS

cli_flags.define_data_flags()
cli_flags.define_split_flags()
cli_flags.define_repeats_flag()
cli_flags.define_model_flags()
cli_flags.define_train_flags()
cli_flags.define_refit_flag()
flags.DEFINE_string("export_dir", "saved_models/autorec", "TF Serving model base path; each run "
                    "adds a version (the first repeat's model). Empty to skip the export.")
flags.DEFINE_integer("export_top_k", 100, "K of the exported recommend signatures.")
flags.DEFINE_float("export_popularity_weight", export.ExportConfig.popularity_weight,
                   "beta of the exported recommendation score, predicted rating + beta * "
                   "standardised log(1 + the item's training ratings); 0 ranks by predicted "
                   "rating alone.")
flags.DEFINE_string("metrics_file", None, "Where to write the metrics as JSON.")


def run(data_config: sources.DataConfig, split_config: SplitConfig,
        model_config: training.ModelConfig, train_config: training.TrainConfig,
        repeats: int = 1, export_config: export.ExportConfig | None = None,
        refit: bool = True) -> dict:
  """Trains `repeats` times with consecutive seeds, exports the first model, returns metrics.

  With `refit`, each run early-stops on validation, then retrains on train + validation for the
  chosen number of epochs (see `training.fit_and_evaluate`).
  """
  runs = []
  for repeat, split in enumerate(load_splits(data_config, split_config, repeats)):
    seed = split_config.seed + repeat
    logging.info("Split: %s; %d train / %d validation / %d test ratings", split.description,
                 split.train.num_ratings, split.validation.num_ratings, split.test.num_ratings)
    model_dir = train_config.model_dir
    if model_dir and repeats > 1:
      model_dir = os.path.join(model_dir, f"seed_{seed}")
    trained, metrics = training.fit_and_evaluate(
        split, model_config, dataclasses.replace(train_config, seed=seed, model_dir=model_dir),
        refit=refit)
    metrics = {"seed": seed, "split": split.description, **metrics}
    _log_run(metrics)
    if repeat == 0 and export_config is not None:
      metrics["export_path"] = export.export_model(
          trained.model, trained.layout, export_config,
          metadata={"data": dataclasses.asdict(data_config),
                    "split": dataclasses.asdict(split_config),
                    "model": dataclasses.asdict(model_config),
                    "train": dataclasses.asdict(train_config), "metrics": metrics},
          fallback=trained.fallback)
      logging.info("Exported the model to %s", metrics["export_path"])
    runs.append(metrics)
  summary = {"dataset": data_config.dataset, "model": "I-AutoRec" if model_config.item_based
             else "U-AutoRec", "repeats": repeats, "runs": runs}
  for key in ("validation_rmse", "validation_mae", "test_rmse", "test_mae"):
    mean, ci95 = evaluation.mean_and_ci95([m[key] for m in runs])
    summary[f"{key}_mean"], summary[f"{key}_ci95"] = mean, ci95
  return summary


def _log_run(metrics: dict) -> None:
  floor = metrics.get("test_noise_floor_rmse")
  floor_text = f" (noise floor {floor:.4f})" if floor is not None else ""
  logging.info("seed %d: validation RMSE %.4f, test RMSE %.4f%s, MAE %.4f; %d test ratings with "
               "a user or item unseen in training took the fallback (RMSE %.4f on them); %d "
               "epochs%s in %.1f s", metrics["seed"], metrics["validation_rmse"],
               metrics["test_rmse"], floor_text, metrics["test_mae"],
               metrics["test_default_predictions"], metrics["test_fallback_rmse"],
               metrics["epochs_run"],
               f" + {metrics['refit_epochs']} refit" if "refit_epochs" in metrics else "",
               metrics["train_seconds"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.getLogger().setLevel(logging.INFO)
  # TensorFlow's INFO lines (several per saved function) would bury the run's summary.
  for tensorflow_logger in ("absl", "tensorflow"):
    logging.getLogger(tensorflow_logger).setLevel(logging.WARNING)
  export_config = None
  if FLAGS.export_dir:
    export_config = export.ExportConfig(export_dir=FLAGS.export_dir, top_k=FLAGS.export_top_k,
                                        default_rating=FLAGS.default_rating,
                                        popularity_weight=FLAGS.export_popularity_weight)
  try:
    summary = run(cli_flags.data_config(), cli_flags.split_config(), cli_flags.model_config(),
                  cli_flags.train_config(), FLAGS.repeats, export_config, FLAGS.refit)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  if FLAGS.metrics_file:
    with open(FLAGS.metrics_file, "w") as f:
      json.dump(summary, f, indent=2)
  print(f"{summary['model']} on {summary['dataset']} ({summary['repeats']} run(s)): "
        f"test RMSE {summary['test_rmse_mean']:.4f} +/- {summary['test_rmse_ci95']:.4f}, "
        f"MAE {summary['test_mae_mean']:.4f}; validation RMSE "
        f"{summary['validation_rmse_mean']:.4f}")
  for metrics in summary["runs"]:
    if "test_noise_floor_rmse" in metrics:
      floor = metrics["test_noise_floor_rmse"]
      print(f"seed {metrics['seed']}: noise floor (RMSE of a perfect model) {floor:.4f}; test "
            f"RMSE {metrics['test_rmse']:.4f} is {metrics['test_rmse'] / floor:.3f}x the floor")
  return 0


if __name__ == "__main__":
  app.run(main)
