"""The client's gRPC channel: plain or TLS (mutual TLS included), and the headers of every call."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import grpc

# Top-k answers for large batches easily exceed gRPC's 4 MiB default receive limit.
DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024 * 1024

Pem = str | os.PathLike | bytes


def open_channel(target: str, max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
                 tls: bool = False, root_certificates: Pem | None = None,
                 client_certificate: Pem | None = None, client_key: Pem | None = None,
                 server_name_override: str | None = None) -> grpc.Channel:
  """A channel to `target`; the TLS arguments are those of `AutoRecClient` and need tls=True."""
  options = [("grpc.max_receive_message_length", max_receive_message_bytes)]
  if tls:
    if server_name_override:
      options.append(("grpc.ssl_target_name_override", server_name_override))
    credentials = channel_credentials(root_certificates, client_certificate, client_key)
    return grpc.secure_channel(target, credentials, options=options)
  given = [name for name, value in (("root_certificates", root_certificates),
                                    ("client_certificate", client_certificate),
                                    ("client_key", client_key),
                                    ("server_name_override", server_name_override))
           if value is not None]
  if given:
    raise ValueError(f"{', '.join(given)} need tls=True")
  return grpc.insecure_channel(target, options=options)


def channel_credentials(root_certificates: Pem | None, client_certificate: Pem | None,
                        client_key: Pem | None) -> grpc.ChannelCredentials:
  """TLS credentials; a client certificate and its key go together (mutual TLS)."""
  if (client_certificate is None) != (client_key is None):
    raise ValueError("mutual TLS needs both client_certificate and client_key")
  return grpc.ssl_channel_credentials(
      root_certificates=read_pem(root_certificates, "root_certificates"),
      private_key=read_pem(client_key, "client_key"),
      certificate_chain=read_pem(client_certificate, "client_certificate"))


def read_pem(value: Pem | None, what: str) -> bytes | None:
  """PEM bytes given directly or read from a file; errors name the file, never its contents."""
  if value is None or isinstance(value, bytes):
    return value
  try:
    with open(value, "rb") as pem_file:
      return pem_file.read()
  except OSError as error:
    raise ValueError(f"cannot read {what} {os.fspath(value)!r}: {error.strerror}") from None


def call_metadata(metadata: Mapping[str, str] | Sequence[tuple[str, str]] | None
                  ) -> tuple[tuple[str, str], ...]:
  """Headers as gRPC metadata: lowercase ASCII names with str values."""
  pairs = list((metadata or {}).items()) if isinstance(metadata, Mapping) \
      else list(metadata or ())
  headers = []
  for position, pair in enumerate(pairs):
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
        or not all(isinstance(part, str) for part in pair)):
      raise TypeError(f"metadata entry {position} must be a (name, value) pair of str")
    name = pair[0].lower()
    # Neither part is shown: a misplaced token could stand in either.
    if not name or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
      raise ValueError(f"the name of metadata entry {position} must be ASCII letters, digits, "
                       f"'-', '_' or '.'")
    if not pair[1].isascii() or not pair[1].isprintable():
      raise ValueError(f"the value of metadata {name!r} must be printable ASCII")
    headers.append((name, pair[1]))
  return tuple(headers)
