"""Fast, vectorised parsing of delimited ratings files into Ratings.

A file is read whole (or in large newline-aligned chunks), split into fields with one `bytes.split`
and converted column by column with numpy, so there is no Python work per line. A line that is not
a rating (wrong field count, blank, longer than MAX_LINE_BYTES, not UTF-8, an empty or overlong
field, a rating or timestamp that is not a number, a rating outside the scale) is a bad line: by
default the earliest one is an error `file:line: what was expected`; with on_bad_lines="skip" bad
lines are dropped, counted and logged. Quoted CSV fields are not supported (no GroupLens or Netflix
ratings file uses them).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import zipfile
from typing import Sequence

import numpy as np

from keras_autorec.data import line_fields
from keras_autorec.data.line_fields import MAX_LINE_BYTES, BadLines
from keras_autorec.data.ratings import Ratings, RatingsError, from_raw

# Control characters that never occur in ratings files; one stands in for a multi-byte delimiter.
_SENTINELS = (b"\x1f", b"\x1e", b"\x1d", b"\x1c", b"\x00")

ON_BAD_LINES = ("error", "skip")
_BOM = b"\xef\xbb\xbf"

Column = int | str


class DataNotFoundError(RatingsError):
  """The ratings files are missing: the message names the paths looked at and where to get them."""


@dataclasses.dataclass(frozen=True)
class RawColumns:
  """Columns of one ratings file before ids are factorised (ids still raw bytes or strings)."""

  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray
  timestamp: np.ndarray | None
  line_numbers: np.ndarray
  source: str
  skipped_lines: int = 0  # Bad lines dropped under on_bad_lines="skip".


def read_bytes(path: str, member: str | None = None) -> tuple[bytes, str]:
  """Returns the contents of `path` (or of `member` inside the zip file `path`) and its name."""
  if member is None:
    with open(path, "rb") as f:
      return f.read(), path
  source = os.path.join(path, member)
  try:
    with zipfile.ZipFile(path) as archive:
      return archive.read(member), source
  except KeyError as e:
    raise DataNotFoundError(f"{path}: the zip file has no member {member!r}") from e
  except zipfile.BadZipFile as e:
    raise RatingsError(f"{path}: not a valid zip file ({e})") from e


def parse_columns(data: bytes, source: str, delimiter: str, *, header: bool = False,
                  user_column: Column = 0, item_column: Column = 1, rating_column: Column = 2,
                  timestamp_column: Column | None = None, num_fields: int | None = None,
                  rating_scale: tuple[float, float] | None = None,
                  on_bad_lines: str = "error") -> RawColumns:
  """Parses delimited ratings text into raw columns, raising RatingsError naming `source:line`.

  Args:
    data: the file contents.
    source: the file name used in error messages.
    delimiter: field separator, one or more characters (e.g. "\\t", "::", ",").
    header: whether the first line holds column names.
    user_column, item_column, rating_column, timestamp_column: 0-based positions (ints or strings
      of digits, always taken as positions), or header names when `header` is set.
    num_fields: fields each line must have; None takes the count from the first line.
    rating_scale: (lowest, highest); a rating outside it makes its line bad. None checks only that
      ratings are finite.
    on_bad_lines: "error" raises RatingsError naming the earliest bad line; "skip" drops bad lines
      and logs how many and the first few.
  """
  if on_bad_lines not in ON_BAD_LINES:
    raise ValueError(f"on_bad_lines must be one of {ON_BAD_LINES}, got {on_bad_lines!r}")
  if not delimiter or "\n" in delimiter or "\r" in delimiter:
    raise RatingsError(f"{source}: invalid delimiter {delimiter!r}")
  if rating_scale is not None and not rating_scale[0] < rating_scale[1]:
    raise RatingsError(f"{source}: rating scale must have lowest < highest, got {rating_scale}")
  data, separator, data_end = _single_byte_separated(data, source, delimiter)
  first_line_end = data.find(b"\n", 0, data_end)
  first_line = data[:data_end] if first_line_end < 0 else data[:first_line_end]
  if header and len(first_line) > MAX_LINE_BYTES:
    raise RatingsError(f"{source}:1: the header line is {len(first_line)} bytes long; the limit "
                       f"is {MAX_LINE_BYTES} bytes")
  names = _decode(first_line, source, 1).split(separator.decode()) if header else None
  if num_fields is None:
    num_fields = first_line.count(separator) + 1
  if names is not None:
    _check_field_count(len(names), num_fields, source, 1, delimiter)
  positions = [_column_position(c, names, num_fields, source, role) for c, role in (
      (user_column, "user"), (item_column, "item"), (rating_column, "rating"),
      (timestamp_column, "timestamp"))]
  if names is not None:
    _check_header_is_not_a_rating(names, positions[2], source)
  if header and first_line_end < 0:
    raise RatingsError(f"{source}: no ratings found (only a header line)")
  body_start = first_line_end + 1 if header else 0
  bad_lines = BadLines(source)
  chunks = []
  first_line_number = 2 if header else 1
  for start, end in line_fields.chunk_bounds(data, body_start, data_end):
    chunks.append(line_fields.parse_chunk(data, start, end, separator, delimiter, num_fields,
                                          positions, first_line_number, rating_scale, bad_lines))
    first_line_number += data.count(b"\n", start, end) + 1
  return _joined_columns(chunks, source, bad_lines.resolve(on_bad_lines), bad_lines)


def _single_byte_separated(data: bytes, source: str, delimiter: str) -> tuple[bytes, bytes, int]:
  """(normalised text, a one-byte field separator, the end of its last non-blank line).

  A delimiter of several characters is replaced by a sentinel byte the text does not hold.
  """
  data = normalise_text(data, source)
  delimiter_bytes = delimiter.encode("utf-8")
  separator = delimiter_bytes
  if len(delimiter_bytes) > 1:
    separator = next((s for s in _SENTINELS if s not in data), None)
    if separator is None:
      raise RatingsError(f"{source}: cannot parse a file containing all of {_SENTINELS}")
    data = data.replace(delimiter_bytes, separator)
  # Trailing newlines are not blank lines in the middle. Not rstrip: that would copy the file.
  data_end = len(data)
  while data_end and data[data_end - 1] == ord("\n"):
    data_end -= 1
  if not data_end:
    raise RatingsError(f"{source}: no ratings found (empty file)")
  return data, separator, data_end


def _joined_columns(chunks: list, source: str, skipped: int, bad_lines: BadLines) -> RawColumns:
  """The parsed chunks' columns as one RawColumns; an error when no line was a rating."""
  line_numbers = np.concatenate([c[-1] for c in chunks])
  if not line_numbers.size:
    line, message = bad_lines.earliest()[0]
    raise RatingsError(f"{source}:{line}: no ratings found: all {skipped} lines are bad, the "
                       f"first: {message}")
  user, item, rating, timestamp = (
      None if chunks[0][i] is None else np.concatenate([c[i] for c in chunks]) for i in range(4))
  return RawColumns(user=user, item=item, rating=rating, timestamp=timestamp,
                    line_numbers=line_numbers, source=source, skipped_lines=skipped)


