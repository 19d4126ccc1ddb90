"""Tests of AutoRecClient and its command line against the in-process fake TF Serving."""

from __future__ import annotations

import datetime
import json
import logging
import pathlib
import socket
import subprocess
import sys
import traceback

from absl import flags
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
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
from keras_autorec.serving import client as client_lib
import tf_serving_fake

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL_NAME = "autorec"
SIGNATURE_NAMES = ("recommend", "recommend_for_ratings", "serving_default", "similar_items")

# The stand-in model: ratings and item similarities are fixed tables, so every answer can be
# recomputed with numpy below. Values are multiples of 1/8 so float32 arithmetic is exact.
USER_IDS = ["196", "186", "22", "244"]
ITEM_IDS = ["242", "302", "377", "51", "346", "474"]
EXPORTED_K = 3
RATING_MATRIX = np.array([
    [5.0, 3.0, 1.0, 4.0, 2.0, 3.5],
    [1.5, 4.5, 2.0, 3.0, 5.0, 2.5],
    [4.0, 1.0, 3.5, 2.0, 4.5, 5.0],
    [2.0, 5.0, 4.0, 1.0, 3.0, 4.5],
], dtype=np.float32)
SIMILARITY_MATRIX = np.array([
    [0.0, 0.25, 0.5, 0.875, 0.125, 0.375],
    [0.25, 0.0, 0.625, 0.125, 0.75, 0.5],
    [0.5, 0.625, 0.0, 0.25, 0.375, 1.0],
    [0.875, 0.125, 0.25, 0.0, 0.5, 0.625],
    [0.125, 0.75, 0.375, 0.5, 0.0, 0.25],
    [0.375, 0.5, 1.0, 0.625, 0.25, 0.0],
], dtype=np.float32)


class StandInAutoRec(tf.Module):
  """A table-driven model exposing exactly the serving signatures of the AutoRec contract."""

  def __init__(self, rating_matrix: np.ndarray):
    super().__init__()
    self.rating_matrix = tf.constant(rating_matrix)
    self.similarity_matrix = tf.constant(SIMILARITY_MATRIX)
    self.item_ids = tf.constant(ITEM_IDS)
    self.user_table = self._index_table(USER_IDS)
    self.item_table = self._index_table(ITEM_IDS)

  @staticmethod
  def _index_table(ids: list[str]) -> tf.lookup.StaticHashTable:
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(ids), tf.range(len(ids), dtype=tf.int64))
    return tf.lookup.StaticHashTable(initializer, default_value=-1)

  def _top_k(self, scores: tf.Tensor) -> dict[str, tf.Tensor]:
    top = tf.math.top_k(scores, k=EXPORTED_K)
    return {"item_ids": tf.gather(self.item_ids, top.indices), "scores": top.values}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.string, name="item_id")])
  def predict(self, user_id, item_id):
    indices = tf.stack([self.user_table.lookup(user_id), self.item_table.lookup(item_id)], axis=1)
    return {"rating": tf.gather_nd(self.rating_matrix, indices)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
  def recommend(self, user_id):
    return self._top_k(tf.gather(self.rating_matrix, self.user_table.lookup(user_id)))

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="item_ids"),
                                tf.TensorSpec([None, None], tf.float32, name="ratings")])
  def recommend_for_ratings(self, item_ids, ratings):
    indices = self.item_table.lookup(item_ids)
    # Padding ("") and unknown items look up to -1 and must contribute nothing.
    weights = ratings * tf.cast(indices >= 0, tf.float32)
    rows = tf.gather(self.similarity_matrix, tf.maximum(indices, 0))
    return self._top_k(tf.reduce_sum(rows * weights[..., tf.newaxis], axis=1))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="item_id")])
  def similar_items(self, item_id):
    return self._top_k(tf.gather(self.similarity_matrix, self.item_table.lookup(item_id)))


def export_stand_in_model(export_dir: pathlib.Path, rating_matrix: np.ndarray = RATING_MATRIX):
  """Save the stand-in model as a SavedModel with the contract's signatures."""
  module = StandInAutoRec(rating_matrix)
  tf.saved_model.save(module, str(export_dir), signatures={
      "serving_default": module.predict,
      "recommend": module.recommend,
      "recommend_for_ratings": module.recommend_for_ratings,
      "similar_items": module.similar_items,
  })


