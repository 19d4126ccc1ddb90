"""The dense path: per-batch dense rows under Keras' `Model.fit` and its callbacks."""

from __future__ import annotations

import os
import time

import keras
import tensorflow as tf

from keras_autorec import distribution
from keras_autorec.config import ModelConfig, TrainConfig
from keras_autorec.data import row_datasets
from keras_autorec.data.layout import RowLayout, build_layout
from keras_autorec.data.splits import RatingsSplit
from keras_autorec.model import rating_metrics
from keras_autorec.optimizers import make_optimizer
from keras_autorec.training.early_stopping import ResumableEarlyStopping, checkpoint_settings
from keras_autorec.training.trained_model import TrainedModel, build_model


def fit_dense(split: RatingsSplit, model_config: ModelConfig, train_config: TrainConfig,
              strategy: tf.distribute.Strategy | None = None,
              layout: RowLayout | None = None) -> TrainedModel:
  """`training.fit` on the dense path; `layout` is the training layout when already built."""
  start = time.time()
  keras.utils.set_random_seed(train_config.seed)
  distribution.set_mixed_precision(train_config.mixed_precision)
  strategy = strategy or distribution.make_strategy(train_config.strategy)
  layout = layout or build_layout(split.train, item_based=model_config.item_based)
  with strategy.scope():
    model = build_model(model_config, layout)
    model.compile(optimizer=make_optimizer(train_config.optimizer, train_config.learning_rate),
                  weighted_metrics=rating_metrics(layout.rating_scale))
  batch_size = train_config.batch_size or layout.num_rows
  validation_targets, _ = layout.targets(split.validation)
  replicas = strategy.num_replicas_in_sync
  validation = (row_datasets.evaluation_dataset(layout.train, validation_targets, batch_size,
                                                row_multiple=replicas)
                if validation_targets.nnz else None)
  early_stopping = ResumableEarlyStopping(
      train_config.model_dir, train_config.patience, min_delta=train_config.min_delta,
      settings=checkpoint_settings(model_config, train_config, layout))
  with strategy.scope():
    initial_epoch = early_stopping.restore(model)
  callbacks = [early_stopping, early_stopping.progress(train_config)]
  if train_config.model_dir is not None:
    os.makedirs(train_config.model_dir, exist_ok=True)
    callbacks.append(keras.callbacks.TensorBoard(os.path.join(train_config.model_dir, "logs")))
  finished = initial_epoch >= train_config.epochs or early_stopping.wait >= train_config.patience
  if not finished:
    # One dataset over the remaining epochs: its per-epoch order depends only on (seed, epoch).
    model.fit(row_datasets.training_dataset(layout.train, batch_size, seed=train_config.seed,
                                            first_epoch=initial_epoch,
                                            num_epochs=train_config.epochs - initial_epoch,
                                            row_multiple=replicas),
              steps_per_epoch=-(-layout.num_rows // batch_size), shuffle=False,
              validation_data=validation, epochs=train_config.epochs,
              initial_epoch=initial_epoch, callbacks=callbacks, verbose=0)
  elif early_stopping.best_weights is not None:
    model.set_weights(early_stopping.best_weights)
  distribution.set_mixed_precision("off")
  return TrainedModel(model=model, layout=layout, history=early_stopping.history,
                      epochs_run=early_stopping.completed_epochs,
                      best_epoch=early_stopping.best_epoch + 1, seconds=time.time() - start)
