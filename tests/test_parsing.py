"""Tests for keras_autorec.data.parsing."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from keras_autorec.data import parsing
from keras_autorec.data.ratings import RatingsError

ML1M_TEXT = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n10::3::1::5\n"


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
  return str(path)


def test_double_colon_file_exact_values(tmp_path):
  path = _write(tmp_path, "ratings.dat", ML1M_TEXT)
  ratings = parsing.parse_ratings_file(path, "::", (1, 5), timestamp_column=3)
  # Ids are opaque strings, so "10" sorts before "2".
  np.testing.assert_array_equal(ratings.user_ids, ["1", "10", "2"])
  np.testing.assert_array_equal(ratings.item_ids, ["1193", "3", "661"])
  np.testing.assert_array_equal(ratings.user_index, [0, 0, 2, 1])
  np.testing.assert_array_equal(ratings.item_index, [0, 2, 0, 1])
  np.testing.assert_array_equal(ratings.rating, [5, 3, 4, 1])
  np.testing.assert_array_equal(ratings.timestamp, [978300760, 978302109, 978298413, 5])
  assert ratings.source == path
  assert ratings.duplicates_removed == 0


@pytest.mark.parametrize("delimiter", ["\t", ",", "|", "::", "<->"])
def test_delimiters_give_same_ratings(tmp_path, delimiter):
  path = _write(tmp_path, "r.txt", ML1M_TEXT.replace("::", delimiter))
  ratings = parsing.parse_ratings_file(path, delimiter, (1, 5), timestamp_column=3)
  np.testing.assert_array_equal(ratings.rating, [5, 3, 4, 1])
  np.testing.assert_array_equal(ratings.user_ids, ["1", "10", "2"])
  np.testing.assert_array_equal(ratings.timestamp, [978300760, 978302109, 978298413, 5])


def test_header_columns_by_name_and_half_stars(tmp_path):
  text = "timestamp,movieId,userId,rating\n100,m1,u1,4.5\n200,m2,u1,0.5\n"
  path = _write(tmp_path, "ratings.csv", text)
  ratings = parsing.parse_ratings_file(path, ",", (0.5, 5), header=True, user_column="userId",
                                       item_column="movieId", rating_column="rating",
                                       timestamp_column="timestamp")
  np.testing.assert_array_equal(ratings.user_ids, ["u1"])
  np.testing.assert_array_equal(ratings.item_ids, ["m1", "m2"])
  np.testing.assert_array_equal(ratings.rating, [4.5, 0.5])
  np.testing.assert_array_equal(ratings.timestamp, [100, 200])


def test_header_columns_by_position_string(tmp_path):
  path = _write(tmp_path, "r.csv", "a,b,c\nx,y,3\n")
  ratings = parsing.parse_ratings_file(path, ",", (1, 5), header=True, user_column="0",
                                       item_column="1", rating_column="2")
  np.testing.assert_array_equal(ratings.user_ids, ["x"])
  np.testing.assert_array_equal(ratings.timestamp, [0])


def test_duplicates_keep_latest(tmp_path):
  text = "1\t5\t2\t300\n1\t5\t4\t100\n2\t5\t3\t1\n1\t5\t1\t200\n"
  ratings = parsing.parse_ratings_file(_write(tmp_path, "u.data", text), "\t", (1, 5),
                                       timestamp_column=3)
  assert ratings.duplicates_removed == 2
  assert ratings.num_ratings == 2
  np.testing.assert_array_equal(ratings.rating, [2, 3])  # Timestamp 300 wins for (1, 5).


def test_wrong_field_count_names_file_and_line(tmp_path):
  lines = ["1::2::3::4"] * 16 + ["1::2::3"] + ["1::2::3::4"]
  path = _write(tmp_path, "ratings.dat", "\n".join(lines) + "\n")
  with pytest.raises(RatingsError) as error:
    parsing.parse_ratings_file(path, "::", (1, 5), num_fields=4)
  assert str(error.value) == f"{path}:17: expected 4 fields separated by '::', got 3"


def test_first_line_fixes_field_count_when_not_given(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2,3\n1,2,3,4\n")
  with pytest.raises(RatingsError, match=r"r\.csv:2: expected 3 fields separated by ',', got 4"):
    parsing.parse_ratings_file(path, ",", (1, 5))


def test_header_line_counts_in_line_numbers(tmp_path):
  path = _write(tmp_path, "r.csv", "u,i,r\n1,2,3\n1,2\n")
  with pytest.raises(RatingsError, match=r"r\.csv:3: expected 3 fields"):
    parsing.parse_ratings_file(path, ",", (1, 5), header=True)


def test_blank_line_in_middle_is_error_but_trailing_newlines_are_fine(tmp_path):
  ok = parsing.parse_ratings_file(_write(tmp_path, "ok.tsv", "1\t2\t3\n4\t5\t1\n\n\n"), "\t",
                                  (1, 5))
  assert ok.num_ratings == 2
  path = _write(tmp_path, "bad.tsv", "1\t2\t3\n\n4\t5\t1\n")
  with pytest.raises(RatingsError, match=r"bad\.tsv:2: blank line; expected 3 fields"):
    parsing.parse_ratings_file(path, "\t", (1, 5))


def test_crlf_line_endings(tmp_path):
  ratings = parsing.parse_ratings_file(_write(tmp_path, "r.csv", b"1,2,3\r\n1,3,4\r\n"), ",",
                                       (1, 5))
  np.testing.assert_array_equal(ratings.item_ids, ["2", "3"])
  np.testing.assert_array_equal(ratings.rating, [3, 4])


def test_non_numeric_rating_names_line(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2,3\n1,3,4\n2,2,four\n")
  with pytest.raises(RatingsError) as error:
    parsing.parse_ratings_file(path, ",", (1, 5))
  assert str(error.value) == (f"{path}:3: expected a number for the rating in field 3, "
                              f"got 'four'")


def test_non_integer_timestamp_names_line(tmp_path):
  path = _write(tmp_path, "r.dat", "1::2::3::10\n1::3::4::1.5\n")
  with pytest.raises(RatingsError, match=r"r\.dat:2: expected an integer for the timestamp in "
                     r"field 4, got '1\.5'"):
    parsing.parse_ratings_file(path, "::", (1, 5), timestamp_column=3)


def test_out_of_scale_rating_names_line(tmp_path):
  path = _write(tmp_path, "r.csv", "u,i,r\n1,2,3\n1,3,4\n2,2,6\n")
  with pytest.raises(RatingsError, match=r"r\.csv:4: rating .*6\.0.* is outside the rating scale"):
    parsing.parse_ratings_file(path, ",", (1, 5), header=True)


def test_empty_id_names_line(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2,3\n,3,4\n")
  with pytest.raises(RatingsError, match=r"r\.csv:2: empty user id in field 1"):
    parsing.parse_ratings_file(path, ",", (1, 5))


def test_unknown_column_name_lists_header(tmp_path):
  path = _write(tmp_path, "r.csv", "userId,movieId,rating\n1,2,3\n")
  with pytest.raises(RatingsError, match=r"no item column named 'itemId'.*movieId"):
    parsing.parse_ratings_file(path, ",", (1, 5), header=True, user_column="userId",
                               item_column="itemId", rating_column="rating")


def test_column_position_out_of_range(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2,3\n")
  with pytest.raises(RatingsError, match=r"timestamp column 3 is out of range"):
    parsing.parse_ratings_file(path, ",", (1, 5), timestamp_column=3)


@pytest.mark.parametrize("text", ["", "\n\n", "u,i,r\n"])
def test_empty_input_is_error(tmp_path, text):
  with pytest.raises(RatingsError, match="no ratings found"):
    parsing.parse_ratings_file(_write(tmp_path, "r.csv", text), ",", (1, 5), header=True)


def test_non_ascii_ids_are_kept(tmp_path):
  path = _write(tmp_path, "r.csv", "josé,café,4\nzoë,café,5\n")
  ratings = parsing.parse_ratings_file(path, ",", (1, 5))
  np.testing.assert_array_equal(ratings.user_ids, ["josé", "zoë"])
  np.testing.assert_array_equal(ratings.item_ids, ["café"])


def test_invalid_utf8_names_line(tmp_path):
  path = _write(tmp_path, "r.csv", b"a,b,1\nc,\xff,2\n")
  with pytest.raises(RatingsError, match=r"r\.csv:2: not valid UTF-8"):
    parsing.parse_ratings_file(path, ",", (1, 5))


def test_chunked_parse_matches_and_keeps_line_numbers(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  rows = [f"{u}::{i}::{r}::{t}" for u, i, r, t in zip(
      rng.integers(1, 50, 500), rng.integers(1, 80, 500), rng.integers(1, 6, 500),
      rng.integers(0, 10**9, 500))]
  path = _write(tmp_path, "ratings.dat", "\n".join(rows) + "\n")
  whole = parsing.read_columns(path, "::", timestamp_column=3)
  monkeypatch.setattr(parsing, "_CHUNK_BYTES", 100)
  chunked = parsing.read_columns(path, "::", timestamp_column=3)
  for field in ("user", "item", "rating", "timestamp", "line_numbers"):
    np.testing.assert_array_equal(getattr(whole, field), getattr(chunked, field))
  np.testing.assert_array_equal(chunked.line_numbers, np.arange(1, 501))
  bad = _write(tmp_path, "bad.dat", "\n".join(rows[:400] + ["1::2::x::4"] + rows[400:]))
  with pytest.raises(RatingsError, match=r"bad\.dat:401: expected a number for the rating"):
    parsing.read_columns(bad, "::", timestamp_column=3)


def test_zip_member_matches_file(tmp_path):
  path = _write(tmp_path, "ratings.dat", ML1M_TEXT)
  archive = tmp_path / "ml-1m.zip"
  with zipfile.ZipFile(archive, "w") as z:
    z.write(path, "ml-1m/ratings.dat")
  from_file = parsing.parse_ratings_file(path, "::", (1, 5), timestamp_column=3)
  from_zip = parsing.parse_ratings_file(str(archive), "::", (1, 5), member="ml-1m/ratings.dat",
                                        timestamp_column=3)
  for field in ("user_index", "item_index", "rating", "timestamp", "user_ids", "item_ids"):
    np.testing.assert_array_equal(getattr(from_file, field), getattr(from_zip, field))
  assert from_zip.source == f"{archive}/ml-1m/ratings.dat"
  with pytest.raises(parsing.DataNotFoundError, match="no member 'ml-1m/missing.dat'"):
    parsing.read_bytes(str(archive), "ml-1m/missing.dat")


def test_ratings_sharing_vocabulary(tmp_path):
  train = parsing.read_columns(_write(tmp_path, "train.tsv", "a\tx\t1\nb\ty\t2\n"), "\t")
  test = parsing.read_columns(_write(tmp_path, "test.tsv", "c\tx\t3\na\tz\t4\na\tz\t5\n"), "\t")
  train_ratings, test_ratings = parsing.ratings_sharing_vocabulary([train, test], (1, 5))
  for r in (train_ratings, test_ratings):
    np.testing.assert_array_equal(r.user_ids, ["a", "b", "c"])
    np.testing.assert_array_equal(r.item_ids, ["x", "y", "z"])
  np.testing.assert_array_equal(train_ratings.user_index, [0, 1])
  np.testing.assert_array_equal(train_ratings.item_index, [0, 1])
  np.testing.assert_array_equal(test_ratings.user_index, [2, 0])
  np.testing.assert_array_equal(test_ratings.item_index, [0, 2])
  np.testing.assert_array_equal(test_ratings.rating, [3, 5])  # Later line wins on equal times.
  assert test_ratings.duplicates_removed == 1
  assert parsing.shared_pairs(train_ratings, test_ratings) == 0


def test_first_unparsable_finds_position():
  values = np.array([b"1", b"2.5", b"3", b"x", b"y"])
  assert parsing.first_unparsable(values, np.float32) == (3, "x")
  assert parsing.first_unparsable(values, np.int64) == (1, "2.5")