def normalise_text(data: bytes, source: str) -> bytes:
  """Drops a UTF-8 byte order mark and turns CRLF (or CR-only) line endings into LF."""
  if data.startswith(_BOM):
    data = data[len(_BOM):]
  if b"\r" in data:
    data = data.replace(b"\r\n", b"\n")
    if b"\n" not in data:
      logging.info("%s uses CR line endings (classic Mac OS); reading them as line ends", source)
      data = data.replace(b"\r", b"\n")
  return data


def read_columns(path: str, delimiter: str, *, member: str | None = None, header: bool = False,
                 user_column: Column = 0, item_column: Column = 1, rating_column: Column = 2,
                 timestamp_column: Column | None = None, num_fields: int | None = None,
                 rating_scale: tuple[float, float] | None = None,
                 on_bad_lines: str = "error") -> RawColumns:
  """Reads a delimited ratings file (or zip `member`) into raw columns; see `parse_columns`."""
  data, source = read_bytes(path, member)
  return parse_columns(data, source, delimiter, header=header, user_column=user_column,
                       item_column=item_column, rating_column=rating_column,
                       timestamp_column=timestamp_column, num_fields=num_fields,
                       rating_scale=rating_scale, on_bad_lines=on_bad_lines)


def ratings_from_columns(columns: RawColumns, rating_scale: tuple[float, float]) -> Ratings:
  """Builds Ratings from parsed columns via `from_raw` (errors name the file's lines)."""
  return from_raw(columns.user, columns.item, columns.rating, columns.timestamp, rating_scale,
                  columns.source, line_numbers=columns.line_numbers)