def expected_top_k(scores: np.ndarray, k: int = EXPORTED_K) -> tuple[np.ndarray, np.ndarray]:
  """numpy top-k with tf.math.top_k's tie rule (lower index first)."""
  order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
  return np.asarray(ITEM_IDS, dtype=object)[order], np.take_along_axis(scores, order, axis=-1)


# Replace these two fixtures to run the tests against another export, e.g. the real exporter's.
@pytest.fixture(scope="session")
def model_base_path(tmp_path_factory) -> pathlib.Path:
  base_path = tmp_path_factory.mktemp("saved_models") / MODEL_NAME
  export_stand_in_model(base_path / "1")
  return base_path


@pytest.fixture(scope="session")
def server(model_base_path):
  with tf_serving_fake.FakeTFServing(model_base_path, MODEL_NAME) as fake_server:
    yield fake_server


@pytest.fixture(scope="session")
def versioned_base_path(tmp_path_factory) -> pathlib.Path:
  """Versions 9 and 10 (numerically, not lexically, the latest) plus a non-version directory."""
  base_path = tmp_path_factory.mktemp("versioned") / MODEL_NAME
  export_stand_in_model(base_path / "9")
  export_stand_in_model(base_path / "10", rating_matrix=6.0 - RATING_MATRIX)
  (base_path / "11.tmp").mkdir()
  return base_path


@pytest.fixture
def client(server):
  with client_lib.AutoRecClient(server.target, MODEL_NAME) as autorec_client:
    yield autorec_client


def unused_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


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
  with pytest.raises(client_lib.ServingError, match="not 'ratings'"):
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


def test_wrong_model_name_is_model_not_found(server):
  with client_lib.AutoRecClient(server.target, "no_such_model") as autorec_client:
    with pytest.raises(client_lib.ModelNotFoundError, match="'no_such_model' version latest"):
      autorec_client.predict(["196"], ["242"])


def test_missing_version_is_model_not_found(server):
  with client_lib.AutoRecClient(server.target, MODEL_NAME, version=7) as autorec_client:
    with pytest.raises(client_lib.ModelNotFoundError, match="'autorec' version 7") as raised:
      autorec_client.metadata()
  assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_unknown_signature_is_invalid_request(server):
  with client_lib.AutoRecClient(server.target, MODEL_NAME,
                                recommend_signature="no_such_signature") as autorec_client:
    with pytest.raises(client_lib.InvalidRequestError, match="no_such_signature.*not found"):
      autorec_client.recommend(["196"])


def test_inputs_not_matching_the_signature_are_invalid_request(server):
  with client_lib.AutoRecClient(server.target, MODEL_NAME,
                                predict_signature="recommend") as autorec_client:
    with pytest.raises(client_lib.InvalidRequestError, match=r"Sent extra: \{item_id\}"):
      autorec_client.predict(["196"], ["242"])


def test_no_server_is_server_unavailable():
  target = f"127.0.0.1:{unused_port()}"
  with client_lib.AutoRecClient(target, timeout_seconds=5.0) as autorec_client:
    with pytest.raises(client_lib.ServerUnavailableError, match=target):
      autorec_client.predict(["196"], ["242"])


def test_slow_server_is_deadline_exceeded(model_base_path):
  with tf_serving_fake.FakeTFServing(model_base_path, MODEL_NAME,
                                     delay_seconds=1.0) as slow_server:
    with client_lib.AutoRecClient(slow_server.target, MODEL_NAME,
                                  timeout_seconds=0.1) as autorec_client:
      with pytest.raises(client_lib.DeadlineExceededError, match="timeout_seconds=0.1"):
        autorec_client.predict(["196"], ["242"])


