"""Fused (XLA) Adam and Rprop updates: Keras' updates in one pass over each variable."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_autorec.optimizers import Rprop, irprop_minus
from keras_autorec.training.sparse.kernels import (
    SDDMM_CHUNK, BlockTensors, hybrid_dot, pair_gradients)
from keras_autorec.training.sparse.objective import encode_block


# The fused updates read Keras 3 optimizers' private state (slots by variable index, the current
# learning rate); under another Keras, or one without these attributes, steps go through Keras'
# own `apply_gradients`, which computes the same update with more temporaries.
KERAS_MAJOR_VERSIONS = (3,)
PRIVATE_OPTIMIZER_API = ("_get_current_learning_rate", "_get_variable_index",
                         "_trainable_variables")
PRIVATE_ADAM_API = ("_momentums", "_velocities")


def private_api_available(optimizer, names: tuple[str, ...] = ()) -> bool:
  """Whether this Keras is one the fused updates know and `optimizer` has the private `names`."""
  major = int(keras.__version__.split(".")[0])
  return major in KERAS_MAJOR_VERSIONS and all(
      hasattr(optimizer, name) for name in PRIVATE_OPTIMIZER_API + names)


def fusable_adam(optimizer, strategy: tf.distribute.Strategy) -> bool:
  """Whether `optimizer` is a plain Keras Adam on unreplicated variables (see `adam_updates`)."""
  return (type(optimizer) is keras.optimizers.Adam and not optimizer.amsgrad
          and private_api_available(optimizer, PRIVATE_ADAM_API) and _plain(optimizer, strategy))


def fusable_rprop(optimizer, strategy: tf.distribute.Strategy) -> bool:
  """Whether `optimizer` is a plain Rprop on unreplicated variables (see `rprop_updates`)."""
  return (type(optimizer) is Rprop and private_api_available(optimizer)
          and _plain(optimizer, strategy))


def _plain(optimizer, strategy: tf.distribute.Strategy) -> bool:
  """Whether `optimizer` uses none of Keras' generic update options, on unreplicated variables."""
  return (strategy.num_replicas_in_sync == 1 and not optimizer.use_ema
          and not optimizer.gradient_accumulation_steps and optimizer.weight_decay is None
          and optimizer.clipnorm is None and optimizer.clipvalue is None
          and optimizer.global_clipnorm is None and optimizer.loss_scale_factor is None
          and not any(isinstance(v.value, tf.distribute.DistributedValues)
                      for v in optimizer._trainable_variables))


@tf.function(jit_compile=True)
def _adam_update(variable, momentum, velocity, gradient, decay, learning_rate, beta_1, beta_2,
                 epsilon, step, transposed):
  """Keras Adam's `update_step` on gradient (or its transpose) + decay x variable, XLA-fused.

  One pass over the variable and its slots: the L2 term and the transpose, as separate ops,
  would each be a temporary the size of the variable (1 GB at Netflix scale). Returns a scalar
  for later ops to depend on.
  """
  if transposed:
    gradient = tf.transpose(gradient)
  gradient += decay * variable
  alpha = learning_rate * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
  momentum.assign_add((gradient - momentum) * (1 - beta_1))
  velocity.assign_add((tf.square(gradient) - velocity) * (1 - beta_2))
  variable.assign_sub(momentum * alpha / (tf.sqrt(velocity) + epsilon))
  return tf.zeros([])


def adam_updates(optimizer, updates: list, after: list) -> list:
  """Keras Adam's update for each (variable, gradient, L2 decay, gradient transposed) of `updates`.

  Applied after the ops `after`, one at a time, by `_adam_update`. Returns [the last update];
  `iterations` is left to the caller.
  """
  step = tf.cast(optimizer.iterations + 1, tf.float32)
  learning_rate = tf.cast(optimizer._get_current_learning_rate(), tf.float32)
  for variable, gradient, decay, transposed in updates:
    index = optimizer._get_variable_index(variable)
    # Chained, so that no two updates' inputs need be alive at once; the output bias's gradient
    # comes as IndexedSlices (it is read by a gather).
    with tf.control_dependencies(after):
      after = [_adam_update(
          variable.value, optimizer._momentums[index].value, optimizer._velocities[index].value,
          tf.convert_to_tensor(gradient), tf.constant(decay, tf.float32), learning_rate,
          tf.constant(optimizer.beta_1, tf.float32), tf.constant(optimizer.beta_2, tf.float32),
          tf.constant(optimizer.epsilon, tf.float32), step, transposed)]
  return after