def ratings_sharing_vocabulary(parts: Sequence[RawColumns],
                               rating_scale: tuple[float, float]) -> list[Ratings]:
  """Builds one Ratings per part, all indexing into the vocabulary of their union.

  Each part is validated (with its own file and line numbers) and de-duplicated on its own, so a
  pair in two parts (e.g. train and test) stays in both; that is logged as a warning by callers
  that care. The vocabularies equal those `from_raw` would build from the concatenated parts.
  """
  built = [ratings_from_columns(part, rating_scale) for part in parts]
  user_ids = _union([r.user_ids for r in built])
  item_ids = _union([r.item_ids for r in built])
  return [
      dataclasses.replace(
          r,
          user_index=np.searchsorted(user_ids, r.user_ids).astype(np.int32)[r.user_index],
          item_index=np.searchsorted(item_ids, r.item_ids).astype(np.int32)[r.item_index],
          user_ids=user_ids, item_ids=item_ids)
      for r in built
  ]


def shared_pairs(a: Ratings, b: Ratings) -> int:
  """Returns how many (user, item) pairs occur in both `a` and `b` (same vocabularies)."""
  return int(np.intersect1d(a.pair_keys(), b.pair_keys()).shape[0])


def _union(vocabularies: list[np.ndarray]) -> np.ndarray:
  return np.unique(np.concatenate(vocabularies))


def _decode(data: bytes, source: str, first_line_number: int) -> str:
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = first_line_number + data.count(b"\n", 0, e.start)
    raise RatingsError(f"{source}:{line}: not valid UTF-8 text ({e.reason})") from None


def _check_field_count(got: int, expected: int, source: str, line: int, delimiter: str) -> None:
  if got != expected:
    raise RatingsError(f"{source}:{line}: expected {expected} fields separated by {delimiter!r}, "
                       f"got {got}")


def _column_position(column: Column | None, names: list[str] | None, num_fields: int,
                     source: str, role: str) -> int | None:
  """Resolves a column given by 0-based position (an int or digits) or header name to a position.

  Digits always mean a position, even when a header name is the same digits: a headerless file
  read as if it had a header would otherwise match positions against its first rating's fields.
  """
  if column is None:
    return None
  if isinstance(column, int) or (column.isascii() and column.isdigit()):
    position = int(column)
    if not 0 <= position < num_fields:
      raise RatingsError(f"{source}: {role} column {position} is out of range: lines have "
                         f"{num_fields} fields (positions are 0-based)")
    return position
  if names is not None and column in names:
    return names.index(column)
  known = (f"the header has {names} (if that is a rating, pass --noheader and give positions)"
           if names is not None else "the file has no header")
  raise RatingsError(f"{source}: no {role} column named {column!r}; {known}")


def _check_header_is_not_a_rating(names: list[str], rating_position: int, source: str) -> None:
  """Raises RatingsError when the header line's rating field is a number: it is a rating line."""
  name = names[rating_position].strip()
  try:
    is_number = math.isfinite(float(name))
  except ValueError:
    is_number = False
  if is_number:
    shown = "|".join(names)
    shown = shown if len(shown) <= 80 else shown[:80] + "..."
    raise RatingsError(
        f"{source}:1: expected a header line (header=True, the --header default), but its rating "
        f"field is the number {name!r}, so the file looks headerless (fields {shown!r}); pass "
        "--noheader (header=False) to read the first line as a rating")
