"""Binary row x item interactions over a catalog of songs followed by tags."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse


@dataclasses.dataclass(frozen=True)
class Catalog:
  """The item vocabulary: columns [0, num_songs) are songs, [num_songs, size) tags."""

  song_ids: np.ndarray  # str, one per song column
  tag_ids: np.ndarray  # str, one per tag column

  @property
  def num_songs(self) -> int:
    return int(self.song_ids.shape[0])

  @property
  def num_tags(self) -> int:
    return int(self.tag_ids.shape[0])

  @property
  def size(self) -> int:
    return self.num_songs + self.num_tags

  def song_columns(self) -> slice:
    return slice(0, self.num_songs)

  def tag_columns(self) -> slice:
    return slice(self.num_songs, self.size)


def _frequent(lists: Sequence[Sequence], min_count: int, what: str) -> np.ndarray:
  """Ids occurring in at least `min_count` lists, most frequent first (ties by first sight)."""
  counts = Counter(value for values in lists for value in values)
  kept = [value for value, count in counts.most_common() if count >= min_count]
  logging.info("%s: %d distinct, %d kept with min_count=%d (%d dropped)", what, len(counts),
               len(kept), min_count, len(counts) - len(kept))
  return np.asarray([str(value) for value in kept], dtype=object)


def build_catalog(songs: Sequence[Sequence], tags: Sequence[Sequence], min_song_count: int = 1,
                  min_tag_count: int = 1) -> Catalog:
  """A catalog of the songs and tags seen in at least the given number of rows (logged)."""
  return Catalog(_frequent(songs, min_song_count, "songs"),
                 _frequent(tags, min_tag_count, "tags"))


def _lookup(ids: np.ndarray, offset: int) -> dict[str, int]:
  return {value: offset + position for position, value in enumerate(ids.tolist())}


def encode_rows(catalog: Catalog, songs: Sequence[Sequence],
                tags: Sequence[Sequence] | None = None) -> tuple[sparse.csr_matrix, np.ndarray]:
  """Binary rows [len(songs), catalog.size] and, per row, how many ids the catalog lacks."""
  song_index = _lookup(catalog.song_ids, 0)
  tag_index = _lookup(catalog.tag_ids, catalog.num_songs)
  tags = tags if tags is not None else [[] for _ in songs]
  indptr, indices, unknown = [0], [], np.zeros(len(songs), dtype=np.int64)
  for row, (row_songs, row_tags) in enumerate(zip(songs, tags)):
    columns = {song_index.get(str(song), -1) for song in row_songs}
    columns |= {tag_index.get(str(tag), -1) for tag in row_tags}
    unknown[row] = len(set(map(str, row_songs))) + len(set(map(str, row_tags))) - len(
        columns - {-1})
    columns.discard(-1)
    indices.extend(sorted(columns))
    indptr.append(len(indices))
  matrix = sparse.csr_matrix(
      (np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int64),
       np.asarray(indptr, dtype=np.int64)), shape=(len(songs), catalog.size))
  return matrix, unknown
