"""Tests for keras_autorec.data.ratings."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from keras_autorec.data import ratings as ratings_lib


def _from_raw(users, items, rating, timestamp=None, **kwargs):
  return ratings_lib.from_raw(np.array(users), np.array(items), np.array(rating, np.float32),
                              None if timestamp is None else np.array(timestamp),
                              rating_scale=(1.0, 5.0), source="src", **kwargs)


def test_factorises_string_ids():
  ratings = _from_raw(["b", "a", "10", "b"], ["x", "y", "x", "z"], [1, 2, 3, 4])
  assert list(ratings.user_ids) == ["10", "a", "b"]
  assert list(ratings.item_ids) == ["x", "y", "z"]
  assert list(ratings.user_ids[ratings.user_index]) == ["b", "a", "10", "b"]
  assert list(ratings.item_ids[ratings.item_index]) == ["x", "y", "x", "z"]
  assert ratings.user_index.dtype == np.int32 and ratings.rating.dtype == np.float32
  assert ratings.timestamp.dtype == np.int64 and ratings.duplicates_removed == 0


def test_numeric_ids_are_strings():
  ratings = ratings_lib.from_raw(np.array([7, 7]), np.array([1, 2]), np.array([1.0, 2.0]),
                                 None, (1.0, 5.0), "src")
  assert list(ratings.user_ids) == ["7"] and list(ratings.item_ids) == ["1", "2"]


def test_dedup_keeps_latest_and_last_on_ties():
  ratings = _from_raw(["u", "u", "u", "v", "v", "w"], ["i", "i", "i", "i", "i", "i"],
                      [1, 2, 3, 4, 5, 1], timestamp=[5, 9, 1, 3, 3, 0])
  assert ratings.duplicates_removed == 3
  kept = {(ratings.user_ids[u], ratings.item_ids[i]): r
          for u, i, r in zip(ratings.user_index, ratings.item_index, ratings.rating)}
  assert kept == {("u", "i"): 2.0, ("v", "i"): 5.0, ("w", "i"): 1.0}
  assert ratings.num_ratings == 3


def test_empty_input():
  with pytest.raises(ratings_lib.RatingsError, match="no ratings"):
    _from_raw([], [], [])


def test_out_of_scale_names_line():
  with pytest.raises(ratings_lib.RatingsError, match=r"src:17: rating 6\.0"):
    _from_raw(["a", "b"], ["x", "y"], [3, 6], line_numbers=np.array([12, 17]))
  with pytest.raises(ratings_lib.RatingsError, match="rating #0"):
    _from_raw(["a"], ["x"], [np.nan])


def test_subset_keeps_vocabularies():
  ratings = _from_raw(["a", "b", "c"], ["x", "y", "z"], [1, 2, 3])
  subset = ratings.subset(np.array([2]))
  assert subset.num_users == 3 and subset.num_ratings == 1 and subset.rating[0] == 3.0


def test_many_duplicate_pairs_warn_naming_the_likely_cause(caplog):
  with caplog.at_level(logging.WARNING):
    _from_raw(["a"] * 8 + ["b", "c"], ["x"] * 10, [3] * 10)
  assert "src: 7 of 10 ratings (70%) repeat a (user, item) pair" in caplog.text
  assert "--user_column, --item_column, --delimiter and --header/--noheader" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    _from_raw(["a"] * 2 + [f"u{n}" for n in range(18)], ["x"] * 20, [3] * 20)
  assert "1 repeated (user, item) ratings" in caplog.text
  assert "repeat a (user, item) pair" not in caplog.text  # 5% is not suspicious.


def test_out_of_scale_message_names_the_rating_scale_flag():
  with pytest.raises(ratings_lib.RatingsError, match=r"set --rating_scale=lowest,highest"):
    _from_raw(["a"], ["x"], [0])


def test_pair_keys_are_equal_exactly_for_equal_pairs():
  keys = ratings_lib.pair_keys(np.array([0, 0, 1, 2, 1]), np.array([2, 1, 0, 2, 0]), num_items=3)
  np.testing.assert_array_equal(keys, [2, 1, 3, 8, 3])
  assert keys.dtype == np.int64
  # Large vocabularies must not overflow 32 bits: 70000 * 70000 > 2**31.
  assert ratings_lib.pair_keys(np.array([69999], np.int32), np.array([1], np.int32),
                               num_items=70000)[0] == 69999 * 70000 + 1


def test_outside_rating_scale_flags_non_finite_and_out_of_range():
  rating = np.array([1.0, 5.0, 0.5, 5.5, np.nan, np.inf, 3.0], np.float32)
  np.testing.assert_array_equal(ratings_lib.outside_rating_scale(rating, (1.0, 5.0)),
                                [False, False, True, True, True, True, False])
