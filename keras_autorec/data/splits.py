"""Train/validation/test splits: the paper's seeded random protocol and given folds or files."""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_autorec.data.ratings import Ratings, RatingsError

ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


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
  """

  protocol: str = "random"
  test_fraction: float = 0.1
  validation_fraction: float = 0.1
  seed: int = 0


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


def random_split(ratings: Ratings, test_fraction: float = 0.1, validation_fraction: float = 0.1,
                 seed: int = 0) -> RatingsSplit:
  """Splits ratings uniformly at random: test first, then validation out of the rest."""
  _check_fraction("test_fraction", test_fraction)
  _check_fraction("validation_fraction", validation_fraction)
  permutation = np.random.default_rng(seed).permutation(ratings.num_ratings)
  num_test = int(round(test_fraction * ratings.num_ratings))
  test_positions, rest = permutation[:num_test], permutation[num_test:]
  num_validation = int(round(validation_fraction * rest.shape[0]))
  validation_positions, train_positions = rest[:num_validation], rest[num_validation:]
  if train_positions.shape[0] == 0:
    raise RatingsError(f"{ratings.source}: no training ratings left after the split")
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
  return RatingsSplit(
      train=train.subset(np.sort(permutation[num_validation:])),
      validation=train.subset(np.sort(permutation[:num_validation])),
      test=test,
      description=f"{description}, {validation_fraction:.0%} of train for validation, seed {seed}")
