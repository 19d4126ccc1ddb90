"""Which implicit-feedback data, and its protocol's split for a seed: Melon playlists (real or
synthetic) with parts hidden, or ratings turned into positives with Liang et al.'s held-out users.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from keras_autorec.config import EXPORT_BASE, data_name
from keras_autorec.data import melon, sources, synthetic_melon
from keras_autorec.implicit import feedback, protocol

PLAYLIST_DATASETS = ("melon", "synthetic_melon")
# The settings of `ImplicitDataConfig` each kind of data takes (the others do not apply to it).
RATINGS_SETTINGS = ("positive_threshold", "num_val_users", "num_test_users")
PLAYLIST_SETTINGS = ("hide_fraction", "min_song_count", "min_tag_count")
MELON_SETTINGS = ("holdout_playlists",)  # synthetic_melon always writes val.json and test.json.
SYNTHETIC_MELON_SETTINGS = ("synthetic_playlists", "synthetic_songs", "synthetic_tags")


@dataclasses.dataclass(frozen=True)
class ImplicitDataConfig:
  """The implicit data and its protocol.

  Attributes:
    data: the data set, one of PLAYLIST_DATASETS (only `dataset` and `data_dir` apply) or ratings
      that `sources.load_ratings` reads.
    positive_threshold: ratings at or above it are positives.
    num_val_users, num_test_users: ratings: the users held out for validation and for test.
    hide_fraction: playlists: the share of each evaluated playlist's songs and of its tags hidden.
    holdout_playlists: melon: playlists of train.json held out for each of val.json and test.json
      that is missing.
    min_song_count, min_tag_count: playlists: songs and tags in fewer training playlists are
      dropped from the catalog.
    synthetic_playlists, synthetic_songs, synthetic_tags: synthetic_melon: the generated data's
      shape (generated again for each seed, with that seed; 80% of the playlists in train.json,
      10% in each of val.json and test.json).
  """

  data: sources.DataConfig = sources.DataConfig(dataset="synthetic_melon")
  positive_threshold: float = feedback.DEFAULT_POSITIVE_THRESHOLD
  num_val_users: int = 600
  num_test_users: int = 600
  hide_fraction: float = 0.5
  holdout_playlists: int = 1000
  min_song_count: int = 2
  min_tag_count: int = 2
  synthetic_playlists: int = 5000
  synthetic_songs: int = 10000
  synthetic_tags: int = 500


def is_playlists(dataset: str) -> bool:
  """Whether `dataset` holds playlists (implicit only) rather than ratings."""
  return dataset in PLAYLIST_DATASETS


def settings_used(dataset: str) -> tuple[str, ...]:
  """The `ImplicitDataConfig` settings (besides `data`) that apply to `dataset`."""
  if dataset == "synthetic_melon":
    return PLAYLIST_SETTINGS + SYNTHETIC_MELON_SETTINGS
  return PLAYLIST_SETTINGS + MELON_SETTINGS if dataset == "melon" else RATINGS_SETTINGS


def default_export_dir(config: ImplicitDataConfig) -> str:
  """saved_models/<data>, with _implicit after a ratings data set's name, so that its
  complete_playlist export never shares a served model with the rating model of that data."""
  name = data_name(dataclasses.asdict(config.data))
  return os.path.join(EXPORT_BASE, name if is_playlists(config.data.dataset) else name + "_implicit")


def load_split(config: ImplicitDataConfig, seed: int) -> protocol.ImplicitSplit:
  """The protocol's split of the data for `seed` (synthetic_melon is generated with `seed`)."""
  data = config.data
  if not is_playlists(data.dataset):
    ratings = sources.load_ratings(data)
    positives = feedback.positives_from_ratings(ratings, config.positive_threshold)
    return protocol.held_out_users_split(positives, ratings.item_ids, config.num_val_users,
                                         config.num_test_users, seed=seed)
  if data.dataset == "synthetic_melon":
    # Read whole, so the generated files are not needed after the split.
    with tempfile.TemporaryDirectory(prefix="synthetic_melon_") as data_dir:
      synthetic_melon.write_melon(synthetic_melon.SyntheticMelonConfig(
          num_playlists=config.synthetic_playlists, num_songs=config.synthetic_songs,
          num_tags=config.synthetic_tags, seed=seed), data_dir)
      playlists = melon.read_melon(data_dir)
  elif data.data_dir is None:
    raise ValueError("--dataset=melon needs --data_dir, the directory holding train.json")
  else:
    playlists = melon.read_melon(data.data_dir)
  return protocol.melon_split(playlists, config.hide_fraction, config.min_song_count,
                              config.min_tag_count, seed, config.holdout_playlists)
