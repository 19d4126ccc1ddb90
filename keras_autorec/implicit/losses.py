"""Reconstruction losses for binary (presence/absence) rows.

`multinomial`: -sum_i x_i log softmax(z)_i per row (Liang et al. 2018): the row's items compete
for one unit of probability mass, which is what ranking needs and costs no weight to tune.
`weighted_squared`: sum_i w_i (x_i - z_i)^2 with w = 1 on present items and `zero_weight` on
absent ones (Hu et al. 2008's confidence weighting): absent is weak evidence, not a negative.
"""

from __future__ import annotations

import tensorflow as tf

LOSSES = ("multinomial", "weighted_squared")


def multinomial(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Mean over rows of the multinomial negative log-likelihood of the row's items."""
  return -tf.reduce_mean(tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1))


def weighted_squared(targets: tf.Tensor, outputs: tf.Tensor, zero_weight: float) -> tf.Tensor:
  """Mean over rows of the squared error, absent items weighted by `zero_weight`."""
  weights = targets + zero_weight * (1.0 - targets)
  return tf.reduce_mean(tf.reduce_sum(weights * tf.square(targets - outputs), axis=-1))


def reconstruction_loss(name: str, targets: tf.Tensor, outputs: tf.Tensor,
                        zero_weight: float = 0.1) -> tf.Tensor:
  """The loss `name` (one of LOSSES) of dense binary targets [B, N] and outputs [B, N]."""
  if name == "multinomial":
    return multinomial(targets, outputs)
  if name == "weighted_squared":
    return weighted_squared(targets, outputs, zero_weight)
  raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
