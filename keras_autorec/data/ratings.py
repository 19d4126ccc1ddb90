"""The one in-memory representation of explicit ratings that every source produces."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

DEFAULT_RATING_SCALE = (1.0, 5.0)
# More repeated (user, item) pairs than this share of the ratings rarely happens in real data.
SUSPICIOUS_DUPLICATE_SHARE = 0.1


class RatingsError(ValueError):
  """Bad ratings input: the message names the file, line or field and what was expected."""


@dataclasses.dataclass(frozen=True)
class Ratings:
  """Explicit ratings as parallel arrays that index into string id vocabularies.

  Attributes:
    user_index: int32 [n], index into `user_ids`.
    item_index: int32 [n], index into `item_ids`.
    rating: float32 [n], within `rating_scale`.
    timestamp: int64 [n], seconds since the epoch (0 where the source has none).
    user_ids: str array [num_users], the raw user ids.
    item_ids: str array [num_items], the raw item ids.
    rating_scale: (lowest, highest) rating allowed.
    source: where the ratings came from, for logs and error messages.
    duplicates_removed: how many repeated (user, item) pairs were dropped in favour of the latest.
    expected_rating: float32 [n] noise-free rating where known (synthetic data), else None; the
      RMSE of `rating` against it is the noise floor, the RMSE of a perfect model.
  """

  user_index: np.ndarray
  item_index: np.ndarray
  rating: np.ndarray
  timestamp: np.ndarray
  user_ids: np.ndarray
  item_ids: np.ndarray
  rating_scale: tuple[float, float] = DEFAULT_RATING_SCALE
  source: str = ""
  duplicates_removed: int = 0
  expected_rating: np.ndarray | None = None

  @property
  def num_ratings(self) -> int:
    return int(self.rating.shape[0])

  @property
  def num_users(self) -> int:
    return int(self.user_ids.shape[0])

  @property
  def num_items(self) -> int:
    return int(self.item_ids.shape[0])

  def pair_keys(self) -> np.ndarray:
    """One int64 key per rating's (user, item) pair (see `pair_keys`)."""
    return pair_keys(self.user_index, self.item_index, self.num_items)

  def subset(self, positions: np.ndarray) -> "Ratings":
    """Returns the ratings at `positions`, keeping the full id vocabularies."""
    return dataclasses.replace(
        self,
        user_index=self.user_index[positions],
        item_index=self.item_index[positions],
        rating=self.rating[positions],
        timestamp=self.timestamp[positions],
        duplicates_removed=0,
        expected_rating=(None if self.expected_rating is None
                         else self.expected_rating[positions]),
    )

  def noise_floor_rmse(self) -> float | None:
    """RMSE of a perfect model on these ratings, when the noise-free ratings are known."""
    if self.expected_rating is None:
      return None
    return float(np.sqrt(np.mean(np.square(self.rating - self.expected_rating))))


def outside_rating_scale(rating: np.ndarray, rating_scale: tuple[float, float]) -> np.ndarray:
  """The mask of ratings that are not finite or lie outside [lowest, highest]."""
  low, high = rating_scale
  return ~np.isfinite(rating) | (rating < low) | (rating > high)


def check_rating_scale(rating: np.ndarray, rating_scale: tuple[float, float], source: str,
                       line_numbers: np.ndarray | None = None) -> None:
  """Raises RatingsError naming the first rating outside `rating_scale` (and its line if known)."""
  low, high = rating_scale
  if not low < high:
    raise RatingsError(f"{source}: rating scale must have lowest < highest, got {rating_scale}")
  bad = outside_rating_scale(rating, rating_scale)
  if bad.any():
    first = int(np.flatnonzero(bad)[0])
    where = f"{source}:{int(line_numbers[first])}" if line_numbers is not None else (
        f"{source} (rating #{first})")
    raise RatingsError(
        f"{where}: rating {float(rating[first])} is outside the rating scale [{low}, {high}] "
        f"({int(bad.sum())} such ratings in all); if the data uses another scale, set "
        "--rating_scale=lowest,highest")


