"""Seeded synthetic playlists written in the Melon Playlist Dataset's JSON format.

Planted structure a model can find: every song and tag belongs to one genre; a playlist draws
most of its songs and all of its tags from one main genre (the rest from a second one), songs
by a power-law popularity within their genre. Playlists hold 10-100 songs and 1-10 tags.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from keras_autorec.data import melon


@dataclasses.dataclass(frozen=True)
class SyntheticMelonConfig:
  """Shape of the generated data; playlists are split train/val/test by the fractions."""

  num_playlists: int = 2000
  num_songs: int = 5000
  num_tags: int = 300
  num_genres: int = 20
  main_genre_fraction: float = 0.8  # Share of a playlist's songs from its main genre.
  popularity_exponent: float = 1.0  # Zipf exponent of song popularity within a genre.
  min_songs: int = 10
  max_songs: int = 100
  min_tags: int = 1
  max_tags: int = 10
  val_fraction: float = 0.1
  test_fraction: float = 0.1
  seed: int = 0


def _genre_members(num_members: int, num_genres: int, rng) -> list[np.ndarray]:
  genre = rng.integers(num_genres, size=num_members)
  genre[:num_genres] = np.arange(num_genres)  # every genre gets at least one member
  return [np.flatnonzero(genre == g) for g in range(num_genres)]


class _GenreSampler:
  """Draws distinct members of each genre by Zipf weight of their rank in the genre."""

  def __init__(self, members_by_genre: list[np.ndarray], exponent: float):
    self.members = members_by_genre
    self.cumulative = []
    for members in members_by_genre:
      weights = np.cumsum(1.0 / np.arange(1, members.size + 1) ** exponent)
      self.cumulative.append(weights / weights[-1])

  def draw(self, genre: int, count: int, rng) -> np.ndarray:
    """`count` distinct members (fewer only if the genre is smaller), in draw order."""
    members, cumulative = self.members[genre], self.cumulative[genre]
    count = min(count, members.size)
    drawn = np.zeros(0, dtype=np.int64)
    # Sampling with replacement and keeping first occurrences draws without replacement by
    # the same weights; a few rounds suffice unless the genre is nearly exhausted.
    while drawn.size < count:
      picks = np.searchsorted(cumulative, rng.random(2 * count + 8), side="right")
      picks = np.concatenate([drawn, np.minimum(picks, members.size - 1)])
      _, first = np.unique(picks, return_index=True)
      drawn = picks[np.sort(first)]
    return members[drawn[:count]]


def _playlist(config: SyntheticMelonConfig, songs: _GenreSampler, tags: _GenreSampler, rng):
  main, second = rng.choice(config.num_genres, size=2, replace=False)
  num_songs = int(rng.integers(config.min_songs, config.max_songs + 1))
  num_main = int(round(num_songs * config.main_genre_fraction))
  playlist_songs = np.concatenate([songs.draw(main, num_main, rng),
                                   songs.draw(second, num_songs - num_main, rng)])
  rng.shuffle(playlist_songs)
  num_tags = int(rng.integers(config.min_tags, config.max_tags + 1))
  return playlist_songs, tags.draw(main, num_tags, rng)


def generate_records(config: SyntheticMelonConfig) -> list[dict]:
  """The playlists as Melon JSON records (ids 0..num_playlists-1)."""
  rng = np.random.default_rng(config.seed)
  # Song ids are a random permutation so that id order says nothing about genre or popularity.
  song_ids = rng.permutation(config.num_songs)
  songs = _GenreSampler([song_ids[members] for members in
                         _genre_members(config.num_songs, config.num_genres, rng)],
                        config.popularity_exponent)
  tags = _GenreSampler(_genre_members(config.num_tags, config.num_genres, rng),
                       config.popularity_exponent)
  records = []
  for playlist_id in range(config.num_playlists):
    playlist_songs, playlist_tags = _playlist(config, songs, tags, rng)
    records.append({"id": playlist_id, "songs": playlist_songs.tolist(),
                    "tags": [f"tag{tag}" for tag in playlist_tags.tolist()],
                    "plylst_title": "", "like_cnt": int(rng.integers(0, 100)),
                    "updt_date": "2020-01-01 00:00:00.000"})
  return records


def song_meta_records(config: SyntheticMelonConfig) -> list[dict]:
  """song_meta.json records giving each song its planted genre as `song_gn_gnr_basket`."""
  rng = np.random.default_rng(config.seed)
  song_ids = rng.permutation(config.num_songs)
  genres = np.empty(config.num_songs, dtype=np.int64)
  for genre, members in enumerate(_genre_members(config.num_songs, config.num_genres, rng)):
    genres[song_ids[members]] = genre
  return [{"id": song, "song_gn_gnr_basket": [f"GN{genre:02d}00"]}
          for song, genre in enumerate(genres.tolist())]


def write_melon(config: SyntheticMelonConfig, data_dir: str) -> dict[str, int]:
  """Writes train.json, val.json, test.json and song_meta.json; returns playlists per file."""
  records = generate_records(config)
  num_val = int(round(config.num_playlists * config.val_fraction))
  num_test = int(round(config.num_playlists * config.test_fraction))
  num_train = len(records) - num_val - num_test
  if num_train <= 0:
    raise ValueError(f"val_fraction + test_fraction leave no training playlists: {config}")
  parts = {"train.json": records[:num_train],
           "val.json": records[num_train:num_train + num_val],
           "test.json": records[num_train + num_val:]}
  os.makedirs(data_dir, exist_ok=True)
  for name, part in parts.items():
    with open(os.path.join(data_dir, name), "w", encoding="utf-8") as f:
      json.dump(part, f, ensure_ascii=False)
  with open(os.path.join(data_dir, melon.SONG_META_FILE), "w", encoding="utf-8") as f:
    json.dump(song_meta_records(config), f)
  return {name: len(part) for name, part in parts.items()}
