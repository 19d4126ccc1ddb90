"""Tests for keras_autorec.playlists (the implicit-feedback command line)."""

from __future__ import annotations

import os

import pytest

from keras_autorec import playlists
from keras_autorec.implicit import experiment, fit

OPTIONS = {"positive_threshold": 4.0, "synthetic_playlists": 300, "synthetic_songs": 400,
           "synthetic_tags": 40, "hide_fraction": 0.5, "holdout_playlists": 50,
           "min_song_count": 2, "min_tag_count": 2, "num_val_users": 600, "num_test_users": 600}


def test_synthetic_melon_run_compares_methods_and_exports(tmp_path):
  config = experiment.ExperimentConfig(
      fit=fit.FitConfig(hidden_units=(32,), epochs=6, learning_rate=0.01, batch_size=64),
      losses=("multinomial",), ease_l2_weights=(50.0,))
  result = playlists.run("synthetic_melon", None, [0], OPTIONS, config,
                         ("popularity", "item_knn", "ease", "autorec"),
                         export_dir=str(tmp_path / "export"))
  test = {method: metrics["test"] for method, metrics in result["runs"][0].items()}
  # The planted genres make every personalised method far better than popularity.
  for method in ("item_knn", "ease", "autorec"):
    assert test[method]["melon_score"] > 2 * test["popularity"]["melon_score"], test
  assert result["table"].splitlines()[0] == (
      "| method | melon_score | song_ndcg@100 | tag_ndcg@10 |")
  assert len(result["table"].splitlines()) == 6
  assert os.listdir(tmp_path / "export") == ["1"]
  assert result["runs"][0]["autorec"]["chosen"]["loss"] == "multinomial"


def test_melon_without_data_dir_is_an_error():
  with pytest.raises(ValueError, match="--dataset=melon needs --data_dir"):
    playlists.load_split("melon", None, 0, OPTIONS)
