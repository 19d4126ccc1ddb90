"""Tests for keras_autorec.implicit.interactions."""

from __future__ import annotations

import numpy as np

from keras_autorec.implicit import interactions


def test_catalog_keeps_frequent_ids_and_logs_counts(caplog):
  caplog.set_level("INFO")
  catalog = interactions.build_catalog([[1, 2], [2, 3], [2, 1]], [["a"], ["b"], ["a"]],
                                       min_song_count=2, min_tag_count=2)
  assert catalog.song_ids.tolist() == ["2", "1"]
  assert catalog.tag_ids.tolist() == ["a"]
  assert (catalog.num_songs, catalog.num_tags, catalog.size) == (2, 1, 3)
  assert "songs: 3 distinct, 2 kept with min_count=2 (1 dropped)" in caplog.text


def test_encode_rows_offsets_tags_and_counts_unknown_ids():
  catalog = interactions.build_catalog([[5, 6], [6]], [["x"], ["y"]])
  rows, unknown = interactions.encode_rows(catalog, [[6, 9], [5]], [["y", "z"], []])
  # songs: "6" -> 0, "5" -> 1; tags: "x" -> 2, "y" -> 3
  assert rows.toarray().tolist() == [[1, 0, 0, 1], [0, 1, 0, 0]]
  np.testing.assert_array_equal(unknown, [2, 0])
