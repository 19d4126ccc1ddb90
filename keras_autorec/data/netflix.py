"""The Netflix Prize training data, from `training_set/mv_*.txt` or `combined_data_*.txt`."""

from __future__ import annotations

import glob
import logging
import os

import numpy as np

from keras_autorec.data import line_fields, parsing
from keras_autorec.data.ratings import Ratings, RatingsError, from_raw

RATING_SCALE = (1.0, 5.0)
WHERE_TO_GET = (
    "The Netflix Prize data is not distributed by TFDS or GroupLens; get it from "
    "https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data (combined_data_*.txt) or the "
    "original nf_prize_dataset.tar.gz (training_set/mv_*.txt, e.g. via Academic Torrents) and pass "
    "the folder holding it as --data_dir.")
_SECONDS_PER_DAY = 86400
# Lines are parsed in chunks of about this many bytes to bound the per-field Python objects.
_CHUNK_BYTES = 64 << 20


def load_netflix(data_dir: str, rating_scale: tuple[float, float] | None = None,
                 on_bad_lines: str = "error") -> Ratings:
  """Reads the Netflix Prize ratings found under `data_dir`.

  Looks for `combined_data_*.txt` in `data_dir`, then `mv_*.txt` in `data_dir/training_set`,
  `data_dir/download/training_set` or `data_dir` itself. Dates become Unix timestamps (UTC).
  `on_bad_lines` is "error" (the earliest bad line of a file is an error) or "skip".
  """
  files = find_files(data_dir)
  rating_scale = rating_scale or RATING_SCALE
  parts = []
  for path in files:
    with open(path, "rb") as f:
      parts.append(parse_netflix_text(f.read(), path, rating_scale, on_bad_lines))
  ratings = from_raw(
      np.concatenate([p.user for p in parts]), np.concatenate([p.item for p in parts]),
      np.concatenate([p.rating for p in parts]), np.concatenate([p.timestamp for p in parts]),
      rating_scale, source=data_dir)
  logging.info("Loaded Netflix Prize data from %s (%d files): %d ratings, %d users, %d items, "
               "%d duplicates removed", data_dir, len(files), ratings.num_ratings,
               ratings.num_users, ratings.num_items, ratings.duplicates_removed)
  return ratings


def find_files(data_dir: str) -> list[str]:
  """Returns the Netflix ratings files under `data_dir`, or raises DataNotFoundError."""
  patterns = [os.path.join(data_dir, "combined_data_*.txt")] + [
      os.path.join(folder, "mv_*.txt") for folder in (
          os.path.join(data_dir, "training_set"),
          os.path.join(data_dir, "download", "training_set"), data_dir)]
  for pattern in patterns:
    files = sorted(glob.glob(pattern))
    if files:
      return files
  raise parsing.DataNotFoundError(
      f"no Netflix Prize ratings files under {data_dir!r}; looked for:\n  " +
      "\n  ".join(patterns) + f"\n{WHERE_TO_GET}")


def parse_netflix_text(data: bytes, source: str,
                       rating_scale: tuple[float, float] | None = None,
                       on_bad_lines: str = "error") -> parsing.RawColumns:
  """Parses `<movie id>:` blocks of `customer,rating,YYYY-MM-DD` lines into raw columns.

  Bad lines (see `parsing.parse_columns`) raise RatingsError naming the earliest one ("error") or
  are dropped and logged ("skip"); a rating outside `rating_scale` (when given) is a bad line.
  """
  if on_bad_lines not in parsing.ON_BAD_LINES:
    raise ValueError(f"on_bad_lines must be one of {parsing.ON_BAD_LINES}, got {on_bad_lines!r}")
  data = parsing.normalise_text(data, source).rstrip(b"\n")
  if not data:
    raise RatingsError(f"{source}: no ratings found (empty file)")
  bad_lines = line_fields.BadLines(source)
  parts = []
  first_line_number = 1
  for start, end in _block_aligned_chunks(data):
    chunk = data[start:end]
    parts.append(_parse_blocks(chunk, first_line_number, rating_scale, bad_lines))
    first_line_number += chunk.count(b"\n") + 1
  skipped = bad_lines.resolve(on_bad_lines)
  line_numbers = np.concatenate([p.line_numbers for p in parts])
  if not line_numbers.size:
    raise RatingsError(f"{source}: no ratings found (only '<movie id>:' or bad lines)")
  return parsing.RawColumns(
      user=np.concatenate([p.user for p in parts]), item=np.concatenate([p.item for p in parts]),
      rating=np.concatenate([p.rating for p in parts]),
      timestamp=np.concatenate([p.timestamp for p in parts]), line_numbers=line_numbers,
      source=source, skipped_lines=skipped)


def _block_aligned_chunks(data: bytes):
  """Yields (start, end) byte ranges of about _CHUNK_BYTES that each start at a movie line."""
  start = 0
  while start < len(data):
    colon = data.find(b":", start + _CHUNK_BYTES)
    end = len(data) if colon < 0 else data.rfind(b"\n", start, colon)
    end = len(data) if end <= start else end
    yield start, end
    start = end + 1


