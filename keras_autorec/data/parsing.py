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
import re
import zipfile
from typing import Sequence

import numpy as np

from keras_autorec.data.ratings import Ratings, RatingsError, from_raw, outside_rating_scale

# Lines are processed in chunks of about this many bytes so the per-field Python objects created
# by `bytes.split` stay bounded (a 25M-line file would otherwise need several GB of them).
_CHUNK_BYTES = 64 << 20
# Control characters that never occur in ratings files; one stands in for a multi-byte delimiter.
_SENTINELS = (b"\x1f", b"\x1e", b"\x1d", b"\x1c", b"\x00")

# A line longer than this is a bad line; it bounds the memory one line can take.
MAX_LINE_BYTES = 1 << 20
# The user, item, rating and timestamp fields hold at most this many characters. Columns become
# fixed-width numpy arrays, so this bounds their memory per rating whatever one line holds.
MAX_FIELD_CHARS = 256
ON_BAD_LINES = ("error", "skip")
# How many bad lines a skip logs (and an error considers) with their line numbers.
_EXAMPLES = 5
_BOM = b"\xef\xbb\xbf"
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # What surrogateescape makes of invalid UTF-8.

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


class BadLines:
  """The bad lines of one file: how many, and the earliest few with what is wrong with them."""

  def __init__(self, source: str):
    self.source = source
    self.count = 0
    self.examples: list[tuple[int, str]] = []

  def add(self, line_numbers: np.ndarray, bad: np.ndarray, describe) -> None:
    """Records the lines where `bad` holds; `describe(row)` says what is wrong with that row.

    Each line is recorded at most once over all calls (callers drop a line once it is bad).
    """
    rows = np.flatnonzero(bad)
    self.count += int(rows.size)
    self.examples.extend((int(line_numbers[row]), describe(row)) for row in rows[:_EXAMPLES])

  def earliest(self) -> list[tuple[int, str]]:
    return sorted(self.examples)[:_EXAMPLES]

  def resolve(self, on_bad_lines: str) -> int:
    """Raises RatingsError naming the earliest bad line ("error") or logs them ("skip")."""
    if not self.count:
      return 0
    examples = self.earliest()
    if on_bad_lines == "error":
      line, message = examples[0]
      more = "" if self.count == 1 else (
          f" ({self.count} bad lines in all; --on_bad_lines=skip drops them)")
      raise RatingsError(f"{self.source}:{line}: {message}{more}")
    logging.warning("%s: skipped %d bad lines (--on_bad_lines=skip); the first: %s", self.source,
                    self.count, "; ".join(f"line {line}: {message}" for line, message in examples))
    return self.count


class RowChecks:
  """Checks of the rows of one chunk: each row found bad is recorded in `bad_lines` once."""

  def __init__(self, bad_lines: BadLines, line_numbers: np.ndarray):
    self.bad_lines = bad_lines
    self.line_numbers = line_numbers
    self.bad = np.zeros(line_numbers.size, dtype=bool)

  def __call__(self, is_bad: np.ndarray, describe) -> None:
    """Records the rows where `is_bad` holds; `describe(row)` says what is wrong."""
    self.bad_lines.add(self.line_numbers, is_bad & ~self.bad, describe)
    self.bad |= is_bad

  def ratings(self, rating: np.ndarray, rating_scale: tuple[float, float] | None) -> None:
    """Ratings must be finite and, when a scale is given, within it."""
    self(~np.isfinite(rating), lambda row: f"rating {float(rating[row])} is not a finite number")
    if rating_scale is not None:
      low, high = rating_scale
      # Non-finite ratings are already recorded above, with their own message.
      self(outside_rating_scale(rating, rating_scale), lambda row: (
          f"rating {float(rating[row])} is outside the rating scale [{low}, {high}]; if the "
          "data uses another scale, set --rating_scale=lowest,highest"))


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
  for start, end in _chunk_bounds(data, body_start, data_end):
    chunks.append(_parse_chunk(data, start, end, separator, delimiter, num_fields, positions,
                               first_line_number, rating_scale, bad_lines))
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


def _chunk_bounds(data: bytes, start: int, data_end: int):
  """Yields (start, end) byte ranges of whole lines before data_end, each about _CHUNK_BYTES long."""
  while start < data_end:
    end = data.find(b"\n", start + _CHUNK_BYTES, data_end)
    end = data_end if end < 0 else end
    yield start, end
    start = end + 1


