"""Errors of the gRPC client, and the one translation of a failed gRPC call into them."""

from __future__ import annotations

import grpc

# Words of a gRPC UNAVAILABLE status that mean the TLS handshake, not the server, failed.
_TLS_FAILURE_MARKERS = ("ssl", "tls", "handshake", "certificate", "verification",
                        "socket closed")


class ServingError(Exception):
  """A TensorFlow Serving request failed; `code` is the gRPC status code, if any."""

  def __init__(self, message: str, code: grpc.StatusCode | None = None):
    super().__init__(message)
    self.code = code


class ServerUnavailableError(ServingError):
  """The server could not be reached (gRPC UNAVAILABLE)."""


class ModelNotFoundError(ServingError):
  """The server does not serve the requested model name or version (gRPC NOT_FOUND)."""


class InvalidRequestError(ServingError):
  """The server rejected the request: unknown signature, missing or malformed inputs."""


class DeadlineExceededError(ServingError):
  """The server did not answer within the client's timeout (gRPC DEADLINE_EXCEEDED)."""


class SecureConnectionError(ServerUnavailableError):
  """The TLS handshake failed: untrusted or mismatched certificates, or a refused client."""


class InvalidInputError(ServingError, ValueError):
  """The client rejected the inputs before sending anything (e.g. a non-UTF-8 id, a NaN rating)."""


def from_rpc_error(error: grpc.RpcError, description: str, *, target: str, model_name: str,
                   version: int | None, tls: bool, timeout_seconds: float) -> ServingError:
  """The ServingError of a failed call, saying what to check.

  Args:
    error: what the gRPC call raised.
    description: the call, e.g. "Predict(recommend)".
    target, model_name, version, tls, timeout_seconds: the client's settings, named in messages.
  """
  code = error.code()
  details = error.details()
  version_name = "latest" if version is None else version
  if code == grpc.StatusCode.UNAVAILABLE:
    lowered = (details or "").lower()
    # A server refusing the client's certificate just closes the socket after the handshake.
    if tls and any(marker in lowered for marker in _TLS_FAILURE_MARKERS):
      return SecureConnectionError(
          f"TLS connection to {target} failed: {details}. Check root_certificates (the "
          f"CA that signed the server's certificate), server_name_override (a name in that "
          f"certificate) and, if the server requires client certificates, client_certificate "
          f"and client_key (signed by a CA the server trusts)", code)
    hint = "" if tls else " (if the server uses TLS, connect with tls=True / --tls)"
    return ServerUnavailableError(
        f"TensorFlow Serving at {target} is unavailable: {details}{hint}", code)
  if code == grpc.StatusCode.NOT_FOUND:
    return ModelNotFoundError(f"model {model_name!r} version {version_name} is not served at "
                              f"{target}: {details}", code)
  if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
    return InvalidRequestError(
        f"{description} on model {model_name!r} version {version_name} was rejected: {details}",
        code)
  if code == grpc.StatusCode.DEADLINE_EXCEEDED:
    return DeadlineExceededError(f"{description} on {target} got no answer within "
                                 f"timeout_seconds={timeout_seconds}", code)
  return ServingError(f"{description} on {target} failed with {code.name}: {details}", code)
