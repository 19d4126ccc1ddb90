"""BiasedMF: r_ui = mu + b_u + b_i + p_u . q_i, fitted full batch with early stopping on validation.

The objective is the mean squared error over training ratings plus

    l2_weight * mean over training ratings of (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2),

the usual per-rating regularisation of SGD matrix factorisation (frequent users and items are
regularised more), on the same mean-squared-error scale as AutoRec's loss.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from keras_autorec import lbfgs
from keras_autorec.data.ratings import Ratings
from keras_autorec.data.splits import RatingsSplit
from keras_autorec.training import loop
from keras_autorec.training.early_stopping import ResumableEarlyStopping

OPTIMIZERS = ("lbfgs", "adam")


@dataclasses.dataclass(frozen=True)
class BiasedMFConfig:
  """BiasedMF hyper-parameters and how to fit them.

  Attributes:
    factors: length of the user and item factor vectors.
    l2_weight: per-rating L2 weight on biases and factors (see the module docstring).
    optimizer: 'lbfgs' (full batch) or 'adam' (full-batch steps of size learning_rate).
    learning_rate: Adam's step size.
    epochs: most full-batch steps (L-BFGS iterations).
    patience: steps without a better validation RMSE before stopping; the best weights are kept.
    init_stddev: standard deviation of the normal initialiser of the factors.
    seed: seeds the initial factors.
  """

  factors: int = 50
  l2_weight: float = 0.05
  optimizer: str = "lbfgs"
  learning_rate: float = 0.01
  epochs: int = 1000
  patience: int = 20
  init_stddev: float = 0.1
  seed: int = 0


@keras.saving.register_keras_serializable(package="keras_autorec")
class BiasedMF(keras.Model):
  """Global mean plus user and item biases plus the dot product of user and item factors."""

  def __init__(self, num_users: int, num_items: int, factors: int, global_mean: float,
               init_stddev: float = 0.1, rating_scale=(1.0, 5.0), **kwargs):
    super().__init__(**kwargs)
    self.num_users, self.num_items, self.factors = int(num_users), int(num_items), int(factors)
    self.global_mean = float(global_mean)
    self.init_stddev = float(init_stddev)
    self.rating_scale = tuple(float(v) for v in rating_scale)
    def embedding(rows, width, initializer, name):
      return keras.layers.Embedding(rows, width, embeddings_initializer=initializer, name=name)

    normal = keras.initializers.RandomNormal(stddev=init_stddev)
    self.user_factors = embedding(num_users, factors, normal, "user_factors")
    self.item_factors = embedding(num_items, factors, normal, "item_factors")
    self.user_bias = embedding(num_users, 1, "zeros", "user_bias")
    self.item_bias = embedding(num_items, 1, "zeros", "item_bias")

  def call(self, pairs):
    """Unclipped predictions for int [n, 2] (user index, item index) pairs."""
    users, items = pairs[:, 0], pairs[:, 1]
    dot = tf.reduce_sum(self.user_factors(users) * self.item_factors(items), axis=1)
    biases = self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]
    return self.global_mean + biases + dot

  def penalty(self, pairs) -> tf.Tensor:
    """Mean over the pairs of the squared norms of their biases and factors."""
    users, items = pairs[:, 0], pairs[:, 1]
    norms = (tf.reduce_sum(tf.square(self.user_factors(users)), axis=1)
             + tf.reduce_sum(tf.square(self.item_factors(items)), axis=1)
             + tf.square(self.user_bias(users)[:, 0]) + tf.square(self.item_bias(items)[:, 0]))
    return tf.reduce_mean(norms)

  def predict_ratings(self, pairs) -> tf.Tensor:
    """Predictions clipped to the rating scale."""
    return tf.clip_by_value(self(pairs), *self.rating_scale)

  def get_config(self):
    return {**super().get_config(), "num_users": self.num_users, "num_items": self.num_items,
            "factors": self.factors, "global_mean": self.global_mean,
            "init_stddev": self.init_stddev, "rating_scale": list(self.rating_scale)}


@dataclasses.dataclass
class TrainedBiasedMF:
  """A fitted BiasedMF with its training record."""

  model: BiasedMF
  history: dict[str, list[float]]
  epochs_run: int
  best_epoch: int
  seconds: float


def _pairs(ratings: Ratings) -> tf.Tensor:
  return tf.constant(np.stack([ratings.user_index, ratings.item_index], axis=1), tf.int32)


def rmse(model: BiasedMF, ratings: Ratings) -> float:
  """RMSE of clipped predictions on `ratings`."""
  predictions = model.predict_ratings(_pairs(ratings)).numpy()
  return float(np.sqrt(np.mean(np.square(ratings.rating - predictions))))


def fit(split: RatingsSplit, config: BiasedMFConfig) -> TrainedBiasedMF:
  """Fits BiasedMF on `split.train`, early-stopping on `split.validation` RMSE."""
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")
  start = time.time()
  keras.utils.set_random_seed(config.seed)
  train = split.train
  model = BiasedMF(train.num_users, train.num_items, config.factors,
                   float(np.mean(train.rating)), config.init_stddev, train.rating_scale)
  pairs, targets = _pairs(train), tf.constant(train.rating, tf.float32)
  model(pairs[:1])
  validation_pairs = _pairs(split.validation)
  validation_targets = tf.constant(split.validation.rating, tf.float32)
  low, high = train.rating_scale

  def loss_fn():
    error = tf.reduce_mean(tf.square(targets - model(pairs)))
    return error + config.l2_weight * model.penalty(pairs)

  @tf.function
  def validation_rmse():
    predictions = tf.clip_by_value(model(validation_pairs), low, high)
    return tf.sqrt(tf.reduce_mean(tf.square(validation_targets - predictions)))

  if config.optimizer == "lbfgs":
    minimizer = lbfgs.LbfgsMinimizer(loss_fn, model.trainable_variables)
    step = minimizer.step
  else:
    optimizer = keras.optimizers.Adam(config.learning_rate)

    @tf.function
    def step():
      with tf.GradientTape() as tape:
        loss = loss_fn()
      optimizer.apply_gradients(
          zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
      return loss

  early_stopping = ResumableEarlyStopping(None, config.patience)
  model.stop_training = False
  loop.run_epochs(model, lambda: float(step()),
                  (lambda: float(validation_rmse())) if split.validation.num_ratings else None,
                  early_stopping, config.epochs,
                  converged=(lambda: minimizer.converged) if config.optimizer == "lbfgs" else None)
  _zero_unseen(model, train)
  return TrainedBiasedMF(model=model, history=early_stopping.history,
                         epochs_run=early_stopping.completed_epochs,
                         best_epoch=early_stopping.best_epoch + 1, seconds=time.time() - start)


def _zero_unseen(model: BiasedMF, train: Ratings) -> None:
  """Users and items without training ratings predict from the mean and the other side's bias."""
  for layers, index, size in (((model.user_factors, model.user_bias), train.user_index,
                               train.num_users),
                              ((model.item_factors, model.item_bias), train.item_index,
                               train.num_items)):
    seen = np.zeros(size, dtype=np.float32)
    seen[index] = 1.0
    for layer in layers:
      layer.embeddings.assign(layer.embeddings * seen[:, None])


def evaluate(trained: TrainedBiasedMF, split: RatingsSplit) -> dict:
  """Validation and test RMSE of a trained BiasedMF, with its training record."""
  return {"validation_rmse": rmse(trained.model, split.validation),
          "test_rmse": rmse(trained.model, split.test), "epochs_run": trained.epochs_run,
          "best_epoch": trained.best_epoch, "train_seconds": trained.seconds}
