"""Trains AutoRec by full-batch L-BFGS (`keras_autorec.lbfgs`), one iteration per epoch."""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from keras_autorec.config import ModelConfig, TrainConfig
from keras_autorec.data.layout import RowLayout, SparseRows, build_layout
from keras_autorec.data.splits import RatingsSplit
from keras_autorec.lbfgs import LbfgsConfig, LbfgsMinimizer
from keras_autorec.training import loop
from keras_autorec.training.early_stopping import ResumableEarlyStopping
from keras_autorec.training.trained_model import TrainedModel, build_model


def _dense(rows: SparseRows) -> tuple[tf.Tensor, tf.Tensor]:
  dense = rows.to_dense()
  mask = np.zeros_like(dense)
  mask[rows.row_index(), rows.columns] = 1.0
  return tf.constant(dense), tf.constant(mask)


def fit_lbfgs(split: RatingsSplit, model_config: ModelConfig, train_config: TrainConfig,
              lbfgs_config: LbfgsConfig = LbfgsConfig(),
              layout: RowLayout | None = None) -> TrainedModel:
  """Trains AutoRec by full-batch L-BFGS, one iteration per epoch, early-stopping on validation.

  `layout` is the training layout when already built.
  """
  if model_config.input_dropout:
    raise ValueError("optimizer 'lbfgs' needs a deterministic objective: set input_dropout=0")
  if train_config.model_dir is not None or train_config.mixed_precision != "off":
    raise ValueError("optimizer 'lbfgs' runs in float32 without checkpoints: leave model_dir "
                     "unset and mixed_precision 'off'")
  start = time.time()
  keras.utils.set_random_seed(train_config.seed)
  layout = layout or build_layout(split.train, item_based=model_config.item_based)
  model = build_model(model_config, layout)
  inputs, mask = _dense(layout.train)
  validation_targets, _ = layout.targets(split.validation)
  validation_values, validation_mask = _dense(validation_targets)
  low, high = layout.rating_scale

  def loss_fn():
    return model.compute_loss(y=inputs, y_pred=model(inputs, training=True), sample_weight=mask)

  @tf.function
  def validation_rmse():
    predictions = tf.clip_by_value(model(inputs, training=False), low, high)
    squared = tf.reduce_sum(tf.square(validation_values - predictions) * validation_mask)
    return tf.sqrt(squared / tf.maximum(tf.reduce_sum(validation_mask), 1.0))

  minimizer = LbfgsMinimizer(loss_fn, model.trainable_variables, lbfgs_config)
  early_stopping = ResumableEarlyStopping(None, train_config.patience,
                                          min_delta=train_config.min_delta)
  model.stop_training = False
  loop.run_epochs(model, minimizer.step,
                  (lambda: float(validation_rmse())) if validation_targets.nnz > 0 else None,
                  early_stopping, train_config.epochs, report=early_stopping.progress(train_config),
                  converged=lambda: minimizer.converged)
  return TrainedModel(model=model, layout=layout, history=early_stopping.history,
                      epochs_run=early_stopping.completed_epochs,
                      best_epoch=early_stopping.best_epoch + 1, seconds=time.time() - start)
