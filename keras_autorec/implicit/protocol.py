"""Evaluation protocols: hidden parts of Melon playlists, and Liang et al.'s held-out users.

Both give, for each evaluated row, the visible `inputs` a model may read and the hidden
`targets` it is scored on; targets never enter the inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from keras_autorec.data import melon
from keras_autorec.implicit import interactions
from keras_autorec.implicit.interactions import Catalog


@dataclasses.dataclass(frozen=True)
class HeldOut:
  """Rows to rank for: visible inputs, hidden targets (catalog columns) and, per row, how many
  hidden songs and tags are outside the catalog (relevant, but no model can return them)."""

  inputs: sparse.csr_matrix
  targets: sparse.csr_matrix
  unknown_songs: np.ndarray
  unknown_tags: np.ndarray

  @property
  def num_rows(self) -> int:
    return int(self.inputs.shape[0])


@dataclasses.dataclass(frozen=True)
class ImplicitSplit:
  """Training rows and the validation and test rows of one protocol."""

  catalog: Catalog
  train: sparse.csr_matrix
  val: HeldOut
  test: HeldOut
  protocol: str


def _hide(values: Sequence, fraction: float, rng) -> tuple[list, list]:
  """(visible, hidden) with round(fraction * len) values hidden at random."""
  values = list(values)
  num_hidden = int(round(fraction * len(values)))
  hidden = set(rng.choice(len(values), size=num_hidden, replace=False).tolist())
  return ([v for i, v in enumerate(values) if i not in hidden],
          [v for i, v in enumerate(values) if i in hidden])


def hide_playlists(catalog: Catalog, playlists: melon.Playlists, hide_fraction: float,
                   seed: int) -> HeldOut:
  """Melon protocol: hide `hide_fraction` of each playlist's songs and of its tags."""
  rng = np.random.default_rng(seed)
  visible_songs, visible_tags, hidden_songs, hidden_tags = [], [], [], []
  for songs, tags in zip(playlists.songs, playlists.tags):
    shown, hidden = _hide(songs, hide_fraction, rng)
    visible_songs.append(shown)
    hidden_songs.append(hidden)
    shown, hidden = _hide(tags, hide_fraction, rng)
    visible_tags.append(shown)
    hidden_tags.append(hidden)
  inputs, _ = interactions.encode_rows(catalog, visible_songs, visible_tags)
  targets, _ = interactions.encode_rows(catalog, hidden_songs, hidden_tags)
  _, unknown_songs = interactions.encode_rows(catalog, hidden_songs)
  _, unknown_tags = interactions.encode_rows(catalog, [[] for _ in hidden_tags], hidden_tags)
  return HeldOut(inputs, targets, unknown_songs, unknown_tags)


def melon_split(splits: dict[str, melon.Playlists], hide_fraction: float = 0.5,
                min_song_count: int = 2, min_tag_count: int = 2, seed: int = 0,
                holdout_playlists: int = 1000) -> ImplicitSplit:
  """Trains on train.json; ranks for val.json and test.json playlists with a part hidden.

  Without val.json or test.json, `holdout_playlists` playlists of train.json (at random) stand
  in for each missing file. The catalog counts only the training playlists.
  """
  rng = np.random.default_rng(seed)
  train = splits["train"]
  order = rng.permutation(len(train))
  evaluated = {}
  for name in ("val", "test"):
    if name in splits:
      evaluated[name] = splits[name]
    else:
      taken, order = order[:holdout_playlists], order[holdout_playlists:]
      evaluated[name] = _subset(train, taken, f"{train.source}[{name} holdout]")
  train = _subset(train, np.sort(order), train.source)
  catalog = interactions.build_catalog(train.songs, train.tags, min_song_count, min_tag_count)
  train_rows, _ = interactions.encode_rows(catalog, train.songs, train.tags)
  return ImplicitSplit(catalog, train_rows,
                       hide_playlists(catalog, evaluated["val"], hide_fraction, seed + 1),
                       hide_playlists(catalog, evaluated["test"], hide_fraction, seed + 2),
                       protocol="melon")


def _subset(playlists: melon.Playlists, positions: np.ndarray, source: str) -> melon.Playlists:
  pick = positions.tolist()
  return melon.Playlists([playlists.ids[i] for i in pick], [playlists.songs[i] for i in pick],
                         [playlists.tags[i] for i in pick], [playlists.titles[i] for i in pick],
                         source=source)


def _fold_in(rows: sparse.csr_matrix, fold_in_fraction: float, rng) -> HeldOut:
  """Each row's positives split at random: fold_in_fraction visible, the rest (>= 1) hidden."""
  inputs, targets = rows.tolil(copy=True), rows.tolil(copy=True)
  for row in range(rows.shape[0]):
    columns = rows.indices[rows.indptr[row]:rows.indptr[row + 1]]
    num_hidden = max(1, int(round((1.0 - fold_in_fraction) * columns.size)))
    hidden = rng.choice(columns, size=num_hidden, replace=False)
    inputs[row, hidden] = 0
    targets[row, np.setdiff1d(columns, hidden)] = 0
  none = np.zeros(rows.shape[0], dtype=np.int64)
  return HeldOut(inputs.tocsr(), targets.tocsr(), none, none)


def held_out_users_split(positives: sparse.csr_matrix, item_ids: np.ndarray,
                         num_val_users: int = 600, num_test_users: int = 600,
                         fold_in_fraction: float = 0.8, min_positives: int = 5,
                         seed: int = 0) -> ImplicitSplit:
  """Liang et al. (WWW 2018): train on all positives of most users; for held-out users, fold in
  `fold_in_fraction` of their positives and rank for the rest.

  Users with fewer than `min_positives` positives are dropped; items no training user has are
  dropped from the catalog (and from held-out users), as in the paper's preprocessing.
  """
  positives = positives[np.flatnonzero(np.diff(positives.indptr) >= min_positives)]
  num_users = positives.shape[0]
  if num_users <= num_val_users + num_test_users:
    raise ValueError(f"{num_users} users with >= {min_positives} positives cannot hold out "
                     f"{num_val_users} + {num_test_users} users")
  rng = np.random.default_rng(seed)
  order = rng.permutation(num_users)
  val_users, test_users = order[:num_val_users], order[num_val_users:num_val_users + num_test_users]
  train = positives[np.sort(order[num_val_users + num_test_users:])]
  kept_items = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() > 0)
  catalog = Catalog(np.asarray(item_ids, dtype=object)[kept_items], np.asarray([], dtype=object))

  def held_out(users):
    rows = positives[users][:, kept_items]
    rows = rows[np.flatnonzero(np.diff(rows.indptr) >= 2)]  # one to fold in, one to rank
    return _fold_in(rows, fold_in_fraction, rng)

  return ImplicitSplit(catalog, train[:, kept_items].tocsr(), held_out(val_users),
                       held_out(test_users), protocol="held_out_users")
