"""TF Serving warmup records: assets.extra/tf_serving_warmup_requests of a SavedModel."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses to load a model with more warmup records.


def write_warmup_requests(
    export_dir: str, requests: Sequence[tuple[str, Mapping[str, np.ndarray]]]) -> str:
  """Writes (signature name, inputs) requests as PredictionLog records; returns the file.

  Needs tensorflow-serving-api (the `serving` extra).
  """
  from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
  if len(requests) > MAX_WARMUP_RECORDS:
    raise ValueError(f"{len(requests)} warmup requests exceed TF Serving's {MAX_WARMUP_RECORDS}")
  path = os.path.join(export_dir, WARMUP_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for signature_name, inputs in requests:
      request = predict_pb2.PredictRequest()
      request.model_spec.signature_name = signature_name
      for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
      writer.write(prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
  return path
