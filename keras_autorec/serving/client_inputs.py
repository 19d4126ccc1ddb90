"""The client's inputs: checked id vectors and ratings, padding, and requests below the limits.

TF Serving refuses requests above its gRPC receive limit (4 MiB by default) and the export refuses
batches above its `max_batch_size` rows and `max_rating_slots` (user, rating) slots, so a batch is
sent as consecutive row ranges, each sized here from an estimate of its serialized bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from keras_autorec.data.ratings import outside_rating_scale
from keras_autorec.serving.errors import InvalidInputError

# Requests are split to stay below TF Serving's 4 MiB default gRPC receive limit.
DEFAULT_MAX_REQUEST_BYTES = 3 * 1024 * 1024
# The export's defaults (`keras_autorec.export.ExportConfig`): the most rows of a top-K request
# and the most (user, rating) slots of a recommend_for_ratings request.
DEFAULT_MAX_BATCH_SIZE = 1024
DEFAULT_MAX_RATING_SLOTS = 100_000
PADDING_ITEM_ID = ""
# Room for the request's model spec and tensor headers next to the estimated tensor contents.
_REQUEST_OVERHEAD_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class RequestLimits:
  """The most one request may hold; larger batches are sent as several requests.

  Attributes:
    max_request_bytes: serialized size (TF Serving refuses requests above 4 MiB unless started
      with a larger `--grpc_max_receive_message_length`).
    max_batch_size: rows of a recommend, recommend_for_ratings or similar_items request; the
      export's `max_batch_size`.
    max_rating_slots: (user, rating) slots, padding included, of a recommend_for_ratings
      request; the export's `max_rating_slots`.
  """

  max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
  max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
  max_rating_slots: int = DEFAULT_MAX_RATING_SLOTS

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if getattr(self, field.name) < 1:
        raise ValueError(f"{field.name} must be positive, got {getattr(self, field.name)}")


def check_k(k: int | None) -> None:
  """`k` is None (all exported) or a positive number of items."""
  if k is not None and k < 1:
    raise ValueError(f"k must be a positive number of items, got {k}")


def check_parallel_lists(first, second, first_name: str, second_name: str, row: str) -> None:
  """Two arguments must each hold one list per row, as many lists each."""
  if isinstance(first, (str, bytes)) or isinstance(second, (str, bytes)):
    raise TypeError(f"{first_name} and {second_name} must be one list per {row}")
  if len(first) != len(second):
    raise ValueError(f"{first_name} and {second_name} must have one list per {row} each, "
                     f"got {len(first)} and {len(second)}")


def as_id_vector(ids: Sequence[str], what: str) -> np.ndarray:
  """Ids as a 1-D object array of str; ints are accepted since MovieLens ids look numeric."""
  if isinstance(ids, (str, bytes)):
    raise TypeError(f"{what} must be a sequence of ids, got the single id {ids!r}")
  array = np.asarray(ids, dtype=object)
  if array.ndim != 1:
    raise ValueError(f"{what} must be a flat sequence of ids, got shape {array.shape}")
  strings = []
  for position, id_ in enumerate(array):
    if not isinstance(id_, (str, bytes, int, np.integer)):
      raise TypeError(f"{what} must hold str, bytes or int ids, got {id_!r}")
    try:
      # Ids travel as UTF-8; a str with lone surrogates has no UTF-8 form either.
      strings.append(id_.decode("utf-8") if isinstance(id_, bytes)
                     else str(id_).encode("utf-8").decode("utf-8"))
    except UnicodeError:
      raise InvalidInputError(f"{what}[{position}] is not valid UTF-8: {id_!r}") from None
  return np.asarray(strings, dtype=object)


def check_ratings(user: int, ids: np.ndarray, values: np.ndarray,
                  rating_scale: tuple[float, float] | None) -> None:
  """Rejects a non-finite or out-of-scale rating of a real (non-padding) item of one user."""
  low, high = rating_scale or (-np.inf, np.inf)
  bad = (ids != PADDING_ITEM_ID) & outside_rating_scale(values, (low, high))
  if bad.any():
    position = int(np.flatnonzero(bad)[0])
    expected = (f"within rating_scale [{low:g}, {high:g}]" if rating_scale
                else "a finite number")
    raise InvalidInputError(f"ratings[{user}][{position}] (item {ids[position]!r}) must be "
                            f"{expected}, got {values[position]}")


def id_bytes(ids: np.ndarray) -> np.ndarray:
  """Serialized bytes of each id in a string TensorProto: a tag, a varint length, the bytes.

  3 bytes of framing are exact up to 16 KiB ids; the request is measured before sending anyway.
  """
  return np.fromiter((len(id_.encode("utf-8")) + 3 for id_ in ids), dtype=np.int64,
                     count=len(ids))


def padded_ids(lists: Sequence[np.ndarray]) -> np.ndarray:
  """Id lists as one [rows, longest] array padded with PADDING_ITEM_ID.

  At least one column: a zero-width batch would not match a model expecting one.
  """
  array = np.full((len(lists), max([1] + [len(ids) for ids in lists])), PADDING_ITEM_ID,
                  dtype=object)
  for row, ids in enumerate(lists):
    array[row, :len(ids)] = ids
  return array


def request_chunks(row_bytes: np.ndarray, max_rows: int, limits: RequestLimits,
                   row_slots: np.ndarray | None = None) -> list[slice]:
  """Consecutive row ranges covering all rows (one empty range when there are none).

  A range holds at most `max_rows` rows, about `limits.max_request_bytes` by `row_bytes` (the
  estimated bytes of each row) and, when `row_slots` (each row's list length) is given, at most
  `limits.max_rating_slots` padded slots.
  """
  num_rows = len(row_bytes)
  max_rows = max(1, max_rows)
  max_slots = limits.max_rating_slots
  budget = max(1, limits.max_request_bytes - _REQUEST_OVERHEAD_BYTES)
  cumulative_bytes = np.concatenate([[0], np.cumsum(row_bytes)])
  chunks, start = [], 0
  while start < num_rows or not chunks:
    end = min(num_rows, start + max_rows,
              int(np.searchsorted(cumulative_bytes, cumulative_bytes[start] + budget,
                                  side="right")) - 1)
    end = max(end, start + 1) if num_rows else 0
    if row_slots is not None:
      # Padding makes a range cost (rows x its longest list, at least 1) slots.
      while end - start > 1 and (end - start) * max(1, row_slots[start:end].max()) > max_slots:
        end = start + (end - start) // 2
      if num_rows and row_slots[start] > max_slots:
        raise InvalidInputError(f"user {start} has {row_slots[start]} ratings, more than "
                                f"max_rating_slots={max_slots} of the export")
    chunks.append(slice(start, end))
    start = end
  return chunks