def test_highest_version_is_served_by_default_and_explicit_versions_honoured(versioned_base_path):
  with tf_serving_fake.FakeTFServing(versioned_base_path, MODEL_NAME,
                                     version_policy="all") as all_versions:
    assert all_versions.served_versions == [9, 10]
    with client_lib.AutoRecClient(all_versions.target, MODEL_NAME) as latest:
      assert latest.metadata()["version"] == 10
      np.testing.assert_array_equal(latest.predict(["196"], ["242"]), [1.0])
    with client_lib.AutoRecClient(all_versions.target, MODEL_NAME, version=9) as pinned:
      assert pinned.metadata()["version"] == 9
      np.testing.assert_array_equal(pinned.predict(["196"], ["242"]), [5.0])


def test_latest_policy_serves_only_the_highest_version(versioned_base_path):
  with tf_serving_fake.FakeTFServing(versioned_base_path, MODEL_NAME) as latest_only:
    assert latest_only.served_versions == [10]
    with client_lib.AutoRecClient(latest_only.target, MODEL_NAME, version=9) as pinned:
      with pytest.raises(client_lib.ModelNotFoundError, match="version 9"):
        pinned.predict(["196"], ["242"])


def test_large_requests_are_split_under_max_request_bytes_and_reassembled(server):
  user_ids = USER_IDS * 50
  item_ids = (ITEM_IDS[:4] * 50)
  with client_lib.AutoRecClient(server.target, MODEL_NAME, max_request_bytes=6000) as chunked:
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
  with client_lib.AutoRecClient(server.target, MODEL_NAME, max_batch_size=3) as chunked:
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
  with client_lib.AutoRecClient(server.target, MODEL_NAME, max_rating_slots=4) as chunked:
    before = len(server.received_metadata)
    item_ids, scores = chunked.recommend_for_ratings(rated_item_ids, ratings)
    assert len(server.received_metadata) - before == 3  # [4 ratings], [1, 2], [1]
    assert item_ids.tolist() == expected[0].tolist()
    np.testing.assert_array_equal(scores, expected[1])
    with pytest.raises(client_lib.InvalidInputError, match="user 1 has 5 ratings"):
      chunked.recommend_for_ratings([["242"], ITEM_IDS[:5]], [[5.0], [1.0] * 5])


def test_a_row_above_max_request_bytes_is_an_input_error(server):
  with client_lib.AutoRecClient(server.target, MODEL_NAME, max_request_bytes=300) as tiny:
    with pytest.raises(client_lib.InvalidInputError, match="row 1 alone makes a"):
      tiny.predict(["196", "x" * 400], ["242", "302"])


def test_non_finite_ratings_are_rejected_before_sending(server, client):
  for bad in (np.nan, np.inf, -np.inf):
    with pytest.raises(client_lib.InvalidInputError,
                       match=r"ratings\[1\]\[0\] \(item '377'\) must be a finite number"):
      client.recommend_for_ratings([["242"], ["377"]], [[5.0], [bad]])
  with client_lib.AutoRecClient(server.target, MODEL_NAME, rating_scale=(1, 5)) as scaled:
    with pytest.raises(client_lib.InvalidInputError, match=r"within rating_scale \[1, 5\]"):
      scaled.recommend_for_ratings([["242", "302"]], [[5.0, 100.0]])
    # Padding slots may hold anything; they are sent as 0 and ignored.
    item_ids, scores = scaled.recommend_for_ratings([["377", ""]], [[4.0, np.nan]], k=1)
  assert item_ids.tolist() == [["474"]] and scores.tolist() == [[4.0]]


def test_non_utf8_bytes_id_raises_the_clients_error(client):
  with pytest.raises(client_lib.InvalidInputError, match=r"item_ids\[1\] is not valid UTF-8"):
    client.predict(["196", "186"], ["242", b"\xff\xfe"])
  with pytest.raises(client_lib.InvalidInputError, match=r"user_ids\[0\] is not valid UTF-8"):
    client.recommend(["\udc80"])
  with pytest.raises(client_lib.InvalidInputError, match=r"item_ids\[0\]\[0\]"):
    client.recommend_for_ratings([[b"\xc3"]], [[4.0]])


