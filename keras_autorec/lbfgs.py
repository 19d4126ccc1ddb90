"""Full-batch L-BFGS (two-loop recursion, backtracking Armijo line search) over TF variables.

The paper's authors trained AutoRec with full-batch L-BFGS or Rprop. This is a dependency-free
L-BFGS: `LbfgsMinimizer` minimises any deterministic loss closure over a list of variables
(`keras_autorec.training.lbfgs` trains AutoRec with it, `baselines.biased_mf` BiasedMF).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf



@dataclasses.dataclass(frozen=True)
class LbfgsConfig:
  """L-BFGS settings.

  Attributes:
    memory: number of (step, gradient change) pairs kept for the inverse Hessian estimate.
    armijo: sufficient-decrease constant of the backtracking line search.
    backtracking: factor a rejected step is multiplied by.
    max_line_search: most trial steps per iteration before giving up (the minimiser then stops).
  """

  memory: int = 10
  armijo: float = 1e-4
  backtracking: float = 0.5
  max_line_search: int = 25


class LbfgsMinimizer:
  """Minimises `loss_fn()` (a deterministic function of `variables`) by L-BFGS, one step at a time.

  Every accepted step strictly decreases the loss (Armijo condition), so the loss is monotone.
  """

  def __init__(self, loss_fn: Callable[[], tf.Tensor], variables: Sequence[tf.Variable],
               config: LbfgsConfig = LbfgsConfig()):
    self.variables = list(variables)
    self.config = config
    self.dtype = self.variables[0].dtype
    self._shapes = [v.shape for v in self.variables]
    self._sizes = [int(np.prod(v.shape)) for v in self.variables]
    self._steps: list[tf.Tensor] = []
    self._gradient_changes: list[tf.Tensor] = []
    self.converged = False

    @tf.function
    def value_and_gradient(flat):
      self._assign(flat)
      with tf.GradientTape() as tape:
        loss = tf.cast(loss_fn(), self.dtype)
      gradients = tape.gradient(loss, self.variables)
      gradients = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                   for g, v in zip(gradients, self.variables)]
      return loss, self._flatten(gradients)

    self._value_and_gradient = value_and_gradient
    self._x = self._flatten(self.variables)
    self.loss, self._gradient = self._value_and_gradient(self._x)

  def _flatten(self, tensors) -> tf.Tensor:
    return tf.concat([tf.reshape(tf.cast(t, self.dtype), [-1]) for t in tensors], axis=0)

  def _assign(self, flat: tf.Tensor) -> None:
    for variable, part, shape in zip(self.variables, tf.split(flat, self._sizes), self._shapes):
      variable.assign(tf.reshape(tf.cast(part, variable.dtype), shape))

  def _direction(self) -> tf.Tensor:
    """-H g by the two-loop recursion over the stored pairs."""
    q = self._gradient
    alphas = []
    for s, y in zip(reversed(self._steps), reversed(self._gradient_changes)):
      alpha = tf.tensordot(s, q, 1) / tf.tensordot(y, s, 1)
      alphas.append(alpha)
      q = q - alpha * y
    s, y = self._steps[-1], self._gradient_changes[-1]
    q = q * (tf.tensordot(s, y, 1) / tf.tensordot(y, y, 1))
    for (s, y), alpha in zip(zip(self._steps, self._gradient_changes), reversed(alphas)):
      beta = tf.tensordot(y, q, 1) / tf.tensordot(y, s, 1)
      q = q + (alpha - beta) * s
    return -q

  def step(self) -> float:
    """One L-BFGS iteration; returns the (never larger) loss and leaves the variables at it."""
    if self.converged:
      return float(self.loss)
    if self._steps:
      direction, step_size = self._direction(), 1.0
    else:
      direction = -self._gradient
      # Without curvature information the first step is scaled to unit length.
      step_size = 1.0 / max(float(tf.norm(self._gradient)), 1e-12)
    slope = float(tf.tensordot(self._gradient, direction, 1))
    if slope >= 0.0:
      # The curvature pairs no longer give a descent direction: forget them.
      self._steps.clear()
      self._gradient_changes.clear()
      direction = -self._gradient
      slope = -float(tf.tensordot(self._gradient, self._gradient, 1))
      step_size = 1.0 / max(np.sqrt(-slope), 1e-12)
    if slope == 0.0:
      self.converged = True
      return float(self.loss)
    loss = float(self.loss)
    for _ in range(self.config.max_line_search):
      candidate = self._x + step_size * direction
      new_loss, new_gradient = self._value_and_gradient(candidate)
      if np.isfinite(float(new_loss)) and (
          float(new_loss) <= loss + self.config.armijo * step_size * slope):
        break
      step_size *= self.config.backtracking
    else:
      self._assign(self._x)
      self.converged = True
      return loss
    step = candidate - self._x
    gradient_change = new_gradient - self._gradient
    # Pairs without positive curvature would make the inverse Hessian estimate indefinite.
    if float(tf.tensordot(step, gradient_change, 1)) > 1e-10 * float(
        tf.tensordot(gradient_change, gradient_change, 1)):
      self._steps.append(step)
      self._gradient_changes.append(gradient_change)
      if len(self._steps) > self.config.memory:
        self._steps.pop(0)
        self._gradient_changes.pop(0)
    self._x, self.loss, self._gradient = candidate, new_loss, new_gradient
    return float(new_loss)

  @property
  def gradient_norm(self) -> float:
    """Euclidean norm of the gradient at the current point."""
    return float(tf.norm(self._gradient))
