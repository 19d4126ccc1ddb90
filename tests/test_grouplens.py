"""Tests for keras_autorec.data.grouplens, on tiny fake releases and the real ML-100K."""

from __future__ import annotations

import logging
import pathlib
import zipfile

import numpy as np
import pytest

from conftest import shared_data_dir
from keras_autorec.data import grouplens, parsing

ML100K_DIR = shared_data_dir() / "ml-100k"
requires_ml100k = pytest.mark.skipif(
    not (ML100K_DIR / "u.data").is_file(),
    reason=f"the real MovieLens 100K release is not at {ML100K_DIR}")

U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
ML10M = "1::122::5::838985046\n1::185::4.5::838983525\n2::122::0.5::838983392\n"
LATEST = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n"


def _make_release(root: pathlib.Path, folder: str, name: str, text: str) -> pathlib.Path:
  (root / folder).mkdir(parents=True)
  path = root / folder / name
  path.write_text(text)
  return path


def _zip(archive: pathlib.Path, files: dict[str, str]) -> None:
  with zipfile.ZipFile(archive, "w") as z:
    for member, text in files.items():
      z.writestr(member, text)


def test_ml100k_parent_folder(tmp_path):
  _make_release(tmp_path, "ml-100k", "u.data", U_DATA)
  ratings = grouplens.load_movielens("ml100k", str(tmp_path))
  np.testing.assert_array_equal(ratings.user_ids, ["186", "196", "22"])
  np.testing.assert_array_equal(ratings.item_ids, ["242", "302", "377"])
  np.testing.assert_array_equal(ratings.rating, [3, 3, 1])
  np.testing.assert_array_equal(ratings.timestamp, [881250949, 891717742, 878887116])
  assert ratings.rating_scale == (1.0, 5.0)


def test_release_folder_itself_and_zip_give_same_ratings(tmp_path):
  path = _make_release(tmp_path / "extracted", "ml-100k", "u.data", U_DATA)
  _zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA})
  from_folder = grouplens.load_movielens("ml100k", str(path.parent))
  from_zip_dir = grouplens.load_movielens("ml100k", str(tmp_path))
  from_zip_path = grouplens.load_movielens("ml100k", str(tmp_path / "ml-100k.zip"))
  assert from_zip_dir.source == str(tmp_path / "ml-100k.zip" / "ml-100k" / "u.data")
  for other in (from_zip_dir, from_zip_path):
    for field in ("user_index", "item_index", "rating", "timestamp", "user_ids", "item_ids"):
      np.testing.assert_array_equal(getattr(from_folder, field), getattr(other, field))


def test_ml10m_uses_its_own_folder_and_zip_names_and_half_stars(tmp_path):
  _zip(tmp_path / "ml-10m.zip", {"ml-10M100K/ratings.dat": ML10M})
  ratings = grouplens.load_movielens("ml10m", str(tmp_path))
  np.testing.assert_array_equal(ratings.rating, [5, 4.5, 0.5])
  assert ratings.rating_scale == (0.5, 5.0)


def test_csv_release_with_header(tmp_path):
  _make_release(tmp_path, "ml-latest-small", "ratings.csv", LATEST)
  ratings = grouplens.load_movielens("ml-latest-small", str(tmp_path))
  np.testing.assert_array_equal(ratings.rating, [4.0, 0.5])
  np.testing.assert_array_equal(ratings.timestamp, [964982703, 964981247])


def test_malformed_release_line_names_file_and_line(tmp_path):
  path = _make_release(tmp_path, "ml-1m", "ratings.dat", "1::2::3::4\n1::2::3\n")
  with pytest.raises(parsing.RatingsError) as error:
    grouplens.load_movielens("ml1m", str(tmp_path))
  assert str(error.value) == f"{path}:2: expected 4 fields separated by '::', got 3"


def test_missing_release_names_paths_and_url(tmp_path):
  with pytest.raises(parsing.DataNotFoundError) as error:
    grouplens.load_movielens("ml1m", str(tmp_path))
  message = str(error.value)
  assert str(tmp_path / "ml-1m" / "ratings.dat") in message
  assert str(tmp_path / "ml-1m.zip") in message
  assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message


