"""Full-batch L-BFGS: exact minimum of a ridge problem, monotone AutoRec objective, training."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
import tensorflow as tf

from keras_autorec import lbfgs, training
from keras_autorec.data.layout import build_layout


def minimize(loss_fn: Callable[[], tf.Tensor], variables: Sequence[tf.Variable],
             max_iterations: int = 100, gradient_tolerance: float = 1e-8,
             config: lbfgs.LbfgsConfig = lbfgs.LbfgsConfig()) -> list[float]:
  """Runs L-BFGS until the gradient norm is below the tolerance; returns the loss per iteration."""
  minimizer = lbfgs.LbfgsMinimizer(loss_fn, variables, config)
  history = [float(minimizer.loss)]
  for _ in range(max_iterations):
    if minimizer.converged or minimizer.gradient_norm < gradient_tolerance:
      break
    history.append(minimizer.step())
  return history


def test_reaches_the_ridge_regression_minimum():
  rng = np.random.default_rng(0)
  features, targets, penalty = rng.normal(size=(50, 8)), rng.normal(size=50), 0.1
  weights = tf.Variable(np.zeros(8))

  def loss():
    residual = tf.linalg.matvec(tf.constant(features), weights) - targets
    return tf.reduce_mean(tf.square(residual)) + penalty * tf.reduce_sum(tf.square(weights))

  history = minimize(loss, [weights], max_iterations=100, gradient_tolerance=1e-10)
  exact = np.linalg.solve(features.T @ features / 50 + penalty * np.eye(8),
                          features.T @ targets / 50)
  np.testing.assert_allclose(weights.numpy(), exact, atol=1e-5)
  assert np.all(np.diff(history) <= 0)
  assert len(history) < 30


def test_minimises_over_several_variables_of_any_shape():
  matrix, vector = tf.Variable(tf.ones((2, 3), tf.float64)), tf.Variable(tf.ones(4, tf.float64))

  def loss():
    return tf.reduce_sum(tf.square(matrix - 2.0)) + tf.reduce_sum(tf.square(vector + 1.0))

  minimize(loss, [matrix, vector], gradient_tolerance=1e-10)
  np.testing.assert_allclose(matrix.numpy(), 2.0, atol=1e-6)
  np.testing.assert_allclose(vector.numpy(), -1.0, atol=1e-6)


def test_decreases_the_autorec_objective_monotonically(split):
  layout = build_layout(split.train)
  model = training.build_model(training.ModelConfig(hidden_units=(16,), l2_weight=1e-3), layout)
  inputs = tf.constant(layout.train.to_dense())
  mask = tf.cast(inputs > 0, tf.float32)

  def loss():
    return model.compute_loss(y=inputs, y_pred=model(inputs, training=True), sample_weight=mask)

  initial = float(loss())
  minimizer = lbfgs.LbfgsMinimizer(loss, model.trainable_variables)
  history = [minimizer.step() for _ in range(30)]
  assert np.all(np.diff(history) <= 0)
  assert history[-1] < 0.2 * initial
  # The minimiser leaves the model's weights at the loss it reports.
  assert float(loss()) == pytest.approx(history[-1], rel=1e-5)


def test_training_with_lbfgs_early_stops_and_keeps_the_best_weights(split):
  trained = training.fit(split, training.ModelConfig(hidden_units=(16,), l2_weight=1e-3),
                         training.TrainConfig(optimizer="lbfgs", epochs=100, patience=10,
                                              verbose=0))
  validation = trained.history["val_rmse"]
  assert trained.best_epoch == int(np.argmin(validation)) + 1
  metrics = training.evaluate(trained, split)
  assert metrics["validation_rmse"] == pytest.approx(min(validation), abs=1e-4)
  # Better than predicting the training mean for everything.
  mean_rmse = np.sqrt(np.mean(np.square(split.validation.rating - split.train.rating.mean())))
  assert metrics["validation_rmse"] < mean_rmse - 0.2


def test_lbfgs_rejects_stochastic_objectives(split):
  with pytest.raises(ValueError, match="input_dropout"):
    training.fit(split, training.ModelConfig(hidden_units=(4,), input_dropout=0.5),
                 training.TrainConfig(optimizer="lbfgs", epochs=1, verbose=0))
