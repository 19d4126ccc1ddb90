"""In-process stand-in for TensorFlow Serving's gRPC PredictionService, for tests.

It serves one model from `model_base_path/<integer version>/` SavedModels and reproduces the
parts of TF Serving's behaviour a client can observe: version directory discovery, the
`latest` / `all` / specific version policies, status codes and error messages for unknown
models, versions, signatures and inputs, the response `model_spec`, and `GetModelMetadata`
with a packed `SignatureDefMap`. Like TF Serving's `--ssl_config_file`, it can listen with TLS
and require client certificates (mutual TLS); it records the metadata of each call.
"""

from __future__ import annotations

from collections.abc import Sequence
import concurrent.futures
import pathlib
import time

from google.protobuf import text_format
import grpc
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

DEFAULT_SIGNATURE_NAME = "serving_default"
SIGNATURE_DEF_METADATA_FIELD = "signature_def"

# TensorFlow's error codes are numerically identical to gRPC status codes.
_STATUS_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def find_versions(model_base_path: str | pathlib.Path) -> list[int]:
  """Integer-named version directories under `model_base_path`, ascending, like TF Serving."""
  base_path = pathlib.Path(model_base_path)
  if not base_path.is_dir():
    raise FileNotFoundError(f"model_base_path {base_path} is not a directory")
  return sorted(int(child.name) for child in base_path.iterdir()
                if child.is_dir() and child.name.isdigit())


def read_signature_defs(export_dir: str | pathlib.Path):
  """The `serve`-tagged MetaGraphDef's signature_def map, read from saved_model.pb(txt)."""
  export_dir = pathlib.Path(export_dir)
  saved_model = saved_model_pb2.SavedModel()
  binary_path = export_dir / "saved_model.pb"
  if binary_path.exists():
    saved_model.ParseFromString(binary_path.read_bytes())
  else:
    text_format.Parse((export_dir / "saved_model.pbtxt").read_text(), saved_model)
  for meta_graph in saved_model.meta_graphs:
    if tf.saved_model.SERVING in meta_graph.meta_info_def.tags:
      return meta_graph.signature_def
  raise ValueError(f"{export_dir} has no MetaGraphDef tagged {tf.saved_model.SERVING!r}")


class _ServingError(Exception):
  """A failure to report to the client with this gRPC status code."""

  def __init__(self, code: grpc.StatusCode, details: str):
    super().__init__(details)
    self.code = code
    self.details = details


