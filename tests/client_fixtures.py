"""The serving client tests' stand-in model, fake TF Serving servers, certificates and CLI runner.

A pytest plugin (conftest.py's `pytest_plugins`), so the tests of keras_autorec/serving/
{autorec_client,client,channel,errors}.py share one server per session.
"""

from __future__ import annotations

import datetime
import pathlib
import socket

from absl import flags
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import numpy as np
import pytest
import tensorflow as tf

from keras_autorec.serving.autorec_client import AutoRecClient
from keras_autorec.serving.client import define_flags, run_command
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
  with AutoRecClient(server.target, MODEL_NAME) as autorec_client:
    yield autorec_client


def unused_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]



def run_cli(capsys, *args: str) -> tuple[int, str, str]:
  """Run the command line in-process with its own flags; return (exit code, stdout, stderr)."""
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  argv = flag_values(["client", *args])
  exit_code = run_command(argv, flag_values)
  captured = capsys.readouterr()
  return exit_code, captured.out, captured.err



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


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def tls_server(model_base_path, pki):
  with tf_serving_fake.FakeTFServing(model_base_path, MODEL_NAME,
                                     server_certificate=pki["server"].read_bytes(),
                                     server_key=pki["server_key"].read_bytes()) as fake_server:
    yield fake_server


@pytest.fixture(scope="session")
def mtls_server(model_base_path, pki):
  with tf_serving_fake.FakeTFServing(model_base_path, MODEL_NAME,
                                     server_certificate=pki["server"].read_bytes(),
                                     server_key=pki["server_key"].read_bytes(),
                                     client_ca=pki["ca"].read_bytes()) as fake_server:
    yield fake_server


def tls_client(server, pki, **options) -> AutoRecClient:
  options = {"model_name": MODEL_NAME, "tls": True, "root_certificates": str(pki["ca"]),
             "server_name_override": SERVER_NAME, "timeout_seconds": 5.0, **options}
  return AutoRecClient(server.target, **options)


