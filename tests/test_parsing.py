"""Tests for keras_autorec.data.parsing and its line-to-columns core, data.line_fields."""

from __future__ import annotations

import logging
import re
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keras_autorec.data import line_fields, parsing
from keras_autorec.data.ratings import Ratings, RatingsError

ML1M_TEXT = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n10::3::1::5\n"


def parse_ratings_file(path: str, delimiter: str, rating_scale: tuple[float, float], *,
                       member: str | None = None, header: bool = False,
                       user_column: parsing.Column = 0, item_column: parsing.Column = 1,
                       rating_column: parsing.Column = 2,
                       timestamp_column: parsing.Column | None = None,
                       num_fields: int | None = None, on_bad_lines: str = "error") -> Ratings:
  """A delimited ratings file (or zip `member`) as Ratings, as the loaders read theirs."""
  columns = parsing.read_columns(
      path, delimiter, member=member, header=header, user_column=user_column,
      item_column=item_column, rating_column=rating_column, timestamp_column=timestamp_column,
      num_fields=num_fields, rating_scale=rating_scale, on_bad_lines=on_bad_lines)
  return parsing.ratings_from_columns(columns, rating_scale)


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
  return str(path)


def test_double_colon_file_exact_values(tmp_path):
  path = _write(tmp_path, "ratings.dat", ML1M_TEXT)
  ratings = parse_ratings_file(path, "::", (1, 5), timestamp_column=3)
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
  ratings = parse_ratings_file(path, delimiter, (1, 5), timestamp_column=3)
  np.testing.assert_array_equal(ratings.rating, [5, 3, 4, 1])
  np.testing.assert_array_equal(ratings.user_ids, ["1", "10", "2"])
  np.testing.assert_array_equal(ratings.timestamp, [978300760, 978302109, 978298413, 5])


def test_header_columns_by_name_and_half_stars(tmp_path):
  text = "timestamp,movieId,userId,rating\n100,m1,u1,4.5\n200,m2,u1,0.5\n"
  path = _write(tmp_path, "ratings.csv", text)
  ratings = parse_ratings_file(path, ",", (0.5, 5), header=True, user_column="userId",
                                       item_column="movieId", rating_column="rating",
                                       timestamp_column="timestamp")
  np.testing.assert_array_equal(ratings.user_ids, ["u1"])
  np.testing.assert_array_equal(ratings.item_ids, ["m1", "m2"])
  np.testing.assert_array_equal(ratings.rating, [4.5, 0.5])
  np.testing.assert_array_equal(ratings.timestamp, [100, 200])


def test_header_columns_by_position_string(tmp_path):
  path = _write(tmp_path, "r.csv", "a,b,c\nx,y,3\n")
  ratings = parse_ratings_file(path, ",", (1, 5), header=True, user_column="0",
                                       item_column="1", rating_column="2")
  np.testing.assert_array_equal(ratings.user_ids, ["x"])
  np.testing.assert_array_equal(ratings.timestamp, [0])


def test_duplicates_keep_latest(tmp_path):
  text = "1\t5\t2\t300\n1\t5\t4\t100\n2\t5\t3\t1\n1\t5\t1\t200\n"
  ratings = parse_ratings_file(_write(tmp_path, "u.data", text), "\t", (1, 5),
                                       timestamp_column=3)
  assert ratings.duplicates_removed == 2
  assert ratings.num_ratings == 2
  np.testing.assert_array_equal(ratings.rating, [2, 3])  # Timestamp 300 wins for (1, 5).


def test_wrong_field_count_names_file_and_line(tmp_path):
  lines = ["1::2::3::4"] * 16 + ["1::2::3"] + ["1::2::3::4"]
  path = _write(tmp_path, "ratings.dat", "\n".join(lines) + "\n")
  with pytest.raises(RatingsError) as error:
    parse_ratings_file(path, "::", (1, 5), num_fields=4)
  assert str(error.value) == f"{path}:17: expected 4 fields separated by '::', got 3"


