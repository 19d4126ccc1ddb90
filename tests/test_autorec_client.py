"""Tests for keras_autorec.serving.autorec_client against the in-process fake TF Serving."""

from __future__ import annotations

import pathlib

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from keras_autorec import export
from keras_autorec import training
from keras_autorec.data import ratings as ratings_lib
from keras_autorec.data import splits
from keras_autorec.serving import errors
from keras_autorec.serving.autorec_client import AutoRecClient
import tf_serving_fake

from client_fixtures import (EXPORTED_K, ITEM_IDS, MODEL_NAME, RATING_MATRIX, SIGNATURE_NAMES,
                             SIMILARITY_MATRIX, USER_IDS, expected_top_k)


def test_predict_returns_the_rating_of_each_pair(client):
  ratings = client.predict(["196", "244", "22"], ["242", "302", "474"])
  assert ratings.dtype == np.float32
  np.testing.assert_array_equal(ratings, [5.0, 5.0, 5.0])
  np.testing.assert_array_equal(client.predict([196, "186"], [377, b"346"]), [1.0, 5.0])


def test_predict_rejects_mismatched_lengths_and_single_ids(client):
  with pytest.raises(ValueError, match="same length"):
    client.predict(["196", "186"], ["242"])
  with pytest.raises(TypeError, match="single id"):
    client.predict("196", ["242"])


def test_recommend_returns_top_k_of_each_user(client):
  item_ids, scores = client.recommend(USER_IDS)
  expected_item_ids, expected_scores = expected_top_k(RATING_MATRIX)
  assert item_ids.shape == scores.shape == (4, EXPORTED_K)
  assert item_ids.tolist() == expected_item_ids.tolist()
  assert item_ids[0].tolist() == ["242", "51", "474"]
  np.testing.assert_array_equal(scores, expected_scores)
  assert scores.dtype == np.float32


def test_with_ratings_names_the_missing_output(client):
  with pytest.raises(errors.ServingError, match="not 'ratings'"):
    client.recommend(["196"], with_ratings=True)


def test_recommend_trims_k_client_side(client):
  item_ids, scores = client.recommend(["196", "22"], k=2)
  assert item_ids.tolist() == [["242", "51"], ["474", "346"]]
  np.testing.assert_array_equal(scores, [[5.0, 4.0], [5.0, 4.5]])


def test_k_above_exported_k_names_the_exported_k(client):
  with pytest.raises(ValueError, match=f"k=4 exceeds K={EXPORTED_K}"):
    client.recommend(["196"], k=4)
  with pytest.raises(ValueError, match=f"K={EXPORTED_K}"):
    client.similar_items(["242"], k=10)
  with pytest.raises(ValueError, match="positive"):
    client.recommend(["196"], k=0)


def test_recommend_for_ratings_pads_ragged_users(client):
  rated_item_ids = [["242", "302"], ["377"], ["51", "346", "474"]]
  ratings = [[5.0, 3.0], [4.0], [1.0, 2.0, 0.5]]
  item_ids, scores = client.recommend_for_ratings(rated_item_ids, ratings, k=2)

  expected_scores = np.zeros((3, len(ITEM_IDS)), dtype=np.float32)
  for user, (ids, values) in enumerate(zip(rated_item_ids, ratings)):
    for item_id, rating in zip(ids, values):
      expected_scores[user] += rating * SIMILARITY_MATRIX[ITEM_IDS.index(item_id)]
  expected_item_ids, expected_top_scores = expected_top_k(expected_scores, k=2)
  assert item_ids.tolist() == expected_item_ids.tolist()
  np.testing.assert_array_equal(scores, expected_top_scores)
  # A single rating folds in to exactly that item's similarity row times the rating.
  assert item_ids[1].tolist() == ["474", "302"]
  np.testing.assert_array_equal(scores[1], [4.0, 2.5])


