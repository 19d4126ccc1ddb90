"""Tests for keras_autorec.data.netflix on small files in the Netflix Prize layouts."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_autorec.data import netflix, parsing
from keras_autorec.data.ratings import RatingsError

MOVIE_1 = "1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n"
MOVIE_2 = "2:\n2059652,4,2005-09-05\n1488844,1,1999-12-31\n"


def _training_set(tmp_path):
  folder = tmp_path / "training_set"
  folder.mkdir(parents=True)
  (folder / "mv_0000001.txt").write_text(MOVIE_1)
  (folder / "mv_0000002.txt").write_text(MOVIE_2)
  return tmp_path


def test_training_set_folder(tmp_path):
  ratings = netflix.load_netflix(str(_training_set(tmp_path)))
  np.testing.assert_array_equal(ratings.user_ids, ["1488844", "2059652", "822109"])
  np.testing.assert_array_equal(ratings.item_ids, ["1", "2"])
  np.testing.assert_array_equal(ratings.user_index, [0, 2, 1, 0])
  np.testing.assert_array_equal(ratings.item_index, [0, 0, 1, 1])
  np.testing.assert_array_equal(ratings.rating, [3, 5, 4, 1])
  # 2005-09-06 and 1999-12-31 at 00:00 UTC.
  assert ratings.timestamp[0] == 1125964800
  assert ratings.timestamp[3] == 946598400


def test_combined_data_matches_training_set(tmp_path):
  (tmp_path / "combined_data_1.txt").write_text(MOVIE_1 + MOVIE_2)
  combined = netflix.load_netflix(str(tmp_path))
  per_movie = netflix.load_netflix(str(_training_set(tmp_path / "other")))
  for field in ("user_index", "item_index", "rating", "timestamp", "user_ids", "item_ids"):
    np.testing.assert_array_equal(getattr(combined, field), getattr(per_movie, field))


def test_several_combined_files_and_duplicates(tmp_path):
  (tmp_path / "combined_data_1.txt").write_text(MOVIE_1)
  (tmp_path / "combined_data_2.txt").write_text("1:\n1488844,4,2006-01-01\n")
  ratings = netflix.load_netflix(str(tmp_path))
  assert ratings.duplicates_removed == 1
  np.testing.assert_array_equal(ratings.rating, [5, 4])  # The 2006 rating replaces the 2005 one.


def test_chunked_parse_keeps_movies_and_lines(monkeypatch):
  data = ("".join(f"{m}:\n" + "".join(f"{c},{1 + (c + m) % 5},2005-01-0{1 + c % 9}\n"
                                         for c in range(m * 3)) for m in range(1, 40))).encode()
  whole = netflix.parse_netflix_text(data, "combined_data_1.txt")
  monkeypatch.setattr(netflix, "_CHUNK_BYTES", 50)
  chunked = netflix.parse_netflix_text(data, "combined_data_1.txt")
  for field in ("user", "item", "rating", "timestamp", "line_numbers"):
    np.testing.assert_array_equal(getattr(whole, field), getattr(chunked, field))
  assert whole.rating.shape[0] == sum(m * 3 for m in range(1, 40))
  assert whole.line_numbers[-1] == data.count(b"\n")
  assert whole.item[-1] == b"39"


@pytest.mark.parametrize("text,message", [
    ("1:\n5,3,2005-01-01\n6,3\n",
     r"mv_0000001\.txt:3: expected '<movie id>:' or 'customer,rating,YYYY-MM-DD', got '6,3'"),
    ("5,3,2005-01-01\n", r"mv_0000001\.txt:1: expected a '<movie id>:' line before the ratings"),
    ("1:\n5,3,2005-01-01\n\n2:\n6,3,2005-01-01\n", r"mv_0000001\.txt:3: expected '<movie id>:'"),
    ("1:\n5,3,2005-01-01\n6,x,2005-01-01\n",
     r"mv_0000001\.txt:3: expected a number for the rating, got 'x'"),
    ("1:\n5,3,2005-02-30\n", r"mv_0000001\.txt:2: expected a YYYY-MM-DD date, got '2005-02-30'"),
    ("1:\n5,7,2005-01-01\n", r"mv_0000001\.txt:2: rating .*7\.0.* is outside the rating scale"),
])
def test_errors_name_file_and_line(tmp_path, text, message):
  (tmp_path / "training_set").mkdir()
  (tmp_path / "training_set" / "mv_0000001.txt").write_text(text)
  with pytest.raises(RatingsError, match=message):
    netflix.load_netflix(str(tmp_path))


def test_missing_files_say_where_to_get_them(tmp_path):
  with pytest.raises(parsing.DataNotFoundError) as error:
    netflix.load_netflix(str(tmp_path))
  message = str(error.value)
  assert str(tmp_path / "combined_data_*.txt") in message
  assert str(tmp_path / "training_set" / "mv_*.txt") in message
  assert "kaggle.com/datasets/netflix-inc/netflix-prize-data" in message


def test_utf8_bom_and_cr_line_endings_are_read():
  text = ("\ufeff" + MOVIE_1).replace("\n", "\r").encode()
  columns = netflix.parse_netflix_text(text, "mv_0000001.txt")
  np.testing.assert_array_equal(columns.item, [b"1", b"1"])
  np.testing.assert_array_equal(columns.user, [b"1488844", b"822109"])
  np.testing.assert_array_equal(columns.line_numbers, [2, 3])


@pytest.mark.parametrize("text,message", [
    ("1:\n5,3,2005-01-01\n7\n6,4,2005-01-01\n9,1,2005-01-01\n2:\n5,3,2005-01-01\n6,3\n",
     r"mv_0000001\.txt:3: expected '<movie id>:' or 'customer,rating,YYYY-MM-DD', got '7' "
     r"\(4 bad lines in all"),
    ("1:\n6,x,2005-01-01\n7,3\n", r"mv_0000001\.txt:2: expected a number for the rating"),
    ("1:\n6,9,2005-01-01\n7,3,2005-13-01\n", r"mv_0000001\.txt:2: rating 9\.0 is outside"),
    ("1:\n6,3,2005-13-01\n,3,2005-01-01\n", r"mv_0000001\.txt:2: expected a YYYY-MM-DD date"),
])
def test_earliest_bad_line_is_reported(text, message):
  with pytest.raises(RatingsError, match=message):
    netflix.parse_netflix_text(text.encode(), "mv_0000001.txt", (1.0, 5.0))


def test_on_bad_lines_skip_never_gives_a_rating_to_the_wrong_movie(caplog):
  text = ("1:\n5,3,2005-01-01\n2;\n6,4,2005-01-01\n3:\n7,x,2005-01-01\n8,2,2005-01-02\n" +
          "9," + "9" * 300 + ",2005-01-01\n").encode()
  columns = netflix.parse_netflix_text(text, "combined_data_1.txt", (1.0, 5.0),
                                       on_bad_lines="skip")
  np.testing.assert_array_equal(columns.line_numbers, [2, 7])
  np.testing.assert_array_equal(columns.item, [b"1", b"3"])
  np.testing.assert_array_equal(columns.user, [b"5", b"8"])
  assert columns.skipped_lines == 4
  assert "line 4: its movie line 3 is bad" in caplog.text
  assert "line 8: line is 313 bytes long; the limit is 256 bytes" in caplog.text


_MOVIES = st.lists(st.tuples(st.integers(1, 17770), st.lists(st.tuples(
    st.integers(1, 2649429), st.integers(1, 5), st.dates(date(1999, 11, 11), date(2005, 12, 31))),
    min_size=1, max_size=5)), min_size=1, max_size=4)
_NOISE = st.sampled_from([b"", b"\n", b"\r", b",", b":", b"\xef\xbb\xbf", b"\xff", b"nan",
                          b"1e99", b"-", b"2005-02-30", b"x" * 300, b" "])


@settings(max_examples=300, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(movies=_MOVIES, mutations=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 4), _NOISE),
                                          max_size=5))
def test_fuzz_mutated_netflix_files_parse_or_name_the_file_and_line(movies, mutations):
  data = "".join(f"{movie}:\n" + "".join(f"{c},{r},{d.isoformat()}\n" for c, r, d in ratings)
                 for movie, ratings in movies).encode()
  for where, deleted, noise in mutations:
    position = int(where * len(data))
    data = data[:position] + noise + data[position + deleted:]
  num_lines = parsing.normalise_text(data, "f").rstrip(b"\n").count(b"\n") + 1
  for mode in parsing.ON_BAD_LINES:
    try:
      columns = netflix.parse_netflix_text(data, "mv_1.txt", (1.0, 5.0), on_bad_lines=mode)
    except RatingsError as error:
      match = re.match(r"mv_1\.txt(?::(\d+))?: \S", str(error))
      assert match, str(error)
      assert match.group(1) is None or 1 <= int(match.group(1)) <= num_lines
      continue
    rows = columns.rating.shape[0]
    assert rows + columns.skipped_lines < num_lines  # The rest are movie lines, at least one.
    assert columns.item.shape == columns.user.shape == columns.timestamp.shape == (rows,)
    assert ((columns.rating >= 1) & (columns.rating <= 5)).all()
    assert mode == "skip" or columns.skipped_lines == 0


@pytest.mark.parametrize("date_text", ["2005-01", "2005-01-01T10", " 2005-01-01", "2005-01-01Z"])
def test_only_yyyy_mm_dd_is_a_date(date_text):
  with pytest.raises(RatingsError, match=rf"mv_1\.txt:2: expected a YYYY-MM-DD date, got "
                     rf"'{date_text}'"):
    netflix.parse_netflix_text(f"1:\n5,3,{date_text}\n".encode(), "mv_1.txt")
