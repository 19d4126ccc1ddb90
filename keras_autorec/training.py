"""Training: build, fit with resumable early stopping on validation RMSE, and evaluate."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_autorec import blend as blend_lib
from keras_autorec import distribution, progress
from keras_autorec import fallback as fallback_lib
from keras_autorec.data import input as data_input
from keras_autorec.data.layout import RowLayout, build_layout
from keras_autorec.data.splits import RatingsSplit, merge_validation_into_train
from keras_autorec.evaluation import evaluate_ratings
from keras_autorec.model import AutoRec, rating_metrics
from keras_autorec.optimizers import make_optimizer

# The paper's lambda, chosen on validation RMSE on ML-100K and ML-1M (see README, Results): as a
# per-rating weight (lambda / 2N) it is 1.2e-3 on ML-100K and 1.2e-4 on ML-1M; one fixed per-rating
# weight cannot suit both (1.2e-3 under-fits ML-1M: 0.887 validation RMSE against 0.838).
DEFAULT_L2_LAMBDA = 200.0
# lambda / (2 N) was validated from 72k (ML-100K folds) to 810k (ML-1M) training ratings. On a few
# hundred ratings it would be a per-rating weight of 0.2, which under-fits (a 486-rating data set:
# test RMSE 1.19 against 1.04 for 0.9x the ratings' standard deviation); smaller data sets get the
# weight of this many ratings, 2e-3 at the default lambda, near the 1.2e-3 they used to have.
L2_LAMBDA_MIN_RATINGS = 50_000


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The AutoRec architecture; see `keras_autorec.model.AutoRec` for the other fields.

  Attributes:
    l2_lambda: the paper's lambda, whose objective is the summed squared error over the N
      training ratings + lambda / 2 * ||W||^2: the model's per-rating `l2_weight` is
      lambda / (2 N) (`keras_autorec.losses`), so one lambda suits data sets of different sizes;
      N is taken as at least L2_LAMBDA_MIN_RATINGS. Used when `l2_weight` is None.
    l2_weight: the per-rating L2 weight itself, whatever N; None derives it from `l2_lambda`.
  """

  item_based: bool = True
  hidden_units: tuple[int, ...] = (500,)
  encoder_activation: str = "sigmoid"
  decoder_activation: str = "identity"
  l2_lambda: float = DEFAULT_L2_LAMBDA
  l2_weight: float | None = None
  input_dropout: float = 0.0
  init_stddev: float | None = None

  def __post_init__(self):
    for name in ("l2_lambda", "l2_weight"):
      value = getattr(self, name)
      if value is not None and not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {value}")

  def l2_weight_for(self, num_train_ratings: int) -> float:
    """The per-rating L2 weight of a model trained on `num_train_ratings` ratings."""
    if self.l2_weight is not None:
      return float(self.l2_weight)
    return self.l2_lambda / (2.0 * max(L2_LAMBDA_MIN_RATINGS, num_train_ratings))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to fit a model.

  Attributes:
    optimizer: one of `keras_autorec.optimizers.OPTIMIZERS`, or 'lbfgs' (full batch).
    learning_rate: the optimizer's step size (Rprop: the initial per-weight step).
    epochs: the most epochs to run; with full batches an epoch is one step.
    batch_size: rows per step; 0 means every row in one step (full batch, the paper's setting).
    patience: epochs without a validation RMSE `min_delta` below the last such improvement before
      stopping; the best weights are kept.
    min_delta: the smallest drop of validation RMSE that resets the patience, so that a run
      creeping down a plateau (by 1e-5 an epoch) stops instead of running to `epochs`.
    mixed_precision: 'off', 'float16' or 'bfloat16'.
    strategy: a tf.distribute strategy name (see `keras_autorec.distribution`).
    model_dir: where checkpoints and TensorBoard logs go; a run started again on the same
      model_dir resumes after the last completed epoch. None trains without checkpoints.
    seed: seeds weights, dropout and the shuffling of rows.
    fallback: prediction for pairs whose user or item has no training ratings: 'biases' (the
      known side's shrunk mean, `keras_autorec.fallback`) or 'constant' (`default_rating`, the
      paper's choice).
    default_rating: the 'constant' fallback's rating.
    verbose: 0 silent; 1 a live progress line on a terminal, else one line per epoch; 2 one
      line per epoch (`keras_autorec.progress`).
    execution: 'dense', 'sparse' (O(nnz x k) epochs, `keras_autorec.sparse`) or 'auto' (sparse
      when the rows x columns matrix has over `sparse.AUTO_SPARSE_CELLS` cells and the sparse
      path supports the configuration).
    blend: blend AutoRec with user and item biases by the row's training count, the blend
      fitted on validation ratings (`keras_autorec.blend`); False scores AutoRec alone (the
      paper).
  """

  optimizer: str = "rprop"
  learning_rate: float = 0.01
  epochs: int = 500
  batch_size: int = 0
  patience: int = 30
  min_delta: float = 1e-4
  mixed_precision: str = "off"
  strategy: str = "default"
  model_dir: str | None = None
  seed: int = 0
  fallback: str = "biases"
  default_rating: float = 3.0
  verbose: int = 1
  execution: str = "auto"
  blend: bool = True


@dataclasses.dataclass
class TrainedModel:
  """A fitted model with the layout it was trained on, its training record and its fallback.

  `fallback` predicts the pairs the model cannot (a user or item without training ratings),
  fitted on the same training ratings; None predicts the default rating.
  """

  model: AutoRec
  layout: RowLayout
  history: dict[str, list[float]]
  epochs_run: int
  best_epoch: int
  seconds: float
  blend: blend_lib.RatingBlend | None = None  # applied to the model's ratings where set
  fallback: fallback_lib.RatingBiases | None = None


class CheckpointMismatchError(ValueError):
  """A model_dir's checkpoint does not fit the model being trained: the message says why."""


def checkpoint_settings(model_config: ModelConfig, train_config: TrainConfig,
                        layout: RowLayout) -> dict:
  """The settings a checkpoint is only valid for: architecture, data shape and optimizer."""
  return {**dataclasses.asdict(model_config), "num_rows": layout.num_rows,
          "num_columns": layout.num_columns, "optimizer": train_config.optimizer,
          "mixed_precision": train_config.mixed_precision}


def build_model(config: ModelConfig, layout: RowLayout) -> AutoRec:
  """An AutoRec sized for `layout`, built so that its weights exist."""
  model = AutoRec(num_inputs=layout.num_columns, item_based=config.item_based,
                  hidden_units=config.hidden_units,
                  encoder_activation=config.encoder_activation,
                  decoder_activation=config.decoder_activation,
                  l2_weight=config.l2_weight_for(layout.train.nnz),
                  input_dropout=config.input_dropout, rating_scale=layout.rating_scale,
                  init_stddev=config.init_stddev)
  model(tf.zeros((1, layout.num_columns)))
  return model


class ResumableEarlyStopping(keras.callbacks.Callback):
  """Early stopping on validation RMSE whose state, like the weights, survives a crash.

  It stops after `patience` epochs without a value `min_delta` below the last value that was;
  the weights of the lowest value are restored at the end.

  After every epoch it writes a checkpoint of the model and the optimizer's state, the best weights so far
  and a small JSON state (epoch, best RMSE, history, the `settings` it was made with). `restore()`
  before `fit` picks all of that up again, so a killed run resumes after its last completed epoch;
  a checkpoint made with other settings is a CheckpointMismatchError naming them.
  """

  def __init__(self, model_dir: str | None, patience: int, monitor: str = "val_rmse",
               min_delta: float = 0.0, settings: dict | None = None):
    super().__init__()
    self.model_dir = model_dir
    # Through JSON so that tuples compare equal to the lists a saved state holds.
    self.settings = json.loads(json.dumps(settings or {}))
    self.patience = patience
    self.monitor = monitor
    self.min_delta = min_delta
    self.best_value = np.inf
    self.reference_value = np.inf  # The value at the last drop of at least min_delta.
    self.best_epoch = -1
    self.best_weights = None
    self.wait = 0
    self.history: dict[str, list[float]] = {}
    self.completed_epochs = 0

  def _paths(self):
    return (os.path.join(self.model_dir, "training_state.json"),
            os.path.join(self.model_dir, "best_weights.npz"))

  def restore(self, model) -> int:
    """Loads a previous run's state from model_dir into `model`; returns epochs already done."""
    if self.model_dir is None:
      return 0
    state_path, best_path = self._paths()
    if not os.path.exists(state_path):
      return 0
    with open(state_path) as f:
      state = json.load(f)
    self._check_settings(state.get("settings", {}))
    try:
      # Built first: the weights file holds the optimizer's variables too, and an unbuilt
      # optimizer (no slots yet) would skip them with a warning.
      model.optimizer.build(model.trainable_variables)
      model.load_weights(os.path.join(self.model_dir, state["checkpoint"] + ".weights.h5"))
      with np.load(os.path.join(self.model_dir, state["checkpoint"] + ".optimizer.npz")) as saved:
        for index, variable in enumerate(model.optimizer.variables):
          variable.assign(saved[f"v{index}"])
    except (ValueError, KeyError, OSError) as error:
      reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
      raise CheckpointMismatchError(
          f"--model_dir {self.model_dir}: its checkpoint {state['checkpoint']} does not fit this "
          f"model ({reason}); resume with the settings it was made with, or pass a new "
          "--model_dir to start afresh") from error
    self.best_value = state["best_value"]
    self.reference_value = state.get("reference_value", self.best_value)
    self.best_epoch = state["best_epoch"]
    self.wait = state["wait"]
    self.history = state["history"]
    self.completed_epochs = state["epoch"]
    if os.path.exists(best_path):
      with np.load(best_path) as saved:
        self.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]
    logging.info("Resuming from %s after epoch %d (best %s %.4f at epoch %d)", self.model_dir,
                 self.completed_epochs, self.monitor, self.best_value, self.best_epoch + 1)
    return self.completed_epochs

  def _check_settings(self, saved: dict) -> None:
    differences = [f"{key} is {saved[key]!r} there but {self.settings[key]!r} now"
                   for key in sorted(self.settings.keys() & saved.keys())
                   if saved[key] != self.settings[key]]
    if differences:
      raise CheckpointMismatchError(
          f"--model_dir {self.model_dir} holds a checkpoint made with other settings: "
          f"{'; '.join(differences)}. Resume with the checkpoint's settings, or pass a new "
          "--model_dir to start afresh.")

  def progress(self, train_config: TrainConfig) -> progress.EpochProgress:
    """The epoch report of a fit under `train_config`, carrying on from any restored best."""
    return progress.EpochProgress(train_config.epochs, train_config.verbose, self.monitor,
                                  best=(self.best_value, self.best_epoch))

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    for key, value in logs.items():
      self.history.setdefault(key, []).append(float(value))
    self.completed_epochs = epoch + 1
    value = logs.get(self.monitor)
    if value is not None:
      if value < self.best_value:
        self.best_value, self.best_epoch = float(value), epoch
        self.best_weights = self.model.get_weights()
        if self.model_dir is not None:
          self._write_best_weights()
      if value < self.reference_value - self.min_delta:
        self.reference_value, self.wait = float(value), 0
      else:
        self.wait += 1
        if self.wait >= self.patience:
          self.model.stop_training = True
    if self.model_dir is not None:
      self._write_state()

  def on_train_end(self, logs=None):
    if self.best_weights is not None:
      self.model.set_weights(self.best_weights)

  def _write_best_weights(self):
    _, best_path = self._paths()
    partial = best_path.replace(".npz", ".partial.npz")
    np.savez(partial, **{f"w{i}": w for i, w in enumerate(self.best_weights)})
    os.replace(partial, best_path)

  def _write_state(self):
    checkpoint = f"checkpoint-{self.completed_epochs}"
    checkpoint_path = os.path.join(self.model_dir, checkpoint)
    self.model.save_weights(checkpoint_path + ".weights.h5")
    # The optimizer's variables (step count and slots) in their creation order.
    np.savez(checkpoint_path + ".optimizer.npz",
             **{f"v{i}": v.numpy() for i, v in enumerate(self.model.optimizer.variables)})
    state_path, _ = self._paths()
    previous = self._read_checkpoint_name(state_path)
    state = {"epoch": self.completed_epochs, "checkpoint": checkpoint,
             "best_value": self.best_value, "reference_value": self.reference_value,
             "best_epoch": self.best_epoch, "wait": self.wait,
             "history": self.history, "settings": self.settings}
    with open(state_path + ".partial", "w") as f:
      json.dump(state, f)
    # The state names a checkpoint that is complete on disk, so a crash at any point leaves
    # either the previous or the new state, never a state pointing at a partial checkpoint.
    os.replace(state_path + ".partial", state_path)
    if previous and previous != checkpoint:
      for suffix in (".weights.h5", ".optimizer.npz"):
        path = os.path.join(self.model_dir, previous + suffix)
        if os.path.exists(path):
          os.remove(path)

  @staticmethod
  def _read_checkpoint_name(state_path: str) -> str | None:
    if not os.path.exists(state_path):
      return None
    with open(state_path) as f:
      return json.load(f)["checkpoint"]


def fit(split: RatingsSplit, model_config: ModelConfig, train_config: TrainConfig,
        strategy: tf.distribute.Strategy | None = None) -> TrainedModel:
  """Trains AutoRec on `split.train`, early-stopping on `split.validation` RMSE."""
  fallback = fallback_lib.make_fallback(train_config.fallback, split.train,
                                        train_config.default_rating)
  return dataclasses.replace(_fit_model(split, model_config, train_config, strategy),
                             fallback=fallback)


def _fit_model(split: RatingsSplit, model_config: ModelConfig, train_config: TrainConfig,
               strategy: tf.distribute.Strategy | None) -> TrainedModel:
  if train_config.optimizer == "lbfgs":
    # L-BFGS needs the whole objective at every line-search point, so it runs its own loop.
    from keras_autorec import lbfgs
    return lbfgs.fit_lbfgs(split, model_config, train_config)
  from keras_autorec import sparse  # Imported here: sparse builds on this module.
  if sparse.use_sparse(train_config.execution, split.train.num_items, split.train.num_users,
                       supported=sparse.unsupported_reason(model_config, train_config) is None):
    return sparse.fit_sparse(split, model_config, train_config, strategy)
  start = time.time()
  keras.utils.set_random_seed(train_config.seed)
  distribution.set_mixed_precision(train_config.mixed_precision)
  strategy = strategy or distribution.make_strategy(train_config.strategy)
  layout = build_layout(split.train, item_based=model_config.item_based)
  with strategy.scope():
    model = build_model(model_config, layout)
    model.compile(optimizer=make_optimizer(train_config.optimizer, train_config.learning_rate),
                  weighted_metrics=rating_metrics(layout.rating_scale))
  batch_size = train_config.batch_size or layout.num_rows
  validation_targets, _ = layout.targets(split.validation)
  replicas = strategy.num_replicas_in_sync
  validation = (data_input.evaluation_dataset(layout.train, validation_targets, batch_size,
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
    model.fit(data_input.training_dataset(layout.train, batch_size, seed=train_config.seed,
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


def fit_on_train_and_validation(split: RatingsSplit, model_config: ModelConfig,
                                train_config: TrainConfig, epochs: int) -> TrainedModel:
  """Trains afresh on train + validation for `epochs` epochs (a count chosen on validation).

  The final model then learns from every rating that is not test, and no decision is taken on
  test. Checkpoints go to `model_dir/refit`, apart from the early-stopping run's.
  """
  model_dir = train_config.model_dir and os.path.join(train_config.model_dir, "refit")
  progress.announce(f"refitting on train + validation for {max(1, epochs)} epoch"
                    + ("s" if epochs > 1 else ""), train_config.verbose)
  return fit(merge_validation_into_train(split), model_config,
             dataclasses.replace(train_config, epochs=max(1, epochs), model_dir=model_dir))


def evaluate(trained: TrainedModel, split: RatingsSplit, default_rating: float = 3.0) -> dict:
  """Validation and test RMSE/MAE of a trained model, with the count and RMSE of fallbacks.

  Pairs with a user or item unseen in training get `trained.fallback`'s prediction, or
  `default_rating` when it has none.
  """
  metrics = {}
  for name, ratings in (("validation", split.validation), ("test", split.test)):
    errors = evaluate_ratings(trained.model, trained.layout, ratings, default_rating,
                              fallback=trained.fallback, blend=trained.blend)
    metrics.update(errors.as_dict(name))
    noise_floor = ratings.noise_floor_rmse()
    if noise_floor is not None:
      metrics[f"{name}_noise_floor_rmse"] = noise_floor
  metrics.update(epochs_run=trained.epochs_run, best_epoch=trained.best_epoch,
                 train_seconds=trained.seconds, train_ratings=split.train.num_ratings)
  return metrics


def _autorec_alone(trained: TrainedModel, split: RatingsSplit, default_rating: float,
                   name: str) -> dict:
  """`{name}_rmse_autorec_alone`: the unblended model's RMSE, for comparison only."""
  ratings = split.validation if name == "validation" else split.test
  errors = evaluate_ratings(trained.model, trained.layout, ratings, default_rating)
  return {f"{name}_rmse_autorec_alone": errors.rmse}


def fit_and_evaluate(split: RatingsSplit, model_config: ModelConfig, train_config: TrainConfig,
                     refit: bool = True) -> tuple[TrainedModel, dict]:
  """Early-stops on validation, optionally refits on train + validation; returns model, metrics.

  Validation metrics are the early-stopped model's. Test metrics are the returned model's: with
  `refit`, one trained afresh on train + validation for the early-stopped number of epochs.
  With `train_config.blend`, the rare-rows blend is fitted on the early-stopped model's validation
  predictions and every reported RMSE is blended; the validation metrics are then two-fold
  cross-fitted (`blend.cross_fitted_errors`), `validation_rmse_in_sample` is the optimistic
  figure of the blend scored where it was fitted, and `*_rmse_autorec_alone` are the model's
  alone, for comparison.
  """
  trained = fit(split, model_config, train_config)
  if train_config.blend and split.validation.num_ratings:
    trained.blend = blend_lib.fit_rating_blend(trained.model, trained.layout, split.validation)
  metrics = evaluate(trained, split, train_config.default_rating)
  if trained.blend is not None:
    metrics.update(_autorec_alone(trained, split, train_config.default_rating, "validation"),
                   blend_offset=trained.blend.count_blend.offset,
                   blend_slope=trained.blend.count_blend.slope)
    cross_fitted = blend_lib.cross_fitted_errors(trained.model, trained.layout, split.validation,
                                                 train_config.default_rating, trained.fallback)
    if cross_fitted is not None:
      metrics.update(validation_rmse_in_sample=metrics["validation_rmse"],
                     **cross_fitted.as_dict("validation"))
  if not refit or split.validation.num_ratings == 0:
    if trained.blend is not None:
      metrics.update(_autorec_alone(trained, split, train_config.default_rating, "test"))
    return trained, metrics
  refitted = fit_on_train_and_validation(split, model_config, train_config, trained.best_epoch)
  if trained.blend is not None:
    # The weights chosen on validation, over biases and counts of the refit's training ratings.
    refitted.blend = blend_lib.for_layout(trained.blend.count_blend, refitted.layout)
  refit_metrics = evaluate(refitted, split, train_config.default_rating)
  metrics.update({key: value for key, value in refit_metrics.items() if key.startswith("test_")})
  if refitted.blend is not None:
    metrics.update(_autorec_alone(refitted, split, train_config.default_rating, "test"))
  metrics.update(refit_epochs=refitted.epochs_run,
                 train_seconds=metrics["train_seconds"] + refitted.seconds)
  return refitted, metrics
