"""Tests for keras_autorec.serving.client_inputs: ids, ratings, padding and request sizes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_autorec.serving import client_inputs
from keras_autorec.serving.errors import InvalidInputError


def test_id_bytes_match_the_serialized_tensor_proto():
  ids = client_inputs.as_id_vector(["1", "242", "é" * 10, 51], "ids")
  assert ids.tolist() == ["1", "242", "é" * 10, "51"]
  estimated = int(client_inputs.id_bytes(ids).sum())
  serialized = tf.make_tensor_proto(ids).ByteSize() - tf.make_tensor_proto(ids[:0]).ByteSize()
  # At most a byte per id too many (short ids have a one-byte length); the proto's shape adds
  # a few bytes the estimate leaves to the request's overhead.
  assert serialized - 4 <= estimated <= serialized + len(ids)


def test_padded_ids_pad_to_the_longest_list_and_at_least_one_column():
  padded = client_inputs.padded_ids([np.array(["a", "b"], object), np.array(["c"], object)])
  assert padded.tolist() == [["a", "b"], ["c", client_inputs.PADDING_ITEM_ID]]
  assert client_inputs.padded_ids([np.array([], object)]).shape == (1, 1)


def test_request_chunks_respect_rows_bytes_and_slots():
  row_bytes = np.full(10, 1000, np.int64)
  # Three rows next to the request's overhead.
  three_rows = client_inputs.RequestLimits(max_request_bytes=3000 + 4096)
  assert client_inputs.request_chunks(row_bytes, 4, three_rows) == [
      slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 10)]
  no_limit = client_inputs.RequestLimits(max_request_bytes=10**9)
  assert client_inputs.request_chunks(row_bytes, 2, no_limit) == [
      slice(start, start + 2) for start in range(0, 10, 2)]
  assert client_inputs.request_chunks(np.zeros(0, np.int64), 10, no_limit) == [slice(0, 0)]
  # Slots: a range costs rows x its longest list and is halved until it fits: [5] alone, then
  # [1, 2, 1] (6 slots) halved to [1], then [2, 1].
  five_slots = client_inputs.RequestLimits(max_rating_slots=5)
  assert client_inputs.request_chunks(np.ones(4, np.int64), 10, five_slots,
                                      np.array([5, 1, 2, 1])) == [
      slice(0, 1), slice(1, 2), slice(2, 4)]
  with pytest.raises(InvalidInputError, match="user 1 has 6 ratings, more than "
                                              "max_rating_slots=5"):
    client_inputs.request_chunks(np.ones(2, np.int64), 10, five_slots, np.array([1, 6]))
  with pytest.raises(ValueError, match="max_batch_size must be positive, got 0"):
    client_inputs.RequestLimits(max_batch_size=0)


def test_check_ratings_ignores_padding_and_names_the_bad_rating():
  ids = np.array(["1", client_inputs.PADDING_ITEM_ID, "3"], object)
  client_inputs.check_ratings(0, ids, np.array([5.0, np.nan, 1.0], np.float32), (1.0, 5.0))
  with pytest.raises(InvalidInputError, match=r"ratings\[2\]\[2\] \(item '3'\) must be within "
                                              r"rating_scale \[1, 5\], got 0.0"):
    client_inputs.check_ratings(2, ids, np.array([5.0, 0.0, 0.0], np.float32), (1.0, 5.0))
  with pytest.raises(InvalidInputError, match="must be a finite number"):
    client_inputs.check_ratings(0, ids, np.array([np.inf, 0.0, 0.0], np.float32), None)
