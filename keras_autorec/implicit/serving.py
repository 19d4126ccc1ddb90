"""Export of a PlaylistAutoRec with a `complete_playlist` signature for TensorFlow Serving.

  inputs:  song_ids string [B, L], tags string [B, T]; "" pads, unknown ids are ignored.
  outputs: song_ids string [B, K_songs], song_scores float32 [B, K_songs],
           tags string [B, K_tags], tag_scores float32 [B, K_tags]
The playlist's own songs and tags are never returned. K is fixed at export (100 songs and 10
tags by default, fewer for a smaller catalog); `serving_default` is the same function. The
version is built in a `.partial-*` directory and published atomically by
`keras_autorec.serving.publish`, with TF Serving warmup requests in assets.extra.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from keras_autorec.implicit import model as model_lib
from keras_autorec.implicit.interactions import Catalog
from keras_autorec.implicit.model import PlaylistAutoRec
from keras_autorec.serving import publish, warmup

SIGNATURE_NAME = "complete_playlist"
SONG_K, TAG_K = 100, 10
_INPUT_SPECS = (tf.TensorSpec([None, None], tf.string, name="song_ids"),
                tf.TensorSpec([None, None], tf.string, name="tags"))


def _index_table(ids: np.ndarray, offset: int) -> tf.lookup.StaticHashTable:
  """id -> catalog column (offset + position); -1 for any other id."""
  if ids.size:
    keys = tf.constant(ids.astype(str), dtype=tf.string)
    values = tf.range(offset, offset + int(ids.size), dtype=tf.int64)
  else:
    # A table cannot be empty: an empty vocabulary (MovieLens has no tags) holds the padding,
    # which maps to -1 as every unknown id does.
    keys, values = tf.constant([""]), tf.constant([-1], dtype=tf.int64)
  return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1)


class PlaylistCompleter(tf.Module):
  """The serving graph: look ids up, score the catalog, drop the inputs, take the top K."""

  def __init__(self, model: PlaylistAutoRec, catalog: Catalog, song_k: int = SONG_K,
               tag_k: int = TAG_K):
    super().__init__()
    # The underlying tf.Variables, not the Keras model: saving a Keras model would also trace
    # its call with dense inputs, which the sparse first layer does not take.
    self.encoder_params = [(kernel.value, bias.value) for kernel, bias in model.encoder_params]
    self.output_kernel, self.output_bias = model.output_kernel.value, model.output_bias.value
    self.activation = model.activation
    self.num_songs, self.num_items = catalog.num_songs, catalog.size
    self.song_k, self.tag_k = min(song_k, catalog.num_songs), min(tag_k, catalog.num_tags)
    self.song_table = _index_table(catalog.song_ids, 0)
    self.tag_table = _index_table(catalog.tag_ids, catalog.num_songs)
    self.song_vocabulary = tf.Variable(catalog.song_ids.astype(str).tolist() or [""],
                                       trainable=False)
    self.tag_vocabulary = tf.Variable(catalog.tag_ids.astype(str).tolist() or [""],
                                      trainable=False)

  def _input_rows(self, song_ids, tags) -> tuple[tf.SparseTensor, tf.Tensor]:
    """Binary sparse rows [B, items] of the known ids, each once, and their (row, column)s."""
    columns = tf.concat([self.song_table.lookup(song_ids), self.tag_table.lookup(tags)], axis=1)
    positions = tf.where(columns >= 0)
    keys = positions[:, 0] * self.num_items + tf.gather_nd(columns, positions)
    keys, _ = tf.unique(keys)
    keys = tf.sort(keys)
    indices = tf.stack([keys // self.num_items, keys % self.num_items], axis=1)
    batch_size = tf.shape(columns, out_type=tf.int64)[0]
    rows = tf.SparseTensor(indices, tf.ones_like(keys, dtype=tf.float32),
                           tf.stack([batch_size, self.num_items]))
    return rows, indices

  def _top(self, scores, first: int, last: int, k: int, vocabulary):
    top = tf.math.top_k(scores[:, first:last], k=k)
    return tf.gather(vocabulary, top.indices), top.values

  @tf.function(input_signature=_INPUT_SPECS, autograph=False)
  def complete_playlist(self, song_ids, tags):
    """The top songs and tags completing each playlist, its own songs and tags excluded."""
    rows, indices = self._input_rows(song_ids, tags)
    scores = model_lib.score_rows(self.encoder_params, self.output_kernel, self.output_bias,
                                  self.activation, rows)
    scores = tf.tensor_scatter_nd_update(
        scores, indices, tf.fill(tf.shape(indices)[:1], tf.constant(-np.inf, tf.float32)))
    songs, song_scores = self._top(scores, 0, self.num_songs, self.song_k, self.song_vocabulary)
    tags_out, tag_scores = self._top(scores, self.num_songs, self.num_items, self.tag_k,
                                     self.tag_vocabulary)
    return {"song_ids": songs, "song_scores": song_scores, "tags": tags_out,
            "tag_scores": tag_scores}


def warmup_requests(catalog: Catalog) -> list[tuple[str, dict[str, np.ndarray]]]:
  """Batches of 1 and 4 playlists with known, unknown and padding ids."""
  songs = catalog.song_ids[:3].astype(str).tolist()
  tags = catalog.tag_ids[:1].astype(str).tolist()
  one = {"song_ids": np.array([songs + ["__unknown__"]], dtype=object),
         "tags": np.array([tags + [""]], dtype=object)}
  four = {name: np.repeat(value, 4, axis=0) for name, value in one.items()}
  return [(SIGNATURE_NAME, one), (SIGNATURE_NAME, four)]


def export_complete_playlist(model: PlaylistAutoRec, catalog: Catalog, base_dir: str,
                             song_k: int = SONG_K, tag_k: int = TAG_K) -> str:
  """Publishes the model as the next integer version under `base_dir`; returns its path."""
  completer = PlaylistCompleter(model, catalog, song_k, tag_k)
  function = completer.complete_playlist.get_concrete_function()
  with publish.partial_directory(base_dir) as partial_dir:
    tf.saved_model.save(completer, partial_dir,
                        signatures={SIGNATURE_NAME: function, "serving_default": function})
    extra = os.path.join(partial_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    warmup.write_warmup_requests(os.path.join(extra, warmup.WARMUP_FILE),
                                 warmup_requests(catalog))
    with open(os.path.join(extra, "metadata.json"), "w") as f:
      json.dump({"signature": SIGNATURE_NAME, "song_k": completer.song_k,
                 "tag_k": completer.tag_k, "num_songs": catalog.num_songs,
                 "num_tags": catalog.num_tags}, f)
    return publish.publish_version(partial_dir, base_dir)