def _parse_chunk(data: bytes, start: int, end: int, separator: bytes, delimiter: str,
                 num_fields: int, positions: list[int | None], first_line_number: int,
                 rating_scale: tuple[float, float] | None, bad_lines: BadLines):
  """Returns (user, item, rating, timestamp, line numbers) of the good lines in data[start:end].

  Bad lines are recorded in `bad_lines` and left out; well-formed chunks take no Python work per
  line.
  """
  # Lines are checked in place, so an overlong line is never copied.
  buffer = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)
  line_ends = np.append(np.flatnonzero(buffer == ord("\n")), buffer.size)
  line_bytes = np.diff(line_ends, prepend=-1) - 1
  # Separators before each line end, differenced, give the separators on each line.
  separators = np.flatnonzero(buffer == separator[0])
  fields_per_line = np.diff(np.searchsorted(separators, line_ends), prepend=0) + 1
  line_numbers = np.arange(first_line_number, first_line_number + line_ends.size, dtype=np.int64)
  malformed = (fields_per_line != num_fields) | (line_bytes > MAX_LINE_BYTES)
  if malformed.any():
    _record_malformed(line_numbers, line_bytes, fields_per_line, num_fields, delimiter, bad_lines)
    chunk = drop_lines(buffer, line_bytes, ~malformed)
    line_numbers, line_bytes = line_numbers[~malformed], line_bytes[~malformed]
  else:
    chunk = data[start:end]
  del buffer
  text = chunk
  if not chunk.isascii():
    text, line_numbers = _decode_lines(chunk, line_numbers, bad_lines)
  text_separator, newline = (separator, b"\n") if isinstance(text, bytes) else (
      separator.decode(), "\n")
  fields = text.replace(newline, text_separator).split(text_separator) if line_numbers.size else []
  if line_bytes.size and line_bytes.max() > MAX_FIELD_CHARS:
    fields, line_numbers = _drop_long_fields(fields, line_numbers, num_fields, positions,
                                             bad_lines)
  return _convert_columns(fields, line_numbers, num_fields, positions, rating_scale, bad_lines)


def _record_malformed(line_numbers: np.ndarray, line_bytes: np.ndarray,
                      fields_per_line: np.ndarray, num_fields: int, delimiter: str,
                      bad_lines: BadLines) -> None:
  """Records blank, overlong and wrong-field-count lines."""
  expected = f"expected {num_fields} fields separated by {delimiter!r}"
  blank = (line_bytes == 0) & (fields_per_line != num_fields)
  too_long = line_bytes > MAX_LINE_BYTES
  bad_lines.add(line_numbers, blank, lambda row: f"blank line; {expected}")
  bad_lines.add(line_numbers, too_long, lambda row: (
      f"line is {int(line_bytes[row])} bytes long; the limit is {MAX_LINE_BYTES} bytes"))
  bad_lines.add(line_numbers, (fields_per_line != num_fields) & ~blank & ~too_long,
                lambda row: f"{expected}, got {int(fields_per_line[row])}")


def drop_lines(buffer: np.ndarray, line_bytes: np.ndarray, keep: np.ndarray) -> bytes:
  """The chunk in `buffer` with only the lines where `keep` holds, still newline-separated."""
  # Each line owns the newline after it, so the kept bytes are the kept lines each followed by a
  # newline, except when the chunk's last line (which has none) is among them.
  kept = buffer[np.repeat(keep, line_bytes + 1)[:buffer.size]].tobytes()
  return kept if keep[-1] or not kept else kept[:-1]


def _decode_lines(chunk: bytes, line_numbers: np.ndarray,
                  bad_lines: BadLines) -> tuple[str, np.ndarray]:
  """Decodes a chunk from UTF-8; lines that are not valid UTF-8 are recorded and left out."""
  try:
    return chunk.decode("utf-8"), line_numbers
  except UnicodeDecodeError:
    pass
  lines = chunk.decode("utf-8", "surrogateescape").split("\n")
  invalid = np.array([_ESCAPED_BYTE.search(line) is not None for line in lines])
  bad_lines.add(line_numbers, invalid, lambda row: "not valid UTF-8 text")
  text = "\n".join(line for line, bad in zip(lines, invalid) if not bad)
  return text, line_numbers[~invalid]


