"""The sparse trainer: steps and validation over row blocks, and `fit_sparse`."""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import tensorflow as tf

from keras_autorec import distribution
from keras_autorec.config import ModelConfig, TrainConfig
from keras_autorec.data.layout import RowLayout, SparseRows, build_layout
from keras_autorec.data.splits import RatingsSplit
from keras_autorec.optimizers import make_optimizer
from keras_autorec.training import loop
from keras_autorec.training.early_stopping import ResumableEarlyStopping, checkpoint_settings
from keras_autorec.training.sparse.blocks import (
    DENSE_COLUMN_DENSITY, SparseBlock, make_block, row_blocks)
from keras_autorec.training.sparse.fused_updates import (
    adam_step, fusable_adam, fusable_rprop, rprop_updates)
from keras_autorec.training.sparse.objective import (
    l2_penalty, reconstruct_pairs, squared_error_and_gradients)
from keras_autorec.training.trained_model import TrainedModel, build_model

COMPUTE_DTYPES = {"off": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}
EXECUTIONS = ("auto", "dense", "sparse")
# Up to this many ratings in all, blocks keep the CSR matrices of X and X^T (8 bytes per rating
# each) and the int64 coordinates that CSR builds of the residual take (16 bytes per rating each,
# in both orders) from step to step: up to 1.2 GB. Larger data sets rebuild them in every step.
CSR_CACHE_RATINGS = 25_000_000
# "auto" trains sparse above this many rows x columns cells. At the ML-1M shape (22M cells)
# `training.fit` with the defaults took 10.6-12.8 s sparse against 38.9-42.0 s dense for 30
# epochs, to the same validation RMSE (0.8827 vs 0.8825; synthetic data, 2 cores). Smaller data
# trains in seconds either way and stays on the dense path, the Keras reference the sparse path is
# tested against (at the ML-100K shape sparse was also faster: 2.7-4.5 s vs 7.2-11.6 s for 60
# epochs).
AUTO_SPARSE_CELLS = 10_000_000
# Strategies whose devices have no CSR kernels.
SPARSE_UNSUPPORTED_STRATEGIES = ("tpu",)


def use_sparse(execution: str, num_rows: int, num_columns: int, supported: bool = True) -> bool:
  """Whether `execution` ('auto', 'dense' or 'sparse') trains a rows x columns layout sparse.

  'auto' picks sparse for large layouts when the run is `supported` (see `unsupported_reason`).
  """
  if execution not in EXECUTIONS:
    raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
  if execution == "auto":
    return supported and num_rows * num_columns > AUTO_SPARSE_CELLS
  return execution == "sparse"


def unsupported_reason(model_config, train_config) -> str | None:
  """Why the sparse path cannot train this configuration, or None when it can."""
  if model_config.input_dropout:
    return "the sparse path does not support input_dropout"
  if train_config.strategy in SPARSE_UNSUPPORTED_STRATEGIES:
    return f"TensorFlow has no CSR kernels for the {train_config.strategy!r} strategy"
  if train_config.mixed_precision not in COMPUTE_DTYPES:
    return (f"the sparse path supports mixed_precision {sorted(COMPUTE_DTYPES)}, got "
            f"{train_config.mixed_precision!r}")
  return None


