"""Trains AutoRec, reports validation and test RMSE, and exports a SavedModel for TF Serving.

  python -m keras_autorec.train --dataset=ml100k --data_dir=../shared/data --seed=0

With implicit feedback (Melon playlists, or ratings >= 4 as positives), trains a playlist AutoRec
beside popularity, item-kNN and EASE, prints their top-N metrics (mean +- 95% CI over the seeds)
and exports the first seed's AutoRec with a complete_playlist signature:

  python -m keras_autorec.train --dataset=ml1m --data_dir=../shared/data --feedback=implicit
  python -m keras_autorec.train --dataset=melon --data_dir=/path/to/melon
"""

from __future__ import annotations

# First, before anything imports TensorFlow.
from keras_autorec import quiet_tensorflow  # noqa: F401  pylint: disable=unused-import

import dataclasses
import json
import logging
import os
import sys

from absl import app, flags

from keras_autorec import cli_flags, cli_help, evaluation, export, multi_worker, training
from keras_autorec.config import DataConfig, ExportConfig, SplitConfig, data_name
from keras_autorec.data.splits import load_splits
from keras_autorec.implicit import command as implicit_command
from keras_autorec.implicit import splits as implicit_splits
from keras_autorec.serving import publish

FLAGS = flags.FLAGS
SERVING_IMAGE = "tensorflow/serving:2.21.0"

HELP_GROUPS = [cli_flags.define_data_flags(), cli_flags.define_feedback_flag(),
               cli_flags.define_split_flags(), cli_flags.define_repeats_flag(),
               cli_flags.define_model_flags(), cli_flags.define_train_flags(),
               cli_flags.define_refit_flag(), cli_help.HelpGroup("export", ("export_dir",)),
               cli_flags.define_export_flags(), cli_help.HelpGroup("export", ("metrics_file",)),
               cli_flags.define_implicit_flags()]
flags.DEFINE_string("export_dir", None, "TF Serving model base path; each run adds a version "
                    "(the first repeat's model). Default: saved_models/<data>, <data> being the "
                    "dataset, the --ratings_file's name without extension for csv, or "
                    "synthetic_<shape>, so that different data never share a served model. "
                    "Empty to skip the export.")
flags.DEFINE_string("metrics_file", None, "Where to write the metrics as JSON.")


def _previous_data(export_dir: str, data_config: DataConfig) -> str:
  """' (version N was trained on X)' when the newest version holds other data, else ''.

  Data are the same when their names (`config.data_name`) and ratings files are: another copy of
  the same release (a different --data_dir) serves the same ids.
  """
  versions = publish.existing_versions(export_dir)
  if not versions:
    return ""
  previous = export.version_metadata(os.path.join(export_dir, str(versions[-1]))).get("data")
  if not previous:
    return f" (version {versions[-1]} records no data)"
  current = dataclasses.asdict(data_config)
  name = data_name(previous)
  if name == data_name(current):
    if previous.get("ratings_file") == current.get("ratings_file"):
      return ""
    name += f" ({previous.get('ratings_file')})"
  return f" (version {versions[-1]} was trained on {name})"


def run(data_config: DataConfig, split_config: SplitConfig,
        model_config: training.ModelConfig, train_config: training.TrainConfig,
        repeats: int = 1, export_config: ExportConfig | None = None,
        refit: bool = True) -> dict:
  """Trains `repeats` times with consecutive seeds, exports the first model, returns metrics.

  With `refit`, each run early-stops on validation, then retrains on train + validation for the
  chosen number of epochs (see `training.fit_and_evaluate`).
  """
  runs = []
  summary = {"dataset": data_config.dataset, "model": "I-AutoRec" if model_config.item_based
             else "U-AutoRec", "repeats": repeats, "refit": refit}
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
      previous = _previous_data(export_config.export_dir, data_config)
      metrics["export_path"] = export.export_model(
          trained.model, trained.layout, export_config,
          metadata={"data": dataclasses.asdict(data_config),
                    "split": dataclasses.asdict(split_config),
                    "model": dataclasses.asdict(model_config),
                    "train": dataclasses.asdict(train_config), "refit": refit,
                    "metrics": metrics},
          blend=trained.blend, fallback=trained.fallback)
      (logging.warning if previous else logging.info)(
          "Exported version %s of %s%s", os.path.basename(metrics["export_path"]),
          export_config.export_dir, previous)
      summary["example_user_id"] = str(split.train.user_ids[split.train.user_index[0]])
    runs.append(metrics)
  summary["runs"] = runs
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


def summary_text(summary: dict) -> str:
  """The run's result: test and validation errors, with a 95% CI only over several runs."""
  def mean(key: str) -> str:
    ci95 = f" +/- {summary[key + '_ci95']:.4f}" if summary["repeats"] > 1 else ""
    return f"{summary[key + '_mean']:.4f}{ci95}"

  runs = f"{summary['repeats']} runs, mean +/- 95% CI" if summary["repeats"] > 1 else "1 run"
  notes = ["of the early-stopped model"] if summary.get("refit") else []
  if any("validation_rmse_in_sample" in run for run in summary.get("runs", ())):
    notes.append("the blend scored on the half of validation it was not fitted on")
  if summary.get("refit"):
    notes.append("the refit then trained on validation too")
  validation = f" ({'; '.join(notes)})" if notes else ""
  return (f"{summary['model']} on {summary['dataset']} ({runs}): test RMSE {mean('test_rmse')}, "
          f"MAE {mean('test_mae')}; validation RMSE {mean('validation_rmse')}{validation}")


