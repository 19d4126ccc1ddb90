r"""RBM-CF (Salakhutdinov, Mnih and Hinton, ICML 2007): I-RBM and U-RBM, AutoRec's baselines.

A row (a user for U-RBM, an item for I-RBM, `item_based`) is one RBM whose visible units are
softmax units over the rating values, one for each column (item or user) the row rated in
training; all rows share the weights W [columns, values, hidden] and the biases b [columns,
values] and c [hidden]. With V the row's one-hot training ratings,

    p(h_j = 1 | V) = sigmoid(c_j + sum over rated columns i of W[i, r_i, j])
    p(v_q = k | h) = softmax_k(b[q, k] + sum_j h_j W[q, k, j])

Training is contrastive divergence on mini-batches of rows, CD-T with T growing over the epochs
(`cd_schedule`), with momentum, weight decay and a decaying learning rate; the negative phase
reconstructs only the row's rated columns. The prediction for (row, q) is the expected rating
under the visible softmax given V, the row's training ratings (never test ratings), in one of the
paper's two forms (`prediction`): the exact marginal

    p(v_q = k | V) proportional to exp(b[q, k]) prod_j (1 + exp(x_j + W[q, k, j])),
    x_j = c_j + sum over rated columns i of W[i, r_i, j],

or its one-step mean-field approximation p(v_q | p(h | V)). Pairs with an unseen user or item get the package's fallback (`keras_autorec.fallback`).
Ratings go to the nearest of lowest, lowest + rating_step, ..., highest; the data stay sparse (no
dense rows x columns x values tensor, even for a mini-batch).

  python -m keras_autorec.baselines.rbm --dataset=ml1m --data_dir=../shared/data --item_based
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_autorec import progress
from keras_autorec import fallback as fallback_lib
from keras_autorec.baselines import command, contrastive_divergence
from keras_autorec.data.ratings import Ratings
from keras_autorec.data.splits import RatingsSplit
from keras_autorec.training import loop
from keras_autorec.training.early_stopping import ResumableEarlyStopping

# Pairs scored per prediction batch: bounds the [pairs, values, hidden] weight gather.
PREDICT_BATCH_PAIRS = 8192
PREDICTIONS = ("exact", "mean_field")


@dataclasses.dataclass(frozen=True)
class RBMConfig:
  """RBM-CF hyper-parameters and how to fit them.

  Attributes:
    item_based: rows are items (I-RBM; visible units over users) instead of users (U-RBM).
    hidden_units: number of binary hidden units.
    learning_rate: step size on the batch-mean CD gradient in the first epoch.
    learning_rate_decay: the step size's factor per epoch (1: constant).
    momentum: momentum of the parameter increments.
    weight_decay: L2 coefficient pulling W towards 0 (not the biases).
    batch_rows: rows per mini-batch.
    cd_schedule: (first epoch, CD steps) pairs, first epoch ascending from 0: from that epoch on,
      CD uses that many Gibbs steps.
    rating_step: spacing of the rating values on the data's scale.
    epochs: most passes over the training rows.
    patience: epochs without a better validation RMSE before stopping; the best weights are kept.
    init_stddev: standard deviation of the normal initial weights.
    max_train_seconds: stop after the first epoch that ends past this wall time (None: no
      limit); the best validation weights so far are kept.
    prediction: "exact" (the marginal over the hidden units) or "mean_field" (p(v_q | p(h | V))),
      for validation and test alike.
    fallback: prediction for unseen users or items, one of `keras_autorec.fallback.FALLBACKS`.
    seed: seeds the initial weights, the row order and the Gibbs samples.
    verbose: the epoch progress of `keras_autorec.progress` (0: none).
  """

  item_based: bool = True
  hidden_units: int = 100
  learning_rate: float = 0.1
  learning_rate_decay: float = 1.0
  momentum: float = 0.9
  weight_decay: float = 0.001
  batch_rows: int = 100
  cd_schedule: tuple[tuple[int, int], ...] = ((0, 1), (10, 3), (20, 5))
  rating_step: float = 1.0
  epochs: int = 50
  patience: int = 5
  init_stddev: float = 0.1
  max_train_seconds: float | None = None
  prediction: str = "mean_field"
  fallback: str = "biases"
  seed: int = 0
  verbose: int = 0

  def cd_steps(self, epoch: int) -> int:
    """Gibbs steps of contrastive divergence in `epoch` (0-based)."""
    return max(steps for first, steps in self.cd_schedule if first <= epoch)

  def validate(self) -> None:
    """Raises ValueError naming the first bad field."""
    firsts = [first for first, _ in self.cd_schedule]
    if not firsts or firsts[0] != 0 or firsts != sorted(firsts):
      raise ValueError(f"cd_schedule must start at epoch 0 and ascend, got {self.cd_schedule}")
    if any(steps < 1 for _, steps in self.cd_schedule):
      raise ValueError(f"cd_schedule steps must be >= 1, got {self.cd_schedule}")
    for name in ("hidden_units", "batch_rows", "epochs", "patience"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if not self.rating_step > 0:
      raise ValueError(f"rating_step must be positive, got {self.rating_step}")
    if self.prediction not in PREDICTIONS:
      raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")


# Chosen on ML-1M seed 0's validation RMSE (benchmarks/README.md, "RBM-CF search"); the two
# differ only in learning rate.
DEFAULT_CHANGES = {
    True: dict(hidden_units=200, batch_rows=50, learning_rate=0.1, learning_rate_decay=0.9,
               weight_decay=0.003),
    False: dict(hidden_units=200, batch_rows=50, learning_rate=0.15, learning_rate_decay=0.9,
                weight_decay=0.003),
}


def default_config(item_based: bool, **changes) -> RBMConfig:
  """I-RBM's (item_based) or U-RBM's validation-chosen configuration, with `changes`."""
  return RBMConfig(item_based=item_based, **{**DEFAULT_CHANGES[item_based], **changes})


def rating_values(rating_scale: tuple[float, float], rating_step: float) -> np.ndarray:
  """The softmax's rating values: lowest, lowest + step, ..., highest (float32)."""
  low, high = rating_scale
  count = int(round((high - low) / rating_step)) + 1
  return (low + rating_step * np.arange(count)).astype(np.float32)


