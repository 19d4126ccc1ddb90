"""Reconstruction losses for binary (presence/absence) rows.

`multinomial`: -sum_i x_i log softmax(z)_i per row (Liang et al. 2018): the row's items compete
for one unit of probability mass, which is what ranking needs and costs no weight to tune.
`weighted_squared`: sum_i w_i (x_i - z_i)^2 with w = 1 on present items and `zero_weight` on
absent ones (Hu et al. 2008's confidence weighting): absent is weak evidence, not a negative.
`factored_weighted_squared` gives the same value for outputs H W + b without building them.
"""

from __future__ import annotations

import tensorflow as tf

LOSSES = ("multinomial", "weighted_squared")
# Chosen on validation at 100k synthetic playlists and on ML-1M (README, the Melon use case).
DEFAULT_ZERO_WEIGHT = 0.7


def multinomial(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Mean over rows of the multinomial negative log-likelihood of the row's items."""
  return -tf.reduce_mean(tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1))


def weighted_squared(targets: tf.Tensor, outputs: tf.Tensor, zero_weight: float) -> tf.Tensor:
  """Mean over rows of the squared error, absent items weighted by `zero_weight`."""
  weights = targets + zero_weight * (1.0 - targets)
  return tf.reduce_mean(tf.reduce_sum(weights * tf.square(targets - outputs), axis=-1))


def factored_weighted_squared(targets: tf.SparseTensor, hidden: tf.Tensor, kernel: tf.Tensor,
                              bias: tf.Tensor, zero_weight: float) -> tf.Tensor:
  """`weighted_squared` of binary sparse targets [B, N] and outputs hidden @ kernel + bias,
  in O(B k^2 + N k^2 + present k) instead of O(B N k): the dense [B, N] outputs are never built.

  sum w (x - p)^2 = w0 sum_all (x - p)^2 + (1 - w0) sum_present (x - p)^2, where
  sum_all p^2 = sum((H^T H) * (W W^T)) + 2 (1^T H) W b + B b.b and x is zero off the present
  entries, so only the present entries' outputs (row of H . column of W) are computed.

  Args:
    targets: binary rows, no duplicate entries.
    hidden: H [B, k]; kernel: W [k, N]; bias: b [N].
    zero_weight: w0, the weight of absent items.
  """
  rows, columns = targets.indices[:, 0], targets.indices[:, 1]
  present_outputs = tf.reduce_sum(
      tf.gather(hidden, rows) * tf.gather(tf.transpose(kernel), columns), axis=1) + tf.gather(
          bias, columns)
  num_rows = tf.cast(tf.shape(hidden)[0], hidden.dtype)
  sum_squares = (tf.reduce_sum(tf.matmul(hidden, hidden, transpose_a=True)
                               * tf.matmul(kernel, kernel, transpose_b=True))
                 + 2.0 * tf.reduce_sum(tf.reduce_sum(hidden, axis=0) * tf.linalg.matvec(kernel, bias))
                 + num_rows * tf.reduce_sum(tf.square(bias)))
  values = targets.values
  all_entries = tf.reduce_sum(tf.square(values)) - 2.0 * tf.reduce_sum(
      values * present_outputs) + sum_squares
  present_entries = tf.reduce_sum(tf.square(values - present_outputs))
  return (zero_weight * all_entries + (1.0 - zero_weight) * present_entries) / num_rows


def reconstruction_loss(name: str, targets: tf.Tensor, outputs: tf.Tensor,
                        zero_weight: float = DEFAULT_ZERO_WEIGHT) -> tf.Tensor:
  """The loss `name` (one of LOSSES) of dense binary targets [B, N] and outputs [B, N]."""
  if name == "multinomial":
    return multinomial(targets, outputs)
  if name == "weighted_squared":
    return weighted_squared(targets, outputs, zero_weight)
  raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
