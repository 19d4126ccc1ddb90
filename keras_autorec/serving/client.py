"""gRPC client and command line for an AutoRec SavedModel served by TensorFlow Serving.

Usage:
  python -m keras_autorec.serving.client --server=localhost:8500 [--model_name=autorec]
      [--model_version=N] [--timeout_seconds=10] [--json] [--rating_scale=1,5]
      [--tls [--root_certificates=ca.pem] [--client_certificate=client.pem
      --client_key=client.key] [--server_name_override=NAME]] [--header=KEY=VALUE ...]
      COMMAND [command flags]

Commands:
  predict --user_id=196,186 --item_id=242,302   rating of each (user, item) pair
  recommend --user_id=196 [--k=10]               top items for known users
  recommend_for_ratings --ratings=242:5,302:3 [--k=10]
                                                 top items for an unseen user's ratings
  similar_items --item_id=242 [--k=10]           most similar items
  metadata                                       the served version and its signatures
  complete_playlist --song_ids=525514,129701 --tags=락 [--k=10]
                                                 songs and tags completing a playlist
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import json
import math
import os
import sys
from typing import Any

from absl import app
from absl import flags
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

DEFAULT_MODEL_NAME = "autorec"
DEFAULT_TIMEOUT_SECONDS = 10.0
# Top-k answers for large batches easily exceed gRPC's 4 MiB default receive limit.
DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024 * 1024
# Requests are split to stay below TF Serving's 4 MiB default gRPC receive limit.
DEFAULT_MAX_REQUEST_BYTES = 3 * 1024 * 1024
# The export's defaults (`keras_autorec.export.ExportConfig`): the most rows of a top-K request
# and the most (user, rating) slots of a recommend_for_ratings request.
DEFAULT_MAX_BATCH_SIZE = 1024
DEFAULT_MAX_RATING_SLOTS = 100_000
PADDING_ITEM_ID = ""
_SIGNATURE_DEF_METADATA_FIELD = "signature_def"
# Room for the request's model spec and tensor headers next to the estimated tensor contents.
_REQUEST_OVERHEAD_BYTES = 4096
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


class AutoRecClient:
  """Calls the AutoRec signatures of a model served by TensorFlow Serving over gRPC.

  Large requests are split into several calls, each below `max_request_bytes` and the export's
  batch limits, and the answers joined, so any batch size works against a default TF Serving.

  Args:
    target: `host:port` of TF Serving's gRPC endpoint.
    model_name: the model name TF Serving was configured with.
    version: the model version to query; None lets the server pick (its latest).
    timeout_seconds: deadline of each call.
    predict_signature: signature rating (user, item) pairs.
    recommend_signature: signature recommending top-K items for known users.
    recommend_for_ratings_signature: signature recommending from a new user's ratings.
    similar_items_signature: signature finding the top-K most similar items.
    max_receive_message_bytes: largest response accepted.
    tls: connect with TLS (TF Serving's `--ssl_config_file`) instead of in plain text.
    root_certificates: PEM CA bundle (a file path, or the PEM bytes) that signed the server's
      certificate; None trusts the system's roots. TLS only.
    client_certificate, client_key: PEM certificate chain and private key (file paths or bytes)
      that authenticate this client to a server requiring client certificates (mutual TLS).
    server_name_override: the host name the server's certificate must name, when it is not the
      target's host (e.g. test certificates, or an IP address target). TLS only.
    metadata: headers sent with every call, e.g. {"authorization": "Bearer ..."} for a gateway;
      names are case-insensitive (sent lowercase). Their values are never logged or shown.
    max_request_bytes: the largest request sent; larger batches are split (TF Serving refuses
      requests above 4 MiB unless started with a larger `--grpc_max_receive_message_length`).
    max_batch_size: the most rows of a recommend, recommend_for_ratings or similar_items call;
      the export's `max_batch_size`.
    max_rating_slots: the most (user, rating) slots, padding included, of a recommend_for_ratings
      call; the export's `max_rating_slots`.
    rating_scale: (lowest, highest) rating the model was trained on; when given, out-of-scale
      ratings are rejected before sending (the server rejects them anyway).
  """

  def __init__(self, target: str, model_name: str = DEFAULT_MODEL_NAME,
               version: int | None = None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, *,
               predict_signature: str = "serving_default",
               recommend_signature: str = "recommend",
               recommend_for_ratings_signature: str = "recommend_for_ratings",
               similar_items_signature: str = "similar_items",
               max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
               tls: bool = False,
               root_certificates: str | os.PathLike | bytes | None = None,
               client_certificate: str | os.PathLike | bytes | None = None,
               client_key: str | os.PathLike | bytes | None = None,
               server_name_override: str | None = None,
               metadata: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
               max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
               max_rating_slots: int = DEFAULT_MAX_RATING_SLOTS,
               rating_scale: tuple[float, float] | None = None):
    if timeout_seconds <= 0:
      raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
    for name, limit in (("max_request_bytes", max_request_bytes),
                        ("max_batch_size", max_batch_size),
                        ("max_rating_slots", max_rating_slots)):
      if limit < 1:
        raise ValueError(f"{name} must be positive, got {limit}")
    if rating_scale is not None and not rating_scale[0] < rating_scale[1]:
      raise ValueError(f"rating_scale must be (lowest, highest), got {rating_scale}")
    self.target = target
    self.model_name = model_name
    self.version = version
    self.timeout_seconds = timeout_seconds
    self.predict_signature = predict_signature
    self.recommend_signature = recommend_signature
    self.recommend_for_ratings_signature = recommend_for_ratings_signature
    self.similar_items_signature = similar_items_signature
    self.tls = tls
    self.max_request_bytes = max_request_bytes
    self.max_batch_size = max_batch_size
    self.max_rating_slots = max_rating_slots
    self.rating_scale = None if rating_scale is None else tuple(map(float, rating_scale))
    self._metadata = _call_metadata(metadata)
    options = [("grpc.max_receive_message_length", max_receive_message_bytes)]
    if tls:
      if server_name_override:
        options.append(("grpc.ssl_target_name_override", server_name_override))
      credentials = _channel_credentials(root_certificates, client_certificate, client_key)
      self._channel = grpc.secure_channel(target, credentials, options=options)
    else:
      given = [name for name, value in (("root_certificates", root_certificates),
                                        ("client_certificate", client_certificate),
                                        ("client_key", client_key),
                                        ("server_name_override", server_name_override))
               if value is not None]
      if given:
        raise ValueError(f"{', '.join(given)} need tls=True")
      self._channel = grpc.insecure_channel(target, options=options)
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

  def __repr__(self) -> str:
    # Header values (tokens) and key material stay out: only the header names are shown.
    headers = sorted({key for key, _ in self._metadata})
    return (f"AutoRecClient(target={self.target!r}, model_name={self.model_name!r}, "
            f"version={self.version}, tls={self.tls}, headers={headers})")

  def close(self) -> None:
    """Close the gRPC channel."""
    self._channel.close()

  def __enter__(self) -> AutoRecClient:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
    """Predicted rating of each (user_ids[i], item_ids[i]) pair, float32 [B]."""
    user_ids = _as_id_vector(user_ids, "user_ids")
    item_ids = _as_id_vector(item_ids, "item_ids")
    if len(user_ids) != len(item_ids):
      raise ValueError(f"user_ids and item_ids must have the same length, "
                       f"got {len(user_ids)} and {len(item_ids)}")
    # serving_default has no row limit (its memory is linear in the batch), only the size one.
    outputs = self._predict_in_chunks(
        self.predict_signature, _id_bytes(user_ids) + _id_bytes(item_ids), len(user_ids),
        lambda rows: {"user_id": user_ids[rows], "item_id": item_ids[rows]})
    return self._output(outputs, "rating", self.predict_signature).astype(np.float32)

  def recommend(self, user_ids: Sequence[str], k: int | None = None,
                with_ratings: bool = False) -> tuple[np.ndarray, ...]:
    """Top-k (item_ids str [B, k], scores float32 [B, k]) for each known user; k=None: all K.

    With `with_ratings`, also the listed items' predicted ratings float32 [B, k] (the export's
    `ratings` output; `scores` are what the list is ranked by, see `keras_autorec.export`).
    """
    _check_k(k)
    user_ids = _as_id_vector(user_ids, "user_ids")
    outputs = self._predict_in_chunks(
        self.recommend_signature, _id_bytes(user_ids), self.max_batch_size,
        lambda rows: {"user_id": user_ids[rows]})
    return self._top_k(outputs, k, self.recommend_signature, with_ratings)

  def recommend_for_ratings(self, item_ids: Sequence[Sequence[str]],
                            ratings: Sequence[Sequence[float]],
                            k: int | None = None,
                            with_ratings: bool = False) -> tuple[np.ndarray, ...]:
    """Top-k (item_ids, scores) for users given only as their ratings, one list per user.

    Users may have different numbers of ratings: the lists are padded client-side with the
    empty item id, which the model treats as padding (so it may also appear in the input, with
    any rating). Every other rating must be finite (and within `rating_scale`, when given).
    `with_ratings` adds the listed items' predicted ratings, as in `recommend`.
    """
    _check_k(k)
    _check_parallel_lists(item_ids, ratings, "item_ids", "ratings", "user")
    user_item_ids = [_as_id_vector(ids, f"item_ids[{user}]") for user, ids in enumerate(item_ids)]
    user_ratings = [np.asarray(values, dtype=np.float32).reshape(-1) for values in ratings]
    for user, (ids, values) in enumerate(zip(user_item_ids, user_ratings)):
      if len(ids) != len(values):
        raise ValueError(f"user {user} has {len(ids)} item ids but {len(values)} ratings")
      self._check_ratings(user, ids, values)
    lengths = np.array([len(ids) for ids in user_item_ids], dtype=np.int64)
    row_bytes = np.array([_id_bytes(ids).sum() + 4 * len(ids) for ids in user_item_ids],
                         dtype=np.int64)

    def inputs(rows: slice) -> dict[str, np.ndarray]:
      # Padded to the chunk's longest list; a zero-width batch would not match a model
      # expecting at least one column.
      width = max([1] + [len(ids) for ids in user_item_ids[rows]])
      padded_item_ids = np.full((len(user_item_ids[rows]), width), PADDING_ITEM_ID,
                                dtype=object)
      padded_ratings = np.zeros(padded_item_ids.shape, dtype=np.float32)
      for user, (ids, values) in enumerate(zip(user_item_ids[rows], user_ratings[rows])):
        padded_item_ids[user, :len(ids)] = ids
        # Padding slots may hold anything (NaN included); the model ignores them.
        padded_ratings[user, :len(values)] = np.where(ids == PADDING_ITEM_ID, 0.0, values)
      return {"item_ids": padded_item_ids, "ratings": padded_ratings}

    outputs = self._predict_in_chunks(self.recommend_for_ratings_signature, row_bytes,
                                      self.max_batch_size, inputs, lengths)
    return self._top_k(outputs, k, self.recommend_for_ratings_signature, with_ratings)

  def similar_items(self, item_ids: Sequence[str],
                    k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k most similar (item_ids str [B, k], scores float32 [B, k]) for each item."""
    _check_k(k)
    item_ids = _as_id_vector(item_ids, "item_ids")
    outputs = self._predict_in_chunks(
        self.similar_items_signature, _id_bytes(item_ids), self.max_batch_size,
        lambda rows: {"item_id": item_ids[rows]})
    return self._top_k(outputs, k, self.similar_items_signature)

  # Playlist continuation (keras_autorec.implicit.serving's complete_playlist signature).

  def complete_playlist(self, song_ids: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
                        k: int | None = None, tag_k: int | None = None,
                        signature_name: str = "complete_playlist") -> tuple[np.ndarray, ...]:
    """(song_ids [B, k], song_scores [B, k], tags [B, tag_k], tag_scores [B, tag_k]) completing
    each playlist, given as its song ids and tags (one list each per playlist).

    Lists are padded client-side with the empty id; the model ignores padding and unknown ids
    and never returns a playlist's own songs or tags. k / tag_k trim the exported K.
    """
    _check_k(k)
    _check_k(tag_k)
    _check_parallel_lists(song_ids, tags, "song_ids", "tags", "playlist")
    songs = [_as_id_vector(ids, f"song_ids[{row}]") for row, ids in enumerate(song_ids)]
    labels = [_as_id_vector(ids, f"tags[{row}]") for row, ids in enumerate(tags)]
    row_bytes = np.array([_id_bytes(a).sum() + _id_bytes(b).sum() for a, b in zip(songs, labels)],
                         dtype=np.int64)

    def padded(lists: list[np.ndarray]) -> np.ndarray:
      array = np.full((len(lists), max([1] + [len(ids) for ids in lists])), PADDING_ITEM_ID,
                      dtype=object)
      for row, ids in enumerate(lists):
        array[row, :len(ids)] = ids
      return array

    outputs = self._predict_in_chunks(
        signature_name, row_bytes, self.max_batch_size,
        lambda rows: {"song_ids": padded(songs[rows]), "tags": padded(labels[rows])})
    results = []
    for ids_name, scores_name, limit in (("song_ids", "song_scores", k),
                                         ("tags", "tag_scores", tag_k)):
      ids = _decode_ids(self._output(outputs, ids_name, signature_name))
      scores = self._output(outputs, scores_name, signature_name).astype(np.float32)
      if limit is not None and limit > scores.shape[-1]:
        raise ValueError(f"k={limit} exceeds the {scores.shape[-1]} {ids_name} signature "
                         f"{signature_name!r} was exported to return")
      results += [ids[:, :limit], scores[:, :limit]]
    return tuple(results)

  def metadata(self) -> dict[str, Any]:
    """The served model's name, version and, per signature, its inputs and outputs.

    Returns:
      {"model_name": str, "version": int, "signatures": {signature name: {"method_name": str,
      "inputs": {name: {"dtype": str, "shape": [int | None] | None}}, "outputs": {...}}}},
      where a None dimension is unknown and a None shape is of unknown rank.
    """
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    self._fill_model_spec(request.model_spec)
    request.metadata_field.append(_SIGNATURE_DEF_METADATA_FIELD)
    response = self._call(self._stub.GetModelMetadata, request, "GetModelMetadata")
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    if not response.metadata[_SIGNATURE_DEF_METADATA_FIELD].Unpack(signature_def_map):
      raise ServingError(f"{self.target} answered GetModelMetadata without a SignatureDefMap")
    signatures = {}
    for name, signature_def in sorted(signature_def_map.signature_def.items()):
      # Keys like "__saved_model_init_op" are SavedModel internals, not callable signatures.
      if name.startswith("__"):
        continue
      signatures[name] = {
          "method_name": signature_def.method_name,
          "inputs": _describe_tensors(signature_def.inputs),
          "outputs": _describe_tensors(signature_def.outputs),
      }
    return {
        "model_name": response.model_spec.name,
        "version": response.model_spec.version.value,
        "signatures": signatures,
    }

  def _fill_model_spec(self, model_spec, signature_name: str | None = None) -> None:
    model_spec.name = self.model_name
    if self.version is not None:
      model_spec.version.value = self.version
    if signature_name is not None:
      model_spec.signature_name = signature_name

  def _check_ratings(self, user: int, ids: np.ndarray, values: np.ndarray) -> None:
    """Rejects a non-finite or out-of-scale rating of a real (non-padding) item."""
    low, high = self.rating_scale or (-np.inf, np.inf)
    bad = (ids != PADDING_ITEM_ID) & ~(np.isfinite(values) & (values >= low) & (values <= high))
    if bad.any():
      position = int(np.flatnonzero(bad)[0])
      expected = (f"within rating_scale [{low:g}, {high:g}]" if self.rating_scale
                  else "a finite number")
      raise InvalidInputError(f"ratings[{user}][{position}] (item {ids[position]!r}) must be "
                              f"{expected}, got {values[position]}")

  def _predict_in_chunks(self, signature_name: str, row_bytes: np.ndarray, max_rows: int,
                         inputs: Callable[[slice], Mapping[str, np.ndarray]],
                         row_slots: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Calls the signature on consecutive row ranges and joins the outputs along the rows.

    A range holds at most `max_rows` rows, `max_rating_slots` padded slots when `row_slots`
    (each row's list length) is given, and about `max_request_bytes` by `row_bytes`, the
    estimated bytes of each row; a request that still exceeds the limit is halved.
    """
    num_rows = len(row_bytes)
    max_rows = max(1, max_rows)
    budget = max(1, self.max_request_bytes - _REQUEST_OVERHEAD_BYTES)
    cumulative_bytes = np.concatenate([[0], np.cumsum(row_bytes)])
    chunks, start = [], 0
    while start < num_rows or not chunks:
      end = min(num_rows, start + max_rows,
                int(np.searchsorted(cumulative_bytes, cumulative_bytes[start] + budget,
                                    side="right")) - 1)
      end = max(end, start + 1) if num_rows else 0
      if row_slots is not None:
        # Padding makes a range cost (rows x its longest list, at least 1) slots.
        while end - start > 1 and (end - start) * max(1, row_slots[start:end].max()) > \
            self.max_rating_slots:
          end = start + (end - start) // 2
        if num_rows and row_slots[start] > self.max_rating_slots:
          raise InvalidInputError(f"user {start} has {row_slots[start]} ratings, more than "
                                  f"max_rating_slots={self.max_rating_slots} of the export")
      chunks.append(slice(start, end))
      start = end
    outputs = [self._predict_rows(signature_name, inputs, rows) for rows in chunks]
    return {name: np.concatenate([output[name] for output in outputs])
            for name in outputs[0]}

  def _predict_rows(self, signature_name: str,
                    inputs: Callable[[slice], Mapping[str, np.ndarray]],
                    rows: slice) -> dict[str, np.ndarray]:
    request = predict_pb2.PredictRequest()
    self._fill_model_spec(request.model_spec, signature_name)
    for name, value in inputs(rows).items():
      request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    size = request.ByteSize()
    if size > self.max_request_bytes:
      if rows.stop - rows.start <= 1:
        raise InvalidInputError(f"row {rows.start} alone makes a {size}-byte {signature_name} "
                                f"request, more than max_request_bytes={self.max_request_bytes}")
      middle = (rows.start + rows.stop) // 2
      halves = [self._predict_rows(signature_name, inputs, part)
                for part in (slice(rows.start, middle), slice(middle, rows.stop))]
      return {name: np.concatenate([half[name] for half in halves]) for name in halves[0]}
    response = self._call(self._stub.Predict, request, f"Predict({signature_name})")
    return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}

  def _call(self, method, request, description: str):
    try:
      return method(request, timeout=self.timeout_seconds, metadata=self._metadata)
    except grpc.RpcError as error:
      raise self._to_serving_error(error, description) from None

  def _to_serving_error(self, error: grpc.RpcError, description: str) -> ServingError:
    code = error.code()
    details = error.details()
    version = "latest" if self.version is None else self.version
    if code == grpc.StatusCode.UNAVAILABLE:
      lowered = (details or "").lower()
      # A server refusing the client's certificate just closes the socket after the handshake.
      if self.tls and any(marker in lowered for marker in _TLS_FAILURE_MARKERS):
        return SecureConnectionError(
            f"TLS connection to {self.target} failed: {details}. Check root_certificates (the "
            f"CA that signed the server's certificate), server_name_override (a name in that "
            f"certificate) and, if the server requires client certificates, client_certificate "
            f"and client_key (signed by a CA the server trusts)", code)
      hint = "" if self.tls else " (if the server uses TLS, connect with tls=True / --tls)"
      return ServerUnavailableError(
          f"TensorFlow Serving at {self.target} is unavailable: {details}{hint}", code)
    if code == grpc.StatusCode.NOT_FOUND:
      return ModelNotFoundError(f"model {self.model_name!r} version {version} is not served at "
                                f"{self.target}: {details}", code)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
      return InvalidRequestError(
          f"{description} on model {self.model_name!r} version {version} was rejected: {details}",
          code)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
      return DeadlineExceededError(f"{description} on {self.target} got no answer within "
                                   f"timeout_seconds={self.timeout_seconds}", code)
    return ServingError(f"{description} on {self.target} failed with {code.name}: {details}", code)

  def _output(self, outputs: Mapping[str, np.ndarray], name: str,
              signature_name: str) -> np.ndarray:
    if name not in outputs:
      raise ServingError(f"signature {signature_name!r} of model {self.model_name!r} returned "
                         f"outputs {sorted(outputs)}, not {name!r}; is it the right signature?")
    return outputs[name]

  def _top_k(self, outputs: Mapping[str, np.ndarray], k: int | None, signature_name: str,
             with_ratings: bool = False) -> tuple[np.ndarray, ...]:
    results = [_decode_ids(self._output(outputs, "item_ids", signature_name)),
               self._output(outputs, "scores", signature_name).astype(np.float32)]
    if with_ratings:
      results.append(self._output(outputs, "ratings", signature_name).astype(np.float32))
    exported_k = results[1].shape[-1]
    if k is not None and k > exported_k:
      raise ValueError(f"k={k} exceeds K={exported_k}, the number of items signature "
                       f"{signature_name!r} of model {self.model_name!r} was exported to return")
    return tuple(result if k is None else result[..., :k] for result in results)


def _check_k(k: int | None) -> None:
  if k is not None and k < 1:
    raise ValueError(f"k must be a positive number of items, got {k}")


def _check_parallel_lists(first, second, first_name: str, second_name: str, row: str) -> None:
  """Two arguments must each hold one list per row, as many lists each."""
  if isinstance(first, (str, bytes)) or isinstance(second, (str, bytes)):
    raise TypeError(f"{first_name} and {second_name} must be one list per {row}")
  if len(first) != len(second):
    raise ValueError(f"{first_name} and {second_name} must have one list per {row} each, "
                     f"got {len(first)} and {len(second)}")


def _as_id_vector(ids: Sequence[str], what: str) -> np.ndarray:
  """Ids as a 1-D object array of str; ints are accepted since MovieLens ids look numeric."""
  if isinstance(ids, (str, bytes)):
    raise TypeError(f"{what} must be a sequence of ids, got the single id {ids!r}")
  array = np.asarray(ids, dtype=object)
  if array.ndim != 1:
    raise ValueError(f"{what} must be a flat sequence of ids, got shape {array.shape}")
  strings = []
  for position, id_ in enumerate(array):
    if not isinstance(id_, (str, bytes, int, np.integer)):
      raise TypeError(f"{what} must hold str, bytes or int ids, got {id_!r}")
    try:
      # Ids travel as UTF-8; a str with lone surrogates has no UTF-8 form either.
      strings.append(id_.decode("utf-8") if isinstance(id_, bytes)
                     else str(id_).encode("utf-8").decode("utf-8"))
    except UnicodeError:
      raise InvalidInputError(f"{what}[{position}] is not valid UTF-8: {id_!r}") from None
  return np.asarray(strings, dtype=object)


def _id_bytes(ids: np.ndarray) -> np.ndarray:
  """Serialized bytes of each id in a string TensorProto: a tag, a varint length, the bytes.

  3 bytes of framing are exact up to 16 KiB ids; the request is measured before sending anyway.
  """
  return np.fromiter((len(id_.encode("utf-8")) + 3 for id_ in ids), dtype=np.int64,
                     count=len(ids))


def _call_metadata(metadata) -> tuple[tuple[str, str], ...]:
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


def _read_pem(value: str | os.PathLike | bytes | None, what: str) -> bytes | None:
  """PEM bytes given directly or read from a file; errors name the file, never its contents."""
  if value is None or isinstance(value, bytes):
    return value
  try:
    with open(value, "rb") as pem_file:
      return pem_file.read()
  except OSError as error:
    raise ValueError(f"cannot read {what} {os.fspath(value)!r}: {error.strerror}") from None


def _channel_credentials(root_certificates, client_certificate,
                         client_key) -> grpc.ChannelCredentials:
  if (client_certificate is None) != (client_key is None):
    raise ValueError("mutual TLS needs both client_certificate and client_key")
  return grpc.ssl_channel_credentials(
      root_certificates=_read_pem(root_certificates, "root_certificates"),
      private_key=_read_pem(client_key, "client_key"),
      certificate_chain=_read_pem(client_certificate, "client_certificate"))


def _decode_ids(ids: np.ndarray) -> np.ndarray:
  return np.vectorize(lambda id_: id_.decode("utf-8"), otypes=[object])(ids)


def _describe_tensors(tensor_infos) -> dict[str, dict[str, Any]]:
  described = {}
  for name, tensor_info in sorted(tensor_infos.items()):
    shape = tensor_info.tensor_shape
    dims = (None if shape.unknown_rank
            else [dim.size if dim.size >= 0 else None for dim in shape.dim])
    described[name] = {"dtype": tf.dtypes.as_dtype(tensor_info.dtype).name, "shape": dims}
  return described


# ---------------------------------------------------------------------------------------------
# Command line.

COMMANDS = ("predict", "recommend", "recommend_for_ratings", "similar_items", "metadata",
            "complete_playlist")
# The command flags each command accepts; the first entries are required.
_COMMAND_FLAGS = {
    "predict": (("user_id", "item_id"), ()),
    "recommend": (("user_id",), ("k",)),
    "recommend_for_ratings": (("ratings",), ("k",)),
    "similar_items": (("item_id",), ("k",)),
    "metadata": ((), ()),
    "complete_playlist": ((), ("song_ids", "tags", "k")),
}
_ALL_COMMAND_FLAGS = ("user_id", "item_id", "ratings", "k", "song_ids", "tags")


class CommandLineError(Exception):
  """The command line is wrong."""


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Define the command line flags on `flag_values`.

  Kept out of import time so that importing the client never clashes with other flags.
  """
  flags.DEFINE_string("server", "localhost:8500", "TF Serving gRPC endpoint, host:port.",
                      flag_values=flag_values)
  flags.DEFINE_string("model_name", DEFAULT_MODEL_NAME, "Served model name.",
                      flag_values=flag_values)
  flags.DEFINE_integer("model_version", None, "Model version; default: the server's latest.",
                       lower_bound=0, flag_values=flag_values)
  flags.DEFINE_float("timeout_seconds", DEFAULT_TIMEOUT_SECONDS, "Deadline of each call.",
                     lower_bound=0.0, flag_values=flag_values)
  flags.DEFINE_bool("json", False, "Print JSON instead of a table.", flag_values=flag_values)
  flags.DEFINE_list("user_id", None, "User id(s), comma-separated.", flag_values=flag_values)
  flags.DEFINE_list("item_id", None, "Item id(s), comma-separated.", flag_values=flag_values)
  flags.DEFINE_list("ratings", None, "One user's ratings as item_id:rating,...",
                    flag_values=flag_values)
  flags.DEFINE_list("song_ids", None, "complete_playlist: the playlist's song ids.",
                    flag_values=flag_values)
  flags.DEFINE_list("tags", None, "complete_playlist: the playlist's tags.",
                    flag_values=flag_values)
  flags.DEFINE_integer("k", None, "Number of items to return; default: all exported.",
                       lower_bound=1, flag_values=flag_values)
  flags.DEFINE_list("rating_scale", None, "lowest,highest rating of the model, e.g. 1,5: "
                    "--ratings outside it are rejected before sending.", flag_values=flag_values)
  flags.DEFINE_integer("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES,
                       "Largest request sent; larger batches are split.", lower_bound=1,
                       flag_values=flag_values)
  flags.DEFINE_bool("tls", False, "Connect with TLS.", flag_values=flag_values)
  flags.DEFINE_string("root_certificates", None, "PEM CA bundle file that signed the server's "
                      "certificate; default: the system's roots. With --tls.",
                      flag_values=flag_values)
  flags.DEFINE_string("client_certificate", None, "PEM client certificate file, for servers "
                      "that require one (mutual TLS). With --tls and --client_key.",
                      flag_values=flag_values)
  flags.DEFINE_string("client_key", None, "PEM private key file of --client_certificate.",
                      flag_values=flag_values)
  flags.DEFINE_string("server_name_override", None, "Host name the server's certificate must "
                      "name, if not --server's host. With --tls.", flag_values=flag_values)
  flags.DEFINE_multi_string("header", [], "KEY=VALUE header sent with every call (repeatable), "
                            "e.g. authorization=Bearer ...; values are never printed.",
                            flag_values=flag_values)


def run_command(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Run the command in `argv` (positional args left after flag parsing); return the exit code."""
  try:
    command = _parse_command(argv, flag_values)
    with AutoRecClient(flag_values.server, flag_values.model_name, flag_values.model_version,
                       flag_values.timeout_seconds, tls=flag_values.tls,
                       root_certificates=flag_values.root_certificates,
                       client_certificate=flag_values.client_certificate,
                       client_key=flag_values.client_key,
                       server_name_override=flag_values.server_name_override,
                       metadata=_parse_headers(flag_values.header),
                       max_request_bytes=flag_values.max_request_bytes,
                       rating_scale=_parse_rating_scale(flag_values.rating_scale)) as client:
      result = _run(client, command, flag_values)
  except (CommandLineError, ServingError, ValueError, TypeError) as error:
    # Server details can span lines (TensorFlow op errors); keep the message to one line.
    print("error: " + " ".join(str(error).split()), file=sys.stderr)
    return 2 if isinstance(error, CommandLineError) else 1
  print(json.dumps(result, indent=2, allow_nan=False) if flag_values.json
        else _format_table(command, result))
  return 0


def _parse_command(argv: Sequence[str], flag_values: flags.FlagValues) -> str:
  arguments = list(argv[1:])
  if len(arguments) != 1 or arguments[0] not in COMMANDS:
    raise CommandLineError(f"expected exactly one command out of {', '.join(COMMANDS)}; "
                     f"got {' '.join(arguments) or 'none'}")
  command = arguments[0]
  required, optional = _COMMAND_FLAGS[command]
  missing = [name for name in required if flag_values[name].value is None]
  if missing:
    raise CommandLineError(f"{command} needs --{', --'.join(missing)}")
  unused = [name for name in _ALL_COMMAND_FLAGS
            if flag_values[name].present and name not in required + optional]
  if unused:
    raise CommandLineError(f"{command} does not take --{', --'.join(unused)}")
  return command


def _parse_ratings(pairs: Sequence[str]) -> tuple[list[str], list[float]]:
  item_ids, ratings = [], []
  for pair in pairs:
    item_id, separator, rating = pair.rpartition(":")
    try:
      if not separator or not item_id or not math.isfinite(float(rating)):
        raise ValueError
      ratings.append(float(rating))
    except ValueError:
      raise CommandLineError(f"--ratings entries must be item_id:rating with a finite rating, "
                             f"got {pair!r}") from None
    item_ids.append(item_id)
  return item_ids, ratings


def _parse_rating_scale(bounds: Sequence[str] | None) -> tuple[float, float] | None:
  if bounds is None:
    return None
  try:
    low, high = map(float, bounds)
  except ValueError:
    raise CommandLineError(f"--rating_scale must be lowest,highest, got "
                           f"{','.join(bounds)!r}") from None
  return low, high


def _parse_headers(headers: Sequence[str]) -> list[tuple[str, str]]:
  pairs = []
  for position, header in enumerate(headers, start=1):
    name, separator, value = header.partition("=")
    if not separator or not name.strip():
      # The entry may be a token given without its name: it is not echoed.
      raise CommandLineError(f"--header number {position} must be KEY=VALUE")
    pairs.append((name.strip(), value))
  return pairs


def _run(client: AutoRecClient, command: str, flag_values: flags.FlagValues) -> Any:
  """The command's result as JSON-ready records."""
  k = flag_values.k
  if command == "predict":
    ratings = client.predict(flag_values.user_id, flag_values.item_id)
    return [{"user_id": user_id, "item_id": item_id, "rating": _json_float(rating)}
            for user_id, item_id, rating in zip(flag_values.user_id, flag_values.item_id, ratings)]
  if command == "recommend":
    return _ranked_records("user_id", flag_values.user_id,
                           *client.recommend(flag_values.user_id, k))
  if command == "recommend_for_ratings":
    rated_item_ids, ratings = _parse_ratings(flag_values.ratings)
    item_ids, scores = client.recommend_for_ratings([rated_item_ids], [ratings], k)
    return _ranked_records("ratings", [",".join(flag_values.ratings)], item_ids, scores)
  if command == "similar_items":
    return _ranked_records("item_id", flag_values.item_id,
                           *client.similar_items(flag_values.item_id, k))
  if command == "complete_playlist":
    return _completion_records(client, flag_values.song_ids or [], flag_values.tags or [], k)
  return client.metadata()


def _completion_records(client: AutoRecClient, song_ids: list[str], tags: list[str],
                        k: int | None) -> list[dict[str, Any]]:
  """The top k songs, then all exported tags, completing one playlist, as ranked records."""
  if not song_ids and not tags:
    raise CommandLineError("complete_playlist needs --song_ids or --tags")
  songs, song_scores, tag_names, tag_scores = client.complete_playlist(
      [song_ids], [tags], k)
  return (_ranked_records("playlist", ["songs"], songs, song_scores)
          + _ranked_records("playlist", ["tags"], tag_names, tag_scores))


def _ranked_records(query_name: str, queries: Sequence[str], item_ids: np.ndarray,
                    scores: np.ndarray) -> list[dict[str, Any]]:
  return [{query_name: query,
           "items": [{"item_id": item_id, "score": _json_float(score)}
                     for item_id, score in zip(row_item_ids, row_scores)]}
          for query, row_item_ids, row_scores in zip(queries, item_ids, scores)]


def _json_float(value: np.floating) -> float | None:
  # The shortest decimal that round-trips the float32, so 3.9 prints as 3.9 and not
  # 3.9000000953674316; non-finite scores (e.g. padding) become null to keep the JSON valid.
  value = np.float32(value)
  return float(str(value)) if np.isfinite(value) else None


def _format_table(command: str, result: Any) -> str:
  if command == "predict":
    header = ("user_id", "item_id", "rating")
    rows = [(r["user_id"], r["item_id"], _format_score(r["rating"])) for r in result]
  elif command == "metadata":
    header = ("signature", "kind", "name", "dtype", "shape")
    rows = [(signature_name, kind, name, tensor["dtype"], _format_shape(tensor["shape"]))
            for signature_name, signature in result["signatures"].items()
            for kind in ("inputs", "outputs")
            for name, tensor in signature[kind].items()]
    title = f"model {result['model_name']} version {result['version']}"
    return title + "\n" + _align([header] + rows)
  else:
    query_name = next(iter(result[0])) if result else "query"
    header = (query_name, "rank", "item_id", "score")
    rows = [(record[query_name], str(rank), item["item_id"], _format_score(item["score"]))
            for record in result
            for rank, item in enumerate(record["items"], start=1)]
  return _align([header] + rows)


def _format_score(score: float | None) -> str:
  return "-" if score is None else f"{score:.4f}"


def _format_shape(shape: list[int | None] | None) -> str:
  if shape is None:
    return "unknown"
  return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape) + "]"


def _align(rows: Sequence[Sequence[str]]) -> str:
  widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
  return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                   for row in rows)


def main(argv: Sequence[str]) -> int:
  """absl entry point: run the command given on the command line."""
  return run_command(argv, flags.FLAGS)


if __name__ == "__main__":
  define_flags()
  app.run(main)
