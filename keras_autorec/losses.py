"""The masked reconstruction loss and rating metrics over observed entries only.

Loss scale. keras-autorec minimises, per batch,

    loss = sum_{observed (r, c)} (y_rc - h_rc)^2 / (number of observed entries in the batch)
           + l2_weight * (sum of squared kernel weights)      (biases are not regularised)

that is the mean squared error over observed ratings plus an L2 penalty. Over the full training set
with N observed ratings this is the paper's objective divided by N:

    paper:   sum_obs (y - h)^2 + (lambda / 2) * ||W||^2      =>  l2_weight = lambda / (2 N)
    authors' released code (1/2 * summed squared error + lambda * ||W||^2, full batch)
                                                             =>  l2_weight = 2 * lambda / N

so the paper's lambda = 100 on ML-1M's 810k training ratings is l2_weight ~ 6e-5 here. Because the
loss is a mean, `l2_weight` does not depend on batch size and transfers across dataset sizes better
than lambda does.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="keras_autorec")
class MaskedReconstructionLoss(keras.layers.Layer):
  """Sum of squared errors over observed entries (mask 1) and the number of such entries.

  It returns the sum and the count rather than their ratio so that the model can divide by the
  count summed over replicas (see `AutoRec.compute_loss`).
  """

  def __init__(self, **kwargs):
    # float32 under mixed precision too: the loss of float16/bfloat16 outputs is summed exactly.
    super().__init__(**{"dtype": "float32", **kwargs})
    # No weights to create; built now, or Keras warns that the model holding it is unbuilt.
    self.built = True

  def call(self, targets, predictions, mask) -> tuple[tf.Tensor, tf.Tensor]:
    predictions = ops.cast(predictions, "float32")
    squared = ops.square(targets - predictions) * mask
    return ops.sum(squared), ops.sum(mask)


class ClippedRatingMetric(keras.metrics.Metric):
  """RMSE or MAE over observed entries of predictions clipped to the rating scale."""

  def __init__(self, rating_scale=(1.0, 5.0), kind: str = "rmse", name: str | None = None,
               **kwargs):
    if kind not in ("rmse", "mae"):
      raise ValueError(f"kind must be 'rmse' or 'mae', got {kind!r}")
    super().__init__(name=name or kind, **kwargs)
    self.rating_scale = tuple(float(v) for v in rating_scale)
    self.kind = kind
    self.error_sum = self.add_variable(shape=(), initializer="zeros", name="error_sum")
    self.count = self.add_variable(shape=(), initializer="zeros", name="count")

  def update_state(self, y_true, y_pred, sample_weight=None):
    clipped = ops.clip(ops.cast(y_pred, "float32"), *self.rating_scale)
    error = y_true - clipped
    error = ops.square(error) if self.kind == "rmse" else ops.abs(error)
    mask = ops.ones_like(error) if sample_weight is None else ops.cast(sample_weight, "float32")
    self.error_sum.assign_add(ops.sum(error * mask))
    self.count.assign_add(ops.sum(mask))

  def result(self):
    mean = self.error_sum / ops.maximum(self.count, 1.0)
    return ops.sqrt(mean) if self.kind == "rmse" else mean

  def get_config(self):
    return {**super().get_config(), "rating_scale": self.rating_scale, "kind": self.kind}
