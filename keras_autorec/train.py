"""Trains AutoRec, reports validation and test RMSE, and exports a SavedModel for TF Serving.

  python -m keras_autorec.train --dataset=ml100k --data_dir=../shared/data --seed=0
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator

from absl import app, flags

from keras_autorec import evaluation, export, training
from keras_autorec.data import sources
from keras_autorec.data.splits import (ML100K_FOLDS, RatingsSplit, SplitConfig,
                                       hold_out_validation, random_split)

FLAGS = flags.FLAGS

flags.DEFINE_enum("dataset", "ml100k", sources.DATASETS, "Which ratings to train on.")
flags.DEFINE_string("data_dir", None, "Folder holding the GroupLens or Netflix release (or its "
                    "zip); without it MovieLens comes from tensorflow-datasets.")
flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data folder.")
flags.DEFINE_string("ratings_file", None, "--dataset=csv: the ratings file.")
flags.DEFINE_string("delimiter", ",", "--dataset=csv: field delimiter (\\t for tab).")
flags.DEFINE_boolean("header", True, "--dataset=csv: whether the first line is a header.")
flags.DEFINE_string("user_column", "0", "--dataset=csv: user id column (name or 0-based position).")
flags.DEFINE_string("item_column", "1", "--dataset=csv: item id column.")
flags.DEFINE_string("rating_column", "2", "--dataset=csv: rating column.")
flags.DEFINE_string("timestamp_column", None, "--dataset=csv: timestamp column, if any.")
flags.DEFINE_list("rating_scale", None, "lowest,highest rating; default: the dataset's own.")
flags.DEFINE_string("synthetic_shape", "ml100k", "--dataset=synthetic: ml100k, ml1m, ml10m or "
                    "netflix.")
flags.DEFINE_float("synthetic_noise_stddev", None, "--dataset=synthetic: noise sigma.")

flags.DEFINE_string("split", "random", "random (paper: 90/10, 10% of train for validation), an "
                    f"ML-100K fold ({', '.join(ML100K_FOLDS)}), or files (--train_file, "
                    "--test_file).")
flags.DEFINE_string("train_file", None, "--split=files: training ratings file.")
flags.DEFINE_string("test_file", None, "--split=files: test ratings file.")
flags.DEFINE_float("test_fraction", 0.1, "--split=random: share of ratings for test.")
flags.DEFINE_float("validation_fraction", 0.1, "Share of training ratings for validation.")
flags.DEFINE_integer("seed", 0, "Seeds the split, the weights and the shuffling.")
flags.DEFINE_integer("repeats", 1, "Runs with seeds seed..seed+repeats-1 and reports mean and "
                     "95% confidence interval; the first run is exported.")

flags.DEFINE_enum("model", "item", ["item", "user"], "I-AutoRec (item rows) or U-AutoRec.")
flags.DEFINE_list("hidden_units", ["500"], "Hidden layer sizes, e.g. 500 or 500,250,500.")
flags.DEFINE_string("encoder_activation", "sigmoid", "g: hidden activation.")
flags.DEFINE_string("decoder_activation", "identity", "f: output activation.")
flags.DEFINE_float("l2_weight", training.ModelConfig.l2_weight,
                   "L2 on kernels; the loss is the mean squared error over observed ratings "
                   "(see keras_autorec/losses.py for the paper's lambda).")
flags.DEFINE_float("input_dropout", 0.0, "Dropout rate on inputs (denoising).")

flags.DEFINE_string("optimizer", training.TrainConfig.optimizer, "rprop, adam, rmsprop or sgd.")
flags.DEFINE_float("learning_rate", training.TrainConfig.learning_rate,
                   "Step size (Rprop: initial step).")
flags.DEFINE_integer("epochs", training.TrainConfig.epochs, "Most epochs.")
flags.DEFINE_integer("batch_size", training.TrainConfig.batch_size, "Rows per step; 0 = full "
                     "batch.")
flags.DEFINE_integer("patience", training.TrainConfig.patience,
                     "Epochs without better validation RMSE before stopping.")
flags.DEFINE_enum("mixed_precision", "off", ["off", "float16", "bfloat16"], "Mixed precision.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy.")
flags.DEFINE_float("default_rating", 3.0, "Prediction for users or items without training "
                   "ratings.")
flags.DEFINE_string("model_dir", None, "Checkpoints and TensorBoard logs; rerunning with the same "
                    "model_dir resumes.")
flags.DEFINE_string("export_dir", "saved_models/autorec", "TF Serving model base path; each run "
                    "adds a version. Empty to skip the export.")
flags.DEFINE_integer("export_top_k", 100, "K of the exported recommend signatures.")
flags.DEFINE_string("metrics_file", None, "Where to write the metrics as JSON.")
flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar, 2 one line per epoch.")


def data_config_from_flags() -> sources.DataConfig:
  """DataConfig filled from the command line."""
  scale = None
  if FLAGS.rating_scale:
    if len(FLAGS.rating_scale) != 2:
      raise app.UsageError("--rating_scale takes two numbers: lowest,highest")
    scale = (float(FLAGS.rating_scale[0]), float(FLAGS.rating_scale[1]))
  optional = {}
  if FLAGS.synthetic_noise_stddev is not None:
    optional["synthetic_noise_stddev"] = FLAGS.synthetic_noise_stddev
  return sources.DataConfig(
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, tfds_data_dir=FLAGS.tfds_data_dir,
      ratings_file=FLAGS.ratings_file,
      delimiter="\t" if FLAGS.delimiter == "\\t" else FLAGS.delimiter, header=FLAGS.header,
      user_column=FLAGS.user_column, item_column=FLAGS.item_column,
      rating_column=FLAGS.rating_column, timestamp_column=FLAGS.timestamp_column,
      rating_scale=scale, synthetic_shape=FLAGS.synthetic_shape, seed=FLAGS.seed, **optional)


def model_config_from_flags() -> training.ModelConfig:
  """ModelConfig filled from the command line."""
  return training.ModelConfig(
      item_based=FLAGS.model == "item", hidden_units=tuple(int(u) for u in FLAGS.hidden_units),
      encoder_activation=FLAGS.encoder_activation, decoder_activation=FLAGS.decoder_activation,
      l2_weight=FLAGS.l2_weight, input_dropout=FLAGS.input_dropout)


def train_config_from_flags() -> training.TrainConfig:
  """TrainConfig filled from the command line."""
  return training.TrainConfig(
      optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, epochs=FLAGS.epochs,
      batch_size=FLAGS.batch_size, patience=FLAGS.patience,
      mixed_precision=FLAGS.mixed_precision, strategy=FLAGS.strategy, model_dir=FLAGS.model_dir,
      seed=FLAGS.seed, default_rating=FLAGS.default_rating, verbose=FLAGS.verbose)


def make_splits(data_config: sources.DataConfig, split_config: SplitConfig, repeats: int = 1,
                train_file: str | None = None, test_file: str | None = None
                ) -> Iterator[RatingsSplit]:
  """Loads the ratings once and yields one split per seed, as `split_config` says."""
  seeds = range(split_config.seed, split_config.seed + repeats)
  protocol = split_config.protocol
  if protocol == "random":
    ratings = sources.load_ratings(data_config)
    for seed in seeds:
      yield random_split(ratings, split_config.test_fraction, split_config.validation_fraction,
                         seed)
    return
  if protocol in ML100K_FOLDS:
    if data_config.dataset != "ml100k" or not data_config.data_dir:
      raise ValueError(f"--split={protocol} needs --dataset=ml100k and --data_dir holding the "
                       "GroupLens ml-100k release")
    train, test = sources.load_ml100k_fold(data_config.data_dir, protocol)
    description = f"ML-100K fold {protocol}"
  elif protocol == "files":
    if not (train_file and test_file):
      raise ValueError("--split=files needs --train_file and --test_file")
    train, test = sources.load_file_pair(data_config, train_file, test_file)
    description = f"given files {train_file} / {test_file}"
  else:
    raise ValueError(f"--split must be random, files or one of {ML100K_FOLDS}, got {protocol!r}")
  for seed in seeds:
    yield hold_out_validation(train, test, split_config.validation_fraction, seed, description)


def run(data_config: sources.DataConfig, split_config: SplitConfig,
        model_config: training.ModelConfig, train_config: training.TrainConfig,
        repeats: int = 1, export_config: export.ExportConfig | None = None,
        train_file: str | None = None, test_file: str | None = None) -> dict:
  """Trains `repeats` times with consecutive seeds, exports the first model, returns metrics."""
  runs = []
  splits = make_splits(data_config, split_config, repeats, train_file, test_file)
  for repeat, split in enumerate(splits):
    seed = split_config.seed + repeat
    logging.info("Split: %s; %d train / %d validation / %d test ratings", split.description,
                 split.train.num_ratings, split.validation.num_ratings, split.test.num_ratings)
    model_dir = train_config.model_dir
    if model_dir and repeats > 1:
      model_dir = os.path.join(model_dir, f"seed_{seed}")
    trained = training.fit(split, model_config,
                           dataclasses.replace(train_config, seed=seed, model_dir=model_dir))
    metrics = {"seed": seed, "split": split.description,
               **training.evaluate(trained, split, train_config.default_rating)}
    _log_run(metrics)
    if repeat == 0 and export_config is not None:
      metrics["export_path"] = export.export_model(
          trained.model, trained.layout, export_config,
          metadata={"data": dataclasses.asdict(data_config),
                    "split": dataclasses.asdict(split_config),
                    "model": dataclasses.asdict(model_config),
                    "train": dataclasses.asdict(train_config), "metrics": metrics})
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
               "an unseen user or item got the default rating; %d epochs in %.1f s",
               metrics["seed"], metrics["validation_rmse"], metrics["test_rmse"], floor_text,
               metrics["test_mae"], metrics["test_default_predictions"], metrics["epochs_run"],
               metrics["train_seconds"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.getLogger().setLevel(logging.INFO)
  export_config = None
  if FLAGS.export_dir:
    export_config = export.ExportConfig(export_dir=FLAGS.export_dir, top_k=FLAGS.export_top_k,
                                        default_rating=FLAGS.default_rating)
  try:
    summary = run(data_config_from_flags(),
                  SplitConfig(protocol=FLAGS.split, test_fraction=FLAGS.test_fraction,
                              validation_fraction=FLAGS.validation_fraction, seed=FLAGS.seed),
                  model_config_from_flags(), train_config_from_flags(), FLAGS.repeats,
                  export_config, FLAGS.train_file, FLAGS.test_file)
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
      print(f"seed {metrics['seed']}: noise floor (RMSE of a perfect model) "
            f"{metrics['test_noise_floor_rmse']:.4f}")
  return 0


if __name__ == "__main__":
  app.run(main)
