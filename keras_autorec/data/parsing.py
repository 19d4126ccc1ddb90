"""Fast, vectorised parsing of delimited ratings files into Ratings.

A file is read whole (or in large newline-aligned chunks), split into fields with one `bytes.split`
and converted column by column with numpy, so there is no Python work per line. Field counts are
validated per line with numpy so a malformed line is reported as `file:line: what was expected`.
Quoted CSV fields are not supported (no GroupLens or Netflix ratings file uses them).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Sequence

import numpy as np

from keras_autorec.data.ratings import Ratings, RatingsError, from_raw

# Lines are processed in chunks of about this many bytes so the per-field Python objects created
# by `bytes.split` stay bounded (a 25M-line file would otherwise need several GB of them).
_CHUNK_BYTES = 64 << 20
# Control characters that never occur in ratings files; one stands in for a multi-byte delimiter.
_SENTINELS = (b"\x1f", b"\x1e", b"\x1d", b"\x1c", b"\x00")

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
                  timestamp_column: Column | None = None,
                  num_fields: int | None = None) -> RawColumns:
  """Parses delimited ratings text into raw columns, raising RatingsError naming `source:line`.

  Args:
    data: the file contents.
    source: the file name used in error messages.
    delimiter: field separator, one or more characters (e.g. "\\t", "::", ",").
    header: whether the first line holds column names.
    user_column, item_column, rating_column, timestamp_column: 0-based positions, or header names
      when `header` is set (a string of digits that is not a header name is taken as a position).
    num_fields: fields each line must have; None takes the count from the first line.
  """
  if not delimiter or "\n" in delimiter or "\r" in delimiter:
    raise RatingsError(f"{source}: invalid delimiter {delimiter!r}")
  if b"\r" in data:
    data = data.replace(b"\r\n", b"\n")
  delimiter_bytes = delimiter.encode("utf-8")
  separator = delimiter_bytes
  if len(delimiter_bytes) > 1:
    separator = next((s for s in _SENTINELS if s not in data), None)
    if separator is None:
      raise RatingsError(f"{source}: cannot parse a file containing all of {_SENTINELS}")
    data = data.replace(delimiter_bytes, separator)
  data = data.rstrip(b"\n")  # Trailing newlines are not blank lines in the middle.
  if not data:
    raise RatingsError(f"{source}: no ratings found (empty file)")

  first_line_end = data.find(b"\n")
  first_line = data if first_line_end < 0 else data[:first_line_end]
  names = _decode(first_line, source, 1).split(separator.decode()) if header else None
  if num_fields is None:
    num_fields = first_line.count(separator) + 1
  if names is not None:
    _check_field_count(len(names), num_fields, source, 1, delimiter)
  positions = [_column_position(c, names, num_fields, source, role) for c, role in (
      (user_column, "user"), (item_column, "item"), (rating_column, "rating"),
      (timestamp_column, "timestamp"))]
  if header and first_line_end < 0:
    raise RatingsError(f"{source}: no ratings found (only a header line)")
  body_start = first_line_end + 1 if header else 0

  chunks = []
  first_line_number = 2 if header else 1
  for start, end in _chunk_bounds(data, body_start):
    chunk = data[start:end]
    chunks.append(_parse_chunk(chunk, source, separator, delimiter, num_fields, positions,
                               first_line_number))
    first_line_number += chunk.count(b"\n") + 1
  user, item, rating, timestamp = (
      None if chunks[0][i] is None else np.concatenate([c[i] for c in chunks]) for i in range(4))
  line_numbers = np.arange(2 if header else 1, first_line_number, dtype=np.int64)
  return RawColumns(user=user, item=item, rating=rating, timestamp=timestamp,
                    line_numbers=line_numbers, source=source)


def parse_ratings_file(path: str, delimiter: str, rating_scale: tuple[float, float], *,
                       member: str | None = None, header: bool = False,
                       user_column: Column = 0, item_column: Column = 1,
                       rating_column: Column = 2, timestamp_column: Column | None = None,
                       num_fields: int | None = None) -> Ratings:
  """Reads a delimited ratings file (or zip `member`) into Ratings; see `parse_columns`."""
  return ratings_from_columns(
      read_columns(path, delimiter, member=member, header=header, user_column=user_column,
                   item_column=item_column, rating_column=rating_column,
                   timestamp_column=timestamp_column, num_fields=num_fields), rating_scale)


def read_columns(path: str, delimiter: str, *, member: str | None = None, header: bool = False,
                 user_column: Column = 0, item_column: Column = 1, rating_column: Column = 2,
                 timestamp_column: Column | None = None,
                 num_fields: int | None = None) -> RawColumns:
  """Reads a delimited ratings file (or zip `member`) into raw columns; see `parse_columns`."""
  data, source = read_bytes(path, member)
  return parse_columns(data, source, delimiter, header=header, user_column=user_column,
                       item_column=item_column, rating_column=rating_column,
                       timestamp_column=timestamp_column, num_fields=num_fields)


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
  num_items = np.int64(max(a.num_items, 1))
  pairs_a = a.user_index.astype(np.int64) * num_items + a.item_index
  pairs_b = b.user_index.astype(np.int64) * num_items + b.item_index
  return int(np.intersect1d(pairs_a, pairs_b).shape[0])


def _union(vocabularies: list[np.ndarray]) -> np.ndarray:
  return np.unique(np.concatenate(vocabularies))


def _chunk_bounds(data: bytes, start: int):
  """Yields (start, end) byte ranges of whole lines, each about _CHUNK_BYTES long."""
  while start < len(data):
    end = data.find(b"\n", start + _CHUNK_BYTES)
    end = len(data) if end < 0 else end
    yield start, end
    start = end + 1


def _parse_chunk(chunk: bytes, source: str, separator: bytes, delimiter: str, num_fields: int,
                 positions: list[int | None], first_line_number: int):
  """Returns (user, item, rating, timestamp) arrays for a chunk of whole lines."""
  buffer = np.frombuffer(chunk, dtype=np.uint8)
  newlines = np.flatnonzero(buffer == ord("\n"))
  separators = np.flatnonzero(buffer == separator[0])
  # Separators before each line end, differenced, give the separators on each line.
  line_ends = np.append(newlines, len(chunk))
  fields_per_line = np.diff(np.searchsorted(separators, line_ends), prepend=0) + 1
  bad = np.flatnonzero(fields_per_line != num_fields)
  if bad.size:
    line = int(bad[0])
    line_start = 0 if line == 0 else int(newlines[line - 1]) + 1
    if line_ends[line] == line_start:
      raise RatingsError(f"{source}:{first_line_number + line}: blank line; expected {num_fields} "
                         f"fields separated by {delimiter!r}")
    _check_field_count(int(fields_per_line[line]), num_fields, source, first_line_number + line,
                       delimiter)

  if chunk.isascii():
    fields = chunk.replace(b"\n", separator).split(separator)
  else:
    text_separator = separator.decode()
    fields = _decode(chunk, source, first_line_number).replace("\n", text_separator).split(
        text_separator)
  user_pos, item_pos, rating_pos, timestamp_pos = positions
  user = _id_column(fields, user_pos, num_fields, source, first_line_number, "user")
  item = _id_column(fields, item_pos, num_fields, source, first_line_number, "item")
  rating = _numeric_column(fields, rating_pos, num_fields, np.float32, source, first_line_number,
                           "rating")
  timestamp = None if timestamp_pos is None else _numeric_column(
      fields, timestamp_pos, num_fields, np.int64, source, first_line_number, "timestamp")
  return user, item, rating, timestamp


def _id_column(fields: list, position: int, num_fields: int, source: str, first_line_number: int,
               role: str) -> np.ndarray:
  values = np.array(fields[position::num_fields])
  empty = np.flatnonzero(values == values.dtype.type())
  if empty.size:
    raise RatingsError(f"{source}:{first_line_number + int(empty[0])}: empty {role} id in field "
                       f"{position + 1}")
  return values


def _numeric_column(fields: list, position: int, num_fields: int, dtype, source: str,
                    first_line_number: int, role: str) -> np.ndarray:
  values = np.array(fields[position::num_fields])
  try:
    return values.astype(dtype)
  except ValueError:
    row, value = first_unparsable(values, dtype)
    kind = "a number" if dtype is np.float32 else "an integer"
    raise RatingsError(f"{source}:{first_line_number + row}: expected {kind} for the {role} in "
                       f"field {position + 1}, got {value!r}") from None


def first_unparsable(values: np.ndarray, dtype) -> tuple[int, str]:
  """Returns (position, text) of the first value that does not convert to `dtype`.

  Only called once a vectorised conversion has failed, so it bisects with vectorised conversions
  instead of testing each value in Python.
  """
  low, high = 0, values.shape[0]
  while high - low > 1:
    middle = (low + high) // 2
    try:
      values[low:middle].astype(dtype)
      low = middle
    except ValueError:
      high = middle
  value = values[low]
  return low, value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


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
  """Resolves a column given by position or header name to a 0-based position."""
  if column is None:
    return None
  if isinstance(column, str) and names is not None and column in names:
    return names.index(column)
  if isinstance(column, int) or column.isdigit():
    position = int(column)
    if not 0 <= position < num_fields:
      raise RatingsError(f"{source}: {role} column {position} is out of range: lines have "
                         f"{num_fields} fields (positions are 0-based)")
    return position
  known = f"the header has {names}" if names is not None else "the file has no header"
  raise RatingsError(f"{source}: no {role} column named {column!r}; {known}")