def next_steps(summary: dict, metrics_file: str | None) -> list[str]:
  """What the run wrote, and how to serve and query the export."""
  export_path = summary["runs"][0].get("export_path")
  query = f"recommend --user_id={summary.get('example_user_id')} --k=10"
  return _written(metrics_file, export_path, query)


def _written(metrics_file: str | None, export_path: str | None, query: str) -> list[str]:
  """Lines naming the metrics file and the export, with how to serve it and `query` it."""
  lines = [f"metrics: {metrics_file}"] if metrics_file else []
  if export_path:
    base = os.path.dirname(os.path.abspath(export_path))
    name = os.path.basename(base)
    lines += [f"model: {export_path} (TF Serving serves the newest version of {base})",
              f"serve it: docker run -p 8500:8500 -p 8501:8501 -v \"{base}:/models/{name}\" "
              f"-e MODEL_NAME={name} {SERVING_IMAGE}",
              "query it: python -m keras_autorec.serving.client --server=localhost:8500 "
              f"--model_name={name} {query}"]
  return lines


def implicit_next_steps(result: dict, metrics_file: str | None) -> list[str]:
  """What an implicit run wrote, and how to serve the export and complete a playlist with it."""
  export_path = result["runs"][0].get("autorec", {}).get("export")
  example = result.get("example_playlist", {})
  query = f"complete_playlist --song_ids={','.join(example.get('song_ids', []))}"
  if example.get("tags"):
    query += f" --tags={','.join(example['tags'])}"
  return _written(metrics_file, export_path, query + " --k=10")


def configure_logging() -> None:
  """Our INFO lines on, TensorFlow's off: several per saved function would bury the summary."""
  logging.getLogger().setLevel(logging.INFO)
  # Filters rather than levels: TensorFlow's SavedModel export sets absl's verbosity and then
  # restores it, which resets the levels to INFO.
  for tensorflow_logger in ("absl", "tensorflow"):
    logging.getLogger(tensorflow_logger).addFilter(
        lambda record: record.levelno >= logging.WARNING)


def export_config_from_flags(data_config: DataConfig) -> ExportConfig | None:
  """The export flags' ExportConfig (default base path per data set); None for an empty one."""
  if FLAGS.export_dir == "":
    return None
  return cli_flags.export_config(data_config, FLAGS.export_dir)


def print_summary(summary: dict, metrics_file: str | None) -> None:
  """Prints the run's result, each run's noise floor, and what was written and how to serve it."""
  print(summary_text(summary))
  for metrics in summary["runs"]:
    if "test_noise_floor_rmse" in metrics:
      floor = metrics["test_noise_floor_rmse"]
      print(f"seed {metrics['seed']}: noise floor (RMSE of a perfect model) {floor:.4f}; test "
            f"RMSE {metrics['test_rmse']:.4f} is {metrics['test_rmse'] / floor:.3f}x the floor")
  for line in next_steps(summary, metrics_file):
    print(line)


def main_implicit() -> int:
  """The implicit experiment of the flags (`implicit.command.run`): prints its table."""
  try:
    data_config = cli_flags.implicit_data_config()
    export_dir = (None if FLAGS.export_dir == "" else
                  FLAGS.export_dir or implicit_splits.default_export_dir(data_config))
    result = implicit_command.run(
        data_config, range(FLAGS.seed, FLAGS.seed + FLAGS.repeats),
        cli_flags.implicit_experiment_config(), FLAGS.methods, export_dir)
    if FLAGS.metrics_file:
      with open(FLAGS.metrics_file, "w") as f:
        json.dump(result, f, indent=2, default=str)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(result["table"])
  for line in implicit_next_steps(result, FLAGS.metrics_file):
    print(line)
  return 0


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  configure_logging()
  if cli_flags.feedback(HELP_GROUPS) == "implicit":
    return main_implicit()
  data_config = cli_flags.data_config()
  try:
    train_config = cli_flags.train_config()
    export_config = export_config_from_flags(data_config)
    with multi_worker.worker_outputs(train_config, export_config,
                                     FLAGS.metrics_file) as outputs:
      summary = run(data_config, cli_flags.split_config(), cli_flags.model_config(),
                    outputs.train_config, FLAGS.repeats, outputs.export_config, FLAGS.refit)
      if outputs.metrics_file:
        with open(outputs.metrics_file, "w") as f:
          json.dump(summary, f, indent=2)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  if not outputs.is_chief:
    print(f"{outputs.role.name}: trained with the chief, which writes the outputs")
    return 0
  print_summary(summary, FLAGS.metrics_file)
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli_help.flags_parser(HELP_GROUPS, __doc__))
