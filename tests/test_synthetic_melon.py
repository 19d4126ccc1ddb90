"""Tests for keras_autorec.data.synthetic_melon."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from keras_autorec.data import melon, synthetic_melon

CONFIG = synthetic_melon.SyntheticMelonConfig(num_playlists=400, num_songs=2000, num_tags=100,
                                              num_genres=10, seed=3)


def test_writes_readable_melon_files_with_the_requested_shape(tmp_path):
  counts = synthetic_melon.write_melon(CONFIG, str(tmp_path))
  assert counts == {"train.json": 320, "val.json": 40, "test.json": 40}
  splits = melon.read_melon(str(tmp_path))
  playlists = splits["train"].songs + splits["val"].songs + splits["test"].songs
  tags = splits["train"].tags + splits["val"].tags + splits["test"].tags
  assert all(10 <= len(songs) <= 100 for songs in playlists)
  assert all(1 <= len(row) <= 10 for row in tags)
  assert len({len(songs) for songs in playlists}) > 50  # lengths spread over 10..100
  assert max(song for songs in playlists for song in songs) < CONFIG.num_songs


def test_is_seeded():
  assert synthetic_melon.generate_records(CONFIG) == synthetic_melon.generate_records(CONFIG)
  other = dataclasses.replace(CONFIG, seed=4)
  assert synthetic_melon.generate_records(other) != synthetic_melon.generate_records(CONFIG)


def test_planted_genres_tie_songs_and_tags():
  records = synthetic_melon.generate_records(CONFIG)
  genre = {record["id"]: int(record["song_gn_gnr_basket"][0][2:4])
           for record in synthetic_melon.song_meta_records(CONFIG)}
  main_shares, tag_genres = [], collections.defaultdict(set)
  for record in records:
    song_genres = collections.Counter(genre[song] for song in record["songs"])
    main, count = song_genres.most_common(1)[0]
    main_shares.append(count / len(record["songs"]))
    for tag in record["tags"]:
      tag_genres[tag].add(main)
  # 80% of a playlist's songs come from its main genre (fewer only when the genre runs out).
  assert np.median(main_shares) >= 0.78
  # A tag belongs to one genre, so it appears only with playlists of that main genre.
  assert np.mean([len(genres) == 1 for genres in tag_genres.values()]) > 0.95


def test_popularity_is_heavy_tailed():
  records = synthetic_melon.generate_records(CONFIG)
  counts = np.sort(np.bincount([s for r in records for s in r["songs"]],
                               minlength=CONFIG.num_songs))[::-1]
  # Zipf within genres: the top 10% of songs hold far more than 10% of the entries.
  assert counts[:CONFIG.num_songs // 10].sum() / counts.sum() > 0.3