def _drop_long_fields(fields: list, line_numbers: np.ndarray, num_fields: int,
                      positions: list[int | None], bad_lines: BadLines) -> tuple[list, np.ndarray]:
  """Records and leaves out lines whose user, item, rating or timestamp field is too long."""
  rows = line_numbers.size
  too_long = np.zeros(rows, dtype=bool)
  lengths = {}
  for position in positions:
    if position is not None and position not in lengths:
      lengths[position] = np.fromiter(map(len, fields[position::num_fields]), np.int64, rows)
      too_long |= lengths[position] > MAX_FIELD_CHARS

  def describe(row):
    position = next(p for p, length in lengths.items() if length[row] > MAX_FIELD_CHARS)
    return (f"field {position + 1} is {int(lengths[position][row])} characters long; the limit "
            f"is {MAX_FIELD_CHARS}")

  bad_lines.add(line_numbers, too_long, describe)
  if not too_long.any():
    return fields, line_numbers
  kept = np.array(fields, dtype=object).reshape(rows, num_fields)[~too_long]
  return kept.ravel().tolist(), line_numbers[~too_long]


def _convert_columns(fields: list, line_numbers: np.ndarray, num_fields: int,
                     positions: list[int | None], rating_scale: tuple[float, float] | None,
                     bad_lines: BadLines):
  """Converts the selected fields to columns; lines with a bad value are recorded and left out."""
  user_position, item_position, rating_position, timestamp_position = positions
  check = RowChecks(bad_lines, line_numbers)

  def column(position: int) -> np.ndarray:
    return np.array(fields[position::num_fields]) if fields else np.array([], dtype="S1")

  user, item = column(user_position), column(item_position)
  for values, position, role in ((user, user_position, "user"), (item, item_position, "item")):
    check(values == values.dtype.type(), lambda row, p=position, r=role: (
        f"empty {r} id in field {p + 1}"))
  rating = _numeric_column(column(rating_position), rating_position, np.float32, "a number",
                           "rating", check)
  check.ratings(rating, rating_scale)
  timestamp = None
  if timestamp_position is not None:
    timestamp = _numeric_column(column(timestamp_position), timestamp_position, np.int64,
                                "an integer", "timestamp", check)
  if check.bad.any():
    good = ~check.bad
    user, item, rating, line_numbers = user[good], item[good], rating[good], line_numbers[good]
    timestamp = None if timestamp is None else timestamp[good]
  return user, item, rating, timestamp, line_numbers


def _numeric_column(values: np.ndarray, position: int, dtype, kind: str, role: str,
                    check) -> np.ndarray:
  """`values` converted to `dtype`; values that do not convert are reported through `check`."""
  try:
    with np.errstate(over="ignore", invalid="ignore"):  # Such values become inf, bad below.
      return values.astype(dtype)
  except (ValueError, OverflowError):
    pass
  invalid = unparsable(values, dtype)
  check(invalid, lambda row: (f"expected {kind} for the {role} in field {position + 1}, got "
                              f"{_text(values[row])!r}"))
  values = values.copy()
  values[invalid] = "0" if values.dtype.kind == "U" else b"0"
  with np.errstate(over="ignore", invalid="ignore"):
    return values.astype(dtype)


def unparsable(values: np.ndarray, dtype) -> np.ndarray:
  """A mask of the values that do not convert to `dtype`.

  numpy converts text to float32 and int64 with Python's float() and int(), so one pass of those
  finds the bad values; bisecting with vectorised conversions then catches any other (and all for
  other dtypes, such as dates).
  """
  kind = np.dtype(dtype).kind
  convert = float if kind == "f" else int

  def converts(value) -> bool:
    try:
      number = convert(value)
    except (ValueError, OverflowError):
      return False
    return convert is float or -2**63 <= number < 2**63

  invalid = np.zeros(values.shape[0], dtype=bool)
  if kind in "fi":
    invalid = np.fromiter((not converts(value) for value in values.tolist()), dtype=bool,
                          count=values.shape[0])
  rest = np.flatnonzero(~invalid)
  ranges = [(0, rest.shape[0])]
  while ranges:
    low, high = ranges.pop()
    try:
      with np.errstate(over="ignore", invalid="ignore"):
        values[rest[low:high]].astype(dtype)
      continue
    except (ValueError, OverflowError):
      pass
    if high - low == 1:
      invalid[rest[low]] = True
    else:
      middle = (low + high) // 2
      ranges += [(low, middle), (middle, high)]
  return invalid


def _text(value) -> str:
  return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
def first_unparsable(values: np.ndarray, dtype) -> tuple[int, str]:
  """Returns (position, text) of the first value that does not convert to `dtype`.

  Only called once a vectorised conversion has failed, so it bisects with vectorised conversions
  instead of testing each value in Python.
  """
  low, high = 0, values.shape[0]
  while high - low > 1:
    middle = (low + high) // 2
    try:
      with np.errstate(over="ignore"):
        values[low:middle].astype(dtype)
      low = middle
    except (ValueError, OverflowError):
      high = middle
  return low, _text(values[low])


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
