"""Tests for keras_autorec.serving.errors: a failed call becomes the client's error, saying why."""

from __future__ import annotations

import grpc
import pytest

from keras_autorec.serving import errors
from keras_autorec.serving.autorec_client import AutoRecClient
import tf_serving_fake

from client_fixtures import MODEL_NAME, unused_port


def test_wrong_model_name_is_model_not_found(server):
  with AutoRecClient(server.target, "no_such_model") as autorec_client:
    with pytest.raises(errors.ModelNotFoundError, match="'no_such_model' version latest"):
      autorec_client.predict(["196"], ["242"])


def test_missing_version_is_model_not_found(server):
  with AutoRecClient(server.target, MODEL_NAME, version=7) as autorec_client:
    with pytest.raises(errors.ModelNotFoundError, match="'autorec' version 7") as raised:
      autorec_client.metadata()
  assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_unknown_signature_is_invalid_request(server):
  with AutoRecClient(server.target, MODEL_NAME,
                     recommend_signature="no_such_signature") as autorec_client:
    with pytest.raises(errors.InvalidRequestError, match="no_such_signature.*not found"):
      autorec_client.recommend(["196"])


def test_inputs_not_matching_the_signature_are_invalid_request(server):
  with AutoRecClient(server.target, MODEL_NAME,
                     predict_signature="recommend") as autorec_client:
    with pytest.raises(errors.InvalidRequestError, match=r"Sent extra: \{item_id\}"):
      autorec_client.predict(["196"], ["242"])


def test_no_server_is_server_unavailable():
  target = f"127.0.0.1:{unused_port()}"
  with AutoRecClient(target, timeout_seconds=5.0) as autorec_client:
    with pytest.raises(errors.ServerUnavailableError, match=target):
      autorec_client.predict(["196"], ["242"])


def test_slow_server_is_deadline_exceeded(model_base_path):
  with tf_serving_fake.FakeTFServing(model_base_path, MODEL_NAME,
                                     delay_seconds=1.0) as slow_server:
    with AutoRecClient(slow_server.target, MODEL_NAME,
                       timeout_seconds=0.1) as autorec_client:
      with pytest.raises(errors.DeadlineExceededError, match="timeout_seconds=0.1"):
        autorec_client.predict(["196"], ["242"])