def test_recommend_for_ratings_accepts_already_padded_users(client):
  item_ids, scores = client.recommend_for_ratings(
      np.array([["377", ""], ["242", "302"]]), np.array([[4.0, 0.0], [5.0, 3.0]]), k=1)
  assert item_ids.tolist() == [["474"], ["51"]]
  np.testing.assert_array_equal(scores, [[4.0], [4.75]])


def test_recommend_for_ratings_validates_users(client):
  with pytest.raises(ValueError, match="user 0 has 2 item ids but 1 ratings"):
    client.recommend_for_ratings([["242", "302"]], [[5.0]])
  with pytest.raises(ValueError, match="one list per user"):
    client.recommend_for_ratings([["242"], ["302"]], [[5.0]])


def test_similar_items(client):
  item_ids, scores = client.similar_items(["242", "474"])
  expected_item_ids, expected_scores = expected_top_k(SIMILARITY_MATRIX[[0, 5]])
  assert item_ids.tolist() == expected_item_ids.tolist()
  assert item_ids[0].tolist() == ["51", "377", "474"]
  np.testing.assert_array_equal(scores, expected_scores)
  item_ids, scores = client.similar_items(["242"], k=1)
  assert item_ids.tolist() == [["51"]] and scores.tolist() == [[0.875]]


def test_metadata_lists_the_signatures(client):
  metadata = client.metadata()
  assert metadata["model_name"] == MODEL_NAME
  assert metadata["version"] == 1
  signatures = metadata["signatures"]
  assert sorted(signatures) == sorted(SIGNATURE_NAMES)
  assert sorted(signatures["serving_default"]["inputs"]) == ["item_id", "user_id"]
  assert sorted(signatures["recommend"]["inputs"]) == ["user_id"]
  assert sorted(signatures["recommend_for_ratings"]["inputs"]) == ["item_ids", "ratings"]
  assert sorted(signatures["similar_items"]["inputs"]) == ["item_id"]
  assert signatures["serving_default"]["outputs"] == {"rating": {"dtype": "float32",
                                                                 "shape": [None]}}
  assert signatures["recommend_for_ratings"]["inputs"]["ratings"] == {"dtype": "float32",
                                                                      "shape": [None, None]}
  for name in ("recommend", "recommend_for_ratings", "similar_items"):
    assert signatures[name]["outputs"]["item_ids"] == {"dtype": "string",
                                                       "shape": [None, EXPORTED_K]}
    assert signatures[name]["outputs"]["scores"]["dtype"] == "float32"
  assert {signature["method_name"] for signature in signatures.values()} == {
      "tensorflow/serving/predict"}


def test_response_model_spec_names_the_served_servable(server):
  with grpc.insecure_channel(server.target) as channel:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "recommend"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(["196"]))
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request)
  assert response.model_spec.name == MODEL_NAME
  assert response.model_spec.version.value == 1
  assert response.model_spec.signature_name == "recommend"


def test_fake_server_rejects_wrong_input_dtype_like_tf_serving(server):
  with grpc.insecure_channel(server.target) as channel:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "similar_items"
    request.inputs["item_id"].CopyFrom(tf.make_tensor_proto([242.0], dtype=tf.float32))
    with pytest.raises(grpc.RpcError) as raised:
      prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request)
  assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert raised.value.details() == "Expects arg[0] to be string but float is provided"



def test_highest_version_is_served_by_default_and_explicit_versions_honoured(versioned_base_path):
  with tf_serving_fake.FakeTFServing(versioned_base_path, MODEL_NAME,
                                     version_policy="all") as all_versions:
    assert all_versions.served_versions == [9, 10]
    with AutoRecClient(all_versions.target, MODEL_NAME) as latest:
      assert latest.metadata()["version"] == 10
      np.testing.assert_array_equal(latest.predict(["196"], ["242"]), [1.0])
    with AutoRecClient(all_versions.target, MODEL_NAME, version=9) as pinned:
      assert pinned.metadata()["version"] == 9
      np.testing.assert_array_equal(pinned.predict(["196"], ["242"]), [5.0])