class SparseTrainer:
  """Runs optimizer steps and validation of an AutoRec on the sparse path under a strategy.

  Each step covers one group of `strategy.num_replicas_in_sync` row blocks, one per replica;
  replicas return gradients of their share, which are summed (`strategy.reduce` SUM) before one
  optimizer update of the (mirrored) variables. Full-batch training is a single group. On a
  single replica, a plain Keras Adam is applied by the fused `adam_step` and a plain Rprop by
  `rprop_updates` (same updates, less memory and time).
  """

  def __init__(self, model, sparse: SparseRows, strategy: tf.distribute.Strategy,
               batch_size: int = 0, compute_dtype: tf.DType = tf.float32,
               dense_density: float = DENSE_COLUMN_DENSITY):
    self.model = model
    self.strategy = strategy
    self.compute_dtype = compute_dtype
    with strategy.scope():  # Optimizer slots must mirror the variables they update.
      model.optimizer.build(model.trainable_variables)
    self.fused_adam = fusable_adam(model.optimizer, strategy)
    self.fused_rprop = fusable_rprop(model.optimizer, strategy)
    replicas = strategy.num_replicas_in_sync
    num_groups = 1 if not batch_size else max(1, math.ceil(sparse.num_rows / batch_size))
    ranges = row_blocks(sparse.num_rows, sparse.row_splits, num_groups * replicas)
    self.row_starts = [start for start, _ in ranges]
    cache_csr = replicas == 1 and sparse.nnz <= CSR_CACHE_RATINGS
    blocks = [make_block(sparse, start, end, dense_density, cache_csr) for start, end in ranges]
    self.groups = [blocks[g * replicas:(g + 1) * replicas] for g in range(num_groups)]
    # Blocks differ in size: one trace with unknown sizes serves them all.
    self._step = tf.function(self._step_fn, reduce_retracing=True)

  def _distribute(self, group: list[SparseBlock]):
    return self.strategy.experimental_distribute_values_from_function(
        lambda context: group[context.replica_id_in_sync_group].structure())

  def _step_fn(self, distributed_blocks, count):
    if self.fused_adam:
      squared_error = self.strategy.run(
          adam_step, args=(self.model, distributed_blocks, count, self.compute_dtype))
      return squared_error / count + l2_penalty(self.model)
    # 1 unless the optimizer scales the loss (a LossScaleOptimizer, or loss_scale_factor).
    loss_scale = self.model.optimizer.scale_loss(tf.constant(1.0))
    squared_error, gradients = self.strategy.run(
        squared_error_and_gradients,
        args=(self.model, distributed_blocks, count, 1.0 / self.strategy.num_replicas_in_sync,
              self.compute_dtype, loss_scale))
    squared_error = self.strategy.reduce(tf.distribute.ReduceOp.SUM, squared_error, axis=None)
    gradients = [self.strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None)
                 for g in gradients]
    if self.fused_rprop:
      rprop_updates(self.model.optimizer, gradients, self.model.trainable_variables)
    else:
      self.model.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
    return squared_error / count + l2_penalty(self.model)

  def run_epoch(self, rng: np.random.Generator | None = None,
                max_steps: int | None = None) -> float:
    """One pass over all groups (shuffled when rng is given), or its first max_steps; mean loss."""
    order = rng.permutation(len(self.groups)) if rng is not None else range(len(self.groups))
    losses = []
    for g in list(order)[:max_steps]:
      group = self.groups[g]
      count = tf.constant(float(sum(block.nnz for block in group)))
      losses.append(float(self._step(self._distribute(group), count)))
    return float(np.mean(losses))

  def predict_pairs(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Clipped predictions at (row, column) layout positions (all >= 0), block by block."""
    predictions = np.empty(rows.shape[0], dtype=np.float32)
    block_of = np.searchsorted(self.row_starts, rows, side="right") - 1
    blocks = [block for group in self.groups for block in group]
    for b, block in enumerate(blocks):
      pairs = np.flatnonzero(block_of == b)
      if pairs.size == 0:
        continue
      local_rows = (rows[pairs] - self.row_starts[b]).astype(np.int32)
      local_columns = columns[pairs].astype(np.int32)
      predictions[pairs] = self._predict(block.structure(), tf.constant(local_rows),
                                         tf.constant(local_columns)).numpy()
    return np.clip(predictions, *self.model.rating_scale)

  @tf.function
  def _predict(self, block_tensors, rows, columns):
    return reconstruct_pairs(self.model, block_tensors, rows, columns, self.compute_dtype)

  def rmse(self, targets: SparseRows) -> float:
    """RMSE of clipped predictions against held-out targets in the training layout."""
    predictions = self.predict_pairs(targets.row_index(), targets.columns)
    return float(np.sqrt(np.mean(np.square(targets.values - predictions))))


def fit_sparse(split: RatingsSplit, model_config: ModelConfig, train_config: TrainConfig,
               strategy: tf.distribute.Strategy | None = None,
               layout: RowLayout | None = None) -> TrainedModel:
  """`training.fit` on the sparse path: same early stopping, checkpoints and TrainedModel.

  `layout` is the training ratings' layout when already built (by the pipeline's Transform).
  """
  reason = unsupported_reason(model_config, train_config)
  if reason:
    raise ValueError(f"{reason}; use execution='dense'")
  start = time.time()
  keras.utils.set_random_seed(train_config.seed)
  strategy = strategy or distribution.make_strategy(train_config.strategy)
  layout = layout or build_layout(split.train, item_based=model_config.item_based)
  with strategy.scope():
    model = build_model(model_config, layout)
    optimizer = make_optimizer(train_config.optimizer, train_config.learning_rate)
    if train_config.mixed_precision == "float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer)
  trainer = SparseTrainer(model, layout.train, strategy, train_config.batch_size,
                          COMPUTE_DTYPES[train_config.mixed_precision])
  validation_targets, _ = layout.targets(split.validation)
  writers = loop.tensorboard_writers(train_config.model_dir)
  early_stopping = ResumableEarlyStopping(
      train_config.model_dir, train_config.patience, min_delta=train_config.min_delta,
      settings=checkpoint_settings(model_config, train_config, layout))
  with strategy.scope():
    initial_epoch = early_stopping.restore(model)
  model.stop_training = early_stopping.wait >= train_config.patience
  rng = np.random.default_rng(train_config.seed) if len(trainer.groups) > 1 else None
  loop.run_epochs(model, lambda: trainer.run_epoch(rng),
                  (lambda: trainer.rmse(validation_targets)) if validation_targets.nnz else None,
                  early_stopping, train_config.epochs, first_epoch=initial_epoch,
                  report=early_stopping.progress(train_config), writers=writers)
  return TrainedModel(model=model, layout=layout, history=early_stopping.history,
                      epochs_run=early_stopping.completed_epochs,
                      best_epoch=early_stopping.best_epoch + 1, seconds=time.time() - start)
