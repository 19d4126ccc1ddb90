"""Hyper-parameter search on validation RMSE only; test ratings are scored once, for the choice.

Every candidate is fitted on a copy of the split whose test set is empty, so no search decision can
depend on test ratings; only the selected model is then evaluated on the real test set.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_autorec import training
from keras_autorec.baselines import biased_mf
from keras_autorec.data.splits import RatingsSplit

# The paper's grids (Sedhain et al. 2015, section 4): lambda and hidden units k.
PAPER_LAMBDAS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
PAPER_HIDDEN_UNITS = (10, 20, 40, 80, 100, 200, 300, 400, 500)


def paper_lambda_to_l2_weight(paper_lambda: float, num_train_ratings: int) -> float:
  """The l2_weight equal to the paper's lambda for N training ratings: lambda / (2 N).

  See `keras_autorec.losses`: the paper minimises sum_obs (y - h)^2 + lambda / 2 ||W||^2, and our
  loss is that objective divided by N.
  """
  return paper_lambda / (2.0 * num_train_ratings)


@dataclasses.dataclass(frozen=True)
class Trial:
  """One candidate's validation result."""

  params: dict[str, Any]
  validation_rmse: float
  best_epoch: int
  seconds: float


@dataclasses.dataclass
class TuningResult:
  """All trials, the selected one and the selected model's metrics (test scored only here)."""

  trials: list[Trial]
  best: Trial
  metrics: dict[str, Any]


def without_test(split: RatingsSplit) -> RatingsSplit:
  """The split with an empty test set, for fitting candidates."""
  return dataclasses.replace(split, test=split.test.subset(np.array([], dtype=np.int64)))


def grid_search(split: RatingsSplit, candidates: Sequence[tuple[dict[str, Any], Any]],
                fit: Callable[[RatingsSplit, Any], tuple[Any, float, int]],
                evaluate: Callable[[Any, RatingsSplit], dict[str, Any]]) -> TuningResult:
  """Fits every (params, config) candidate, keeps the lowest validation RMSE, then tests it once.

  `fit(split, config)` returns (trained, validation RMSE, best epoch) and only ever sees the split
  without its test ratings; `evaluate(trained, split)` scores the selected model on the real split.
  """
  if not candidates:
    raise ValueError("grid_search needs at least one candidate")
  search_split = without_test(split)
  trials, best_trained, best_trial = [], None, None
  for params, config in candidates:
    trained, validation_rmse, best_epoch = fit(search_split, config)
    trial = Trial(params=dict(params), validation_rmse=float(validation_rmse),
                  best_epoch=int(best_epoch), seconds=float(getattr(trained, "seconds", 0.0)))
    logging.info("Tuning %s: validation RMSE %.4f (best epoch %d)", params, validation_rmse,
                 best_epoch)
    trials.append(trial)
    # Ties keep the earlier candidate, so the order of the grid breaks them deterministically.
    if best_trial is None or trial.validation_rmse < best_trial.validation_rmse:
      best_trial, best_trained = trial, trained
  return TuningResult(trials=trials, best=best_trial, metrics=evaluate(best_trained, split))


def _fit_autorec(split: RatingsSplit, configs) -> tuple[training.TrainedModel, float, int]:
  model_config, train_config = configs
  trained = training.fit(split, model_config, train_config)
  return trained, min(trained.history.get("val_rmse", [np.inf])), trained.best_epoch


def tune_autorec(split: RatingsSplit, model_config: training.ModelConfig,
                 train_config: training.TrainConfig,
                 paper_lambdas: Sequence[float] = PAPER_LAMBDAS,
                 hidden_units: Sequence[int] = PAPER_HIDDEN_UNITS) -> TuningResult:
  """Grid search of AutoRec over the paper's lambda (as l2_weight) and one-layer k grids."""
  num_train = split.train.num_ratings
  candidates = []
  for units in hidden_units:
    for paper_lambda in paper_lambdas:
      l2_weight = paper_lambda_to_l2_weight(paper_lambda, num_train)
      candidates.append((
          {"hidden_units": units, "paper_lambda": paper_lambda, "l2_weight": l2_weight},
          (dataclasses.replace(model_config, hidden_units=(units,), l2_weight=l2_weight),
           train_config)))
  return grid_search(split, candidates, _fit_autorec,
                     lambda trained, full: training.evaluate(trained, full,
                                                             train_config.default_rating))


def _fit_biased_mf(split: RatingsSplit, config: biased_mf.BiasedMFConfig
                   ) -> tuple[biased_mf.TrainedBiasedMF, float, int]:
  trained = biased_mf.fit(split, config)
  return trained, min(trained.history.get("val_rmse", [np.inf])), trained.best_epoch


# Per-rating L2 weights around the usual SGD-MF values (0.02-0.1), extended on both sides.
BIASED_MF_FACTORS = (10, 50, 100)
BIASED_MF_L2_WEIGHTS = (0.03, 0.1, 0.3, 1.0)
BIASED_MF_OPTIMIZERS = ("lbfgs", "adam")


def tune_biased_mf(split: RatingsSplit, base: biased_mf.BiasedMFConfig = biased_mf.BiasedMFConfig(),
                   factors: Sequence[int] = BIASED_MF_FACTORS,
                   l2_weights: Sequence[float] = BIASED_MF_L2_WEIGHTS,
                   optimizers: Sequence[str] = BIASED_MF_OPTIMIZERS) -> TuningResult:
  """Grid search of BiasedMF over factors, per-rating l2_weight and optimiser."""
  candidates = [({"factors": k, "l2_weight": l2, "optimizer": optimizer},
                 dataclasses.replace(base, factors=k, l2_weight=l2, optimizer=optimizer))
                for optimizer in optimizers for k in factors for l2 in l2_weights]
  return grid_search(split, candidates, _fit_biased_mf, biased_mf.evaluate)
