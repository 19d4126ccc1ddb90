"""Tests for keras_autorec.implicit.protocol."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from keras_autorec.data import melon
from keras_autorec.implicit import protocol


def playlists(first_id, count, rng):
  songs = [rng.choice(50, size=20, replace=False).tolist() for _ in range(count)]
  tags = [[f"t{t}" for t in rng.choice(8, size=4, replace=False)] for _ in range(count)]
  return melon.Playlists(list(range(first_id, first_id + count)), songs, tags, [""] * count)


def test_melon_split_hides_a_fraction_and_never_shows_targets():
  rng = np.random.default_rng(0)
  splits = {"train": playlists(0, 60, rng), "test": playlists(100, 10, rng)}
  split = protocol.melon_split(splits, hide_fraction=0.5, min_song_count=1, min_tag_count=1,
                               holdout_playlists=10)
  assert split.train.shape[0] == 50  # val came out of train.json
  for held_out in (split.val, split.test):
    assert held_out.num_rows == 10
    assert held_out.inputs.multiply(held_out.targets).nnz == 0
    songs = split.catalog.song_columns()
    hidden_songs = np.diff(held_out.targets[:, songs].tocsr().indptr) + held_out.unknown_songs
    np.testing.assert_array_equal(hidden_songs, 10)  # half of 20 songs
    hidden_tags = (np.diff(held_out.targets[:, split.catalog.tag_columns()].tocsr().indptr)
                   + held_out.unknown_tags)
    np.testing.assert_array_equal(hidden_tags, 2)


def test_held_out_users_folds_in_80_percent():
  rng = np.random.default_rng(1)
  dense = (rng.random((40, 30)) < 0.4).astype(np.float32)
  dense[:, 0] = 1.0  # every user has a positive on an item training users have too
  split = protocol.held_out_users_split(sparse.csr_matrix(dense), np.arange(30).astype(str),
                                        num_val_users=5, num_test_users=5, min_positives=5,
                                        seed=0)
  kept = (dense.sum(axis=1) >= 5).sum()
  assert split.train.shape[0] == kept - 10
  for held_out in (split.val, split.test):
    visible = np.diff(held_out.inputs.indptr)
    hidden = np.diff(held_out.targets.indptr)
    assert held_out.inputs.multiply(held_out.targets).nnz == 0
    assert np.all(hidden >= 1)
    np.testing.assert_array_equal(hidden, np.maximum(1, np.round(0.2 * (visible + hidden))))