def rating_levels(rating: np.ndarray, values: np.ndarray) -> np.ndarray:
  """Index of the nearest rating value of each rating (int32)."""
  step = values[1] - values[0] if values.size > 1 else 1.0
  levels = np.rint((rating - values[0]) / step)
  return np.clip(levels, 0, values.size - 1).astype(np.int32)


class RBMCF(tf.Module):
  """The shared weights of RBM-CF and its prediction from the rows' training ratings.

  Args:
    num_rows: users (U-RBM) or items (I-RBM).
    num_columns: the other side.
    values: float32 [K] rating values of the softmax units.
    hidden_units: number of hidden units.
    item_based: rows are items; pairs given to `predict_ratings` are still (user, item).
    exact_prediction: predict with the exact marginal instead of the mean-field approximation.
  """

  def __init__(self, num_rows: int, num_columns: int, values: np.ndarray, hidden_units: int,
               item_based: bool, init_stddev: float = 0.1, seed: int = 0,
               exact_prediction: bool = False):
    super().__init__(name="rbm_cf")
    self.num_rows, self.num_columns = int(num_rows), int(num_columns)
    self.item_based = bool(item_based)
    self.exact_prediction = bool(exact_prediction)
    self.values = tf.constant(values, tf.float32)
    self.num_values = int(values.shape[0])
    initial = tf.random.stateless_normal(
        [self.num_columns * self.num_values, hidden_units], seed=[seed, 1], stddev=init_stddev)
    # Row c * K + k is W[c, k, :], so a rating's weights are one gather.
    self.weights = tf.Variable(initial, name="weights")
    self.visible_bias = tf.Variable(tf.zeros([self.num_columns, self.num_values]),
                                    name="visible_bias")
    self.hidden_bias = tf.Variable(tf.zeros([hidden_units]), name="hidden_bias")
    # The training ratings of every row, the input of every prediction.
    self.input_rows = tf.Variable(tf.zeros([0], tf.int32), shape=[None], trainable=False)
    self.input_units = tf.Variable(tf.zeros([0], tf.int32), shape=[None], trainable=False)
    self.stop_training = False  # Set by early stopping, as on a Keras model.

  @property
  def parameters(self) -> tuple[tf.Variable, tf.Variable, tf.Variable]:
    """W (rows c * K + k), b and c: what training updates."""
    return self.weights, self.visible_bias, self.hidden_bias

  def get_weights(self) -> list[np.ndarray]:
    """The parameters' values, as Keras' `get_weights` (what early stopping keeps)."""
    return [variable.numpy() for variable in self.parameters]

  def set_weights(self, values: list[np.ndarray]) -> None:
    for variable, value in zip(self.parameters, values):
      variable.assign(value)

  def set_inputs(self, rows: np.ndarray, columns: np.ndarray, levels: np.ndarray) -> None:
    """Makes these training ratings the visible input of every prediction."""
    self.input_rows.assign(rows.astype(np.int32))
    self.input_units.assign((columns * self.num_values + levels).astype(np.int32))

  def hidden_inputs(self, batch_rows, units, num_rows) -> tf.Tensor:
    """x = c + the rated units' weights [num_rows, hidden] for visible one-hot units."""
    total = tf.math.unsorted_segment_sum(tf.gather(self.weights, units), batch_rows, num_rows)
    return self.hidden_bias + total

  def hidden_probabilities(self, batch_rows, units, num_rows) -> tf.Tensor:
    """p(h = 1 | V) [num_rows, hidden] for visible one-hot units (row in batch, c * K + k)."""
    return tf.sigmoid(self.hidden_inputs(batch_rows, units, num_rows))

  def column_weights(self, columns, hidden_units) -> tf.Tensor:
    """W[q, k, :] of columns [n] as [n, K, hidden]."""
    return tf.reshape(tf.gather(tf.reshape(self.weights, [self.num_columns, -1]), columns),
                      [-1, self.num_values, hidden_units])

  def visible_logits(self, hidden, columns) -> tf.Tensor:
    """Softmax logits [n, K] of columns [n] given hidden states or probabilities [n, hidden]."""
    weights = self.column_weights(columns, tf.shape(hidden)[1])
    return tf.gather(self.visible_bias, columns) + tf.einsum("nkh,nh->nk", weights, hidden)

  def marginal_logits(self, hidden_inputs, columns) -> tf.Tensor:
    """Logits [n, K] of p(v_q = k | V) with the hidden units summed out, from x [n, hidden]."""
    weights = self.column_weights(columns, tf.shape(hidden_inputs)[1])
    inputs = hidden_inputs[:, None, :]
    # softplus(x) is the same for every k; taking it off keeps float32 sums of ~hidden terms small.
    gains = tf.reduce_sum(tf.nn.softplus(inputs + weights) - tf.nn.softplus(inputs), axis=2)
    return tf.gather(self.visible_bias, columns) + gains

  def expected_rating(self, logits) -> tf.Tensor:
    return tf.reduce_sum(tf.nn.softmax(logits) * self.values, axis=1)

  @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.int32)])
  def predict_ratings(self, pairs) -> tf.Tensor:
    """Expected ratings for int [n, 2] (user index, item index) pairs with known rows."""
    rows, columns = ((pairs[:, 1], pairs[:, 0]) if self.item_based else (pairs[:, 0], pairs[:, 1]))
    hidden = self.hidden_inputs(self.input_rows, self.input_units, self.num_rows)
    if not self.exact_prediction:
      hidden = tf.sigmoid(hidden)
    logits_of = self.marginal_logits if self.exact_prediction else self.visible_logits
    predictions = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
    n = tf.shape(rows)[0]
    for start in tf.range(0, n, PREDICT_BATCH_PAIRS):
      end = tf.minimum(start + PREDICT_BATCH_PAIRS, n)
      logits = logits_of(tf.gather(hidden, rows[start:end]), columns[start:end])
      predictions = predictions.write(start // PREDICT_BATCH_PAIRS, self.expected_rating(logits))
    return tf.reshape(predictions.concat(), [n])


@dataclasses.dataclass
class TrainedRBM:
  """A fitted RBM-CF with its fallback for unseen ids and its training record."""

  model: RBMCF
  fallback: fallback_lib.RatingBiases
  seen_users: np.ndarray
  seen_items: np.ndarray
  history: dict[str, list[float]]
  epochs_run: int
  best_epoch: int
  seconds: float

  def predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
    """Ratings for (user, item) index pairs; pairs with an unseen side take the fallback."""
    user_index, item_index = np.asarray(user_index), np.asarray(item_index)
    known = self.seen_users[user_index] & self.seen_items[item_index]
    predictions = self.fallback.predict(user_index, item_index)
    if known.any():
      pairs = np.stack([user_index[known], item_index[known]], axis=1).astype(np.int32)
      predictions[known] = np.clip(self.model.predict_ratings(tf.constant(pairs)).numpy(),
                                   *self.fallback.rating_scale)
    return predictions


def _orient(ratings: Ratings, item_based: bool) -> tuple[np.ndarray, np.ndarray]:
  return ((ratings.item_index, ratings.user_index) if item_based
          else (ratings.user_index, ratings.item_index))


def _seen(index: np.ndarray, size: int) -> np.ndarray:
  seen = np.zeros(size, dtype=bool)
  seen[index] = True
  return seen


def rmse(trained: TrainedRBM, ratings: Ratings) -> float:
  """RMSE of the predictions (with the fallback) on `ratings`."""
  predictions = trained.predict(ratings.user_index, ratings.item_index)
  return float(np.sqrt(np.mean(np.square(ratings.rating - predictions))))


def _build_model(train: Ratings, config: RBMConfig) -> tuple[RBMCF, np.ndarray, np.ndarray]:
  """A new RBM whose visible biases and input come from `train`; also its rows and units."""
  values = rating_values(train.rating_scale, config.rating_step)
  if values.size < 2:
    raise ValueError(f"rating_step {config.rating_step} leaves fewer than two rating values on "
                     f"the scale {train.rating_scale}")
  rows, columns = _orient(train, config.item_based)
  num_rows, num_columns = ((train.num_items, train.num_users) if config.item_based
                           else (train.num_users, train.num_items))
  model = RBMCF(num_rows, num_columns, values, config.hidden_units, config.item_based,
                config.init_stddev, config.seed, exact_prediction=config.prediction == "exact")
  levels = rating_levels(train.rating, values)
  units = columns.astype(np.int64) * values.size + levels
  model.visible_bias.assign(
      contrastive_divergence.initial_visible_bias(units, num_columns, values.size))
  model.set_inputs(rows, columns, levels)
  return model, rows, units


def fit(split: RatingsSplit, config: RBMConfig) -> TrainedRBM:
  """Fits RBM-CF on `split.train`, early-stopping on `split.validation` RMSE."""
  config.validate()
  if split.train.num_ratings == 0:
    raise ValueError("cannot fit an RBM without training ratings")
  start = time.time()
  train = split.train
  model, rows, units = _build_model(train, config)
  train_step = contrastive_divergence.make_train_step(
      model, contrastive_divergence.row_ragged(rows, units, model.num_rows), config.momentum,
      config.weight_decay, config.seed)
  trained = TrainedRBM(model, fallback_lib.make_fallback(config.fallback, train),
                       _seen(train.user_index, train.num_users),
                       _seen(train.item_index, train.num_items), {}, 0, 0, 0.0)
  rng = np.random.default_rng(config.seed)
  row_ids = np.unique(rows).astype(np.int32)
  epochs = itertools.count()

  def run_epoch() -> float:
    """One CD pass over the rows in mini-batches; returns the reconstruction RMSE."""
    epoch = next(epochs)
    cd_steps = tf.constant(config.cd_steps(epoch), tf.int32)
    learning_rate = tf.constant(config.learning_rate * config.learning_rate_decay**epoch)
    order = rng.permutation(row_ids)
    totals = [train_step(tf.constant(order[batch:batch + config.batch_rows]), cd_steps,
                         learning_rate) for batch in range(0, order.size, config.batch_rows)]
    squared_error, count = np.sum([[float(t) for t in total] for total in totals], axis=0)
    return float(np.sqrt(squared_error / count))

  early_stopping = ResumableEarlyStopping(None, config.patience)
  loop.run_epochs(
      model, run_epoch,
      (lambda: rmse(trained, split.validation)) if split.validation.num_ratings else None,
      early_stopping, config.epochs,
      report=progress.EpochProgress(config.epochs, config.verbose) if config.verbose else None,
      converged=lambda: (config.max_train_seconds is not None
                         and time.time() - start > config.max_train_seconds))
  trained.history = {"reconstruction_rmse": early_stopping.history["loss"],
                     "val_rmse": early_stopping.history.get("val_rmse", [])}
  trained.epochs_run = early_stopping.completed_epochs
  trained.best_epoch = (early_stopping.best_epoch + 1 if early_stopping.best_weights is not None
                        else trained.epochs_run)
  trained.seconds = time.time() - start
  return trained


def evaluate(trained: TrainedRBM, split: RatingsSplit) -> dict:
  """Validation and test RMSE of a trained RBM-CF, with its training record."""
  return {"validation_rmse": rmse(trained, split.validation),
          "test_rmse": rmse(trained, split.test), "epochs_run": trained.epochs_run,
          "best_epoch": trained.best_epoch, "train_seconds": trained.seconds}


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.getLogger().setLevel(logging.INFO)
  changes = {name: FLAGS[f"rbm_{name}"].value
             for name in ("hidden_units", "learning_rate", "prediction")
             if FLAGS[f"rbm_{name}"].value is not None}
  config = default_config(FLAGS.item_based, epochs=FLAGS.rbm_epochs,
                          max_train_seconds=FLAGS.rbm_max_train_seconds, verbose=2, **changes)
  name = "I-RBM" if config.item_based else "U-RBM"

  return command.run_repeats(
      name,
      lambda split, repeat: evaluate(
          fit(split, dataclasses.replace(config, seed=FLAGS.seed + repeat)), split),
      lambda m: (f"validation RMSE {m['validation_rmse']:.4f}, test RMSE {m['test_rmse']:.4f}, "
                 f"best epoch {m['best_epoch']} ({m['train_seconds']:.1f} s)"))


if __name__ == "__main__":
  command.define_flags()
  flags.DEFINE_bool("item_based", True, "I-RBM (rows are items) or, with --noitem_based, U-RBM.")
  flags.DEFINE_integer("rbm_hidden_units", None, "Hidden units (default: I- or U-RBM's chosen).")
  flags.DEFINE_float("rbm_learning_rate", None, "First epoch's learning rate (default: I- or "
                     "U-RBM's chosen).")
  flags.DEFINE_enum("rbm_prediction", None, PREDICTIONS, "exact: sum out the hidden units; "
                    "mean_field: one mean-field step (default: I- or U-RBM's chosen).")
  flags.DEFINE_integer("rbm_epochs", RBMConfig.epochs, "Most epochs (early stopping on "
                       "validation RMSE usually ends sooner).")
  flags.DEFINE_float("rbm_max_train_seconds", None, "Stop each fit after the first epoch that "
                     "ends past this wall time, keeping the best validation weights.")
  app.run(main)