class _LoadedVersion:
  """One loaded SavedModel version: callable signatures plus their SignatureDefs."""

  def __init__(self, export_dir: pathlib.Path):
    self.loaded = tf.saved_model.load(str(export_dir))
    self.signature_defs = read_signature_defs(export_dir)


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata over the loaded versions of a single model."""

  def __init__(self, server: FakeTFServing):
    self._server = server

  def Predict(self, request, context):  # noqa: N802 (gRPC method name)
    return self._handle(context, self._predict, request)

  def GetModelMetadata(self, request, context):  # noqa: N802 (gRPC method name)
    return self._handle(context, self._get_model_metadata, request)

  def _handle(self, context, method, request):
    self._server.received_metadata.append(dict(context.invocation_metadata()))
    if self._server.delay_seconds:
      time.sleep(self._server.delay_seconds)
    try:
      return method(request)
    except _ServingError as error:
      context.abort(error.code, error.details)

  def _predict(self, request):
    version, loaded_version = self._server.resolve(request.model_spec)
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE_NAME
    if signature_name not in loaded_version.loaded.signatures:
      raise _ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                          f'Serving signature key "{signature_name}" not found.')
    signature = loaded_version.loaded.signatures[signature_name]
    inputs = _parse_inputs(request.inputs, signature)
    try:
      outputs = signature(**inputs)
    except tf.errors.OpError as error:
      raise _ServingError(_STATUS_CODE_BY_NUMBER[error.error_code], error.message) from error
    except (TypeError, ValueError) as error:
      # Raised by the concrete function for shapes incompatible with the signature.
      raise _ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from error

    output_names = list(request.output_filter) or sorted(outputs)
    unknown_outputs = sorted(set(output_names) - set(outputs))
    if unknown_outputs:
      raise _ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"output tensor alias not found in signature: {unknown_outputs[0]} "
                          f"Outputs expected to be in the set {{{','.join(sorted(outputs))}}}.")
    response = predict_pb2.PredictResponse()
    _fill_model_spec(response.model_spec, request.model_spec.name, version, signature_name)
    for name in output_names:
      response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name].numpy()))
    return response

  def _get_model_metadata(self, request):
    if not request.metadata_field:
      raise _ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                          "GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
      if field != SIGNATURE_DEF_METADATA_FIELD:
        raise _ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                            f"Metadata field {field} is not supported")
    version, loaded_version = self._server.resolve(request.model_spec)
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in loaded_version.signature_defs.items():
      signature_def_map.signature_def[name].CopyFrom(signature_def)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    _fill_model_spec(response.model_spec, request.model_spec.name, version, signature_name=None)
    response.metadata[SIGNATURE_DEF_METADATA_FIELD].Pack(signature_def_map)
    return response


def _parse_inputs(request_inputs, signature) -> dict[str, tf.Tensor]:
  """Request TensorProtos as tensors, validated against the signature like TF Serving does."""
  _, input_specs = signature.structured_input_signature
  if set(request_inputs) != set(input_specs):
    sent = sorted(request_inputs)
    expected = sorted(input_specs)
    raise _ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({{{','.join(sent)}}}) != len({{{','.join(expected)}}}). "
        f"Sent extra: {{{','.join(sorted(set(sent) - set(expected)))}}}. "
        f"Missing but required: {{{','.join(sorted(set(expected) - set(sent)))}}}.")
  inputs = {}
  for position, name in enumerate(sorted(input_specs)):
    expected_dtype = input_specs[name].dtype
    sent_dtype = tf.dtypes.as_dtype(request_inputs[name].dtype)
    if sent_dtype != expected_dtype:
      raise _ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"Expects arg[{position}] to be {_data_type_string(expected_dtype)} but "
          f"{_data_type_string(sent_dtype)} is provided")
    inputs[name] = tf.constant(tf.make_ndarray(request_inputs[name]), dtype=expected_dtype)
  return inputs


def _data_type_string(dtype: tf.dtypes.DType) -> str:
  """TensorFlow's C++ DataTypeString ("float", "string"), which TF Serving's messages use."""
  return types_pb2.DataType.Name(dtype.as_datatype_enum).removeprefix("DT_").lower()


def _fill_model_spec(model_spec, name: str, version: int, signature_name: str | None) -> None:
  model_spec.name = name
  model_spec.version.value = version
  if signature_name is not None:
    model_spec.signature_name = signature_name


class FakeTFServing:
  """A TF-Serving-compatible gRPC server on 127.0.0.1 serving one model, for tests.

  Args:
    model_base_path: directory holding `<integer version>/` SavedModel directories.
    model_name: the name clients must put in `model_spec.name`.
    version_policy: "latest" (TF Serving's default: only the highest version is served), "all",
      or a sequence of the specific versions to serve.
    delay_seconds: sleep before handling each request, to provoke client deadlines.
    max_workers: threads handling requests concurrently.
    server_certificate, server_key: PEM bytes; when given, the server listens with TLS only.
    client_ca: PEM bytes of the CA that must have signed every client's certificate; when
      given (with TLS), clients without such a certificate are refused (mutual TLS).
  """

  def __init__(self, model_base_path: str | pathlib.Path, model_name: str = "autorec",
               version_policy: str | Sequence[int] = "latest", delay_seconds: float = 0.0,
               max_workers: int = 4, server_certificate: bytes | None = None,
               server_key: bytes | None = None, client_ca: bytes | None = None):
    if (server_certificate is None) != (server_key is None):
      raise ValueError("TLS needs both server_certificate and server_key")
    if client_ca is not None and server_certificate is None:
      raise ValueError("client_ca (mutual TLS) needs server_certificate and server_key")
    self.model_base_path = pathlib.Path(model_base_path)
    self.model_name = model_name
    self.delay_seconds = delay_seconds
    self._server_certificate = server_certificate
    self._server_key = server_key
    self._client_ca = client_ca
    # The invocation metadata of every call received, oldest first.
    self.received_metadata: list[dict[str, str]] = []
    self._versions = self._load_versions(version_policy)
    self._max_workers = max_workers
    self._server: grpc.Server | None = None
    self.port: int | None = None

  def _load_versions(self, version_policy: str | Sequence[int]) -> dict[int, _LoadedVersion]:
    available = find_versions(self.model_base_path)
    if not available:
      raise FileNotFoundError(f"no integer version directories under {self.model_base_path}")
    if version_policy == "latest":
      served = available[-1:]
    elif version_policy == "all":
      served = available
    elif isinstance(version_policy, str):
      raise ValueError(
          f"version_policy must be 'latest', 'all' or versions, got {version_policy!r}")
    else:
      missing = sorted(set(version_policy) - set(available))
      if missing:
        raise FileNotFoundError(f"versions {missing} not found under {self.model_base_path}")
      served = sorted(version_policy)
    return {version: _LoadedVersion(self.model_base_path / str(version)) for version in served}

  @property
  def served_versions(self) -> list[int]:
    """The versions loaded and served, ascending."""
    return sorted(self._versions)

  @property
  def target(self) -> str:
    """The `host:port` clients should connect to."""
    if self.port is None:
      raise RuntimeError("FakeTFServing is not started")
    return f"127.0.0.1:{self.port}"

  def resolve(self, model_spec) -> tuple[int, _LoadedVersion]:
    """The (version, loaded SavedModel) a model_spec selects; NOT_FOUND like TF Serving."""
    if model_spec.HasField("version"):
      requested_version = model_spec.version.value
      if model_spec.name == self.model_name and requested_version in self._versions:
        return requested_version, self._versions[requested_version]
      raise _ServingError(
          grpc.StatusCode.NOT_FOUND,
          f"Servable not found for request: Specific({model_spec.name}, {requested_version})")
    if model_spec.name != self.model_name:
      raise _ServingError(grpc.StatusCode.NOT_FOUND,
                          f"Servable not found for request: Latest({model_spec.name})")
    latest_version = max(self._versions)
    return latest_version, self._versions[latest_version]

  def start(self) -> int:
    """Start serving on a free port of 127.0.0.1 and return the port."""
    if self._server is not None:
      raise RuntimeError("FakeTFServing is already started")
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=self._max_workers))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionServicer(self), server)
    if self._server_certificate is None:
      self.port = server.add_insecure_port("127.0.0.1:0")
    else:
      credentials = grpc.ssl_server_credentials(
          [(self._server_key, self._server_certificate)], root_certificates=self._client_ca,
          require_client_auth=self._client_ca is not None)
      self.port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    self._server = server
    return self.port

  def stop(self, grace_seconds: float | None = None) -> None:
    """Stop serving; in-flight requests get `grace_seconds` to finish (None: aborted now)."""
    if self._server is not None:
      self._server.stop(grace_seconds).wait()
      self._server = None

  def __enter__(self) -> FakeTFServing:
    self.start()
    return self

  def __exit__(self, *exc_info) -> None:
    self.stop()