@tf.function(jit_compile=True)
def _rprop_update(variable, step, previous, gradient, learning_rate, increase_factor,
                  decrease_factor, min_step, max_step):
  """`optimizers.Rprop.update_step`, which XLA fuses into one pass without temporaries."""
  new_step, kept_gradient, decrement = irprop_minus(
      gradient, previous, step, learning_rate, increase_factor, decrease_factor, min_step,
      max_step)
  step.assign(new_step)
  previous.assign(kept_gradient)
  variable.assign_sub(decrement)


def rprop_updates(optimizer, gradients: list, variables: list) -> None:
  """The same update as Keras applying `optimizer` (a plain Rprop), fused per variable.

  Keras' update is a chain of ~12 elementwise ops over the variable, each a full-size temporary;
  the fused one reads the weight, gradient, step and previous gradient once and writes three.
  """
  learning_rate = tf.cast(optimizer._get_current_learning_rate(), tf.float32)
  for gradient, variable in zip(gradients, variables):
    index = optimizer._get_variable_index(variable)
    _rprop_update(variable.value, optimizer._steps[index].value,
                  optimizer._previous_gradients[index].value, gradient, learning_rate,
                  optimizer.increase_factor, optimizer.decrease_factor, optimizer.min_step,
                  optimizer.max_step)
  optimizer.iterations.assign_add(1)


def adam_step(model, block: BlockTensors, count: tf.Tensor, compute_dtype: tf.DType) -> tf.Tensor:
  """One fused-Adam step on a block (the whole step); returns its summed squared error.

  The same update as Keras Adam on `squared_error_and_gradients`, but the output layer is updated
  as soon as its gradients exist, before the encoder's backward pass starts (which needs only the
  gradient of the hidden code), so the two GB-sized kernel gradients of Netflix are never alive
  together; the L2 terms and the output kernel's transpose are left to `_adam_update`.
  """
  optimizer = model.optimizer
  output = model.output_layer
  kernel, columns, values = tf.convert_to_tensor(output.kernel), block.columns, block.values
  decay = 2.0 * model.l2_weight  # The gradient of l2_penalty, per unit of kernel.
  with tf.GradientTape() as encoder_tape:
    hidden = encode_block(model, block, compute_dtype)
  logits = hybrid_dot(hidden, kernel, block.rows, columns, block.dense_columns,
                       compute_dtype, SDDMM_CHUNK)
  with tf.GradientTape() as decoder_tape:
    decoder_tape.watch(logits)
    predictions = output.activation(logits + tf.gather(output.bias, columns))
    squared_error = tf.reduce_sum(tf.square(values - predictions))
    share = squared_error / count
  d_logits, d_bias = decoder_tape.gradient(share, [logits, output.bias])
  d_hidden, d_kernel_t = pair_gradients(d_logits, hidden, kernel, block,
                                         transpose_kernel=False)
  updates = adam_updates(optimizer, [(output.kernel, d_kernel_t, decay, True),
                                     (output.bias, d_bias, 0.0, False)], [])
  encoder = [pair for layer in model.hidden_layers
             for pair in ((layer.kernel, decay), (layer.bias, 0.0))]
  with tf.control_dependencies(updates):
    encoder_gradients = encoder_tape.gradient(hidden, [v for v, _ in encoder],
                                              output_gradients=d_hidden)
  updates = adam_updates(optimizer, [(variable, gradient, variable_decay, False)
                                     for (variable, variable_decay), gradient
                                     in zip(encoder, encoder_gradients)], updates)
  with tf.control_dependencies(updates):
    optimizer.iterations.assign_add(1)
  return squared_error
