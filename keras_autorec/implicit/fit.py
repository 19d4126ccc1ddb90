"""Training a PlaylistAutoRec on binary rows, with early stopping on a validation metric."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from scipy import sparse

from keras_autorec.implicit.model import PlaylistAutoRec


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Model shape and training of a PlaylistAutoRec."""

  hidden_units: Sequence[int] = (256,)
  activation: str = "tanh"
  input_dropout: float = 0.5
  l2_weight: float = 0.0
  loss: str = "multinomial"
  zero_weight: float = 0.1
  learning_rate: float = 1e-3
  batch_size: int = 256
  epochs: int = 200
  patience: int = 10  # Epochs without a better validation metric before stopping.
  seed: int = 0


def to_sparse_tensor(rows: sparse.csr_matrix) -> tf.SparseTensor:
  """A CSR matrix as a tf.SparseTensor of float32 (row-major order)."""
  coo = rows.tocoo()
  indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
  return tf.SparseTensor(indices, coo.data.astype(np.float32), coo.shape)


def predict_scores(model: PlaylistAutoRec, rows: sparse.csr_matrix) -> np.ndarray:
  """Scores [rows, num_items] of every catalog item for each row."""
  return model(to_sparse_tensor(rows), training=False).numpy()


class ModelScorer:
  """A trained model as a scorer of CSR rows (`keras_autorec.implicit.ranking.Scorer`)."""

  def __init__(self, model: PlaylistAutoRec):
    self.model = model

  def __call__(self, rows: sparse.csr_matrix) -> np.ndarray:
    return predict_scores(self.model, rows)


def _train_step(model: PlaylistAutoRec, optimizer):
  spec = tf.SparseTensorSpec([None, model.num_items], tf.float32)

  @tf.function(input_signature=[spec], autograph=False)
  def step(inputs):
    with tf.GradientTape() as tape:
      loss = model.compute_row_loss(inputs, training=True)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
    return loss

  return step


def fit(train: sparse.csr_matrix, config: FitConfig,
        validate: Callable[[PlaylistAutoRec], float] | None = None
        ) -> tuple[PlaylistAutoRec, list[dict]]:
  """The model trained on `train` rows; with `validate` (higher is better) the best epoch's
  weights are kept and training stops after `patience` epochs without improvement."""
  keras.utils.set_random_seed(config.seed)
  model = PlaylistAutoRec(train.shape[1], config.hidden_units, config.activation,
                          config.input_dropout, config.l2_weight, config.loss,
                          config.zero_weight)
  optimizer = keras.optimizers.Adam(config.learning_rate)
  step = _train_step(model, optimizer)
  rng = np.random.default_rng(config.seed)
  rows = train[np.flatnonzero(np.diff(train.indptr) > 0)]
  history, best, best_weights, stale = [], -np.inf, None, 0
  for epoch in range(1, config.epochs + 1):
    start, cpu_start = time.perf_counter(), time.process_time()
    order = rng.permutation(rows.shape[0])
    losses = [float(step(to_sparse_tensor(rows[order[first:first + config.batch_size]])))
              for first in range(0, order.size, config.batch_size)]
    record = {"epoch": epoch, "loss": float(np.mean(losses)),
              "epoch_seconds": time.perf_counter() - start,
              "epoch_cpu_seconds": time.process_time() - cpu_start}  # all of the process' threads
    if validate is not None:
      record["validation"] = validate(model)
    history.append(record)
    logging.info("epoch %d: %s", epoch, record)
    if validate is None:
      continue
    if record["validation"] > best:
      best, best_weights, stale = record["validation"], model.get_weights(), 0
    else:
      stale += 1
      if stale >= config.patience:
        break
  if best_weights is not None:
    model.set_weights(best_weights)
  return model, history