def _good_lines(data: bytes, first_line_number: int, bad_lines: line_fields.BadLines):
  """(data without its bad lines, is_header, is_rating, line_numbers) of the remaining lines.

  Bad lines (neither a movie nor a rating line, too long, or a rating without a good movie line
  above it) go to `bad_lines`.
  """
  buffer = np.frombuffer(data, dtype=np.uint8)
  newlines = np.flatnonzero(buffer == ord("\n"))
  line_ends = np.append(newlines, len(data))
  line_starts = np.insert(newlines + 1, 0, 0)
  commas = np.diff(np.searchsorted(np.flatnonzero(buffer == ord(",")), line_ends), prepend=0)
  colons = np.diff(np.searchsorted(np.flatnonzero(buffer == ord(":")), line_ends), prepend=0)
  last_byte = buffer[np.maximum(line_ends - 1, 0)]
  line_bytes = line_ends - line_starts
  # All fields go into one fixed-width array, so no line may be longer than a field may be.
  too_long = line_bytes > line_fields.MAX_FIELD_CHARS
  is_header = (commas == 0) & (colons == 1) & (last_byte == ord(":")) & (line_bytes > 1) & ~too_long
  is_rating = (commas == 2) & (colons == 0) & ~too_long
  line_numbers = np.arange(first_line_number, first_line_number + line_ends.size, dtype=np.int64)
  bad_lines.add(line_numbers, too_long, lambda row: (
      f"line is {int(line_bytes[row])} bytes long; the limit is {line_fields.MAX_FIELD_CHARS} "
      "bytes"))
  malformed = ~(is_header | is_rating) | too_long
  bad_lines.add(line_numbers, malformed & ~too_long, lambda row: (
      "expected '<movie id>:' or 'customer,rating,YYYY-MM-DD', got "
      f"{_line_text(data, line_starts[row], line_ends[row])!r}"))
  # A rating line belongs to the nearest movie line above it. Under a bad line that may have been
  # a movie line (no commas), or above every movie line, it has no movie and is bad too.
  movie_like = (commas == 0) & (line_bytes > 0)
  movie_line = np.maximum.accumulate(np.where(movie_like, np.arange(line_bytes.size), -1))
  orphan = is_rating & ((movie_line < 0) | ~is_header[np.maximum(movie_line, 0)])
  bad_lines.add(line_numbers, orphan, lambda row: (
      "expected a '<movie id>:' line before the ratings" if movie_line[row] < 0 else
      f"its movie line {int(line_numbers[movie_line[row]])} is bad"))
  keep = ~(malformed | orphan)
  if not keep.all():
    data = line_fields.drop_lines(buffer, line_bytes, keep)
    is_header, is_rating, line_numbers = is_header[keep], is_rating[keep], line_numbers[keep]
  return data, is_header, is_rating, line_numbers


def _parse_blocks(data: bytes, first_line_number: int, rating_scale: tuple[float, float] | None,
                  bad_lines: line_fields.BadLines) -> parsing.RawColumns:
  """Parses whole lines from a `<movie id>:` line on; bad lines go to `bad_lines`."""
  data, is_header, is_rating, line_numbers = _good_lines(data, first_line_number, bad_lines)
  if not is_rating.any():
    return parsing.RawColumns(user=np.array([], dtype="S1"), item=np.array([], dtype="S1"),
                              rating=np.array([], dtype=np.float32),
                              timestamp=np.array([], dtype=np.int64),
                              line_numbers=np.array([], dtype=np.int64), source="")

  fields = np.array(data.replace(b"\n", b",").split(b","))
  fields_per_line = np.where(is_header, 1, 3)
  first_field = np.cumsum(fields_per_line) - fields_per_line
  header_lines = np.flatnonzero(is_header)
  rating_lines = np.flatnonzero(is_rating)
  movie_ids = np.char.rstrip(fields[first_field[header_lines]], b":")
  movie = movie_ids[np.searchsorted(header_lines, rating_lines, side="right") - 1]
  starts = first_field[rating_lines]
  customer = fields[starts]
  line_numbers = line_numbers[rating_lines]
  check = line_fields.RowChecks(bad_lines, line_numbers)
  check(customer == b"", lambda row: "empty customer id")
  rating = _convert(fields[starts + 1], np.float32, "a number for the rating", check)
  check.ratings(rating, rating_scale)
  dates = fields[starts + 2]
  # numpy also reads other ISO forms (2005-01, times, time zones): only YYYY-MM-DD is a date here.
  not_a_day = np.char.str_len(dates) != len("YYYY-MM-DD")
  check(not_a_day, lambda row: f"expected a YYYY-MM-DD date, got {_text(dates[row])!r}")
  if not_a_day.any():
    dates = np.where(not_a_day, b"1970-01-01", dates)
  days = _convert(dates, "datetime64[D]", "a YYYY-MM-DD date", check)
  good = ~check.bad
  return parsing.RawColumns(user=customer[good], item=movie[good], rating=rating[good],
                            timestamp=days[good].astype(np.int64) * _SECONDS_PER_DAY,
                            line_numbers=line_numbers[good], source="")


def _text(value: bytes) -> str:
  return value.decode("utf-8", "replace")


def _line_text(data: bytes, start: int, end: int) -> str:
  text = data[start:min(end, start + 80)].decode("utf-8", "replace")
  return text if end - start <= 80 else text + "..."


def _convert(values: np.ndarray, dtype, expected: str, check) -> np.ndarray:
  """`values` as `dtype`; values that do not convert are reported through `check`."""
  try:
    with np.errstate(over="ignore", invalid="ignore"):
      return values.astype(dtype)
  except (ValueError, OverflowError):
    pass
  invalid = line_fields.unparsable(values, dtype)
  check(invalid, lambda row: f"expected {expected}, got {_text(values[row])!r}")
  placeholder = np.array(b"0" if np.dtype(dtype).kind == "f" else b"1970-01-01")
  with np.errstate(over="ignore", invalid="ignore"):
    return np.where(invalid, placeholder, values).astype(dtype)
