"""Tests for keras_autorec.data.splits."""

from __future__ import annotations

import numpy as np
import pytest

from keras_autorec.data import splits
from keras_autorec.data.ratings import RatingsError


def _pairs(ratings):
  return set(zip(ratings.user_index.tolist(), ratings.item_index.tolist()))


def test_random_split_disjoint_covering_sizes(ratings):
  split = splits.random_split(ratings, 0.1, 0.1, seed=3)
  parts = [_pairs(split.train), _pairs(split.validation), _pairs(split.test)]
  assert [len(p) for p in parts] == [648, 72, 80]
  assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
  assert parts[0] | parts[1] | parts[2] == _pairs(ratings)
  assert split.train.num_users == ratings.num_users


def test_random_split_seeded(ratings):
  a = splits.random_split(ratings, seed=1)
  b = splits.random_split(ratings, seed=1)
  c = splits.random_split(ratings, seed=2)
  np.testing.assert_array_equal(a.test.rating, b.test.rating)
  assert _pairs(a.test) == _pairs(b.test) and _pairs(a.validation) == _pairs(b.validation)
  assert _pairs(a.test) != _pairs(c.test)


def test_random_split_fractions_validated(ratings):
  with pytest.raises(ValueError, match="test_fraction"):
    splits.random_split(ratings, test_fraction=1.0)


def test_hold_out_validation(ratings):
  first = splits.random_split(ratings, 0.2, 0.0, seed=0)
  split = splits.hold_out_validation(first.train, first.test, 0.25, seed=4, description="given")
  assert split.test is first.test
  assert (split.train.num_ratings, split.validation.num_ratings) == (480, 160)
  assert not _pairs(split.train) & _pairs(split.validation)
  assert _pairs(split.train) | _pairs(split.validation) == _pairs(first.train)
  assert split.description.startswith("given")


def test_merge_validation_into_train(ratings):
  split = splits.random_split(ratings, seed=0)
  merged = splits.merge_validation_into_train(split)
  assert merged.train.num_ratings == split.train.num_ratings + split.validation.num_ratings
  assert merged.validation.num_ratings == 0
  assert merged.test is split.test
  np.testing.assert_array_equal(merged.train.rating[split.train.num_ratings:],
                                split.validation.rating)


def test_too_little_data_for_the_split_is_an_error_naming_the_counts(ratings):
  one = ratings.subset(np.array([0]))
  with pytest.raises(RatingsError) as error:
    splits.random_split(one, 0.1, 0.1, seed=0)
  assert str(error.value) == (
      "synthetic: too few ratings for the requested split: 1 train, 0 validation and 0 test "
      "ratings (test_fraction 0.1, validation_fraction 0.1); validation and test would be "
      "empty. Use more ratings or other fractions.")
  # Parts asked for with a fraction of 0 may be empty.
  assert splits.random_split(one, 0.0, 0.0, seed=0).train.num_ratings == 1
  with pytest.raises(RatingsError, match=r"1 train, 1 validation and 0 test.*test would be empty"):
    splits.hold_out_validation(ratings.subset(np.array([0, 1])), one.subset(np.array([], int)),
                               0.5, seed=0, description="given")
