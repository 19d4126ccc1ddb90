"""Top-N baselines for binary rows: most popular, EASE (Steck 2019) and item-kNN cosine.

Each is fitted on training rows and scores every catalog item for rows of inputs, like
`keras_autorec.implicit.fit.predict_scores`, so they rank through the same code as AutoRec.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse

# EASE inverts an items x items Gram matrix: O(items^3) time, O(items^2) memory (two 3.2 GB
# float64 matrices at 20k items). Larger catalogs keep their most frequent items; the rest
# score -inf.
DEFAULT_EASE_MAX_ITEMS = 20_000


def _item_counts(train: sparse.csr_matrix) -> np.ndarray:
  return np.asarray(train.sum(axis=0), dtype=np.float64).ravel()


class MostPopular:
  """Every row gets the items ranked by how many training rows hold them."""

  name = "popularity"

  def __init__(self, train: sparse.csr_matrix):
    self.counts = _item_counts(train).astype(np.float32)

  def __call__(self, inputs: sparse.csr_matrix) -> np.ndarray:
    return np.tile(self.counts, (inputs.shape[0], 1))


class Ease:
  """EASE: B = I - P / diag(P) with P = (X^T X + l2 I)^-1, scores X_u B (zero diagonal).

  Catalogs above `max_items` keep the `max_items` most frequent items (logged).
  """

  name = "ease"

  def __init__(self, train: sparse.csr_matrix, l2_weight: float,
               max_items: int = DEFAULT_EASE_MAX_ITEMS):
    counts = _item_counts(train)
    self.num_items = train.shape[1]
    self.items = np.sort(np.argsort(-counts, kind="stable")[:max_items])
    if self.items.size < self.num_items:
      logging.warning("EASE keeps the %d most frequent of %d items (max_items)", self.items.size,
                      self.num_items)
    rows = train[:, self.items]
    gram = (rows.T @ rows).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2_weight
    precision = np.linalg.inv(gram)
    del gram
    precision /= -np.diag(precision)
    self.weights = precision.astype(np.float32)
    del precision
    self.weights[np.diag_indices_from(self.weights)] = 0.0
    self.l2_weight = l2_weight

  def __call__(self, inputs: sparse.csr_matrix) -> np.ndarray:
    scores = np.full((inputs.shape[0], self.num_items), -np.inf, dtype=np.float32)
    scores[:, self.items] = inputs[:, self.items] @ self.weights
    return scores


class ItemKnn:
  """Item-kNN with cosine similarity over all neighbours: score_j = sum_i x_i cos(i, j).

  cos(i, j) = c_ij / sqrt(n_i n_j) with c the co-occurrence counts, computed as
  ((x / sqrt(n)) X^T) X / sqrt(n) so the items x items matrix is never built.
  """

  name = "item_knn"

  def __init__(self, train: sparse.csr_matrix):
    counts = _item_counts(train)
    self.inverse_root = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)),
                                 0.0).astype(np.float32)
    self.train = train.astype(np.float32).tocsr()
    self.train_transposed = self.train.T.tocsr()

  def __call__(self, inputs: sparse.csr_matrix) -> np.ndarray:
    weighted = inputs.multiply(self.inverse_root[None, :]).tocsr()
    row_overlap = (weighted @ self.train_transposed).toarray()  # [B, training rows]
    return np.asarray(self.train.T @ row_overlap.T).T * self.inverse_root[None, :]
