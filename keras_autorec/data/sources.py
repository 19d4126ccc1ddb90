"""One entry point from a data configuration to Ratings, whatever the source."""

from __future__ import annotations

import dataclasses
import logging

from keras_autorec.data import grouplens, netflix, parsing, synthetic, tfds_source
from keras_autorec.data.ratings import Ratings

DATASETS = ("ml100k", "ml1m", "ml10m", "ml20m", "ml25m", "ml-latest-small", "netflix", "csv",
            "synthetic")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which ratings to load and how; columns are header names or 0-based positions as strings."""

  dataset: str = "ml100k"
  data_dir: str | None = None  # GroupLens/Netflix files; None downloads MovieLens through TFDS.
  tfds_data_dir: str | None = None
  ratings_file: str | None = None  # For dataset "csv".
  delimiter: str = ","
  header: bool = True
  user_column: str = "0"
  item_column: str = "1"
  rating_column: str = "2"
  timestamp_column: str | None = None
  rating_scale: tuple[float, float] | None = None  # None: the data set's own scale.
  on_bad_lines: str = "error"  # Or "skip": drop lines that are not a rating, and log them.
  synthetic_shape: str = synthetic.DEFAULT_SHAPE
  synthetic_noise_stddev: float = synthetic.DEFAULT_NOISE_STDDEV
  seed: int = 0


def load_ratings(config: DataConfig) -> Ratings:
  """Loads the ratings `config` describes: files under data_dir, else TFDS, csv or synthetic."""
  dataset = config.dataset
  if dataset not in DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
  if dataset == "synthetic":
    ratings = synthetic.generate(config.synthetic_shape, config.synthetic_noise_stddev,
                                 config.seed)
  elif dataset == "csv":
    ratings = parsing.ratings_from_columns(_read_csv(config, _ratings_file(config)),
                                           _csv_rating_scale(config))
  elif config.data_dir is None:
    ratings = tfds_source.load_tfds(dataset, config.tfds_data_dir, config.rating_scale)
  elif dataset == "netflix":
    ratings = netflix.load_netflix(config.data_dir, config.rating_scale, config.on_bad_lines)
  else:
    ratings = grouplens.load_movielens(dataset, config.data_dir, config.rating_scale,
                                       config.on_bad_lines)
  logging.info("Ratings from %s: %d ratings, %d users, %d items, %d duplicates removed%s",
               ratings.source, ratings.num_ratings, ratings.num_users, ratings.num_items,
               ratings.duplicates_removed,
               "" if ratings.expected_rating is None
               else f", noise floor RMSE {ratings.noise_floor_rmse():.4f}")
  return ratings


def load_file_pair(config: DataConfig, train_file: str,
                   test_file: str) -> tuple[Ratings, Ratings]:
  """Reads user-provided train and test files (parsed as `config` says) sharing one vocabulary."""
  train, test = parsing.ratings_sharing_vocabulary(
      [_read_csv(config, train_file), _read_csv(config, test_file)], _csv_rating_scale(config))
  overlap = parsing.shared_pairs(train, test)
  if overlap:
    logging.warning("%d (user, item) pairs are in both %s and %s", overlap, train_file, test_file)
  logging.info("Loaded %d train ratings from %s and %d test ratings from %s: %d users, %d items",
               train.num_ratings, train_file, test.num_ratings, test_file, train.num_users,
               train.num_items)
  return train, test


def load_ml100k_fold(data_dir: str, fold: str,
                     on_bad_lines: str = "error") -> tuple[Ratings, Ratings]:
  """Reads a canonical ML-100K split (u1..u5, ua, ub) as (train, test) sharing one vocabulary."""
  return grouplens.load_ml100k_fold(data_dir, fold, on_bad_lines=on_bad_lines)


def _ratings_file(config: DataConfig) -> str:
  if not config.ratings_file:
    raise ValueError("dataset 'csv' needs ratings_file (--ratings_file): a delimited file with "
                     "user, item and rating columns")
  return config.ratings_file


def _csv_rating_scale(config: DataConfig) -> tuple[float, float]:
  return config.rating_scale or synthetic.RATING_SCALE


def _read_csv(config: DataConfig, path: str) -> parsing.RawColumns:
  return parsing.read_columns(path, config.delimiter, header=config.header,
                              user_column=config.user_column, item_column=config.item_column,
                              rating_column=config.rating_column,
                              timestamp_column=config.timestamp_column,
                              rating_scale=_csv_rating_scale(config),
                              on_bad_lines=config.on_bad_lines)
