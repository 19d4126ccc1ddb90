"""Tests for keras_autorec.playlists: train's flags with implicit feedback on synthetic Melon."""

from __future__ import annotations

from absl import flags
from absl.testing import flagsaver

from keras_autorec import cli_flags, playlists, train


def test_defaults_are_implicit_synthetic_melon_and_other_data_stay_implicit():
  with flagsaver.flagsaver():
    playlists.set_defaults()
    flags.FLAGS(["playlists"])
    assert flags.FLAGS.dataset == "synthetic_melon"
    assert cli_flags.feedback(train.HELP_GROUPS) == "implicit"
    flags.FLAGS(["playlists", "--dataset=ml1m"])
    assert cli_flags.feedback(train.HELP_GROUPS) == "implicit"
  # Importing (or testing) the command leaves train's defaults alone.
  assert flags.FLAGS["feedback"].default == "explicit"
  assert flags.FLAGS["dataset"].default == "ml100k"
