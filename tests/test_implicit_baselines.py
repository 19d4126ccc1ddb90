"""Tests for keras_autorec.implicit.baselines."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from keras_autorec.implicit import baselines

TRAIN = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1]],
                 dtype=np.float32)
INPUTS = sparse.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 0, 1]], dtype=np.float32))


def test_most_popular():
  scores = baselines.MostPopular(sparse.csr_matrix(TRAIN))(INPUTS)
  np.testing.assert_array_equal(scores, [[3, 3, 3, 2]] * 2)


def test_ease_is_the_closed_form():
  l2 = 2.0
  gram = TRAIN.T.astype(np.float64) @ TRAIN + l2 * np.eye(4)
  precision = np.linalg.inv(gram)
  weights = np.eye(4) - precision / np.diag(precision)
  # B = argmin ||X - XB||^2 + l2 ||B||^2 with diag(B) = 0: its diagonal is zero.
  np.testing.assert_allclose(np.diag(weights), 0.0, atol=1e-12)
  scores = baselines.Ease(sparse.csr_matrix(TRAIN), l2)(INPUTS)
  np.testing.assert_allclose(scores, INPUTS.toarray() @ weights, rtol=1e-5, atol=1e-6)


def test_ease_keeps_the_most_frequent_items_when_capped():
  ease = baselines.Ease(sparse.csr_matrix(TRAIN), 1.0, max_items=3)
  scores = ease(INPUTS)
  assert np.all(np.isneginf(scores[:, 3]))  # item 3 is the least frequent
  assert np.all(np.isfinite(scores[:, :3]))


def test_item_knn_is_cosine_over_all_neighbours():
  norms = np.sqrt(TRAIN.sum(axis=0))
  cosine = (TRAIN.T @ TRAIN) / np.outer(norms, norms)
  scores = baselines.ItemKnn(sparse.csr_matrix(TRAIN))(INPUTS)
  np.testing.assert_allclose(scores, INPUTS.toarray() @ cosine, rtol=1e-5)