def test_cli_rejects_non_finite_and_out_of_scale_ratings(server, capsys):
  for entry in ("242:nan", "242:inf"):
    exit_code, out, err = run_cli(capsys, f"--server={server.target}",
                                  "recommend_for_ratings", f"--ratings={entry}")
    assert (exit_code, out) == (2, "")
    assert "finite rating" in err
  exit_code, out, err = run_cli(capsys, f"--server={server.target}", "--rating_scale=1,5",
                                "recommend_for_ratings", "--ratings=242:5,302:7")
  assert (exit_code, out) == (1, "")
  assert "ratings[0][1] (item '302') must be within rating_scale [1, 5], got 7.0" in err


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
  """Run the command line in-process with its own flags; return (exit code, stdout, stderr)."""
  flag_values = flags.FlagValues()
  client_lib.define_flags(flag_values)
  argv = flag_values(["client", *args])
  exit_code = client_lib.run_command(argv, flag_values)
  captured = capsys.readouterr()
  return exit_code, captured.out, captured.err


def test_cli_predict_table(server, capsys):
  exit_code, out, _ = run_cli(capsys, f"--server={server.target}", "predict",
                              "--user_id=196,186", "--item_id=242,302")
  assert exit_code == 0
  assert out.splitlines() == [
      "user_id  item_id  rating",
      "196      242      5.0000",
      "186      302      4.5000",
  ]


def test_cli_recommend_table_and_json(server, capsys):
  exit_code, out, _ = run_cli(capsys, f"--server={server.target}", "recommend",
                              "--user_id=196", "--k=2")
  assert exit_code == 0
  assert out.splitlines() == [
      "user_id  rank  item_id  score",
      "196      1     242      5.0000",
      "196      2     51       4.0000",
  ]
  exit_code, out, _ = run_cli(capsys, f"--server={server.target}", "--json", "recommend",
                              "--user_id=196,22", "--k=1")
  assert exit_code == 0
  assert json.loads(out) == [
      {"user_id": "196", "items": [{"item_id": "242", "score": 5.0}]},
      {"user_id": "22", "items": [{"item_id": "474", "score": 5.0}]},
  ]


def test_cli_recommend_for_ratings_and_similar_items(server, capsys):
  exit_code, out, _ = run_cli(capsys, f"--server={server.target}", "--json",
                              "recommend_for_ratings", "--ratings=377:4")
  assert exit_code == 0
  assert json.loads(out) == [{"ratings": "377:4", "items": [
      {"item_id": "474", "score": 4.0}, {"item_id": "302", "score": 2.5},
      {"item_id": "242", "score": 2.0}]}]
  exit_code, out, _ = run_cli(capsys, f"--server={server.target}", "similar_items",
                              "--item_id=242", "--k=2")
  assert exit_code == 0
  assert out.splitlines() == [
      "item_id  rank  item_id  score",
      "242      1     51       0.8750",
      "242      2     377      0.5000",
  ]


def test_cli_metadata(server, capsys):
  exit_code, out, _ = run_cli(capsys, f"--server={server.target}", "metadata")
  assert exit_code == 0
  lines = out.splitlines()
  assert lines[0] == "model autorec version 1"
  assert lines[1].split() == ["signature", "kind", "name", "dtype", "shape"]
  assert "serving_default        inputs   user_id   string   [?]" in lines
  exit_code, out, _ = run_cli(capsys, f"--server={server.target}", "--json", "metadata")
  assert sorted(json.loads(out)["signatures"]) == sorted(SIGNATURE_NAMES)


@pytest.mark.parametrize("args, message", [
    ((), "expected exactly one command"),
    (("recommend",), "recommend needs --user_id"),
    (("predict", "--user_id=196", "--item_id=242", "--k=3"), "predict does not take --k"),
    (("recommend_for_ratings", "--ratings=242"), "item_id:rating"),
])
def test_cli_usage_errors(server, capsys, args, message):
  exit_code, out, err = run_cli(capsys, f"--server={server.target}", *args)
  assert exit_code == 2
  assert out == ""
  assert message in err and len(err.splitlines()) == 1


