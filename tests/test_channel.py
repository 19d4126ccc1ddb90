"""Tests for keras_autorec.serving.channel: TLS, mutual TLS and call metadata, with a test CA."""

from __future__ import annotations

import logging
import traceback

import grpc
import numpy as np
import pytest

from keras_autorec.serving import errors
from keras_autorec.serving.autorec_client import AutoRecClient

from client_fixtures import MODEL_NAME, SECRET_HEADER_VALUE, SERVER_NAME, run_cli, tls_client


def test_tls_client_gets_answers_from_a_tls_server(tls_server, pki):
  with tls_client(tls_server, pki) as autorec_client:
    np.testing.assert_array_equal(autorec_client.predict(["196", "244"], ["242", "302"]),
                                  [5.0, 5.0])
    assert autorec_client.metadata()["version"] == 1
  # The CA given as PEM bytes rather than a path.
  with tls_client(tls_server, pki, root_certificates=pki["ca"].read_bytes()) as autorec_client:
    assert autorec_client.recommend(["196"], k=1)[0].tolist() == [["242"]]


def test_plain_client_cannot_talk_to_a_tls_server(tls_server):
  with AutoRecClient(tls_server.target, MODEL_NAME,
                     timeout_seconds=5.0) as plain_client:
    with pytest.raises(errors.ServerUnavailableError, match="tls=True") as raised:
      plain_client.predict(["196"], ["242"])
  assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_tls_client_refuses_a_server_its_ca_did_not_sign(tls_server, pki):
  with tls_client(tls_server, pki, root_certificates=str(pki["other_client"])) as untrusting:
    with pytest.raises(errors.SecureConnectionError, match="TLS connection to"):
      untrusting.predict(["196"], ["242"])


def test_wrong_server_name_override_fails_clearly(tls_server, pki):
  with tls_client(tls_server, pki, server_name_override="other.autorec.test") as wrong_name:
    with pytest.raises(errors.SecureConnectionError, match="Hostname Verification"):
      wrong_name.predict(["196"], ["242"])
  # Without the override the target's host, 127.0.0.1, is not the certificate's name either.
  with tls_client(tls_server, pki, server_name_override=None) as no_override:
    with pytest.raises(errors.SecureConnectionError):
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
    with pytest.raises(errors.SecureConnectionError, match="client_certificate") as raised:
      refused.predict(["196"], ["242"])
  # The client's own error, its gRPC cause not chained into the traceback.
  assert raised.value.__cause__ is None and raised.value.__suppress_context__
  assert str(raised.value).startswith(f"TLS connection to {mtls_server.target} failed")


def test_tls_options_are_validated(pki):
  with pytest.raises(ValueError, match="root_certificates, server_name_override need tls=True"):
    AutoRecClient("localhost:1", root_certificates=str(pki["ca"]),
                  server_name_override=SERVER_NAME)
  with pytest.raises(ValueError, match="both client_certificate and client_key"):
    AutoRecClient("localhost:1", tls=True, client_certificate=str(pki["client"]))
  with pytest.raises(ValueError, match="cannot read client_key '/no/such/key.pem'"):
    AutoRecClient("localhost:1", tls=True, client_certificate=str(pki["client"]),
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
    with autorec_client, pytest.raises(errors.ServingError) as raised:
      autorec_client.predict(["196"], ["242"])
    texts += [str(raised.value), "".join(traceback.format_exception(raised.value))]
  for bad_metadata in ({"authorization": SECRET_HEADER_VALUE + "\n"},
                       {"bad name!": SECRET_HEADER_VALUE}, {SECRET_HEADER_VALUE: "x"}):
    with pytest.raises(ValueError) as raised:
      AutoRecClient("localhost:1", metadata=bad_metadata)
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
