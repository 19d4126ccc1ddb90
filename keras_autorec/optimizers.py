"""Optimizers for AutoRec, including iRprop- as used by the paper's authors for full-batch training."""

from __future__ import annotations

import keras
from keras import ops

OPTIMIZERS = ("rprop", "adam", "rmsprop", "sgd")


@keras.saving.register_keras_serializable(package="keras_autorec")
class Rprop(keras.optimizers.Optimizer):
  """iRprop- (Igel and Huesken, 2000): per-weight steps driven by the sign of the gradient.

  Each weight has its own step size, grown by `increase_factor` while its gradient keeps its sign
  and shrunk by `decrease_factor` when the sign flips (the step is then skipped). It ignores the
  gradient's magnitude, so it needs full-batch (or very large batch) gradients to be stable; the
  loss scale does not matter. `learning_rate` is the initial step size.
  """

  def __init__(self, learning_rate: float = 0.01, increase_factor: float = 1.2,
               decrease_factor: float = 0.5, min_step: float = 1e-6, max_step: float = 50.0,
               name: str = "rprop", **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    self.increase_factor = increase_factor
    self.decrease_factor = decrease_factor
    self.min_step = min_step
    self.max_step = max_step

  def build(self, variables):
    if self.built:
      return
    super().build(variables)
    self._steps = []
    self._previous_gradients = []
    for variable in variables:
      self._steps.append(self.add_variable_from_reference(variable, "step", initializer="zeros"))
      self._previous_gradients.append(
          self.add_variable_from_reference(variable, "previous_gradient", initializer="zeros"))

  def update_step(self, gradient, variable, learning_rate):
    index = self._get_variable_index(variable)
    step, previous = self._steps[index], self._previous_gradients[index]
    new_step, kept_gradient, decrement = irprop_minus(
        ops.cast(gradient, variable.dtype), previous, step,
        ops.cast(learning_rate, variable.dtype), self.increase_factor, self.decrease_factor,
        self.min_step, self.max_step)
    self.assign(step, new_step)
    self.assign(previous, kept_gradient)
    self.assign_sub(variable, decrement)

  def get_config(self):
    return {**super().get_config(), "increase_factor": self.increase_factor,
            "decrease_factor": self.decrease_factor, "min_step": self.min_step,
            "max_step": self.max_step}


def irprop_minus(gradient, previous_gradient, step, initial_step, increase_factor,
                 decrease_factor, min_step, max_step):
  """One iRprop- update, elementwise: (new step, gradient to remember, weight decrement)."""
  # A zero step marks a weight never updated: it starts at the initial step size.
  current_step = ops.where(ops.equal(step, 0.0), initial_step, step)
  agreement = gradient * previous_gradient
  new_step = ops.where(
      agreement > 0, ops.minimum(current_step * increase_factor, max_step),
      ops.where(agreement < 0, ops.maximum(current_step * decrease_factor, min_step),
                current_step))
  gradient = ops.where(agreement < 0, ops.zeros_like(gradient), gradient)
  return new_step, gradient, ops.sign(gradient) * new_step


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
  """The optimizer called `name` (one of OPTIMIZERS) with the given (initial) step size."""
  if name == "rprop":
    return Rprop(learning_rate)
  if name == "adam":
    return keras.optimizers.Adam(learning_rate)
  if name == "rmsprop":
    return keras.optimizers.RMSprop(learning_rate)
  if name == "sgd":
    return keras.optimizers.SGD(learning_rate, momentum=0.9)
  raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
