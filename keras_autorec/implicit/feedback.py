"""Explicit ratings turned into implicit positives (rating >= threshold)."""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse

from keras_autorec.data.ratings import Ratings

DEFAULT_POSITIVE_THRESHOLD = 4.0


def positives_from_ratings(ratings: Ratings,
                           threshold: float = DEFAULT_POSITIVE_THRESHOLD) -> sparse.csr_matrix:
  """Binary user x item matrix of the ratings >= `threshold`; lower ratings are not positives."""
  positive = ratings.rating >= threshold
  logging.info("Implicit feedback from %s: %d of %d ratings >= %g are positives",
               ratings.source, int(positive.sum()), ratings.num_ratings, threshold)
  matrix = sparse.csr_matrix(
      (np.ones(int(positive.sum()), dtype=np.float32),
       (ratings.user_index[positive], ratings.item_index[positive])),
      shape=(ratings.num_users, ratings.num_items))
  matrix.sum_duplicates()
  matrix.data[:] = 1.0
  return matrix
