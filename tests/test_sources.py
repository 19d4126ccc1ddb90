"""Tests for keras_autorec.data.sources."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from conftest import shared_data_dir
from keras_autorec.data import parsing, sources, tfds_source

ML100K_DIR = shared_data_dir() / "ml-100k"


def test_config_defaults():
  config = sources.DataConfig()
  assert (config.dataset, config.data_dir, config.delimiter, config.header) == (
      "ml100k", None, ",", True)
  assert (config.user_column, config.item_column, config.rating_column) == ("0", "1", "2")
  assert config.timestamp_column is None and config.rating_scale is None
  assert (config.synthetic_shape, config.synthetic_noise_stddev, config.seed) == (
      "ml100k", 1.0, 0)
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.seed = 1


def test_unknown_dataset_lists_valid_ones():
  with pytest.raises(ValueError, match="ml100k, ml1m, ml10m, ml20m, ml25m, ml-latest-small, "
                     "netflix, csv, synthetic"):
    sources.load_ratings(sources.DataConfig(dataset="movielens"))


def test_synthetic_logs_noise_floor(caplog):
  with caplog.at_level(logging.INFO):
    ratings = sources.load_ratings(sources.DataConfig(dataset="synthetic", seed=2,
                                                      synthetic_noise_stddev=0.3))
  assert ratings.num_ratings == 100_000
  assert "noise floor RMSE" in caplog.text


def test_csv_with_named_columns_and_scale(tmp_path):
  path = tmp_path / "mine.csv"
  path.write_text("when;who;what;stars\n7;alice;x;10\n8;bob;x;2\n")
  config = sources.DataConfig(dataset="csv", ratings_file=str(path), delimiter=";",
                              user_column="who", item_column="what", rating_column="stars",
                              timestamp_column="when", rating_scale=(1, 10))
  ratings = sources.load_ratings(config)
  np.testing.assert_array_equal(ratings.user_ids, ["alice", "bob"])
  np.testing.assert_array_equal(ratings.rating, [10, 2])
  np.testing.assert_array_equal(ratings.timestamp, [7, 8])
  with pytest.raises(parsing.RatingsError, match=r"mine\.csv:2: rating .*10\.0.* outside"):
    sources.load_ratings(dataclasses.replace(config, rating_scale=None))


def test_csv_needs_ratings_file():
  with pytest.raises(ValueError, match="ratings_file"):
    sources.load_ratings(sources.DataConfig(dataset="csv"))


def test_data_dir_dispatches_to_files(tmp_path):
  (tmp_path / "ml-1m").mkdir()
  (tmp_path / "ml-1m" / "ratings.dat").write_text("1::2::5::10\n")
  (tmp_path / "combined_data_1.txt").write_text("3:\n9,4,2005-01-01\n")
  ml1m = sources.load_ratings(sources.DataConfig(dataset="ml1m", data_dir=str(tmp_path)))
  np.testing.assert_array_equal(ml1m.item_ids, ["2"])
  netflix = sources.load_ratings(sources.DataConfig(dataset="netflix", data_dir=str(tmp_path)))
  np.testing.assert_array_equal(netflix.item_ids, ["3"])


def test_without_data_dir_goes_to_tfds(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, "download_host_reachable", lambda: False)
  with pytest.raises(parsing.DataNotFoundError, match="ml-100k.zip"):
    sources.load_ratings(sources.DataConfig(dataset="ml100k", tfds_data_dir=str(tmp_path)))
  with pytest.raises(parsing.DataNotFoundError, match="ml-10m.zip"):
    sources.load_ratings(sources.DataConfig(dataset="ml10m"))


def test_file_pair_shares_vocabulary_and_warns_on_overlap(tmp_path, caplog):
  (tmp_path / "train.tsv").write_text("a\tx\t1\nb\ty\t2\n")
  (tmp_path / "test.tsv").write_text("a\tx\t4\nc\tz\t3\n")
  config = sources.DataConfig(dataset="csv", delimiter="\t", header=False)
  with caplog.at_level(logging.WARNING):
    train, test = sources.load_file_pair(config, str(tmp_path / "train.tsv"),
                                         str(tmp_path / "test.tsv"))
  np.testing.assert_array_equal(train.user_ids, ["a", "b", "c"])
  assert test.user_ids is train.user_ids and test.item_ids is train.item_ids
  np.testing.assert_array_equal(test.user_index, [0, 2])
  np.testing.assert_array_equal(test.item_index, [0, 2])
  assert "1 (user, item) pairs are in both" in caplog.text


@pytest.mark.skipif(not (ML100K_DIR / "u1.base").is_file(),
                    reason=f"the real MovieLens 100K release is not at {ML100K_DIR}")
def test_real_ml100k_through_config_and_fold():
  ratings = sources.load_ratings(sources.DataConfig(dataset="ml100k",
                                                    data_dir=str(ML100K_DIR.parent)))
  assert (ratings.num_ratings, ratings.num_users, ratings.num_items) == (100000, 943, 1682)
  train, test = sources.load_ml100k_fold(str(ML100K_DIR), "u1")
  assert (train.num_ratings, test.num_ratings, train.num_users, train.num_items) == (
      80000, 20000, 943, 1682)


@pytest.fixture
def headerless_tsv(tmp_path):
  path = tmp_path / "u1.base"
  path.write_text("1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n")
  return str(path)


def test_headerless_file_with_the_default_header_is_an_error_not_wrong_columns(headerless_tsv):
  config = sources.DataConfig(dataset="csv", ratings_file=headerless_tsv, delimiter="\t")
  assert config.header
  with pytest.raises(parsing.RatingsError, match=r"u1\.base:1: expected a header line.*"
                     r"pass --noheader"):
    sources.load_ratings(config)
  ratings = sources.load_ratings(dataclasses.replace(config, header=False))
  assert (ratings.num_ratings, ratings.num_users, ratings.num_items) == (3, 2, 2)


def test_on_bad_lines_skip_through_the_config(tmp_path, caplog):
  path = tmp_path / "mine.csv"
  path.write_text("u,i,r\na,x,4\nb,y\nc,z,7\nd,x,2\n")
  config = sources.DataConfig(dataset="csv", ratings_file=str(path))
  with pytest.raises(parsing.RatingsError, match=r"mine\.csv:3: expected 3 fields.*2 bad lines"):
    sources.load_ratings(config)
  with caplog.at_level(logging.WARNING):
    ratings = sources.load_ratings(dataclasses.replace(config, on_bad_lines="skip"))
  np.testing.assert_array_equal(ratings.user_ids, ["a", "d"])
  assert "skipped 2 bad lines" in caplog.text and "line 4: rating 7.0" in caplog.text