def from_raw(user_raw: np.ndarray, item_raw: np.ndarray, rating: np.ndarray,
             timestamp: np.ndarray | None, rating_scale: tuple[float, float], source: str,
             line_numbers: np.ndarray | None = None) -> Ratings:
  """Builds Ratings from raw id and rating columns, validating and de-duplicating them.

  Ids are treated as opaque strings. Repeated (user, item) pairs keep the rating with the latest
  timestamp (the later line on ties); the number removed is logged and recorded.

  Args:
    user_raw: [n] raw user ids (any dtype; compared as strings).
    item_raw: [n] raw item ids.
    rating: [n] ratings.
    timestamp: [n] timestamps or None.
    rating_scale: (lowest, highest).
    source: file or dataset name used in messages.
    line_numbers: [n] 1-based line numbers of each rating in `source`, for error messages.
  """
  rating = np.asarray(rating, dtype=np.float32)
  n = rating.shape[0]
  if n == 0:
    raise RatingsError(f"{source}: no ratings found (empty input)")
  if len(user_raw) != n or len(item_raw) != n:
    raise RatingsError(f"{source}: user, item and rating columns differ in length")
  check_rating_scale(rating, rating_scale, source, line_numbers)
  timestamp = (np.zeros(n, dtype=np.int64) if timestamp is None
               else np.asarray(timestamp, dtype=np.int64))
  user_ids, user_index = _factorise(user_raw)
  item_ids, item_index = _factorise(item_raw)
  user_index = user_index.astype(np.int32).reshape(-1)
  item_index = item_index.astype(np.int32).reshape(-1)

  keep = latest_per_pair(user_index, item_index, timestamp, num_items=len(item_ids))
  duplicates_removed = n - keep.shape[0]
  if duplicates_removed:
    logging.warning("%s: %d repeated (user, item) ratings; kept the latest of each",
                    source, duplicates_removed)
    user_index, item_index = user_index[keep], item_index[keep]
    rating, timestamp = rating[keep], timestamp[keep]
  if duplicates_removed > SUSPICIOUS_DUPLICATE_SHARE * n:
    logging.warning(
        "%s: %d of %d ratings (%.0f%%) repeat a (user, item) pair, far more than real data has: "
        "the user and item columns are probably not the ones meant (check --user_column, "
        "--item_column, --delimiter and --header/--noheader), or the file holds the same "
        "ratings several times", source, duplicates_removed, n, 100 * duplicates_removed / n)
  return Ratings(user_index=user_index, item_index=item_index, rating=rating,
                 timestamp=timestamp, user_ids=user_ids, item_ids=item_ids,
                 rating_scale=(float(rating_scale[0]), float(rating_scale[1])), source=source,
                 duplicates_removed=int(duplicates_removed))


def _factorise(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(sorted unique ids as str, index of each value) of an id column."""
  values = np.asarray(raw)
  if values.dtype.kind != "S":
    return np.unique(values.astype(str), return_inverse=True)
  # Bytes (ASCII, as the parsers produce them) sort like their text, so only the unique ids are
  # decoded: an n x width text copy of the column would take 4 bytes per character.
  ids, index = np.unique(values, return_inverse=True)
  return ids.astype(str), index


def pair_keys(user_index: np.ndarray, item_index: np.ndarray, num_items: int) -> np.ndarray:
  """One int64 key per (user, item) pair, user * num_items + item: equal keys, equal pairs."""
  return user_index.astype(np.int64) * np.int64(max(num_items, 1)) + item_index.astype(np.int64)


def latest_per_pair(user_index: np.ndarray, item_index: np.ndarray, timestamp: np.ndarray,
                    num_items: int) -> np.ndarray:
  """Returns sorted positions keeping, per (user, item) pair, the latest timestamp (last on ties)."""
  pair = pair_keys(user_index, item_index, num_items)
  position = np.arange(pair.shape[0], dtype=np.int64)
  # lexsort sorts by the last key first: by pair, then timestamp, then position.
  order = np.lexsort((position, timestamp, pair))
  sorted_pair = pair[order]
  is_last = np.ones(order.shape[0], dtype=bool)
  is_last[:-1] = sorted_pair[1:] != sorted_pair[:-1]
  return np.sort(order[is_last])
