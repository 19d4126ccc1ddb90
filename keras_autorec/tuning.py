"""Hyper-parameter search with KerasTuner on validation RMSE only; test is scored once, at the end.

Every trial is fitted on a copy of the split whose test set is empty, so no search decision can
depend on test ratings. KerasTuner's oracles (grid, random, Bayesian) choose the trials and store
them under a project directory: a search started again on the same directory resumes after its
last completed trial, and the same search can run on several machines (one chief oracle, several
workers; see README.md, "Tuning").
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras_tuner
import numpy as np

from keras_autorec import training
from keras_autorec.baselines import biased_mf
from keras_autorec.data.splits import RatingsSplit

# The paper's grids (Sedhain et al. 2015, section 4): lambda and hidden units k.
PAPER_LAMBDAS = (0.001, 0.01, 0.1, 1.0, 100.0, 1000.0)
PAPER_HIDDEN_UNITS = (10, 20, 40, 80, 100, 200, 300, 400, 500)
# The default search: lambda and k around what had the best validation RMSE on both ML-100K and
# ML-1M (lambda 200-300, k 500; README, "Tuning"). Six points, so the default --max_trials tries
# them all (on ML-1M about 2-3 minutes each); the paper's grids stay reachable through the flags.
DEFAULT_LAMBDAS = (100.0, 200.0, 300.0)
DEFAULT_HIDDEN_UNITS = (400, 500)
DEFAULT_MAX_TRIALS = len(DEFAULT_LAMBDAS) * len(DEFAULT_HIDDEN_UNITS)
ORACLES = ("grid", "random", "bayesian")
OBJECTIVE = keras_tuner.Objective("validation_rmse", direction="min")


@dataclasses.dataclass(frozen=True)
class Trial:
  """One trial's hyper-parameters and validation result (NaN when it did not complete)."""

  trial_id: str
  status: str
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


class ResumableGridSearchOracle(keras_tuner.oracles.GridSearchOracle):
  """KerasTuner's grid oracle that continues the grid after a reload.

  KerasTuner 1.4's grid oracle keeps the order of the grid's tried points only in memory, so a
  reloaded search thinks the grid is exhausted. Rebuilding it from the stored trials resumes it.
  """

  def reload(self):
    super().reload()
    by_values = functools.cmp_to_key(
        lambda a, b: self._compare(self.trials[a].hyperparameters.values,
                                   self.trials[b].hyperparameters.values))
    self._ordered_ids = type(self._ordered_ids)()
    for trial_id in sorted(self.trials, key=by_values):
      self._ordered_ids.insert(trial_id)
    # Every stored point may be followed by an untried one; tried ones are skipped.
    self._populate_next = list(self.start_order)


class DistinctBayesianOptimizationOracle(keras_tuner.oracles.BayesianOptimizationOracle):
  """KerasTuner's Bayesian oracle that never proposes a point it has tried.

  Over discrete choices the Gaussian process's optimum often rounds to a tried point, which
  KerasTuner 1.4 fits again; a random untried point is more useful for the same budget.
  """

  def populate_space(self, trial_id):
    response = super().populate_space(trial_id)
    if response["values"] is not None and self._duplicate(response["values"]):
      return self._random_populate_space()
    return response


