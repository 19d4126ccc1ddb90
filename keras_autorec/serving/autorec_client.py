"""`AutoRecClient`: calls the signatures of an AutoRec model served by TensorFlow Serving."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from keras_autorec.serving import channel
from keras_autorec.serving import client_inputs
from keras_autorec.serving.client_inputs import PADDING_ITEM_ID
from keras_autorec.serving.errors import InvalidInputError, ServingError, from_rpc_error

DEFAULT_MODEL_NAME = "autorec"
DEFAULT_TIMEOUT_SECONDS = 10.0
_SIGNATURE_DEF_METADATA_FIELD = "signature_def"


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
               max_receive_message_bytes: int = channel.DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
               tls: bool = False,
               root_certificates: channel.Pem | None = None,
               client_certificate: channel.Pem | None = None,
               client_key: channel.Pem | None = None,
               server_name_override: str | None = None,
               metadata: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
               max_request_bytes: int = client_inputs.DEFAULT_MAX_REQUEST_BYTES,
               max_batch_size: int = client_inputs.DEFAULT_MAX_BATCH_SIZE,
               max_rating_slots: int = client_inputs.DEFAULT_MAX_RATING_SLOTS,
               rating_scale: tuple[float, float] | None = None):
    if timeout_seconds <= 0:
      raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
    self.limits = client_inputs.RequestLimits(max_request_bytes, max_batch_size,
                                              max_rating_slots)
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
    self.rating_scale = None if rating_scale is None else tuple(map(float, rating_scale))
    self._metadata = channel.call_metadata(metadata)
    self._channel = channel.open_channel(
        target, max_receive_message_bytes, tls, root_certificates, client_certificate,
        client_key, server_name_override)
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
    user_ids = client_inputs.as_id_vector(user_ids, "user_ids")
    item_ids = client_inputs.as_id_vector(item_ids, "item_ids")
    if len(user_ids) != len(item_ids):
      raise ValueError(f"user_ids and item_ids must have the same length, "
                       f"got {len(user_ids)} and {len(item_ids)}")
    # serving_default has no row limit (its memory is linear in the batch), only the size one.
    row_bytes = client_inputs.id_bytes(user_ids) + client_inputs.id_bytes(item_ids)
    outputs = self._predict_in_chunks(
        self.predict_signature, row_bytes, len(user_ids),
        lambda rows: {"user_id": user_ids[rows], "item_id": item_ids[rows]})
    return self._output(outputs, "rating", self.predict_signature).astype(np.float32)

  def recommend(self, user_ids: Sequence[str], k: int | None = None,
                with_ratings: bool = False) -> tuple[np.ndarray, ...]:
    """Top-k (item_ids str [B, k], scores float32 [B, k]) for each known user; k=None: all K.

    With `with_ratings`, also the listed items' predicted ratings float32 [B, k] (the export's
    `ratings` output; `scores` are what the list is ranked by, see `keras_autorec.export`).
    """
    client_inputs.check_k(k)
    user_ids = client_inputs.as_id_vector(user_ids, "user_ids")
    outputs = self._predict_in_chunks(
        self.recommend_signature, client_inputs.id_bytes(user_ids), self.limits.max_batch_size,
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
    client_inputs.check_k(k)
    client_inputs.check_parallel_lists(item_ids, ratings, "item_ids", "ratings", "user")
    user_item_ids = [client_inputs.as_id_vector(ids, f"item_ids[{user}]")
                     for user, ids in enumerate(item_ids)]
    user_ratings = [np.asarray(values, dtype=np.float32).reshape(-1) for values in ratings]
    for user, (ids, values) in enumerate(zip(user_item_ids, user_ratings)):
      if len(ids) != len(values):
        raise ValueError(f"user {user} has {len(ids)} item ids but {len(values)} ratings")
      client_inputs.check_ratings(user, ids, values, self.rating_scale)
    lengths = np.array([len(ids) for ids in user_item_ids], dtype=np.int64)
    row_bytes = np.array([client_inputs.id_bytes(ids).sum() + 4 * len(ids)
                          for ids in user_item_ids], dtype=np.int64)

    def inputs(rows: slice) -> dict[str, np.ndarray]:
      # Padded to the chunk's longest list.
      padded_item_ids = client_inputs.padded_ids(user_item_ids[rows])
      padded_ratings = np.zeros(padded_item_ids.shape, dtype=np.float32)
      for user, (ids, values) in enumerate(zip(user_item_ids[rows], user_ratings[rows])):
        # Padding slots may hold anything (NaN included); the model ignores them.
        padded_ratings[user, :len(values)] = np.where(ids == PADDING_ITEM_ID, 0.0, values)
      return {"item_ids": padded_item_ids, "ratings": padded_ratings}

    outputs = self._predict_in_chunks(self.recommend_for_ratings_signature, row_bytes,
                                      self.limits.max_batch_size, inputs, lengths)
    return self._top_k(outputs, k, self.recommend_for_ratings_signature, with_ratings)

  def similar_items(self, item_ids: Sequence[str],
                    k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k most similar (item_ids str [B, k], scores float32 [B, k]) for each item."""
    client_inputs.check_k(k)
    item_ids = client_inputs.as_id_vector(item_ids, "item_ids")
    outputs = self._predict_in_chunks(
        self.similar_items_signature, client_inputs.id_bytes(item_ids),
        self.limits.max_batch_size,
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
    client_inputs.check_k(k)
    client_inputs.check_k(tag_k)
    client_inputs.check_parallel_lists(song_ids, tags, "song_ids", "tags", "playlist")
    songs = [client_inputs.as_id_vector(ids, f"song_ids[{row}]")
             for row, ids in enumerate(song_ids)]
    labels = [client_inputs.as_id_vector(ids, f"tags[{row}]") for row, ids in enumerate(tags)]
    row_bytes = np.array([client_inputs.id_bytes(song_row).sum()
                          + client_inputs.id_bytes(tag_row).sum()
                          for song_row, tag_row in zip(songs, labels)], dtype=np.int64)
    outputs = self._predict_in_chunks(
        signature_name, row_bytes, self.limits.max_batch_size,
        lambda rows: {"song_ids": client_inputs.padded_ids(songs[rows]),
                      "tags": client_inputs.padded_ids(labels[rows])})
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

  def _predict_in_chunks(self, signature_name: str, row_bytes: np.ndarray, max_rows: int,
                         inputs: Callable[[slice], Mapping[str, np.ndarray]],
                         row_slots: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Calls the signature on each row range of `client_inputs.request_chunks`; joins the rows."""
    chunks = client_inputs.request_chunks(row_bytes, max_rows, self.limits, row_slots)
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
    max_bytes = self.limits.max_request_bytes
    if size > max_bytes:
      if rows.stop - rows.start <= 1:
        raise InvalidInputError(f"row {rows.start} alone makes a {size}-byte {signature_name} "
                                f"request, more than max_request_bytes={max_bytes}")
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
      raise from_rpc_error(error, description, target=self.target, model_name=self.model_name,
                           version=self.version, tls=self.tls,
                           timeout_seconds=self.timeout_seconds) from None

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

