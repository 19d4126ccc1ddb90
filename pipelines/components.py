"""The pipeline's components: each reads input artifacts, writes its outputs into a directory.

ExampleGen -> StatisticsGen -> ExampleValidator (schema and anomalies) -> Transform -> Trainer
-> Evaluator (with the pushed baseline) -> Pusher, as in TFX. Each component is a function of
typed inputs, a dataclass config and an output directory; `pipelines.pipeline` runs and caches
them. The Evaluator and Pusher are in `pipelines.blessing`, and importable from here too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os

import matplotlib

matplotlib.use("Agg")  # Components run headless; no display is ever needed.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_autorec import evaluation, training  # noqa: E402
from keras_autorec.data import sources  # noqa: E402
from keras_autorec.data.layout import build_layout  # noqa: E402
from keras_autorec.data.ratings import Ratings, outside_rating_scale  # noqa: E402
from keras_autorec.data.splits import RatingsSplit, SplitConfig, load_splits  # noqa: E402
from pipelines import artifacts  # noqa: E402
from pipelines.artifacts import Artifact  # noqa: E402
from pipelines.blessing import (  # noqa: E402,F401 (the Evaluator and Pusher, public here too)
    Baseline, EvaluatorConfig, PusherConfig, blessing_decision, evaluator, pushed_metadata, pusher,
    resolve_baseline)

_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
_MAX_HISTOGRAM_VALUES = 20  # More distinct ratings than this are binned, not counted per value.


class AnomaliesError(ValueError):
  """The data failed validation; the message lists every anomaly found."""


# ExampleGen ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExampleGenConfig:
  """Which ratings to load (`DataConfig`) and how to split them (`SplitConfig`)."""

  data: sources.DataConfig = sources.DataConfig()
  split: SplitConfig = SplitConfig()


def example_gen_input_paths(config: ExampleGenConfig) -> list[str]:
  """The files ExampleGen reads, whose size and mtime decide whether its cache is still valid."""
  data = config.data
  paths = [data.data_dir, data.ratings_file if data.dataset == "csv" else None]
  if config.split.protocol == "files":
    paths += [config.split.train_file, config.split.test_file]
  return [path for path in paths if path]


def example_gen(config: ExampleGenConfig, output_dir: str) -> dict[str, Artifact]:
  """Loads and splits the ratings; writes the splits as .npz with their content fingerprint."""
  split = next(load_splits(config.data, config.split))
  uri = artifacts.subdirectory(output_dir, "examples")
  fingerprint = artifacts.write_split(split, uri)
  logging.info("ExampleGen: %s; %d train / %d validation / %d test ratings", split.description,
               split.train.num_ratings, split.validation.num_ratings, split.test.num_ratings)
  return {"examples": Artifact("Examples", uri, fingerprint, {
      "description": split.description,
      **{f"{name}_ratings": getattr(split, name).num_ratings for name in artifacts.SPLIT_NAMES},
      "split_fingerprints": artifacts.split_fingerprints(uri)})}


# StatisticsGen ------------------------------------------------------------------------------


def _count_quantiles(counts: np.ndarray) -> dict[str, float]:
  if counts.size == 0:
    return {}
  return {f"q{int(q * 100)}": float(np.quantile(counts, q)) for q in _QUANTILES}


def _rating_histogram(rating: np.ndarray, rating_scale: tuple[float, float]) -> dict[str, int]:
  values, counts = np.unique(rating, return_counts=True)
  if values.size <= _MAX_HISTOGRAM_VALUES:
    return {f"{value:g}": int(count) for value, count in zip(values, counts)}
  counts, edges = np.histogram(rating, bins=10, range=rating_scale)
  return {f"[{low:g}, {high:g})": int(count) for low, high, count in zip(edges, edges[1:], counts)}


def split_statistics(split: RatingsSplit) -> dict:
  """Counts, density, rating histograms, count quantiles and unseen ids of a split."""
  train = split.train
  user_counts = np.bincount(train.user_index, minlength=train.num_users)
  item_counts = np.bincount(train.item_index, minlength=train.num_items)
  seen_users, seen_items = user_counts > 0, item_counts > 0
  stats = {"vocabulary": {"users": train.num_users, "items": train.num_items},
           "rating_scale": list(train.rating_scale)}
  for name in artifacts.SPLIT_NAMES:
    ratings: Ratings = getattr(split, name)
    users, items = np.unique(ratings.user_index), np.unique(ratings.item_index)
    entry = {"ratings": ratings.num_ratings, "users": int(users.size), "items": int(items.size),
             "density": (ratings.num_ratings / (users.size * items.size)
                         if ratings.num_ratings else 0.0),
             "rating_mean": float(ratings.rating.mean()) if ratings.num_ratings else math.nan,
             "rating_histogram": _rating_histogram(ratings.rating, ratings.rating_scale)}
    if name != "train":
      unseen_user = ~seen_users[ratings.user_index]
      unseen_item = ~seen_items[ratings.item_index]
      entry.update(
          unseen_users=int(np.unique(ratings.user_index[unseen_user]).size),
          unseen_items=int(np.unique(ratings.item_index[unseen_item]).size),
          ratings_with_unseen_user_or_item=int(np.sum(unseen_user | unseen_item)))
    stats[name] = entry
  stats["train"]["ratings_per_user"] = _count_quantiles(user_counts[seen_users])
  stats["train"]["ratings_per_item"] = _count_quantiles(item_counts[seen_items])
  return stats


def _plot_histograms(stats: dict, path: str) -> None:
  figure, axis = plt.subplots(figsize=(6, 3.5))
  labels = list(stats["train"]["rating_histogram"])
  width = 0.8 / len(artifacts.SPLIT_NAMES)
  for offset, name in enumerate(artifacts.SPLIT_NAMES):
    histogram = stats[name]["rating_histogram"]
    axis.bar(np.arange(len(labels)) + offset * width, [histogram.get(label, 0) for label in labels],
             width=width, label=f"{name} ({stats[name]['ratings']})")
  axis.set_xticks(np.arange(len(labels)) + width, labels, rotation=30 if len(labels) > 10 else 0)
  axis.set_xlabel("rating")
  axis.set_ylabel("ratings")
  axis.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)


def statistics_gen(examples: Artifact, output_dir: str) -> dict[str, Artifact]:
  """Writes the split's statistics as statistics.json and a rating histogram PNG."""
  stats = split_statistics(artifacts.read_split(examples.uri))
  uri = artifacts.subdirectory(output_dir, "statistics")
  artifacts.write_json(os.path.join(uri, "statistics.json"), stats)
  _plot_histograms(stats, os.path.join(uri, "rating_histogram.png"))
  train = stats["train"]
  logging.info("StatisticsGen: %d users, %d items, %d train ratings, density %.4f",
               train["users"], train["items"], train["ratings"], train["density"])
  return {"statistics": Artifact("ExampleStatistics", uri, artifacts.fingerprint_json(stats))}


