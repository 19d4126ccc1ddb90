"""The Netflix Prize training data, from `training_set/mv_*.txt` or `combined_data_*.txt`."""

from __future__ import annotations

import glob
import logging
import os

import numpy as np

from keras_autorec.data import parsing
from keras_autorec.data.ratings import Ratings, RatingsError, check_rating_scale, from_raw

RATING_SCALE = (1.0, 5.0)
WHERE_TO_GET = (
    "The Netflix Prize data is not distributed by TFDS or GroupLens; get it from "
    "https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data (combined_data_*.txt) or the "
    "original nf_prize_dataset.tar.gz (training_set/mv_*.txt, e.g. via Academic Torrents) and pass "
    "the folder holding it as --data_dir.")
_SECONDS_PER_DAY = 86400
# Lines are parsed in chunks of about this many bytes to bound the per-field Python objects.
_CHUNK_BYTES = 64 << 20


def load_netflix(data_dir: str, rating_scale: tuple[float, float] | None = None) -> Ratings:
  """Reads the Netflix Prize ratings found under `data_dir`.

  Looks for `combined_data_*.txt` in `data_dir`, then `mv_*.txt` in `data_dir/training_set`,
  `data_dir/download/training_set` or `data_dir` itself. Dates become Unix timestamps (UTC).
  """
  files = find_files(data_dir)
  rating_scale = rating_scale or RATING_SCALE
  parts = []
  for path in files:
    with open(path, "rb") as f:
      part = parse_netflix_text(f.read(), path)
    # Checked per file so an error names its file and line; from_raw then sees valid ratings.
    check_rating_scale(part.rating, rating_scale, part.source, part.line_numbers)
    parts.append(part)
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


def parse_netflix_text(data: bytes, source: str) -> parsing.RawColumns:
  """Parses `<movie id>:` blocks of `customer,rating,YYYY-MM-DD` lines into raw columns."""
  data = parsing.normalise_text(data, source).rstrip(b"\n")
  if not data:
    raise RatingsError(f"{source}: no ratings found (empty file)")
  parts = []
  first_line_number = 1
  for start, end in _block_aligned_chunks(data):
    chunk = data[start:end]
    parts.append(_parse_blocks(chunk, source, first_line_number))
    first_line_number += chunk.count(b"\n") + 1
  if len(parts) == 1:
    return parts[0]
  return parsing.RawColumns(
      user=np.concatenate([p.user for p in parts]), item=np.concatenate([p.item for p in parts]),
      rating=np.concatenate([p.rating for p in parts]),
      timestamp=np.concatenate([p.timestamp for p in parts]),
      line_numbers=np.concatenate([p.line_numbers for p in parts]), source=source)


def _block_aligned_chunks(data: bytes):
  """Yields (start, end) byte ranges of about _CHUNK_BYTES that each start at a movie line."""
  start = 0
  while start < len(data):
    colon = data.find(b":", start + _CHUNK_BYTES)
    end = len(data) if colon < 0 else data.rfind(b"\n", start, colon)
    end = len(data) if end <= start else end
    yield start, end
    start = end + 1


def _parse_blocks(data: bytes, source: str, first_line_number: int) -> parsing.RawColumns:
  """Parses whole lines starting with a `<movie id>:` line; line numbers start at the given one."""
  buffer = np.frombuffer(data, dtype=np.uint8)
  newlines = np.flatnonzero(buffer == ord("\n"))
  line_ends = np.append(newlines, len(data))
  line_starts = np.insert(newlines + 1, 0, 0)
  commas = np.diff(np.searchsorted(np.flatnonzero(buffer == ord(",")), line_ends), prepend=0)
  colons = np.diff(np.searchsorted(np.flatnonzero(buffer == ord(":")), line_ends), prepend=0)
  last_byte = buffer[np.maximum(line_ends - 1, 0)]
  is_header = ((commas == 0) & (colons == 1) & (last_byte == ord(":"))
               & (line_ends - line_starts > 1))
  is_rating = (commas == 2) & (colons == 0)
  bad = np.flatnonzero(~(is_header | is_rating))
  if bad.size:
    line = int(bad[0])
    text = data[line_starts[line]:line_ends[line]].decode("utf-8", "replace")
    raise RatingsError(f"{source}:{first_line_number + line}: expected '<movie id>:' or "
                       f"'customer,rating,YYYY-MM-DD', got {text!r}")
  if not is_header[0]:
    raise RatingsError(f"{source}:{first_line_number}: expected a '<movie id>:' line before the "
                       f"ratings")

  fields = np.array(data.replace(b"\n", b",").split(b","))
  fields_per_line = np.where(is_header, 1, 3)
  first_field = np.cumsum(fields_per_line) - fields_per_line
  header_lines = np.flatnonzero(is_header)
  rating_lines = np.flatnonzero(is_rating)
  if rating_lines.size == 0:
    raise RatingsError(f"{source}: no ratings found (only '<movie id>:' lines)")
  movie_ids = np.char.rstrip(fields[first_field[header_lines]], b":")
  # Each rating belongs to the nearest movie line above it.
  movie = movie_ids[np.searchsorted(header_lines, rating_lines, side="right") - 1]
  starts = first_field[rating_lines]
  customer = fields[starts]
  line_numbers = rating_lines.astype(np.int64) + first_line_number
  empty = np.flatnonzero(customer == b"")
  if empty.size:
    raise RatingsError(f"{source}:{int(line_numbers[empty[0]])}: empty customer id")
  rating = _convert(fields[starts + 1], np.float32, source, line_numbers, "a number for the rating")
  days = _convert(fields[starts + 2], "datetime64[D]", source, line_numbers, "a YYYY-MM-DD date")
  return parsing.RawColumns(user=customer, item=movie, rating=rating,
                            timestamp=days.astype(np.int64) * _SECONDS_PER_DAY,
                            line_numbers=line_numbers, source=source)


def _convert(values: np.ndarray, dtype, source: str, line_numbers: np.ndarray,
             expected: str) -> np.ndarray:
  try:
    return values.astype(dtype)
  except ValueError:
    row, text = parsing.first_unparsable(values, dtype)
    raise RatingsError(f"{source}:{int(line_numbers[row])}: expected {expected}, "
                       f"got {text!r}") from None
