"""Tests for the command line keras_autorec.serving.client (in-process and as `python -m`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from keras_autorec.serving import autorec_client, errors
from keras_autorec.serving import client as command_line
from client_fixtures import REPO_ROOT, SECRET_HEADER_VALUE, SERVER_NAME, SIGNATURE_NAMES, run_cli


def test_the_client_and_its_errors_import_from_the_command_module():
  assert command_line.AutoRecClient is autorec_client.AutoRecClient
  for name in ("ServingError", "ServerUnavailableError", "ModelNotFoundError",
               "InvalidRequestError", "DeadlineExceededError", "SecureConnectionError",
               "InvalidInputError"):
    assert getattr(command_line, name) is getattr(errors, name)
    assert name in command_line.__all__


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


