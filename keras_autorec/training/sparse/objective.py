"""The sparse path's forward pass over a block, its loss and its gradients."""

from __future__ import annotations

import tensorflow as tf

from keras_autorec import model as model_lib
from keras_autorec.training.sparse.kernels import (
    SDDMM_CHUNK, BlockTensors, coordinates, csr_matrix, gather_dot, sampled_matmul, spmm,
    transposed_csr, typed_csr)


def encode_block(model, block: BlockTensors, compute_dtype: tf.DType) -> tf.Tensor:
  """The last hidden layer's code (float32) of every row of a block."""
  values, csr, csr_transpose = block.values, block.csr, block.csr_transpose
  shape = [block.num_rows, model.num_inputs]
  csr = csr_matrix(coordinates(block), values, shape) if csr is None else typed_csr(csr, shape)

  def make_csr_transpose():
    if csr_transpose is None:
      return transposed_csr(csr, values, block, shape)
    return typed_csr(csr_transpose, shape[::-1])

  first, *rest = model.hidden_layers
  params = [(tf.convert_to_tensor(first.kernel), first.bias),
            *((tf.cast(layer.kernel, compute_dtype), tf.cast(layer.bias, compute_dtype))
              for layer in rest)]
  hidden = model_lib.encode(params, csr, model.encoder_activation,
                            first_product=lambda _, kernel: spmm(csr, make_csr_transpose, kernel))
  return tf.cast(hidden, tf.float32)


def reconstruct_pairs(model, block: BlockTensors, rows: tf.Tensor, columns: tf.Tensor,
                      compute_dtype: tf.DType) -> tf.Tensor:
  """Unclipped reconstructions at (rows, columns) of a block, from its training ratings.

  Gather-dots only: held-out pairs are too few to pay for a dense column's GEMM.
  """
  hidden = encode_block(model, block, compute_dtype)
  output = model.output_layer
  logits = gather_dot(tf.cast(hidden, compute_dtype),
                       tf.cast(tf.transpose(output.kernel), compute_dtype), rows, columns,
                       SDDMM_CHUNK)
  return output.activation(logits + tf.gather(output.bias, columns))


def decode_block(model, hidden: tf.Tensor, block: BlockTensors,
                 compute_dtype: tf.DType) -> tf.Tensor:
  """The output layer's unclipped values at a block's training pairs."""
  output = model.output_layer
  logits = sampled_matmul(hidden, tf.convert_to_tensor(output.kernel), block,
                           compute_dtype)
  return output.activation(logits + tf.gather(output.bias, block.columns))


def l2_penalty(model, layers: list | None = None) -> tf.Tensor:
  """l2_weight times the summed squared kernels (of `layers`, by default all), as in Keras."""
  if not model.l2_weight:
    return tf.constant(0.0)
  layers = [*model.hidden_layers, model.output_layer] if layers is None else layers
  kernels = [layer.kernel for layer in layers]
  # l2_loss (half the summed squares) is one fused reduction: tf.square would be a temporary
  # the size of each kernel (1 GB at Netflix scale), also in the gradient.
  return 2.0 * model.l2_weight * tf.add_n([tf.nn.l2_loss(k) for k in kernels])


def squared_error_and_gradients(model, block: BlockTensors, count: tf.Tensor,
                                penalty_share: float, compute_dtype: tf.DType,
                                loss_scale: tf.Tensor | float = 1.0) -> tuple[tf.Tensor, list]:
  """A block's summed squared error, and gradients of its share of the step's objective.

  The share is squared error / `count` (the count of every block in the step, not this block's)
  plus `penalty_share` of the L2 penalty, so summing blocks' or replicas' gradients gives the
  gradient of the whole step's objective. The penalty is on this tape rather than added after:
  at Netflix scale every extra gradient-sized tensor is another 2 GB. The gradients are of
  `loss_scale` times the share (float16 loss scaling; the optimizer unscales them).
  """
  with tf.GradientTape() as tape:
    predictions = decode_block(model, encode_block(model, block, compute_dtype), block,
                          compute_dtype)
    squared_error = tf.reduce_sum(tf.square(block.values - predictions))
    share = (squared_error / count + penalty_share * l2_penalty(model)) * loss_scale
  gradients = tape.gradient(share, model.trainable_variables)
  # The output bias is read by a gather, whose gradient comes as IndexedSlices.
  return squared_error, [tf.convert_to_tensor(g) for g in gradients]