def test_cli_serving_error_is_one_line(server, capsys):
  exit_code, out, err = run_cli(capsys, f"--server={server.target}", "--model_version=5",
                                "metadata")
  assert exit_code == 1
  assert out == ""
  assert err.startswith("error: model 'autorec' version 5 is not served")
  assert len(err.splitlines()) == 1


def test_cli_entry_point(server):
  """`python -m keras_autorec.serving.client` end to end: JSON on success, no traceback on error."""
  command = [sys.executable, "-m", "keras_autorec.serving.client", f"--server={server.target}"]
  # Both processes spend seconds importing TensorFlow, so they run concurrently.
  success, failure = [
      subprocess.Popen(command + args, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
      for args in (["--json", "predict", "--user_id=22", "--item_id=474"],
                   ["--model_name=nope", "similar_items", "--item_id=242"])]
  success_out, success_err = success.communicate(timeout=60)
  failure_out, failure_err = failure.communicate(timeout=60)

  assert success.returncode == 0, success_err
  assert json.loads(success_out) == [{"user_id": "22", "item_id": "474", "rating": 5.0}]
  assert failure.returncode == 1
  assert failure_out == ""
  assert "error: model 'nope' version latest is not served" in failure_err
  assert "Traceback" not in failure_err


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
      with client_lib.AutoRecClient(real_server.target, MODEL_NAME) as autorec_client:
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
    with pytest.raises(client_lib.InvalidRequestError,
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


# ---------------------------------------------------------------------------------------------
# TLS, mutual TLS and call metadata, with a CA and certificates made here.

SERVER_NAME = "serving.autorec.test"
SECRET_HEADER_VALUE = "Bearer tok-7f3a9c1e5b2d4f60-not-for-logs"


def make_certificate(subject: str, issuer_key=None, issuer_name=None, ca: bool = False):
  """(PEM certificate, PEM private key, key, name): an EC P-256 certificate valid for a day.

  Self-signed without an issuer; names `subject` as a DNS subject alternative name otherwise.
  """
  key = ec.generate_private_key(ec.SECP256R1())
  name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
  now = datetime.datetime.now(datetime.timezone.utc)
  builder = (x509.CertificateBuilder().subject_name(name)
             .issuer_name(issuer_name or name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
  if not ca:
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]),
                                    critical=False)
  certificate = builder.sign(issuer_key or key, hashes.SHA256())
  key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
  return certificate.public_bytes(serialization.Encoding.PEM), key_pem, key, name


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, pathlib.Path]:
  """PEM files of a CA, a server and a client certificate it signed, and a foreign client's."""
  directory = tmp_path_factory.mktemp("pki")
  ca_pem, _, ca_key, ca_name = make_certificate("AutoRec test CA", ca=True)
  server_pem, server_key_pem, _, _ = make_certificate(SERVER_NAME, ca_key, ca_name)
  client_pem, client_key_pem, _, _ = make_certificate("client.autorec.test", ca_key, ca_name)
  _, _, other_ca_key, other_ca_name = make_certificate("Other CA", ca=True)
  other_pem, other_key_pem, _, _ = make_certificate("client.autorec.test", other_ca_key,
                                                    other_ca_name)
  files = {"ca": ca_pem, "server": server_pem, "server_key": server_key_pem,
           "client": client_pem, "client_key": client_key_pem, "other_client": other_pem,
           "other_client_key": other_key_pem}
  for name, pem in files.items():
    (directory / f"{name}.pem").write_bytes(pem)
  return {name: directory / f"{name}.pem" for name in files}


@pytest.fixture(scope="module")
def tls_server(model_base_path, pki):
  with tf_serving_fake.FakeTFServing(model_base_path, MODEL_NAME,
                                     server_certificate=pki["server"].read_bytes(),
                                     server_key=pki["server_key"].read_bytes()) as fake_server:
    yield fake_server


@pytest.fixture(scope="module")
def mtls_server(model_base_path, pki):
  with tf_serving_fake.FakeTFServing(model_base_path, MODEL_NAME,
                                     server_certificate=pki["server"].read_bytes(),
                                     server_key=pki["server_key"].read_bytes(),
                                     client_ca=pki["ca"].read_bytes()) as fake_server:
    yield fake_server


