"""Delimited lines to typed columns, chunk by chunk, with the bad lines they hold.

The vectorised core of `keras_autorec.data.parsing` (and of the Netflix parser): a chunk of lines
is split into fields with one `bytes.split` and converted column by column with numpy; lines that
are not ratings are recorded in a `BadLines`, which raises or logs them as the caller asks.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from keras_autorec.data.ratings import RatingsError, outside_rating_scale

# Lines are processed in chunks of about this many bytes so the per-field Python objects created
# by `bytes.split` stay bounded (a 25M-line file would otherwise need several GB of them).
_CHUNK_BYTES = 64 << 20
# A line longer than this is a bad line; it bounds the memory one line can take.
MAX_LINE_BYTES = 1 << 20
# The user, item, rating and timestamp fields hold at most this many characters. Columns become
# fixed-width numpy arrays, so this bounds their memory per rating whatever one line holds.
MAX_FIELD_CHARS = 256
# How many bad lines a skip logs (and an error considers) with their line numbers.
_EXAMPLES = 5
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # What surrogateescape makes of invalid UTF-8.


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


def chunk_bounds(data: bytes, start: int, data_end: int):
  """Yields (start, end) byte ranges of whole lines before data_end, about _CHUNK_BYTES each."""
  while start < data_end:
    end = data.find(b"\n", start + _CHUNK_BYTES, data_end)
    end = data_end if end < 0 else end
    yield start, end
    start = end + 1


def parse_chunk(data: bytes, start: int, end: int, separator: bytes, delimiter: str,
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
