"""Tests for keras_autorec.data.tfds_source (no network: mock data and the offline path)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_autorec.data import parsing, tfds_source


def _examples(user_ids, movie_ids, ratings, timestamps):
  return tf.data.Dataset.from_tensor_slices({
      "user_id": user_ids, "movie_id": movie_ids,
      "user_rating": np.array(ratings, np.float32), "timestamp": np.array(timestamps, np.int64),
      # Variable-length in the real data; ragged here so batching it would fail.
      "movie_genres": tf.ragged.constant([[1]] * (len(user_ids) - 1) + [[1, 2]]),
  })


def test_ratings_from_dataset_keeps_string_ids_and_dedups():
  dataset = _examples(["10", "2", "10", "10"], ["5", "5", "7", "5"], [1.0, 2.5, 3.0, 4.0],
                      [100, 200, 300, 50])
  ratings = tfds_source.ratings_from_dataset(dataset, (0.5, 5.0), source="tfds:test")
  np.testing.assert_array_equal(ratings.user_ids, ["10", "2"])
  np.testing.assert_array_equal(ratings.item_ids, ["5", "7"])
  np.testing.assert_array_equal(ratings.user_index, [0, 1, 0])
  np.testing.assert_array_equal(ratings.rating, [1.0, 2.5, 3.0])  # Time 100 beats time 50.
  np.testing.assert_array_equal(ratings.timestamp, [100, 200, 300])
  assert ratings.duplicates_removed == 1


def test_ratings_from_dataset_spans_batches(monkeypatch):
  monkeypatch.setattr(tfds_source, "_BATCH_SIZE", 3)
  n = 10
  dataset = _examples([f"u{i}" for i in range(n)], ["m"] * n, [1.0 + i % 5 for i in range(n)],
                      list(range(n)))
  ratings = tfds_source.ratings_from_dataset(dataset, (1, 5), source="tfds:test")
  assert ratings.num_ratings == n
  np.testing.assert_array_equal(ratings.user_ids[ratings.user_index], [f"u{i}" for i in range(n)])


def test_mock_tfds_load(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, "download_host_reachable", lambda: True)
  with tfds.testing.mock_data(num_examples=40):
    # Mock ratings are random floats in [0, 1), hence the scale.
    ratings = tfds_source.load_tfds("ml100k", str(tmp_path), rating_scale=(0.0, 5.0))
  assert ratings.num_ratings + ratings.duplicates_removed == 40
  assert ratings.source == "tfds:movielens/100k-ratings"
  assert ratings.user_ids.dtype.kind == "U"
  assert not ratings.user_ids[0].startswith("b'")


def test_offline_error_is_fast_and_says_what_to_do(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, "download_host_reachable", lambda: False)
  start = time.monotonic()
  with pytest.raises(parsing.DataNotFoundError) as error:
    tfds_source.load_tfds("ml1m", str(tmp_path))
  assert time.monotonic() - start < 30
  message = str(error.value)
  assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message
  assert "--data_dir" in message
  assert "movielens/1m-ratings" in message


def test_probe_is_bounded_by_timeout():
  start = time.monotonic()
  tfds_source.download_host_reachable(("files.grouplens.org", 443), timeout_s=1.0)
  assert time.monotonic() - start < 2.5


def test_probe_fails_for_closed_port():
  assert not tfds_source.download_host_reachable(("127.0.0.1", 9), timeout_s=1.0)


@pytest.mark.parametrize("dataset,expected", [
    ("ml10m", "https://files.grouplens.org/datasets/movielens/ml-10m.zip"),
    ("netflix", "kaggle.com/datasets/netflix-inc/netflix-prize-data"),
])
def test_datasets_not_in_tfds_say_where_to_get_files(dataset, expected):
  with pytest.raises(parsing.DataNotFoundError, match="--data_dir") as error:
    tfds_source.load_tfds(dataset)
  assert expected in str(error.value)


def test_unknown_dataset():
  with pytest.raises(ValueError, match="ml100k, ml1m, ml20m, ml25m, ml-latest-small"):
    tfds_source.load_tfds("ml2m")
