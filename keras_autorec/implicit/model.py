"""Playlist AutoRec: a denoising autoencoder over a row's binary song+tag vector.

The input row is sparse (a tf.SparseTensor of the present items), so the first layer costs
O(present items x hidden units) whatever the catalog size; the encoder is the package's
`keras_autorec.model.encode` with a sparse first product.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_autorec import model as autorec_model
from keras_autorec.implicit import losses


def _sparse_product(inputs: tf.SparseTensor, kernel: tf.Tensor) -> tf.Tensor:
  return tf.sparse.sparse_dense_matmul(inputs, kernel)


def drop_inputs(inputs: tf.SparseTensor, rate: float, seed=None) -> tf.SparseTensor:
  """Drops each present item with probability `rate` (denoising); the rest keep value 1."""
  keep = tf.random.uniform(tf.shape(inputs.values), seed=seed) >= rate
  return tf.sparse.retain(inputs, keep)


def normalize_rows(inputs: tf.SparseTensor) -> tf.SparseTensor:
  """Rows scaled to unit L2 norm, so long and short playlists give codes of one scale."""
  squares = tf.math.unsorted_segment_sum(tf.square(inputs.values), inputs.indices[:, 0],
                                         tf.cast(inputs.dense_shape[0], tf.int32))
  norms = tf.gather(tf.sqrt(tf.maximum(squares, 1e-12)), inputs.indices[:, 0])
  return tf.SparseTensor(inputs.indices, inputs.values / norms, inputs.dense_shape)


def encode_rows(encoder_params, activation: str, inputs: tf.SparseTensor) -> tf.Tensor:
  """The last hidden code [B, units] of binary sparse rows, normalised to unit length."""
  return autorec_model.encode(encoder_params, normalize_rows(inputs), activation,
                              first_product=_sparse_product)


def score_rows(encoder_params, output_kernel, output_bias, activation: str,
               inputs: tf.SparseTensor) -> tf.Tensor:
  """Scores [B, items] of binary sparse rows, normalised to unit length, through the layers."""
  return tf.matmul(encode_rows(encoder_params, activation, inputs), output_kernel) + output_bias


@keras.saving.register_keras_serializable(package="keras_autorec")
class PlaylistAutoRec(keras.Model):
  """Rows of present items -> a score for every catalog item (logits for `multinomial`).

  Args:
    num_items: catalog size (songs + tags).
    hidden_units: sizes of the hidden layers.
    activation: encoder activation (see `keras_autorec.model.ACTIVATIONS`).
    input_dropout: probability of dropping a present item while training.
    l2_weight: L2 penalty on kernels, added to the per-row mean loss.
    loss: one of `keras_autorec.implicit.losses.LOSSES`.
    zero_weight: weight of absent items for `weighted_squared`.
  """

  def __init__(self, num_items: int, hidden_units: Sequence[int] = (256,),
               activation: str = "tanh", input_dropout: float = 0.5, l2_weight: float = 0.0,
               loss: str = "multinomial",
               zero_weight: float = losses.DEFAULT_ZERO_WEIGHT, **kwargs):
    super().__init__(**kwargs)
    if loss not in losses.LOSSES:
      raise ValueError(f"loss must be one of {losses.LOSSES}, got {loss!r}")
    self.num_items = int(num_items)
    self.hidden_units = tuple(int(units) for units in hidden_units)
    self.activation = activation
    self.input_dropout = float(input_dropout)
    self.l2_weight = float(l2_weight)
    self.loss_name = loss
    self.zero_weight = float(zero_weight)
    sizes = (self.num_items,) + self.hidden_units
    self.encoder_params = [
        (self.add_weight(shape=(fan_in, fan_out), initializer="glorot_uniform",
                         name=f"hidden_{i}_kernel"),
         self.add_weight(shape=(fan_out,), initializer="zeros", name=f"hidden_{i}_bias"))
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]))]
    self.output_kernel = self.add_weight(shape=(sizes[-1], self.num_items),
                                         initializer="glorot_uniform", name="output_kernel")
    self.output_bias = self.add_weight(shape=(self.num_items,), initializer="zeros",
                                       name="output_bias")

  def encode(self, inputs: tf.SparseTensor, training: bool = False) -> tf.Tensor:
    """The last hidden code [B, units] of binary sparse rows (input dropout when training)."""
    if training and self.input_dropout:
      inputs = drop_inputs(inputs, self.input_dropout)
    return encode_rows(self.encoder_params, self.activation, inputs)

  def call(self, inputs: tf.SparseTensor, training: bool = False) -> tf.Tensor:
    """Scores [B, num_items] of binary sparse rows [B, num_items]."""
    return tf.matmul(self.encode(inputs, training), self.output_kernel) + self.output_bias

  def compute_row_loss(self, inputs: tf.SparseTensor, training: bool = True) -> tf.Tensor:
    """The reconstruction loss of the full rows from (dropped-out) rows, plus L2.

    `weighted_squared` is computed in factored form (never the dense [B, N] outputs), so a
    step's cost grows with the catalog as N k^2, not B N k.
    """
    if self.loss_name == "weighted_squared":
      loss = losses.factored_weighted_squared(inputs, self.encode(inputs, training),
                                              self.output_kernel, self.output_bias,
                                              self.zero_weight)
    else:
      targets = tf.sparse.to_dense(tf.sparse.reorder(inputs))
      loss = losses.reconstruction_loss(self.loss_name, targets, self(inputs, training=training),
                                        self.zero_weight)
    if self.l2_weight:
      kernels = [kernel for kernel, _ in self.encoder_params] + [self.output_kernel]
      loss += self.l2_weight * tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels])
    return loss

  def get_config(self):
    return {**super().get_config(), "num_items": self.num_items,
            "hidden_units": self.hidden_units, "activation": self.activation,
            "input_dropout": self.input_dropout, "l2_weight": self.l2_weight,
            "loss": self.loss_name, "zero_weight": self.zero_weight}
