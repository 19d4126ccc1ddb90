"""Tests for keras_autorec.implicit.splits (which implicit data, and its split for a seed)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from keras_autorec.data import sources
from keras_autorec.implicit import splits


def test_melon_without_data_dir_is_an_error():
  config = splits.ImplicitDataConfig(data=sources.DataConfig(dataset="melon"))
  with pytest.raises(ValueError, match="--dataset=melon needs --data_dir"):
    splits.load_split(config, 0)


def test_synthetic_melon_is_generated_with_the_seed_and_split_by_the_melon_protocol():
  config = splits.ImplicitDataConfig(synthetic_playlists=200, synthetic_songs=300,
                                     synthetic_tags=30)
  first, again, other = (splits.load_split(config, seed) for seed in (0, 0, 1))
  # train.json, val.json and test.json hold 80%, 10% and 10% of the playlists.
  assert first.protocol == "melon" and first.val.num_rows == first.test.num_rows == 20
  assert first.train.shape[0] == 160
  assert (first.train != again.train).nnz == 0
  assert not np.array_equal(first.catalog.song_ids, other.catalog.song_ids)


def test_ratings_become_positives_of_held_out_users(ratings_file):
  data = sources.DataConfig(dataset="csv", ratings_file=ratings_file, user_column="user",
                            item_column="item", rating_column="rating")
  config = splits.ImplicitDataConfig(data=data, positive_threshold=3.0, num_val_users=5,
                                     num_test_users=5)
  split = splits.load_split(config, 0)
  assert split.protocol == "held_out_users" and split.catalog.num_tags == 0
  assert 0 < split.val.num_rows <= 5 and 0 < split.test.num_rows <= 5
  assert set(split.train.data) == {1.0}


def test_each_setting_applies_to_its_kind_of_data():
  fields = {field.name for field in dataclasses.fields(splits.ImplicitDataConfig)} - {"data"}
  ratings, melon, synthetic = (set(splits.settings_used(name))
                               for name in ("ml1m", "melon", "synthetic_melon"))
  assert ratings | melon | synthetic == fields and not ratings & (melon | synthetic)
  assert melon - synthetic == {"holdout_playlists"}


def test_default_exports_of_ratings_are_apart_from_the_rating_model():
  config = splits.ImplicitDataConfig
  assert splits.default_export_dir(config(data=sources.DataConfig(dataset="ml1m"))) == (
      os.path.join("saved_models", "ml1m_implicit"))
  assert splits.default_export_dir(config(data=sources.DataConfig(dataset="melon"))) == (
      os.path.join("saved_models", "melon"))
