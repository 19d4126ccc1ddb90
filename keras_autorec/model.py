"""The AutoRec model: h(r) = f(W g(V r + mu) + b) over a row's partially observed ratings."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf
from keras import ops

from keras_autorec import losses

ACTIVATIONS = ("identity", "sigmoid", "relu", "elu", "selu", "tanh")


def _keras_activation(name: str) -> str:
  if name not in ACTIVATIONS:
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
  return "linear" if name == "identity" else name


@keras.saving.register_keras_serializable(package="keras_autorec")
class ScaledActivation:
  """A bounded activation (sigmoid or tanh) stretched onto the rating scale [low, high].

  A plain sigmoid never exceeds 1, so on a 1-5 scale f = sigmoid could not fit any rating;
  scaled, f(x) = low + (high - low) * sigmoid(x) spans the ratings as the paper's table needs.
  """

  def __init__(self, name: str, low: float, high: float):
    if name not in ("sigmoid", "tanh"):
      raise ValueError(f"a scaled activation is sigmoid or tanh, got {name!r}")
    self.name, self.low, self.high = name, float(low), float(high)

  def __call__(self, x):
    low, high = self.low, self.high
    if self.name == "sigmoid":
      return low + (high - low) * ops.sigmoid(x)
    return low + (high - low) * (ops.tanh(x) + 1.0) / 2.0

  def get_config(self):
    return {"name": self.name, "low": self.low, "high": self.high}

  @classmethod
  def from_config(cls, config):
    return cls(**config)


def hidden_activation(name: str):
  """The encoder activation g."""
  return keras.activations.get(_keras_activation(name))


def output_activation(name: str, rating_scale: Sequence[float]):
  """The decoder activation f; the bounded ones (sigmoid, tanh) are stretched onto the scale."""
  if name in ("sigmoid", "tanh"):
    return ScaledActivation(name, *rating_scale)
  return hidden_activation(name)


def encode(params: Sequence[tuple], inputs, activation: str, first_product=None):
  """The last hidden code g(...g(g(x W1 + b1) W2 + b2)...) with params [(W1, b1), (W2, b2), ...].

  Args:
    params: each hidden layer's (kernel, bias); a layer's input is cast to its kernel's dtype.
    inputs: the rows of ratings, or whatever `first_product` takes.
    activation: the encoder activation's name.
    first_product: (inputs, kernel) -> inputs W1 for inputs that are not a dense tensor (the
      sparse trainer's CSR blocks); tf.matmul by default.
  """
  g = hidden_activation(activation)
  hidden = inputs
  for position, (kernel, bias) in enumerate(params):
    if position == 0 and first_product is not None:
      product = first_product(hidden, kernel)
    else:
      product = tf.matmul(tf.cast(hidden, kernel.dtype), kernel)
    hidden = g(product + bias)
  return hidden


@keras.saving.register_keras_serializable(package="keras_autorec")
class AutoRec(keras.Model):
  """Item- or user-based AutoRec with a masked reconstruction loss and L2 on kernels.

  Args:
    num_inputs: length of a row: the number of users for item-based (I-AutoRec), of items for
      user-based (U-AutoRec).
    item_based: whether rows are items (I-AutoRec) or users (U-AutoRec); recorded for export.
    hidden_units: sizes of the hidden layers, e.g. (500,) or (500, 250, 500).
    encoder_activation: g, the activation of every hidden layer.
    decoder_activation: f, the activation of the output layer.
    l2_weight: L2 penalty on kernels (not biases); see `keras_autorec.losses` for its scale.
    input_dropout: rate of dropping observed inputs during training (denoising); 0 disables.
    rating_scale: (lowest, highest) rating; predictions are clipped to it.
    init_stddev: standard deviation of the normal kernel initialiser; None uses Glorot uniform.
  """

  def __init__(self, num_inputs: int, item_based: bool = True,
               hidden_units: Sequence[int] = (500,), encoder_activation: str = "sigmoid",
               decoder_activation: str = "identity", l2_weight: float = 0.0,
               input_dropout: float = 0.0, rating_scale: Sequence[float] = (1.0, 5.0),
               init_stddev: float | None = None, **kwargs):
    super().__init__(**kwargs)
    if num_inputs <= 0 or not hidden_units or min(hidden_units) <= 0:
      raise ValueError(f"num_inputs and hidden_units must be positive, got {num_inputs}, "
                       f"{hidden_units}")
    self.num_inputs = int(num_inputs)
    self.item_based = bool(item_based)
    self.hidden_units = tuple(int(units) for units in hidden_units)
    self.encoder_activation = encoder_activation
    self.decoder_activation = decoder_activation
    self.l2_weight = float(l2_weight)
    self.input_dropout = float(input_dropout)
    self.rating_scale = tuple(float(v) for v in rating_scale)
    self.init_stddev = init_stddev

    def dense(units, activation, name, dtype=None):
      initializer = ("glorot_uniform" if init_stddev is None
                     else keras.initializers.RandomNormal(stddev=init_stddev))
      return keras.layers.Dense(
          units, activation=activation, kernel_initializer=initializer,
          kernel_regularizer=keras.regularizers.L2(self.l2_weight) if self.l2_weight else None,
          name=name, dtype=dtype)

    self.dropout = keras.layers.Dropout(self.input_dropout) if self.input_dropout else None
    self.hidden_layers = [dense(units, hidden_activation(encoder_activation), f"hidden_{i}")
                          for i, units in enumerate(self.hidden_units)]
    # The reconstruction stays float32 under mixed precision so the loss is computed exactly.
    self.output_layer = dense(self.num_inputs,
                              output_activation(decoder_activation, self.rating_scale),
                              "reconstruction", dtype="float32")
    self.reconstruction_loss = losses.MaskedReconstructionLoss(name="reconstruction_loss")

  def encode(self, ratings, training=None):
    """The last hidden layer's code of each row of ratings."""
    hidden = ratings
    if self.dropout is not None:
      hidden = self.dropout(hidden, training=training)
    for layer in self.hidden_layers:
      hidden = layer(hidden)
    return hidden

  def call(self, ratings, training=None):
    """Unclipped reconstruction of each row; use `predict_ratings` for clipped predictions."""
    return self.output_layer(self.encode(ratings, training=training))

  def predict_ratings(self, ratings):
    """Reconstruction clipped to the rating scale."""
    return ops.clip(self(ratings, training=False), *self.rating_scale)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """Mean squared error over observed targets (`sample_weight` is the mask) plus L2."""
    total, count = self.reconstruction_loss(y, y_pred, sample_weight)
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
      # Gradients are summed over replicas, so each divides by the global count: the loss is then
      # exactly the single-device loss whatever the split of observed entries between replicas.
      count = replica.all_reduce(tf.distribute.ReduceOp.SUM, count)
    loss = total / ops.maximum(count, 1.0)
    for penalty in self.losses:
      loss = loss + self._aggregate_additional_loss(penalty)
    return loss

  def get_config(self):
    return {**super().get_config(), "num_inputs": self.num_inputs,
            "item_based": self.item_based, "hidden_units": list(self.hidden_units),
            "encoder_activation": self.encoder_activation,
            "decoder_activation": self.decoder_activation, "l2_weight": self.l2_weight,
            "input_dropout": self.input_dropout, "rating_scale": list(self.rating_scale),
            "init_stddev": self.init_stddev}


def rating_metrics(rating_scale) -> list[keras.metrics.Metric]:
  """Clipped RMSE and MAE over observed entries, for `compile(weighted_metrics=...)`."""
  return [losses.ClippedRatingMetric(rating_scale, "rmse", name="rmse"),
          losses.ClippedRatingMetric(rating_scale, "mae", name="mae")]
