"""Tests for keras_autorec.implicit.ranking."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from keras_autorec.implicit import ranking

# Item i's input adds MIX[i] to the scores: row 0 (item 1) scores MIX[1], row 1 (item 2) MIX[2].
MIX = np.array([[0.0] * 5, [0.1, 0.9, 0.5, 0.7, 0.3], [0.2, 0.1, 0.8, 0.6, 0.4], [0.0] * 5,
                [0.0] * 5], dtype=np.float32)
INPUTS = sparse.csr_matrix(np.array([[0, 1, 0, 0, 0], [0, 0, 1, 0, 0]], dtype=np.float32))


def scorer(rows):
  return np.asarray(rows @ MIX)


def test_top_k_excludes_inputs_in_every_batch():
  for batch_size in (1, 2):
    top = ranking.top_k(scorer, INPUTS, slice(0, 5), 3, batch_size=batch_size)
    np.testing.assert_array_equal(top, [[3, 2, 4], [3, 4, 0]])


def test_top_k_within_columns_returns_catalog_columns():
  np.testing.assert_array_equal(ranking.top_k(scorer, INPUTS, slice(3, 5), 2), [[3, 4], [3, 4]])
  np.testing.assert_array_equal(ranking.top_k(scorer, INPUTS, slice(0, 2), 2), [[0, -1], [0, 1]])


def test_minus_infinity_is_never_listed():
  scores = np.array([[1.0, -np.inf, 0.5]], dtype=np.float32)
  np.testing.assert_array_equal(ranking.top_k_of_scores(scores, 3), [[0, 2, -1]])


def test_top_k_by_columns_scores_each_batch_once_for_every_group():
  calls = []

  def counting_scorer(rows):
    calls.append(rows.shape[0])
    return scorer(rows)

  songs, tags = ranking.top_k_by_columns(counting_scorer, INPUTS, [(slice(0, 3), 2),
                                                                   (slice(3, 5), 1)], 1)
  assert calls == [1, 1]
  np.testing.assert_array_equal(songs, [[2, 0], [0, 1]])
  np.testing.assert_array_equal(tags, [[3], [3]])