def test_latest_policy_serves_only_the_highest_version(versioned_base_path):
  with tf_serving_fake.FakeTFServing(versioned_base_path, MODEL_NAME) as latest_only:
    assert latest_only.served_versions == [10]
    with AutoRecClient(latest_only.target, MODEL_NAME, version=9) as pinned:
      with pytest.raises(errors.ModelNotFoundError, match="version 9"):
        pinned.predict(["196"], ["242"])


def test_large_requests_are_split_under_max_request_bytes_and_reassembled(server):
  user_ids = USER_IDS * 50
  item_ids = (ITEM_IDS[:4] * 50)
  with AutoRecClient(server.target, MODEL_NAME, max_request_bytes=6000) as chunked:
    before = len(server.received_metadata)
    ratings = chunked.predict(user_ids, item_ids)
    calls = len(server.received_metadata) - before
  users = [USER_IDS.index(user) for user in user_ids]
  items = [ITEM_IDS.index(item) for item in item_ids]
  np.testing.assert_array_equal(ratings, RATING_MATRIX[users, items])
  # 200 pairs of about 25 bytes each do not fit one 6000-byte request, but fit two or three.
  assert 2 <= calls <= 3


def test_default_request_size_fits_tf_servings_4_mib_limit(server, client):
  rng = np.random.default_rng(0)
  users = rng.integers(0, len(USER_IDS), 500_000)
  items = rng.integers(0, len(ITEM_IDS), 500_000)
  user_ids, item_ids = np.asarray(USER_IDS)[users], np.asarray(ITEM_IDS)[items]
  whole = predict_pb2.PredictRequest()
  whole.inputs["user_id"].CopyFrom(tf.make_tensor_proto(user_ids.astype(object)))
  whole.inputs["item_id"].CopyFrom(tf.make_tensor_proto(item_ids.astype(object)))
  # One request would exceed the 4 MiB that a default gRPC server, like TF Serving, accepts.
  assert whole.ByteSize() > 4 * 1024 * 1024
  before = len(server.received_metadata)
  ratings = client.predict(user_ids, item_ids)
  assert len(server.received_metadata) - before == 2
  np.testing.assert_array_equal(ratings, RATING_MATRIX[users, items])


def test_top_k_requests_are_split_into_max_batch_size_rows(server):
  with AutoRecClient(server.target, MODEL_NAME, max_batch_size=3) as chunked:
    before = len(server.received_metadata)
    item_ids, scores = chunked.recommend(USER_IDS * 2)
    assert len(server.received_metadata) - before == 3
  expected_item_ids, expected_scores = expected_top_k(RATING_MATRIX)
  assert item_ids.tolist() == expected_item_ids.tolist() * 2
  np.testing.assert_array_equal(scores, np.concatenate([expected_scores] * 2))


def test_recommend_for_ratings_chunks_pad_each_chunk_within_max_rating_slots(server, client):
  rated_item_ids = [["242", "302", "377", "51"], ["377"], ["51", "346"], ["474"]]
  ratings = [[5.0, 3.0, 1.0, 2.0], [4.0], [1.0, 2.0], [3.0]]
  expected = client.recommend_for_ratings(rated_item_ids, ratings)
  with AutoRecClient(server.target, MODEL_NAME, max_rating_slots=4) as chunked:
    before = len(server.received_metadata)
    item_ids, scores = chunked.recommend_for_ratings(rated_item_ids, ratings)
    assert len(server.received_metadata) - before == 3  # [4 ratings], [1, 2], [1]
    assert item_ids.tolist() == expected[0].tolist()
    np.testing.assert_array_equal(scores, expected[1])
    with pytest.raises(errors.InvalidInputError, match="user 1 has 5 ratings"):
      chunked.recommend_for_ratings([["242"], ITEM_IDS[:5]], [[5.0], [1.0] * 5])


