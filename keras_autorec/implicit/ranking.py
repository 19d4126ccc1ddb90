"""Top-k catalog items of a scorer for rows of inputs, the rows' own items excluded."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import sparse

Scorer = Callable[[sparse.csr_matrix], np.ndarray]  # rows [B, N] -> scores [B, N]


def top_k_of_scores(scores: np.ndarray, k: int) -> np.ndarray:
  """Column positions [B, min(k, N)] of the highest scores, best first; -inf never listed
  (its slot is -1)."""
  k = min(k, scores.shape[1])
  part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
  top = np.take_along_axis(part, order, axis=1)
  return np.where(np.isfinite(np.take_along_axis(scores, top, axis=1)), top, -1)


def top_k_by_columns(scorer: Scorer, inputs: sparse.csr_matrix, columns_and_k: Sequence[tuple],
                     batch_size: int = 256) -> list[np.ndarray]:
  """For each (columns slice, k): catalog columns [rows, k] within it ranked by `scorer`,
  inputs excluded; the scorer is called once per batch for all of them."""
  results = [[] for _ in columns_and_k]
  for first in range(0, inputs.shape[0], batch_size):
    batch = inputs[first:first + batch_size]
    scores = np.array(scorer(batch), dtype=np.float32, copy=True)
    rows = np.repeat(np.arange(batch.shape[0]), np.diff(batch.indptr))
    scores[rows, batch.indices] = -np.inf
    for result, (columns, k) in zip(results, columns_and_k):
      top = top_k_of_scores(scores[:, columns], k)
      result.append(np.where(top >= 0, top + columns.start, -1))
  return [np.concatenate(result) if result else np.zeros((0, k), dtype=np.int64)
          for result, (_, k) in zip(results, columns_and_k)]


def top_k(scorer: Scorer, inputs: sparse.csr_matrix, columns: slice, k: int,
          batch_size: int = 256) -> np.ndarray:
  """Catalog columns [rows, k] within `columns` ranked by `scorer`, inputs excluded."""
  return top_k_by_columns(scorer, inputs, [(columns, k)], batch_size)[0]