def test_unknown_release_and_fold():
  with pytest.raises(ValueError, match="ml100k, ml1m, ml10m"):
    grouplens.load_movielens("ml5m", "/nonexistent")
  with pytest.raises(ValueError, match="u1, u2, u3, u4, u5, ua, ub"):
    grouplens.load_ml100k_fold("/nonexistent", "u6")


def test_fold_from_zip_shares_vocabulary(tmp_path):
  _zip(tmp_path / "ml-100k.zip", {"ml-100k/u2.base": "1\t10\t5\t1\n2\t20\t4\t2\n",
                                  "ml-100k/u2.test": "3\t10\t3\t3\n"})
  train, test = grouplens.load_ml100k_fold(str(tmp_path), "u2")
  np.testing.assert_array_equal(train.user_ids, ["1", "2", "3"])
  np.testing.assert_array_equal(test.user_ids, ["1", "2", "3"])
  np.testing.assert_array_equal(test.user_index, [2])
  np.testing.assert_array_equal(test.item_index, [0])


@requires_ml100k
def test_real_ml100k_counts():
  ratings = grouplens.load_movielens("ml100k", str(ML100K_DIR))
  assert (ratings.num_ratings, ratings.num_users, ratings.num_items) == (100000, 943, 1682)
  assert ratings.duplicates_removed == 0
  assert ratings.rating.min() == 1 and ratings.rating.max() == 5
  assert float(ratings.rating.mean()) == pytest.approx(3.52986, abs=1e-5)
  assert ratings.user_ids[ratings.user_index[0]] == "196"
  assert ratings.item_ids[ratings.item_index[0]] == "242"


@requires_ml100k
@pytest.mark.parametrize("fold,train_size,test_size", [("u1", 80000, 20000),
                                                       ("u5", 80000, 20000),
                                                       ("ua", 90570, 9430)])
def test_real_ml100k_folds(fold, train_size, test_size):
  train, test = grouplens.load_ml100k_fold(str(ML100K_DIR), fold)
  assert (train.num_ratings, test.num_ratings) == (train_size, test_size)
  assert (train.num_users, train.num_items) == (943, 1682)
  assert test.user_ids is train.user_ids and test.item_ids is train.item_ids
  assert parsing.shared_pairs(train, test) == 0


def test_truncated_release_warns_naming_both_counts(tmp_path, caplog):
  path = _make_release(tmp_path, "ml-100k", "u.data", U_DATA)
  with caplog.at_level(logging.WARNING):
    grouplens.load_movielens("ml100k", str(tmp_path))
  assert (f"{path}: read 3 ratings, but the ml-100k release has 100000; the file is truncated "
          "or modified") in caplog.text


def test_release_that_changes_over_time_has_no_expected_count(tmp_path, caplog):
  _make_release(tmp_path, "ml-latest-small", "ratings.csv", LATEST)
  with caplog.at_level(logging.WARNING):
    grouplens.load_movielens("ml-latest-small", str(tmp_path))
  assert "release has" not in caplog.text
  documented = {name: release.num_ratings for name, release in grouplens.RELEASES.items()}
  assert documented == {"ml100k": 100_000, "ml1m": 1_000_209, "ml10m": 10_000_054,
                        "ml20m": 20_000_263, "ml25m": 25_000_095, "ml-latest-small": None}


@pytest.mark.skipif(not (ML100K_DIR / "u.info").is_file(),
                    reason=f"the real MovieLens 100K release is not at {ML100K_DIR}")
def test_ml100k_expected_count_is_the_one_in_u_info(caplog):
  counts = dict(reversed(line.split()) for line in (ML100K_DIR / "u.info").read_text().split("\n")
                if line.strip())
  assert int(counts["ratings"]) == grouplens.RELEASES["ml100k"].num_ratings
  with caplog.at_level(logging.WARNING):
    grouplens.load_movielens("ml100k", str(ML100K_DIR))
  assert "release has" not in caplog.text


def test_skip_bad_lines_in_a_release(tmp_path, caplog):
  _make_release(tmp_path, "ml-1m", "ratings.dat", "1::2::3::4\n1::2::3\n2::2::5::4\n")
  with caplog.at_level(logging.WARNING):
    ratings = grouplens.load_movielens("ml1m", str(tmp_path), on_bad_lines="skip")
  assert ratings.num_ratings == 2
  assert "skipped 1 bad lines" in caplog.text and "read 2 ratings, but the ml-1m" in caplog.text