def test_a_row_above_max_request_bytes_is_an_input_error(server):
  with AutoRecClient(server.target, MODEL_NAME, max_request_bytes=300) as tiny:
    with pytest.raises(errors.InvalidInputError, match="row 1 alone makes a"):
      tiny.predict(["196", "x" * 400], ["242", "302"])


def test_non_finite_ratings_are_rejected_before_sending(server, client):
  for bad in (np.nan, np.inf, -np.inf):
    with pytest.raises(errors.InvalidInputError,
                       match=r"ratings\[1\]\[0\] \(item '377'\) must be a finite number"):
      client.recommend_for_ratings([["242"], ["377"]], [[5.0], [bad]])
  with AutoRecClient(server.target, MODEL_NAME, rating_scale=(1, 5)) as scaled:
    with pytest.raises(errors.InvalidInputError, match=r"within rating_scale \[1, 5\]"):
      scaled.recommend_for_ratings([["242", "302"]], [[5.0, 100.0]])
    # Padding slots may hold anything; they are sent as 0 and ignored.
    item_ids, scores = scaled.recommend_for_ratings([["377", ""]], [[4.0, np.nan]], k=1)
  assert item_ids.tolist() == [["474"]] and scores.tolist() == [[4.0]]


def test_non_utf8_bytes_id_raises_the_clients_error(client):
  with pytest.raises(errors.InvalidInputError, match=r"item_ids\[1\] is not valid UTF-8"):
    client.predict(["196", "186"], ["242", b"\xff\xfe"])
  with pytest.raises(errors.InvalidInputError, match=r"user_ids\[0\] is not valid UTF-8"):
    client.recommend(["\udc80"])
  with pytest.raises(errors.InvalidInputError, match=r"item_ids\[0\]\[0\]"):
    client.recommend_for_ratings([[b"\xc3"]], [[4.0]])



# ---------------------------------------------------------------------------------------------
# The client against a real export of a tiny trained AutoRec.

REAL_EXPORT_K = 4


def real_export_base_path(base_path: pathlib.Path, item_based: bool) -> pathlib.Path:
  """Trains a tiny AutoRec on synthetic ratings and exports it as version 1 under base_path."""
  rng = np.random.default_rng(0)
  users, items = np.nonzero(rng.random((30, 20)) < 0.5)
  ratings = ratings_lib.from_raw(users.astype(str), items.astype(str),
                                 rng.integers(1, 6, users.shape[0]), None, (1, 5), "synthetic")
  trained = training.fit(splits.random_split(ratings, seed=0),
                         training.ModelConfig(item_based=item_based, hidden_units=(8,)),
                         training.TrainConfig(epochs=3, batch_size=16, verbose=0))
  export.export_model(trained.model, trained.layout,
                      export.ExportConfig(export_dir=str(base_path), top_k=REAL_EXPORT_K))
  return base_path


@pytest.fixture(scope="class", params=[True, False], ids=["I-AutoRec", "U-AutoRec"])
def real_export(request, tmp_path_factory) -> pathlib.Path:
  return real_export_base_path(tmp_path_factory.mktemp("real") / MODEL_NAME, request.param)