def tls_client(server, pki, **options) -> client_lib.AutoRecClient:
  options = {"model_name": MODEL_NAME, "tls": True, "root_certificates": str(pki["ca"]),
             "server_name_override": SERVER_NAME, "timeout_seconds": 5.0, **options}
  return client_lib.AutoRecClient(server.target, **options)


def test_tls_client_gets_answers_from_a_tls_server(tls_server, pki):
  with tls_client(tls_server, pki) as autorec_client:
    np.testing.assert_array_equal(autorec_client.predict(["196", "244"], ["242", "302"]),
                                  [5.0, 5.0])
    assert autorec_client.metadata()["version"] == 1
  # The CA given as PEM bytes rather than a path.
  with tls_client(tls_server, pki, root_certificates=pki["ca"].read_bytes()) as autorec_client:
    assert autorec_client.recommend(["196"], k=1)[0].tolist() == [["242"]]


def test_plain_client_cannot_talk_to_a_tls_server(tls_server):
  with client_lib.AutoRecClient(tls_server.target, MODEL_NAME,
                                timeout_seconds=5.0) as plain_client:
    with pytest.raises(client_lib.ServerUnavailableError, match="tls=True") as raised:
      plain_client.predict(["196"], ["242"])
  assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_tls_client_refuses_a_server_its_ca_did_not_sign(tls_server, pki):
  with tls_client(tls_server, pki, root_certificates=str(pki["other_client"])) as untrusting:
    with pytest.raises(client_lib.SecureConnectionError, match="TLS connection to"):
      untrusting.predict(["196"], ["242"])


def test_wrong_server_name_override_fails_clearly(tls_server, pki):
  with tls_client(tls_server, pki, server_name_override="other.autorec.test") as wrong_name:
    with pytest.raises(client_lib.SecureConnectionError, match="Hostname Verification"):
      wrong_name.predict(["196"], ["242"])
  # Without the override the target's host, 127.0.0.1, is not the certificate's name either.
  with tls_client(tls_server, pki, server_name_override=None) as no_override:
    with pytest.raises(client_lib.SecureConnectionError):
      no_override.predict(["196"], ["242"])


def test_mutual_tls_accepts_a_client_certificate_of_the_ca(mtls_server, pki):
  with tls_client(mtls_server, pki, client_certificate=str(pki["client"]),
                  client_key=str(pki["client_key"])) as autorec_client:
    np.testing.assert_array_equal(autorec_client.predict(["196"], ["242"]), [5.0])


@pytest.mark.parametrize("certificate", [None, "other_client"],
                         ids=["no client certificate", "certificate of another CA"])
def test_mutual_tls_refuses_other_clients_with_a_client_error(mtls_server, pki, certificate):
  options = {} if certificate is None else {
      "client_certificate": str(pki[certificate]), "client_key": str(pki[f"{certificate}_key"])}
  with tls_client(mtls_server, pki, **options) as refused:
    with pytest.raises(client_lib.SecureConnectionError, match="client_certificate") as raised:
      refused.predict(["196"], ["242"])
  # The client's own error, its gRPC cause not chained into the traceback.
  assert raised.value.__cause__ is None and raised.value.__suppress_context__
  assert str(raised.value).startswith(f"TLS connection to {mtls_server.target} failed")


def test_tls_options_are_validated(pki):
  with pytest.raises(ValueError, match="root_certificates, server_name_override need tls=True"):
    client_lib.AutoRecClient("localhost:1", root_certificates=str(pki["ca"]),
                             server_name_override=SERVER_NAME)
  with pytest.raises(ValueError, match="both client_certificate and client_key"):
    client_lib.AutoRecClient("localhost:1", tls=True, client_certificate=str(pki["client"]))
  with pytest.raises(ValueError, match="cannot read client_key '/no/such/key.pem'"):
    client_lib.AutoRecClient("localhost:1", tls=True, client_certificate=str(pki["client"]),
                             client_key="/no/such/key.pem")


