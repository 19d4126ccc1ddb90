"""TF Serving warmup requests of an export (needs tensorflow-serving-api, imported when used)."""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from keras_autorec.serving.tables import ServingArrays

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses to load a model with more warmup records.


def warmup_inputs(arrays: ServingArrays, rating: float, max_batch_size: int,
                   max_rating_slots: int) -> list[tuple[str, dict[str, np.ndarray]]]:
  """Requests of batch size 1 and 8 per signature, one id unknown, as (signature, inputs).

  Within the export's limits, since TF Serving refuses to load a model whose warmup fails.
  """
  unknown = "__unknown_warmup_id__"
  fold_in_rows = min(2, max_batch_size, max_rating_slots)
  size = min(8, arrays.user_ids.shape[0] + 1, arrays.item_ids.shape[0] + 1, max_batch_size,
             max_rating_slots // fold_in_rows)
  users = np.append(arrays.user_ids[:size - 1], unknown).astype(object)
  items = np.append(arrays.item_ids[:size - 1], unknown).astype(object)
  requests = []
  for batch in (slice(0, 1), slice(0, size)):
    requests += [
        ("serving_default", {"user_id": users[batch], "item_id": items[batch]}),
        ("recommend", {"user_id": users[batch]}),
        ("recommend_for_ratings", {"item_ids": np.tile(items[batch], (fold_in_rows, 1)),
                                   "ratings": np.full((fold_in_rows, items[batch].shape[0]),
                                                      rating, np.float32)}),
        ("similar_items", {"item_id": items[batch]}),
    ]
  return requests


def write_warmup_requests(path: str, requests) -> None:
  """Writes (signature, inputs) pairs as TF Serving's PredictionLog warmup TFRecord.

  Skipped with a warning when tensorflow-serving-api (the `serving` extra) is not installed:
  training and export need only TensorFlow, and TF Serving loads a model without warmup records.
  """
  if len(requests) > MAX_WARMUP_RECORDS:
    raise ValueError(f"{len(requests)} warmup requests exceed TF Serving's {MAX_WARMUP_RECORDS}")
  try:
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2
  except ImportError:
    logging.warning("No warmup requests in the export: tensorflow-serving-api is not installed "
                    "(pip install 'keras-autorec[serving]' writes them)")
    return
  with tf.io.TFRecordWriter(path) as writer:
    for signature_name, inputs in requests:
      request = predict_pb2.PredictRequest()
      request.model_spec.signature_name = signature_name
      for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
