"""Tests for keras_autorec.data.netflix on small files in the Netflix Prize layouts."""

from __future__ import annotations

import numpy as np
import pytest

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
