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

from keras_autorec.implicit import losses
from keras_autorec.implicit.model import PlaylistAutoRec
from keras_autorec.training import loop
from keras_autorec.training.early_stopping import ResumableEarlyStopping

NEGATED_VALIDATION = "val_negated_objective"


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Model shape and training of a PlaylistAutoRec."""

  hidden_units: Sequence[int] = (256,)
  activation: str = "tanh"
  input_dropout: float = 0.5
  l2_weight: float = 0.0
  loss: str = "multinomial"
  zero_weight: float = losses.DEFAULT_ZERO_WEIGHT
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
  history: list[dict] = []

  def run_epoch() -> float:
    start, cpu_start = time.perf_counter(), time.process_time()
    order = rng.permutation(rows.shape[0])
    batch_losses = [float(step(to_sparse_tensor(rows[order[first:first + config.batch_size]])))
                    for first in range(0, order.size, config.batch_size)]
    history.append({"epoch": len(history) + 1, "loss": float(np.mean(batch_losses)),
                    "epoch_seconds": time.perf_counter() - start,
                    # All of the process' threads.
                    "epoch_cpu_seconds": time.process_time() - cpu_start})
    if validate is None:
      logging.info("epoch %d: %s", history[-1]["epoch"], history[-1])
    return history[-1]["loss"]

  def negated_validation() -> float:
    history[-1]["validation"] = validate(model)
    logging.info("epoch %d: %s", history[-1]["epoch"], history[-1])
    return -history[-1]["validation"]

  model.stop_training = False  # Keras' fit sets it; the loop reads it before any epoch.
  # The loop's early stopping keeps the lowest value: the validation metric, negated.
  early_stopping = ResumableEarlyStopping(None, config.patience, monitor=NEGATED_VALIDATION)
  loop.run_epochs(model, run_epoch, negated_validation if validate is not None else None,
                  early_stopping, config.epochs, validation_name=NEGATED_VALIDATION)
  return model, history
