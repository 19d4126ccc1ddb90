"""Tests for keras_autorec.implicit.serving and the complete_playlist client method."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import tf_serving_fake
from keras_autorec.implicit import interactions, model as model_lib
from keras_autorec.implicit import serving
from keras_autorec.serving import client as client_lib
from keras_autorec.serving import warmup

MODEL_NAME = "playlists"
CATALOG = interactions.Catalog(np.array([f"{s}" for s in range(100, 130)], dtype=object),
                               np.array(["rock", "jazz", "calm", "night"], dtype=object))


def score_by_column(model):
  """Output bias = column number, other weights zero: the highest columns rank first."""
  for kernel, bias in model.encoder_params:
    kernel.assign(tf.zeros_like(kernel))
  model.output_kernel.assign(tf.zeros_like(model.output_kernel))
  model.output_bias.assign(tf.range(model.num_items, dtype=tf.float32))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
  model = model_lib.PlaylistAutoRec(CATALOG.size, hidden_units=(4,))
  score_by_column(model)
  base = str(tmp_path_factory.mktemp("exports") / MODEL_NAME)
  path = serving.export_complete_playlist(model, CATALOG, base, song_k=5, tag_k=2)
  assert path == os.path.join(base, "1")
  return base


def test_exclusion_unknown_ids_and_padding_through_saved_model_load(base_dir):
  complete = tf.saved_model.load(os.path.join(base_dir, "1")).signatures["complete_playlist"]
  outputs = complete(song_ids=tf.constant([["129", "127", "nope", ""], ["", "", "", ""]]),
                     tags=tf.constant([["night", ""], ["???", ""]]))
  # Columns score their index, so the best songs are the last ids, minus the inputs.
  assert outputs["song_ids"].numpy().astype(str).tolist() == [
      ["128", "126", "125", "124", "123"], ["129", "128", "127", "126", "125"]]
  assert outputs["tags"].numpy().astype(str).tolist() == [["calm", "jazz"], ["night", "calm"]]
  assert outputs["song_scores"].shape == (2, 5) and outputs["tag_scores"].shape == (2, 2)
  np.testing.assert_array_equal(outputs["song_scores"].numpy()[0], [28, 26, 25, 24, 23])


def test_repeated_input_ids_count_once(base_dir):
  complete = tf.saved_model.load(os.path.join(base_dir, "1")).signatures["complete_playlist"]
  once = complete(song_ids=tf.constant([["101"]]), tags=tf.constant([[""]]))
  twice = complete(song_ids=tf.constant([["101", "101"]]), tags=tf.constant([[""]]))
  np.testing.assert_array_equal(once["song_scores"], twice["song_scores"])


def test_a_catalog_without_tags_exports_and_returns_no_tags(tmp_path):
  # Implicit MovieLens: items are the "songs", and there are no tags.
  catalog = interactions.Catalog(CATALOG.song_ids, np.array([], dtype=object))
  model = model_lib.PlaylistAutoRec(catalog.size, hidden_units=(4,))
  score_by_column(model)
  path = serving.export_complete_playlist(model, catalog, str(tmp_path / "movies"), song_k=3)
  complete = tf.saved_model.load(path).signatures["complete_playlist"]
  outputs = complete(song_ids=tf.constant([["129", ""]]), tags=tf.constant([["rock"]]))
  assert outputs["song_ids"].numpy().astype(str).tolist() == [["128", "127", "126"]]
  assert outputs["tags"].shape == (1, 0) and outputs["tag_scores"].shape == (1, 0)


def test_tf1_session_loader(base_dir):
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"],
                                                      os.path.join(base_dir, "1"))
    signature = meta_graph.signature_def["complete_playlist"]
    fetched = session.run(signature.outputs["tags"].name,
                          {signature.inputs["song_ids"].name: [["100"]],
                           signature.inputs["tags"].name: [["calm"]]})
  assert fetched.astype(str).tolist() == [["night", "jazz"]]


def test_warmup_records_and_no_partial_directory(base_dir):
  records = list(tf.data.TFRecordDataset(os.path.join(base_dir, "1", "assets.extra", warmup.WARMUP_FILE)))
  assert len(records) == 2
  assert sorted(os.listdir(base_dir)) == ["1"]


def test_client_through_fake_tf_serving(base_dir):
  with tf_serving_fake.FakeTFServing(base_dir, MODEL_NAME) as server, \
      client_lib.AutoRecClient(server.target, MODEL_NAME) as client:
    songs, song_scores, tags, tag_scores = client.complete_playlist(
        [["129"], [128, "unknown"]], [[], ["rock", "night"]], k=3)
  assert songs.tolist() == [["128", "127", "126"], ["129", "127", "126"]]
  assert tags.tolist() == [["night", "calm"], ["calm", "jazz"]]
  assert song_scores.dtype == np.float32 and tag_scores.shape == (2, 2)
  np.testing.assert_array_equal(song_scores[0], [28, 27, 26])


def cli_flags(*args):
  flag_values = flags.FlagValues()
  client_lib.define_flags(flag_values)
  return flag_values(["client", *args]), flag_values


def test_cli_complete_playlist(base_dir, capsys):
  with tf_serving_fake.FakeTFServing(base_dir, MODEL_NAME) as server:
    argv, flag_values = cli_flags(f"--server={server.target}", f"--model_name={MODEL_NAME}",
                                  "complete_playlist", "--song_ids=129,128", "--tags=night",
                                  "--k=2")
    assert client_lib.run_command(argv, flag_values) == 0
    assert capsys.readouterr().out.splitlines() == [
        "playlist  rank  item_id  score",
        "songs     1     127      27.0000",
        "songs     2     126      26.0000",
        "tags      1     calm     32.0000",
        "tags      2     jazz     31.0000",
    ]
    argv, flag_values = cli_flags(f"--server={server.target}", "complete_playlist")
    assert client_lib.run_command(argv, flag_values) == 2
    assert "complete_playlist needs --song_ids or --tags" in capsys.readouterr().err