class TestRealExport:
  """The client, through the fake server, returns what the exported SavedModel computes."""

  @pytest.fixture(scope="class")
  def real_client(self, real_export):
    with tf_serving_fake.FakeTFServing(real_export, MODEL_NAME) as real_server:
      with AutoRecClient(real_server.target, MODEL_NAME) as autorec_client:
        yield autorec_client

  @pytest.fixture(scope="class")
  def signatures(self, real_export):
    return tf.saved_model.load(str(real_export / "1")).signatures

  @staticmethod
  def call(signature, **inputs) -> dict[str, np.ndarray]:
    outputs = signature(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}

  @staticmethod
  def decoded(item_ids: np.ndarray) -> list:
    return [[id_.decode() for id_ in row] for row in item_ids]

  def test_predict(self, real_client, signatures):
    user_ids, item_ids = ["0", "1", "2", "no-such-user"], ["3", "4", "no-such-item", "5"]
    expected = self.call(signatures["serving_default"], user_id=user_ids, item_id=item_ids)
    np.testing.assert_array_equal(real_client.predict(user_ids, item_ids), expected["rating"])
    np.testing.assert_array_equal(expected["rating"][2:], [3.0, 3.0])

  def test_recommend(self, real_client, signatures):
    item_ids, scores = real_client.recommend(["0", "7", "no-such-user"])
    expected = self.call(signatures["recommend"], user_id=["0", "7", "no-such-user"])
    assert item_ids.tolist() == self.decoded(expected["item_ids"])
    np.testing.assert_array_equal(scores, expected["scores"])
    assert scores.shape == (3, REAL_EXPORT_K)
    top_item_ids, top_scores = real_client.recommend(["0"], k=2)
    assert top_item_ids.tolist() == [item_ids[0, :2].tolist()]
    # A batch of one may take another matmul kernel than a batch of three: equal to rounding.
    np.testing.assert_allclose(top_scores, scores[:1, :2], rtol=1e-6)
    _, _, ratings = real_client.recommend(["0", "7", "no-such-user"], with_ratings=True)
    np.testing.assert_array_equal(ratings, expected["ratings"])
    assert ratings.dtype == np.float32 and np.all((ratings >= 1.0) & (ratings <= 5.0))

  def test_recommend_for_ratings_pads_like_the_model_expects(self, real_client, signatures):
    item_ids, scores = real_client.recommend_for_ratings([["1", "2"], ["3"]], [[5.0, 1.0], [4.0]])
    expected = self.call(signatures["recommend_for_ratings"],
                         item_ids=[["1", "2"], ["3", ""]],
                         ratings=np.array([[5.0, 1.0], [4.0, 0.0]], np.float32))
    assert item_ids.tolist() == self.decoded(expected["item_ids"])
    np.testing.assert_array_equal(scores, expected["scores"])
    assert not {"1", "2"} & set(item_ids[0]) and "3" not in item_ids[1]
    _, _, ratings = real_client.recommend_for_ratings([["1", "2"], ["3"]], [[5.0, 1.0], [4.0]],
                                                      k=2, with_ratings=True)
    np.testing.assert_array_equal(ratings, expected["ratings"][:, :2])

  def test_server_rejects_out_of_scale_ratings_naming_the_input(self, real_client):
    # The client without rating_scale cannot know the scale; the export's check answers.
    with pytest.raises(errors.InvalidRequestError,
                       match=r"input ratings must be finite and within the rating scale \[1, 5\]"):
      real_client.recommend_for_ratings([["1", "2"]], [[5.0, 100.0]])
    # The same rating on an unknown item is ignored.
    real_client.recommend_for_ratings([["1", "no-such-item"]], [[5.0, 100.0]])

  def test_similar_items(self, real_client, signatures):
    item_ids, scores = real_client.similar_items(["1", "2"])
    expected = self.call(signatures["similar_items"], item_id=["1", "2"])
    assert item_ids.tolist() == self.decoded(expected["item_ids"])
    np.testing.assert_array_equal(scores, expected["scores"])
    assert "1" not in item_ids[0] and "2" not in item_ids[1]

  def test_metadata(self, real_client):
    metadata = real_client.metadata()
    assert metadata["version"] == 1
    signatures = metadata["signatures"]
    assert sorted(signatures) == sorted(SIGNATURE_NAMES)
    assert signatures["serving_default"]["outputs"] == {"rating": {"dtype": "float32",
                                                                   "shape": [None]}}
    for name in ("recommend", "recommend_for_ratings", "similar_items"):
      assert signatures[name]["outputs"]["item_ids"] == {"dtype": "string",
                                                         "shape": [None, REAL_EXPORT_K]}