def test_metadata_reaches_the_server_with_every_call(tls_server, pki):
  metadata = {"Authorization": SECRET_HEADER_VALUE, "x-tenant": "shop-1"}
  with tls_client(tls_server, pki, metadata=metadata) as autorec_client:
    before = len(tls_server.received_metadata)
    autorec_client.predict(["196"], ["242"])
    autorec_client.similar_items(["242"])
    autorec_client.metadata()
  calls = tls_server.received_metadata[before:]
  assert len(calls) == 3
  for received in calls:
    assert received["authorization"] == SECRET_HEADER_VALUE
    assert received["x-tenant"] == "shop-1"


def test_cli_tls_and_headers(mtls_server, pki, capsys):
  before = len(mtls_server.received_metadata)
  exit_code, out, err = run_cli(
      capsys, f"--server={mtls_server.target}", "--tls", f"--root_certificates={pki['ca']}",
      f"--client_certificate={pki['client']}", f"--client_key={pki['client_key']}",
      f"--server_name_override={SERVER_NAME}", f"--header=authorization={SECRET_HEADER_VALUE}",
      "--header=x-tenant=shop-1", "predict", "--user_id=196", "--item_id=242")
  assert exit_code == 0, err
  assert out.splitlines()[1].split() == ["196", "242", "5.0000"]
  assert mtls_server.received_metadata[before]["authorization"] == SECRET_HEADER_VALUE
  assert mtls_server.received_metadata[before]["x-tenant"] == "shop-1"


def test_no_secret_in_logs_errors_or_repr(tls_server, mtls_server, pki, capfd, caplog):
  """Neither the client key's contents nor a header value appear in any output or error."""
  key_pem = pki["client_key"].read_text()
  key_body = "".join(key_pem.splitlines()[1:-1])
  secrets = [SECRET_HEADER_VALUE, "tok-7f3a9c1e5b2d4f60", key_body, key_body[:24]]
  texts = []
  caplog.set_level(logging.DEBUG)
  failing_clients = [
      # A CA that did not sign the server, and a foreign client certificate under mutual TLS.
      tls_client(tls_server, pki, root_certificates=str(pki["other_client"]),
                 metadata={"authorization": SECRET_HEADER_VALUE}),
      tls_client(mtls_server, pki, client_certificate=str(pki["other_client"]),
                 client_key=str(pki["client_key"]),
                 metadata=[("authorization", SECRET_HEADER_VALUE)]),
      tls_client(mtls_server, pki, client_key=pki["client_key"].read_bytes(),
                 client_certificate=pki["client"].read_bytes(),
                 metadata={"authorization": SECRET_HEADER_VALUE}, model_name="no_such_model"),
  ]
  for autorec_client in failing_clients:
    texts.append(repr(autorec_client))
    with autorec_client, pytest.raises(client_lib.ServingError) as raised:
      autorec_client.predict(["196"], ["242"])
    texts += [str(raised.value), "".join(traceback.format_exception(raised.value))]
  for bad_metadata in ({"authorization": SECRET_HEADER_VALUE + "\n"},
                       {"bad name!": SECRET_HEADER_VALUE}, {SECRET_HEADER_VALUE: "x"}):
    with pytest.raises(ValueError) as raised:
      client_lib.AutoRecClient("localhost:1", metadata=bad_metadata)
    texts.append(str(raised.value))
  # capfd also captures gRPC's C++ log lines on file descriptor 2.
  texts += list(run_cli(capfd, f"--server={mtls_server.target}", "--tls",
                        f"--root_certificates={pki['ca']}",
                        f"--client_certificate={pki['other_client']}",
                        f"--client_key={pki['client_key']}",
                        f"--server_name_override={SERVER_NAME}",
                        f"--header=authorization={SECRET_HEADER_VALUE}",
                        "predict", "--user_id=196", "--item_id=242")[1:])
  # A header given without its name must not be echoed either.
  texts += list(run_cli(capfd, f"--server={mtls_server.target}",
                        f"--header={SECRET_HEADER_VALUE}", "metadata")[1:])
  texts += [record.getMessage() for record in caplog.records]
  texts += list(capfd.readouterr())
  assert any("error:" in text for text in texts)
  for text in texts:
    for secret in secrets:
      assert secret not in text
