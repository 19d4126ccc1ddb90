"""TFX Trainer module: `run_fn(fn_args)` trains AutoRec on ExampleGen's tf.Examples.

Use it from a real TFX pipeline with `Trainer(module_file=".../pipelines/trainer_module.py",
examples=..., custom_config={...})`. It reads these fn_args fields:

  train_files      file patterns of TFRecords of tf.Example (gzip when they end in .gz, as TFX
                   writes them): the training ratings.
  eval_files       the same for the eval split, used as validation for early stopping.
  serving_model_dir  where the SavedModel (the `keras_autorec.export` signatures) is written.
  model_run_dir    optional: checkpoints, TensorBoard logs, model.keras, history.json, curves.png
                   and metrics.json.
  custom_config    optional dict: "model" (ModelConfig fields), "train" (TrainConfig fields),
                   "export" (top_k, default_rating, fold_in_l2), "rating_scale" ([low, high],
                   default [1, 5]) and "features" (names of the "user", "item" and "rating"
                   features; default user_id, item_id, rating).

train_steps, eval_steps, hyperparameters and transform_output are not read: training runs whole
epochs (`custom_config["train"]["epochs"]`) and the row layout is built from the training split.
Paths must be on a local filesystem (the export is published with a rename).
"""

from __future__ import annotations

import glob
import logging
import os

import numpy as np
import tensorflow as tf

from keras_autorec import export, training
from keras_autorec.data import parsing
from keras_autorec.data.ratings import DEFAULT_RATING_SCALE
from keras_autorec.data.splits import RatingsSplit
from keras_autorec.serving import publish
from pipelines import components

DEFAULT_FEATURES = {"user": "user_id", "item": "item_id", "rating": "rating"}


def _first_value(feature: tf.train.Feature):
  values = (feature.bytes_list.value or feature.int64_list.value or feature.float_list.value)
  if not values:
    raise ValueError("a tf.Example has an empty feature")
  value = values[0]
  return value.decode() if isinstance(value, bytes) else value


def read_examples(patterns: list[str], features: dict[str, str]) -> parsing.RawColumns:
  """The user, item and rating features of every tf.Example matched by `patterns`."""
  files = sorted(path for pattern in patterns for path in glob.glob(pattern))
  if not files:
    raise ValueError(f"no files match {patterns}")
  compression = "GZIP" if all(path.endswith(".gz") for path in files) else ""
  columns = {"user": [], "item": [], "rating": []}
  for record in tf.data.TFRecordDataset(files, compression_type=compression).as_numpy_iterator():
    feature_map = tf.train.Example.FromString(record).features.feature
    for column, name in features.items():
      if name not in feature_map:
        raise ValueError(f"{files[0]}: tf.Example without feature {name!r}; set "
                         "custom_config['features']")
      columns[column].append(_first_value(feature_map[name]))
  return parsing.RawColumns(
      user=np.array(columns["user"]).astype(str), item=np.array(columns["item"]).astype(str),
      rating=np.array(columns["rating"], dtype=np.float32), timestamp=None,
      line_numbers=np.arange(1, len(columns["rating"]) + 1), source=",".join(patterns))


def _publish_saved_model(trained: training.TrainedModel, serving_model_dir: str,
                         export_options: dict) -> None:
  """Exports into a sibling temporary base path, then moves the SavedModel into place."""
  # TFX may create serving_model_dir empty; publish_directory takes an empty one over.
  with publish.partial_directory(os.path.dirname(os.path.abspath(serving_model_dir))) as base:
    version_dir = export.export_model(trained.model, trained.layout,
                                      export.ExportConfig(export_dir=base, **export_options))
    publish.publish_directory(version_dir, serving_model_dir)


def run_fn(fn_args) -> None:
  """Trains AutoRec on fn_args.train_files, validates on eval_files, exports a SavedModel."""
  custom_config = getattr(fn_args, "custom_config", None) or {}
  features = {**DEFAULT_FEATURES, **custom_config.get("features", {})}
  rating_scale = tuple(custom_config.get("rating_scale", DEFAULT_RATING_SCALE))
  train, evaluation = parsing.ratings_sharing_vocabulary(
      [read_examples(fn_args.train_files, features), read_examples(fn_args.eval_files, features)],
      rating_scale)
  model_config = training.ModelConfig(**{
      key: tuple(value) if key == "hidden_units" else value
      for key, value in custom_config.get("model", {}).items()})
  model_run_dir = getattr(fn_args, "model_run_dir", None)
  train_config = training.TrainConfig(**{"verbose": 2, "model_dir": model_run_dir,
                                         **custom_config.get("train", {})})
  # The eval split serves as validation (early stopping); TFX's Evaluator measures test metrics.
  split = RatingsSplit(train=train, validation=evaluation, test=evaluation,
                       description=f"TFX examples {fn_args.train_files} / {fn_args.eval_files}")
  trained = training.fit(split, model_config, train_config)
  logging.info("run_fn: %d epochs, best %d, in %.1f s", trained.epochs_run, trained.best_epoch,
               trained.seconds)
  if model_run_dir:
    os.makedirs(model_run_dir, exist_ok=True)
    components.write_training_outputs(trained, evaluation, model_run_dir,
                                      train_config.default_rating)
  _publish_saved_model(trained, fn_args.serving_model_dir, custom_config.get("export", {}))
