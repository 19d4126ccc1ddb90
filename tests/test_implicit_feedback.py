"""Tests for keras_autorec.implicit.feedback."""

from __future__ import annotations

import numpy as np

from keras_autorec.data import ratings as ratings_lib
from keras_autorec.implicit import feedback


def test_ratings_at_or_above_threshold_are_the_positives():
  ratings = ratings_lib.from_raw(np.array(["u1", "u1", "u2", "u2"]),
                                 np.array(["a", "b", "a", "c"]), np.array([4.0, 3.5, 5.0, 1.0]),
                                 timestamp=np.zeros(4, dtype=np.int64), rating_scale=(1.0, 5.0),
                                 source="test")
  positives = feedback.positives_from_ratings(ratings)
  assert positives.toarray().tolist() == [[1, 0, 0], [1, 0, 0]]
  assert feedback.positives_from_ratings(ratings, threshold=3.5).nnz == 3