# SchemaGen + ExampleValidator ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ValidatorConfig:
  """Anomaly thresholds.

  Attributes:
    item_based: whether training rows are items (I-AutoRec) or users; empty rows are counted
      for that side.
    max_empty_row_fraction: largest share of the rows' vocabulary (items if item_based) allowed to
      have no training rating; such rows are only ever predicted as the default rating.
    max_shared_pairs: how many (user, item) pairs may appear in both train and a held-out split.
  """

  item_based: bool = True
  max_empty_row_fraction: float = 0.1
  max_shared_pairs: int = 0


def find_anomalies(split: RatingsSplit, config: ValidatorConfig) -> list[str]:
  """Every violation of the schema (rating scale, unique pairs, empty training rows)."""
  anomalies = []
  low, high = split.train.rating_scale
  train_pairs = split.train.pair_keys()
  for name in artifacts.SPLIT_NAMES:
    ratings: Ratings = getattr(split, name)
    outside = outside_rating_scale(ratings.rating, (low, high))
    if outside.any():
      anomalies.append(f"{name}: {int(outside.sum())} ratings outside the scale [{low:g}, "
                       f"{high:g}], e.g. {ratings.rating[outside][0]!r}")
    pairs = ratings.pair_keys()
    duplicates = pairs.size - np.unique(pairs).size
    if duplicates:
      anomalies.append(f"{name}: {duplicates} repeated (user, item) pairs")
    if name != "train":
      shared = np.intersect1d(train_pairs, pairs).size
      if shared > config.max_shared_pairs:
        anomalies.append(f"{name}: {shared} (user, item) pairs are also in train (allowed: "
                         f"{config.max_shared_pairs}); held-out ratings would leak into training")
  row_index = split.train.item_index if config.item_based else split.train.user_index
  num_rows = split.train.num_items if config.item_based else split.train.num_users
  empty = num_rows - np.unique(row_index).size
  if num_rows and empty / num_rows > config.max_empty_row_fraction:
    side = "items" if config.item_based else "users"
    anomalies.append(f"train: {empty} of {num_rows} {side} ({empty / num_rows:.1%}) have no "
                     f"training rating (allowed: {config.max_empty_row_fraction:.1%})")
  return anomalies