def test_first_line_fixes_field_count_when_not_given(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2,3\n1,2,3,4\n")
  with pytest.raises(RatingsError, match=r"r\.csv:2: expected 3 fields separated by ',', got 4"):
    parse_ratings_file(path, ",", (1, 5))


def test_header_line_counts_in_line_numbers(tmp_path):
  path = _write(tmp_path, "r.csv", "u,i,r\n1,2,3\n1,2\n")
  with pytest.raises(RatingsError, match=r"r\.csv:3: expected 3 fields"):
    parse_ratings_file(path, ",", (1, 5), header=True)


def test_blank_line_in_middle_is_error_but_trailing_newlines_are_fine(tmp_path):
  ok = parse_ratings_file(_write(tmp_path, "ok.tsv", "1\t2\t3\n4\t5\t1\n\n\n"), "\t",
                                  (1, 5))
  assert ok.num_ratings == 2
  path = _write(tmp_path, "bad.tsv", "1\t2\t3\n\n4\t5\t1\n")
  with pytest.raises(RatingsError, match=r"bad\.tsv:2: blank line; expected 3 fields"):
    parse_ratings_file(path, "\t", (1, 5))


def test_crlf_line_endings(tmp_path):
  ratings = parse_ratings_file(_write(tmp_path, "r.csv", b"1,2,3\r\n1,3,4\r\n"), ",",
                                       (1, 5))
  np.testing.assert_array_equal(ratings.item_ids, ["2", "3"])
  np.testing.assert_array_equal(ratings.rating, [3, 4])


def test_non_numeric_rating_names_line(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2,3\n1,3,4\n2,2,four\n")
  with pytest.raises(RatingsError) as error:
    parse_ratings_file(path, ",", (1, 5))
  assert str(error.value) == (f"{path}:3: expected a number for the rating in field 3, "
                              f"got 'four'")


def test_non_integer_timestamp_names_line(tmp_path):
  path = _write(tmp_path, "r.dat", "1::2::3::10\n1::3::4::1.5\n")
  with pytest.raises(RatingsError, match=r"r\.dat:2: expected an integer for the timestamp in "
                     r"field 4, got '1\.5'"):
    parse_ratings_file(path, "::", (1, 5), timestamp_column=3)


def test_out_of_scale_rating_names_line(tmp_path):
  path = _write(tmp_path, "r.csv", "u,i,r\n1,2,3\n1,3,4\n2,2,6\n")
  with pytest.raises(RatingsError, match=r"r\.csv:4: rating .*6\.0.* is outside the rating scale"):
    parse_ratings_file(path, ",", (1, 5), header=True)


def test_empty_id_names_line(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2,3\n,3,4\n")
  with pytest.raises(RatingsError, match=r"r\.csv:2: empty user id in field 1"):
    parse_ratings_file(path, ",", (1, 5))


def test_unknown_column_name_lists_header(tmp_path):
  path = _write(tmp_path, "r.csv", "userId,movieId,rating\n1,2,3\n")
  with pytest.raises(RatingsError, match=r"no item column named 'itemId'.*movieId"):
    parse_ratings_file(path, ",", (1, 5), header=True, user_column="userId",
                               item_column="itemId", rating_column="rating")


def test_column_position_out_of_range(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2,3\n")
  with pytest.raises(RatingsError, match=r"timestamp column 3 is out of range"):
    parse_ratings_file(path, ",", (1, 5), timestamp_column=3)


@pytest.mark.parametrize("text", ["", "\n\n", "u,i,r\n"])
def test_empty_input_is_error(tmp_path, text):
  with pytest.raises(RatingsError, match="no ratings found"):
    parse_ratings_file(_write(tmp_path, "r.csv", text), ",", (1, 5), header=True)


def test_non_ascii_ids_are_kept(tmp_path):
  path = _write(tmp_path, "r.csv", "josé,café,4\nzoë,café,5\n")
  ratings = parse_ratings_file(path, ",", (1, 5))
  np.testing.assert_array_equal(ratings.user_ids, ["josé", "zoë"])
  np.testing.assert_array_equal(ratings.item_ids, ["café"])


def test_invalid_utf8_names_line(tmp_path):
  path = _write(tmp_path, "r.csv", b"a,b,1\nc,\xff,2\n")
  with pytest.raises(RatingsError, match=r"r\.csv:2: not valid UTF-8"):
    parse_ratings_file(path, ",", (1, 5))


def test_chunked_parse_matches_and_keeps_line_numbers(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  rows = [f"{u}::{i}::{r}::{t}" for u, i, r, t in zip(
      rng.integers(1, 50, 500), rng.integers(1, 80, 500), rng.integers(1, 6, 500),
      rng.integers(0, 10**9, 500))]
  path = _write(tmp_path, "ratings.dat", "\n".join(rows) + "\n")
  whole = parsing.read_columns(path, "::", timestamp_column=3)
  monkeypatch.setattr(line_fields, "_CHUNK_BYTES", 100)
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
  from_file = parse_ratings_file(path, "::", (1, 5), timestamp_column=3)
  from_zip = parse_ratings_file(str(archive), "::", (1, 5), member="ml-1m/ratings.dat",
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
  assert line_fields.first_unparsable(values, np.float32) == (3, "x")
  assert line_fields.first_unparsable(values, np.int64) == (1, "2.5")


ML100K_LINES = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"


def test_headerless_file_read_with_header_is_an_error_suggesting_noheader(tmp_path):
  path = _write(tmp_path, "u1.base", ML100K_LINES)
  with pytest.raises(RatingsError) as error:
    parse_ratings_file(path, "\t", (1, 5), header=True, user_column="0", item_column="1",
                               rating_column="2")
  assert str(error.value).startswith(f"{path}:1: expected a header line")
  assert "rating field is the number '3'" in str(error.value)
  assert "--noheader" in str(error.value)


def test_column_positions_mean_positions_even_when_header_names_are_digits(tmp_path):
  # Two header names are digits in another order: "1" must still be the second field.
  path = _write(tmp_path, "r.csv", "1,0,rating\nu,i,4\n")
  ratings = parse_ratings_file(path, ",", (1, 5), header=True, user_column="0",
                                       item_column="1", rating_column="2")
  np.testing.assert_array_equal(ratings.user_ids, ["u"])
  np.testing.assert_array_equal(ratings.item_ids, ["i"])
  np.testing.assert_array_equal(ratings.rating, [4])


def test_overlong_line_is_an_error_naming_file_and_line(tmp_path):
  long_line = "x" * (parsing.MAX_LINE_BYTES + 1) + ",8,5"
  path = _write(tmp_path, "r.csv", f"1,2,3\n{long_line}\n3,4,5\n")
  with pytest.raises(RatingsError) as error:
    parse_ratings_file(path, ",", (1, 5))
  assert str(error.value) == (f"{path}:2: line is {len(long_line)} bytes long; the limit is "
                              f"{parsing.MAX_LINE_BYTES} bytes")
  skipped = parsing.read_columns(path, ",", rating_scale=(1, 5), on_bad_lines="skip")
  np.testing.assert_array_equal(skipped.line_numbers, [1, 3])


def test_overlong_field_is_an_error_naming_file_line_and_field(tmp_path):
  long_id = "y" * (line_fields.MAX_FIELD_CHARS + 1)
  path = _write(tmp_path, "r.csv", f"1,2,3\n1,{long_id},5\n")
  with pytest.raises(RatingsError) as error:
    parse_ratings_file(path, ",", (1, 5))
  assert str(error.value) == (
      f"{path}:2: field 2 is {line_fields.MAX_FIELD_CHARS + 1} characters "
      f"long; the limit is {line_fields.MAX_FIELD_CHARS}")
  # A long field in a column that is not read is fine (up to the line limit).
  comment = "z" * 10_000
  ratings = parse_ratings_file(_write(tmp_path, "c.csv", f"1,2,3,{comment}\n"), ",",
                                       (1, 5))
  assert ratings.num_ratings == 1


@pytest.mark.parametrize("header", [False, True])
def test_utf8_bom_is_stripped(tmp_path, header):
  text = ("userId,movieId,rating\n" if header else "") + "196,242,3\n"
  path = _write(tmp_path, "r.csv", b"\xef\xbb\xbf" + text.encode())
  ratings = parse_ratings_file(path, ",", (1, 5), header=header, user_column="0",
                                       item_column="movieId" if header else "1")
  np.testing.assert_array_equal(ratings.user_ids, ["196"])
  np.testing.assert_array_equal(ratings.item_ids, ["242"])


def test_cr_only_line_endings_are_read(tmp_path):
  path = _write(tmp_path, "r.csv", b"userId,movieId,rating\r1,2,3\r1,3,4\r")
  ratings = parse_ratings_file(path, ",", (1, 5), header=True)
  np.testing.assert_array_equal(ratings.item_ids, ["2", "3"])
  np.testing.assert_array_equal(ratings.rating, [3, 4])
  with pytest.raises(RatingsError, match=r"r\.csv:3: expected a number for the rating"):
    parse_ratings_file(_write(tmp_path, "r.csv", b"u,i,r\r1,2,3\r1,3,x\r"), ",", (1, 5),
                               header=True)


def _lines_with_bad_ones(bad: dict[int, str], count: int = 250) -> str:
  """`count` good ML-1M lines with line number -> text replacements."""
  lines = [f"{n % 7 + 1}::{n}::{n % 5 + 1}::{1000 + n}" for n in range(1, count + 1)]
  for line, text in bad.items():
    lines[line - 1] = text
  return "\n".join(lines) + "\n"


@pytest.mark.parametrize("bad", [
    {201: "1::2::3", 101: "1::2::x::4"},  # A field count error after a value error.
    {201: "1::2::x::4", 101: "::2::3::4"},  # A rating error after an empty id.
    {201: "", 101: "1::2::9::4"},  # A blank line after an out-of-scale rating.
    {201: "1::2::3::t", 101: "1::2::nan::4"},  # A timestamp error after a NaN rating.
])
def test_earliest_bad_line_is_reported(tmp_path, bad):
  path = _write(tmp_path, "ratings.dat", _lines_with_bad_ones(bad))
  with pytest.raises(RatingsError) as error:
    parse_ratings_file(path, "::", (1, 5), timestamp_column=3, num_fields=4)
  assert str(error.value).startswith(f"{path}:101: ")
  assert str(error.value).endswith("(2 bad lines in all; --on_bad_lines=skip drops them)")


def test_bad_lines_are_reported_earliest_first_across_chunks(tmp_path, monkeypatch):
  monkeypatch.setattr(line_fields, "_CHUNK_BYTES", 64)
  path = _write(tmp_path, "ratings.dat", _lines_with_bad_ones({180: "1::2::3", 30: "1::2::x::4"}))
  with pytest.raises(RatingsError, match=r"ratings\.dat:30: expected a number for the rating"):
    parsing.read_columns(path, "::", timestamp_column=3, rating_scale=(1, 5))


def test_out_of_scale_message_names_the_rating_scale_flag(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2,3\n1,3,10\n")
  with pytest.raises(RatingsError) as error:
    parse_ratings_file(path, ",", (1, 5))
  assert str(error.value) == (f"{path}:2: rating 10.0 is outside the rating scale [1, 5]; if the "
                              "data uses another scale, set --rating_scale=lowest,highest")


def test_on_bad_lines_skip_drops_bad_lines_and_logs_them(tmp_path, caplog):
  bad = {3: "1::2::3", 5: "", 7: "1::2::x::4", 9: "::2::3::4", 11: "1::2::6::4", 13: "1::2::3::t",
         15: "1::2::inf::4"}
  path = _write(tmp_path, "ratings.dat", _lines_with_bad_ones(bad, count=20))
  with caplog.at_level(logging.WARNING):
    columns = parsing.read_columns(path, "::", timestamp_column=3, rating_scale=(1, 5),
                                   on_bad_lines="skip")
  good_lines = [n for n in range(1, 21) if n not in bad]
  np.testing.assert_array_equal(columns.line_numbers, good_lines)
  np.testing.assert_array_equal(columns.rating, [n % 5 + 1 for n in good_lines])
  np.testing.assert_array_equal(columns.timestamp, [1000 + n for n in good_lines])
  assert columns.skipped_lines == 7
  assert (f"{path}: skipped 7 bad lines (--on_bad_lines=skip); the first: line 3: expected 4 "
          "fields separated by '::', got 3; line 5: blank line; expected 4 fields separated by "
          "'::'; line 7: expected a number for the rating in field 3, got 'x'; line 9: empty "
          "user id in field 1; line 11: rating 6.0 is outside the rating scale [1, 5]") in (
              caplog.text)


def test_on_bad_lines_skip_with_only_bad_lines_is_an_error(tmp_path):
  path = _write(tmp_path, "r.csv", "1,2\n3,4\n")
  with pytest.raises(RatingsError, match=r"r\.csv:1: no ratings found: all 2 lines are bad"):
    parsing.read_columns(path, ",", num_fields=3, on_bad_lines="skip")


def test_invalid_utf8_lines_are_skipped_and_counted(tmp_path):
  path = _write(tmp_path, "r.csv", b"a,b,1\nc,\xff,2\nd,\xc3\xa9,3\n")
  columns = parsing.read_columns(path, ",", rating_scale=(1, 5), on_bad_lines="skip")
  np.testing.assert_array_equal(columns.line_numbers, [1, 3])
  np.testing.assert_array_equal(columns.item, ["b", "é"])
  assert columns.skipped_lines == 1


def test_huge_integer_timestamp_is_a_bad_line_not_an_overflow(tmp_path):
  path = _write(tmp_path, "r.dat", "1::2::3::99999999999999999999\n")
  with pytest.raises(RatingsError, match=r"r\.dat:1: expected an integer for the timestamp"):
    parsing.read_columns(path, "::", timestamp_column=3)


# Property-based fuzzing: every outcome is a parse whose counts match the file's lines, or a
# RatingsError naming the file (and the line, for a line's fault); never another exception.
FUZZ_FORMATS = {
    "ml100k": dict(delimiter="\t", header=False),
    "ml1m": dict(delimiter="::", header=False),
    "csv": dict(delimiter=",", header=True),
}
CSV_HEADER = "userId,movieId,rating,timestamp\n"
FUZZ_SOURCE = "fuzz/ratings.txt"
FUZZ_SETTINGS = settings(max_examples=500, derandomize=True, database=None, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


class _Warnings(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def _check_parse_outcome(data: bytes, fmt: str) -> None:
  """Parses `data` in format `fmt` in both on_bad_lines modes and checks the outcome."""
  options = FUZZ_FORMATS[fmt]
  body = parsing.normalise_text(data, FUZZ_SOURCE).rstrip(b"\n")
  num_lines = body.count(b"\n") + 1 - options["header"]
  outcomes = {}
  for mode in parsing.ON_BAD_LINES:
    handler = _Warnings()
    logging.getLogger().addHandler(handler)
    try:
      columns = parsing.parse_columns(data, FUZZ_SOURCE, options["delimiter"],
                                      header=options["header"], timestamp_column=3, num_fields=4,
                                      rating_scale=(1.0, 5.0), on_bad_lines=mode)
      ratings = parsing.ratings_from_columns(columns, (1.0, 5.0))
    except RatingsError as error:
      match = re.match(re.escape(FUZZ_SOURCE) + r"(?::(\d+))?: \S", str(error))
      assert match, str(error)
      if match.group(1):
        assert 1 <= int(match.group(1)) <= max(num_lines + options["header"], 1)
      event(f"{mode}: error{' at a line' if match.group(1) else ''}")
      outcomes[mode] = None
      continue
    finally:
      logging.getLogger().removeHandler(handler)
    rows = columns.rating.shape[0]
    assert rows + columns.skipped_lines == num_lines
    assert columns.user.shape == columns.item.shape == columns.line_numbers.shape == (rows,)
    assert np.all(np.diff(columns.line_numbers) > 0)
    assert np.isfinite(ratings.rating).all()
    assert ((ratings.rating >= 1) & (ratings.rating <= 5)).all()
    assert ratings.num_ratings + ratings.duplicates_removed == rows
    if columns.skipped_lines:
      assert mode == "skip"
      assert any(f"skipped {columns.skipped_lines} bad lines" in m for m in handler.messages)
    event(f"{mode}: parsed{', some lines skipped' if columns.skipped_lines else ''}")
    outcomes[mode] = columns
  if outcomes["error"] is not None:
    assert outcomes["skip"] is not None and outcomes["skip"].skipped_lines == 0
    np.testing.assert_array_equal(outcomes["error"].rating, outcomes["skip"].rating)


@FUZZ_SETTINGS
@given(data=st.binary(max_size=300), fmt=st.sampled_from(sorted(FUZZ_FORMATS)))
def test_fuzz_random_bytes_parse_or_name_the_file_and_line(data, fmt):
  _check_parse_outcome(data, fmt)


_FIELD = st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(["1", "2.5", "5", "0.5", "6"]))
_LINES = st.lists(st.tuples(_FIELD, _FIELD, st.sampled_from(["1", "2", "3", "4", "5", "4.5"]),
                            st.integers(0, 2**31).map(str)), min_size=1, max_size=12)
_NOISE = st.sampled_from([b"", b"\n", b"\r", b"\r\n", b"\t", b"::", b":", b",", b"\xef\xbb\xbf",
                          b"\xff", b"\xc3\xa9", b"nan", b"inf", b"-1", b"1e99", b" ", b"\x00",
                          b"x" * 300, b"9" * 25])


@FUZZ_SETTINGS
@given(lines=_LINES, fmt=st.sampled_from(sorted(FUZZ_FORMATS)),
       mutations=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 4), _NOISE), max_size=6))
def test_fuzz_mutated_valid_files_parse_or_name_the_file_and_line(lines, fmt, mutations):
  delimiter = FUZZ_FORMATS[fmt]["delimiter"]
  text = (CSV_HEADER if FUZZ_FORMATS[fmt]["header"] else "") + "".join(
      delimiter.join(fields) + "\n" for fields in lines)
  data = text.encode()
  for where, deleted, noise in mutations:
    position = int(where * len(data))
    data = data[:position] + noise + data[position + deleted:]
  _check_parse_outcome(data, fmt)


def test_unparsable_marks_every_value_numpy_cannot_convert():
  values = np.array([b"1", b"2.5", b"x", b"99999999999999999999", b" 7 ", b"", b"1_0", b"nan"])
  np.testing.assert_array_equal(line_fields.unparsable(values, np.float32),
                                [0, 0, 1, 0, 0, 1, 0, 0])
  np.testing.assert_array_equal(line_fields.unparsable(values, np.int64), [0, 1, 1, 1, 0, 1, 0, 1])
  np.testing.assert_array_equal(line_fields.unparsable(values.astype(str), np.int64),
                                [0, 1, 1, 1, 0, 1, 0, 1])
  values[~line_fields.unparsable(values, np.int64)].astype(np.int64)  # The rest do convert.