def make_oracle(name: str, hyperparameters: keras_tuner.HyperParameters,
                max_trials: int | None, seed: int = 0) -> keras_tuner.Oracle:
  """KerasTuner's grid, random or Bayesian oracle minimising validation RMSE over the space.

  The grid oracle stops when the grid is exhausted or after `max_trials` (None: the whole grid);
  the random and Bayesian oracles need `max_trials`.
  """
  if name == "grid":
    return ResumableGridSearchOracle(objective=OBJECTIVE, max_trials=max_trials,
                                     hyperparameters=hyperparameters, seed=seed)
  if not max_trials:
    raise ValueError(f"the {name} oracle needs max_trials >= 1, got {max_trials}")
  if name == "random":
    return keras_tuner.oracles.RandomSearchOracle(objective=OBJECTIVE, max_trials=max_trials,
                                                  hyperparameters=hyperparameters, seed=seed)
  if name == "bayesian":
    # KerasTuner's default, 3 random trials per hyper-parameter (fixed ones included), would
    # spend a small budget on random trials alone; start the Gaussian process at half of it.
    varying = sum(len(getattr(hp, "values", ())) > 1 for hp in hyperparameters.space)
    return DistinctBayesianOptimizationOracle(
        objective=OBJECTIVE, max_trials=max_trials, hyperparameters=hyperparameters, seed=seed,
        num_initial_points=max(3, min(3 * varying, max_trials // 2)))
  raise ValueError(f"oracle must be one of {ORACLES}, got {name!r}")


# fit(split without test ratings, the trial's hyper-parameter values) ->
# (trained model, validation RMSE, best epoch).
FitFunction = Callable[[RatingsSplit, dict[str, Any]], tuple[Any, float, int]]


class SplitTuner(keras_tuner.Tuner):
  """A KerasTuner tuner whose trials call `fit` on the split without its test ratings.

  AutoRec is not trained by `model.fit` alone (full-batch Rprop, a sparse path, resumable early
  stopping), so `run_trial` calls the package's training and reports validation RMSE, the best
  epoch and the seconds taken. The best model fitted by this process is kept in memory.
  """

  def __init__(self, oracle: keras_tuner.Oracle, split: RatingsSplit, fit: FitFunction, **kwargs):
    super().__init__(oracle=oracle, **kwargs)
    self.search_split = without_test(split)
    self.fit = fit
    self.best_trained: tuple[str, float, Any] | None = None

  def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
    start = time.time()
    values = dict(trial.hyperparameters.values)
    trained, validation_rmse, best_epoch = self.fit(self.search_split, values)
    validation_rmse = float(validation_rmse)
    logging.info("Trial %s %s: validation RMSE %.4f (best epoch %d)", trial.trial_id, values,
                 validation_rmse, best_epoch)
    if self.best_trained is None or validation_rmse < self.best_trained[1]:
      self.best_trained = (trial.trial_id, validation_rmse, trained)
    return {OBJECTIVE.name: validation_rmse, "best_epoch": float(best_epoch),
            "seconds": time.time() - start}

  def trials(self) -> list[Trial]:
    """Every trial the oracle knows, in the order they were created."""
    trials = []
    # KerasTuner numbers trials with a width that follows max_trials, so sort as numbers.
    for trial_id, trial in sorted(self.oracle.trials.items(), key=lambda item: int(item[0])):
      metrics = trial.metrics

      def last(name, metrics=metrics):
        return metrics.get_last_value(name) if metrics.exists(name) else float("nan")

      trials.append(Trial(trial_id=trial_id, status=trial.status,
                          params=dict(trial.hyperparameters.values),
                          validation_rmse=float(last(OBJECTIVE.name)),
                          best_epoch=int(np.nan_to_num(last("best_epoch"), nan=-1)),
                          seconds=float(last("seconds"))))
    return trials

  def best_trial(self) -> Trial:
    """The completed trial with the lowest validation RMSE (ties: the earlier trial)."""
    completed = [t for t in self.trials() if t.status == "COMPLETED"]
    if not completed:
      raise ValueError(f"no trial completed in {self.project_dir}")
    return min(completed, key=lambda t: t.validation_rmse)


def search(split: RatingsSplit, hyperparameters: keras_tuner.HyperParameters, fit: FitFunction,
           directory: str, project_name: str, oracle: str = "grid",
           max_trials: int | None = None, seed: int = 0, verbose: int = 0) -> SplitTuner:
  """Runs (or resumes) a search of `hyperparameters` stored in directory/project_name."""
  tuner = SplitTuner(make_oracle(oracle, hyperparameters, max_trials, seed), split, fit,
                     directory=directory, project_name=project_name, overwrite=False)
  if isinstance(tuner.oracle, keras_tuner.Oracle):  # Workers of a chief hold a client instead.
    stored, wanted = _space(tuner.oracle.hyperparameters), _space(hyperparameters)
    if stored != wanted:
      raise ValueError(f"{tuner.project_dir} holds a search of {stored}, not of {wanted}; "
                       "give another directory or project name for a new search")
  tuner.search(verbose=verbose)
  return tuner


def _space(hyperparameters: keras_tuner.HyperParameters) -> dict[str, list]:
  return {hp.name: list(hp.values) for hp in hyperparameters.space}


def search_and_evaluate(split: RatingsSplit, hyperparameters: keras_tuner.HyperParameters,
                        fit: FitFunction, evaluate: Callable[[Any, RatingsSplit], dict[str, Any]],
                        directory: str | None = None, **search_kwargs) -> TuningResult:
  """Searches on validation, then scores the selected model once on the real split's test set.

  Without `directory` the trials go to a temporary folder. When the best trial was fitted by an
  earlier, interrupted process, it is fitted again (fits are seeded, so it is the same model).
  """
  with tempfile.TemporaryDirectory() as temporary:
    tuner = search(split, hyperparameters, fit, directory or temporary, "search",
                   **search_kwargs)
    best = tuner.best_trial()
    if tuner.best_trained is not None and tuner.best_trained[0] == best.trial_id:
      trained = tuner.best_trained[2]
    else:
      trained = fit(tuner.search_split, best.params)[0]
    return TuningResult(trials=tuner.trials(), best=best, metrics=evaluate(trained, split))


def choices(hyperparameters: keras_tuner.HyperParameters, name: str, values: Sequence) -> None:
  """Declares `name` as a choice among `values` (the grid follows their order)."""
  values = list(values)
  if not values:
    raise ValueError(f"the search space of {name} is empty")
  hyperparameters.Choice(name, values)


@dataclasses.dataclass(frozen=True)
class AutoRecSpace:
  """The values an AutoRec search may try; each field is one KerasTuner Choice.

  Attributes:
    paper_lambdas: the paper's lambda, as `training.ModelConfig.l2_lambda` (the per-rating
      weight lambda / (2 N) follows the training ratings, as in `train`).
    hidden_units: one hidden layer of k units.
    activations: 'g:f' pairs, encoder then decoder activation (e.g. 'sigmoid:identity').
    optimizers: training optimizers (see `keras_autorec.optimizers`, and 'lbfgs').
    learning_rates: step sizes (Rprop: the initial step; unused by L-BFGS).
  """

  paper_lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
  hidden_units: tuple[int, ...] = DEFAULT_HIDDEN_UNITS
  activations: tuple[str, ...] = ("sigmoid:identity",)
  optimizers: tuple[str, ...] = ("rprop",)
  learning_rates: tuple[float, ...] = (training.TrainConfig.learning_rate,)

  def hyperparameters(self) -> keras_tuner.HyperParameters:
    """The KerasTuner search space."""
    for pair in self.activations:
      if pair.count(":") != 1:
        raise ValueError(f"an activation pair is 'encoder:decoder', e.g. sigmoid:identity; "
                         f"got {pair!r}")
    hyperparameters = keras_tuner.HyperParameters()
    choices(hyperparameters, "paper_lambda", self.paper_lambdas)
    choices(hyperparameters, "hidden_units", self.hidden_units)
    choices(hyperparameters, "activations", self.activations)
    choices(hyperparameters, "optimizer", self.optimizers)
    choices(hyperparameters, "learning_rate", self.learning_rates)
    return hyperparameters


def autorec_configs(values: dict[str, Any], model_config: training.ModelConfig,
                    train_config: training.TrainConfig
                    ) -> tuple[training.ModelConfig, training.TrainConfig]:
  """The model and training configurations of a trial's hyper-parameter values.

  The trial's lambda is set as `train --l2_lambda` would set it, so the chosen trial trained by
  `train`'s code (its refit included) is the configuration the search scored.
  """
  encoder, decoder = values["activations"].split(":")
  model_config = dataclasses.replace(
      model_config, hidden_units=(int(values["hidden_units"]),), encoder_activation=encoder,
      decoder_activation=decoder, l2_lambda=float(values["paper_lambda"]), l2_weight=None)
  train_config = dataclasses.replace(train_config, optimizer=values["optimizer"],
                                     learning_rate=float(values["learning_rate"]))
  return model_config, train_config


def autorec_fit(model_config: training.ModelConfig, train_config: training.TrainConfig
                ) -> FitFunction:
  """A trial fit of AutoRec: the base configurations with the trial's values, no checkpoints."""
  def fit(split: RatingsSplit, values: dict[str, Any]):
    trial_model, trial_train = autorec_configs(values, model_config, train_config)
    trained = training.fit(split, trial_model, dataclasses.replace(trial_train, model_dir=None))
    return trained, min(trained.history.get("val_rmse", [np.inf])), trained.best_epoch
  return fit


def _fit_biased_mf(base: biased_mf.BiasedMFConfig) -> FitFunction:
  def fit(split: RatingsSplit, values: dict[str, Any]):
    trained = biased_mf.fit(split, dataclasses.replace(base, **values))
    return trained, min(trained.history.get("val_rmse", [np.inf])), trained.best_epoch
  return fit


# Per-rating L2 weights around the usual SGD-MF values (0.02-0.1), extended on both sides.
BIASED_MF_FACTORS = (10, 50, 100)
BIASED_MF_L2_WEIGHTS = (0.03, 0.1, 0.3, 1.0)
BIASED_MF_OPTIMIZERS = ("lbfgs", "adam")


def tune_biased_mf(split: RatingsSplit, base: biased_mf.BiasedMFConfig = biased_mf.BiasedMFConfig(),
                   factors: Sequence[int] = BIASED_MF_FACTORS,
                   l2_weights: Sequence[float] = BIASED_MF_L2_WEIGHTS,
                   optimizers: Sequence[str] = BIASED_MF_OPTIMIZERS,
                   directory: str | None = None) -> TuningResult:
  """Grid search of BiasedMF over optimiser, factors and per-rating l2_weight."""
  hyperparameters = keras_tuner.HyperParameters()
  choices(hyperparameters, "optimizer", optimizers)
  choices(hyperparameters, "factors", factors)
  choices(hyperparameters, "l2_weight", l2_weights)
  return search_and_evaluate(split, hyperparameters, _fit_biased_mf(base), biased_mf.evaluate,
                             directory, oracle="grid", seed=base.seed)