def example_validator(examples: Artifact, statistics: Artifact, config: ValidatorConfig,
                      output_dir: str) -> dict[str, Artifact]:
  """Writes the schema and the anomalies found; raises AnomaliesError if there are any."""
  split = artifacts.read_split(examples.uri)
  stats = artifacts.read_json(os.path.join(statistics.uri, "statistics.json"))
  schema = {"rating_scale": list(split.train.rating_scale), "item_based": config.item_based,
            "num_users": split.train.num_users, "num_items": split.train.num_items,
            "features": {"user_id": "string", "item_id": "string", "rating": "float32",
                         "timestamp": "int64"},
            "thresholds": dataclasses.asdict(config)}
  anomalies = find_anomalies(split, config)
  uri = artifacts.subdirectory(output_dir, "schema")
  artifacts.write_json(os.path.join(uri, "schema.json"), schema)
  artifacts.write_json(os.path.join(uri, "anomalies.json"), anomalies)
  if anomalies:
    raise AnomaliesError("the data has anomalies, so the run stops:\n  - " +
                         "\n  - ".join(anomalies))
  logging.info("ExampleValidator: no anomalies (%d training ratings, %d unseen test users)",
               stats["train"]["ratings"], stats["test"]["unseen_users"])
  return {"schema": Artifact("Schema", uri, artifacts.fingerprint_json(schema))}


# Transform ----------------------------------------------------------------------------------


def transform(examples: Artifact, schema: Artifact, output_dir: str) -> dict[str, Artifact]:
  """Builds the id vocabularies and the training row layout the Trainer and Pusher consume."""
  item_based = artifacts.read_json(os.path.join(schema.uri, "schema.json"))["item_based"]
  layout = build_layout(artifacts.read_split(examples.uri).train, item_based=item_based)
  uri = artifacts.subdirectory(output_dir, "transform_graph")
  fingerprint = artifacts.write_layout(layout, uri)
  logging.info("Transform: %d %s rows over %d columns, %d training ratings", layout.num_rows,
               "item" if item_based else "user", layout.num_columns, layout.train.nnz)
  return {"transform_graph": Artifact("TransformGraph", uri, fingerprint, {
      "item_based": item_based, "num_rows": layout.num_rows, "num_columns": layout.num_columns})}


# Trainer ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  """The model architecture and how to fit it (`training.ModelConfig`, `training.TrainConfig`)."""

  model: training.ModelConfig = training.ModelConfig()
  train: training.TrainConfig = training.TrainConfig(verbose=0)


def _plot_curves(history: dict[str, list[float]], path: str) -> None:
  figure, axis = plt.subplots(figsize=(6, 3.5))
  for key in ("rmse", "val_rmse"):
    if key in history:
      axis.plot(np.arange(1, len(history[key]) + 1), history[key], label=key)
  axis.set_xlabel("epoch")
  axis.set_ylabel("RMSE")
  axis.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)


def write_training_outputs(trained: training.TrainedModel, validation: Ratings, uri: str,
                           default_rating: float) -> dict:
  """Writes model.keras, history.json, curves.png and metrics.json; returns the metrics."""
  trained.model.save(os.path.join(uri, artifacts.MODEL_FILE))
  artifacts.write_json(os.path.join(uri, "history.json"), trained.history)
  _plot_curves(trained.history, os.path.join(uri, "curves.png"))
  errors = evaluation.evaluate_ratings(trained.model, trained.layout, validation, default_rating)
  metrics = {**errors.as_dict("validation"), "epochs_run": trained.epochs_run,
             "best_epoch": trained.best_epoch, "train_seconds": trained.seconds}
  artifacts.write_json(os.path.join(uri, "metrics.json"), metrics)
  return metrics


def trainer(examples: Artifact, transform_graph: Artifact, config: TrainerConfig,
            output_dir: str) -> dict[str, Artifact]:
  """Fits AutoRec with `training.fit` on the Transform's layout; writes model, curves, metrics."""
  if config.model.item_based != transform_graph.properties["item_based"]:
    raise ValueError("ModelConfig.item_based must match the Transform's layout orientation")
  split = artifacts.read_split(examples.uri)
  # Trained on the Transform's layout, which the Evaluator and Pusher map ids with.
  trained = training.fit(split, config.model, config.train,
                         layout=artifacts.read_layout(transform_graph.uri))
  uri = artifacts.subdirectory(output_dir, "model")
  metrics = write_training_outputs(trained, split.validation, uri, config.train.default_rating)
  logging.info("Trainer: validation RMSE %.4f after %d epochs (best %d) in %.1f s",
               metrics["validation_rmse"], metrics["epochs_run"], metrics["best_epoch"],
               metrics["train_seconds"])
  return {"model": Artifact("Model", uri, artifacts.model_fingerprint(trained.model),
                            metrics)}
