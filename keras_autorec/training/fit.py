"""`fit` (dispatch to a trainer), the refit on train + validation, and evaluation."""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from keras_autorec import blend as blend_lib
from keras_autorec import fallback as fallback_lib
from keras_autorec import progress
from keras_autorec.config import DEFAULT_RATING, ModelConfig, TrainConfig
from keras_autorec.data.layout import RowLayout
from keras_autorec.data.splits import RatingsSplit, merge_validation_into_train
from keras_autorec.evaluation import evaluate_ratings
from keras_autorec.training import dense, lbfgs
from keras_autorec.training.sparse import trainer as sparse_trainer
from keras_autorec.training.trained_model import TrainedModel


def fit(split: RatingsSplit, model_config: ModelConfig, train_config: TrainConfig,
        strategy: tf.distribute.Strategy | None = None,
        layout: RowLayout | None = None) -> TrainedModel:
  """Trains AutoRec on `split.train`, early-stopping on `split.validation` RMSE.

  Dispatches to the L-BFGS, sparse or dense trainer. `layout` is `split.train`'s layout when
  already built (the pipeline's Transform builds it); else it is built here.
  """
  fallback = fallback_lib.make_fallback(train_config.fallback, split.train,
                                        train_config.default_rating)
  return dataclasses.replace(_fit_model(split, model_config, train_config, strategy, layout),
                             fallback=fallback)


def _fit_model(split: RatingsSplit, model_config: ModelConfig, train_config: TrainConfig,
               strategy: tf.distribute.Strategy | None, layout: RowLayout | None) -> TrainedModel:
  if train_config.optimizer == "lbfgs":
    # L-BFGS needs the whole objective at every line-search point, so it runs its own loop.
    return lbfgs.fit_lbfgs(split, model_config, train_config, layout=layout)
  if sparse_trainer.use_sparse(
      train_config.execution, split.train.num_items, split.train.num_users,
      supported=sparse_trainer.unsupported_reason(model_config, train_config) is None):
    return sparse_trainer.fit_sparse(split, model_config, train_config, strategy, layout)
  return dense.fit_dense(split, model_config, train_config, strategy, layout)


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


def evaluate(trained: TrainedModel, split: RatingsSplit,
             default_rating: float = DEFAULT_RATING) -> dict:
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
