"""Train/validation/test splits: the paper's seeded random protocol and given folds or files."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from keras_autorec.data import sources
from keras_autorec.data.grouplens import ML100K_FOLDS
from keras_autorec.data.ratings import Ratings, RatingsError


@dataclasses.dataclass(frozen=True)
class SplitConfig:
  """How to split ratings.

  Attributes:
    protocol: "random" (the paper: seeded 90/10 train/test, then 10% of train held out for
      validation), an ML-100K fold name ("u1".."u5", "ua", "ub"), or "files" (given train and test
      files; validation is held out of train).
    test_fraction: share of all ratings held out for test under "random".
    validation_fraction: share of the training ratings held out for validation.
    seed: seed of the random permutation; repeats use seed, seed + 1, ...
    train_file: protocol "files": the training ratings file (parsed like the dataset's).
    test_file: protocol "files": the test ratings file.
  """

  protocol: str = "random"
  test_fraction: float = 0.1
  validation_fraction: float = 0.1
  seed: int = 0
  train_file: str | None = None
  test_file: str | None = None


@dataclasses.dataclass(frozen=True)
class RatingsSplit:
  """Train, validation and test ratings over one shared id vocabulary."""

  train: Ratings
  validation: Ratings
  test: Ratings
  description: str = ""


def _check_fraction(name: str, value: float) -> None:
  if not 0.0 <= value < 1.0:
    raise ValueError(f"{name} must be in [0, 1), got {value}")


def _check_sizes(source: str, num_train: int, num_validation: int, num_test: int,
                 test_fraction: float | None, validation_fraction: float) -> None:
  """Raises RatingsError when train, or a part asked for with a fraction above 0, is empty."""
  empty = [name for name, count, wanted in (
      ("train", num_train, True), ("validation", num_validation, validation_fraction > 0),
      ("test", num_test, test_fraction is None or test_fraction > 0)) if wanted and not count]
  if empty:
    fractions = f"validation_fraction {validation_fraction}"
    if test_fraction is not None:
      fractions = f"test_fraction {test_fraction}, {fractions}"
    raise RatingsError(
        f"{source}: too few ratings for the requested split: {num_train} train, "
        f"{num_validation} validation and {num_test} test ratings ({fractions}); "
        f"{' and '.join(empty)} would be empty. Use more ratings or other fractions.")


def random_split(ratings: Ratings, test_fraction: float = 0.1, validation_fraction: float = 0.1,
                 seed: int = 0) -> RatingsSplit:
  """Splits ratings uniformly at random: test first, then validation out of the rest.

  Raises RatingsError when train, or test or validation with a fraction above 0, would be empty.
  """
  _check_fraction("test_fraction", test_fraction)
  _check_fraction("validation_fraction", validation_fraction)
  permutation = np.random.default_rng(seed).permutation(ratings.num_ratings)
  num_test = int(round(test_fraction * ratings.num_ratings))
  test_positions, rest = permutation[:num_test], permutation[num_test:]
  num_validation = int(round(validation_fraction * rest.shape[0]))
  validation_positions, train_positions = rest[:num_validation], rest[num_validation:]
  _check_sizes(ratings.source, train_positions.shape[0], num_validation, num_test, test_fraction,
               validation_fraction)
  return RatingsSplit(
      train=ratings.subset(np.sort(train_positions)),
      validation=ratings.subset(np.sort(validation_positions)),
      test=ratings.subset(np.sort(test_positions)),
      description=(f"random {1 - test_fraction:.0%}/{test_fraction:.0%} train/test, "
                   f"{validation_fraction:.0%} of train for validation, seed {seed}"))


def hold_out_validation(train: Ratings, test: Ratings, validation_fraction: float, seed: int,
                        description: str) -> RatingsSplit:
  """Splits a given train set into train and validation; the given test set is kept as is."""
  _check_fraction("validation_fraction", validation_fraction)
  permutation = np.random.default_rng(seed).permutation(train.num_ratings)
  num_validation = int(round(validation_fraction * train.num_ratings))
  _check_sizes(f"{train.source} / {test.source}", train.num_ratings - num_validation,
               num_validation, test.num_ratings, None, validation_fraction)
  return RatingsSplit(
      train=train.subset(np.sort(permutation[num_validation:])),
      validation=train.subset(np.sort(permutation[:num_validation])),
      test=test,
      description=f"{description}, {validation_fraction:.0%} of train for validation, seed {seed}")


def merge_validation_into_train(split: RatingsSplit) -> RatingsSplit:
  """The split with its validation ratings moved into train (and no validation left)."""
  train, validation = split.train, split.validation
  expected = None
  if train.expected_rating is not None and validation.expected_rating is not None:
    expected = np.concatenate([train.expected_rating, validation.expected_rating])
  merged = dataclasses.replace(
      train, user_index=np.concatenate([train.user_index, validation.user_index]),
      item_index=np.concatenate([train.item_index, validation.item_index]),
      rating=np.concatenate([train.rating, validation.rating]),
      timestamp=np.concatenate([train.timestamp, validation.timestamp]),
      expected_rating=expected)
  return dataclasses.replace(split, train=merged,
                             validation=validation.subset(np.array([], dtype=np.int64)),
                             description=f"{split.description}, validation merged into train")


def load_splits(data_config: sources.DataConfig, config: SplitConfig,
                repeats: int = 1) -> Iterator[RatingsSplit]:
  """Loads the ratings once and yields one split per seed (seed, seed + 1, ...)."""
  seeds = range(config.seed, config.seed + repeats)
  if config.protocol == "random":
    ratings = sources.load_ratings(data_config)
    for seed in seeds:
      yield random_split(ratings, config.test_fraction, config.validation_fraction, seed)
    return
  if config.protocol in ML100K_FOLDS:
    if data_config.dataset != "ml100k" or not data_config.data_dir:
      raise ValueError(f"split {config.protocol} needs dataset ml100k and a data_dir holding "
                       "the GroupLens ml-100k release")
    train, test = sources.load_ml100k_fold(data_config.data_dir, config.protocol,
                                           data_config.on_bad_lines)
    description = f"ML-100K fold {config.protocol}"
  elif config.protocol == "files":
    if not (config.train_file and config.test_file):
      raise ValueError("split 'files' needs a train_file and a test_file")
    train, test = sources.load_file_pair(data_config, config.train_file, config.test_file)
    description = f"given files {config.train_file} / {config.test_file}"
  else:
    raise ValueError(f"split must be random, files or one of {ML100K_FOLDS}, "
                     f"got {config.protocol!r}")
  for seed in seeds:
    yield hold_out_validation(train, test, config.validation_fraction, seed, description)
