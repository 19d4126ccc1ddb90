"""Validation-only tuning: the paper's lambda conversion, selection, and blindness to test."""

from __future__ import annotations

import dataclasses

import keras_tuner
import numpy as np
import pytest

from keras_autorec import training, tuning
from keras_autorec.baselines import biased_mf


def test_a_trial_lambda_is_set_as_train_sets_l2_lambda():
  values = {"paper_lambda": 100.0, "hidden_units": 40, "activations": "sigmoid:identity",
            "optimizer": "rprop", "learning_rate": 0.01}
  model_config, _ = tuning.autorec_configs(values, training.ModelConfig(l2_weight=0.5),
                                           training.TrainConfig())
  # An explicit --l2_weight of the base configuration gives way to the trial's lambda.
  assert (model_config.l2_lambda, model_config.l2_weight) == (100.0, None)
  assert model_config.l2_weight_for(810_000) == pytest.approx(100.0 / 1_620_000)
  assert model_config.l2_weight_for(648) == pytest.approx(1e-3)  # at least 50,000 ratings


def test_the_default_trial_count_covers_the_default_space():
  space = tuning.AutoRecSpace().hyperparameters()
  points = np.prod([len(hp.values) for hp in space.space])
  assert points == tuning.DEFAULT_MAX_TRIALS
  assert {200.0, 300.0} <= set(tuning.AutoRecSpace().paper_lambdas)
  assert 500 in tuning.AutoRecSpace().hidden_units


def test_search_fits_without_test_ratings_and_picks_the_lowest_validation_rmse(split, tmp_path):
  seen_test_sizes = []

  def fit(search_split, values):
    seen_test_sizes.append(search_split.test.num_ratings)
    return {"name": values["name"]}, {"a": 0.9, "b": 0.8, "c": 0.85}[values["name"]], 1

  def evaluate(trained, full_split):
    return {"name": trained["name"], "test_ratings": full_split.test.num_ratings}

  hyperparameters = keras_tuner.HyperParameters()
  hyperparameters.Choice("name", ["a", "b", "c"])
  result = tuning.search_and_evaluate(split, hyperparameters, fit, evaluate, str(tmp_path))
  assert seen_test_sizes == [0, 0, 0]
  assert result.best.params == {"name": "b"}
  assert [t.validation_rmse for t in result.trials] == pytest.approx([0.9, 0.8, 0.85])
  assert result.metrics == {"name": "b", "test_ratings": split.test.num_ratings}


def test_a_best_trial_from_an_earlier_process_is_fitted_again_for_the_test_score(split,
                                                                                  tmp_path):
  calls = []

  def fit(search_split, values):
    calls.append(values["name"])
    return {"name": values["name"]}, {"a": 0.8, "b": 0.9}[values["name"]], 1

  def evaluate(trained, full_split):
    return {"name": trained["name"]}

  hyperparameters = keras_tuner.HyperParameters()
  hyperparameters.Choice("name", ["a", "b"])
  tuning.search_and_evaluate(split, hyperparameters, fit, evaluate, str(tmp_path), max_trials=1)
  result = tuning.search_and_evaluate(split, hyperparameters, fit, evaluate, str(tmp_path),
                                      max_trials=2)
  assert calls == ["a", "b", "a"]
  assert result.metrics == {"name": "a"}


@pytest.mark.parametrize("oracle", ["random", "bayesian"])
def test_random_and_bayesian_oracles_need_max_trials(oracle):
  with pytest.raises(ValueError, match=f"the {oracle} oracle needs max_trials"):
    tuning.make_oracle(oracle, keras_tuner.HyperParameters(), None)


def test_selection_is_the_same_when_test_ratings_are_garbage(split):
  rng = np.random.default_rng(1)
  garbage = dataclasses.replace(
      split.test, rating=rng.choice([1.0, 5.0], size=split.test.num_ratings).astype(np.float32))
  garbage_split = dataclasses.replace(split, test=garbage)
  base = biased_mf.BiasedMFConfig(epochs=30, patience=5)
  kwargs = dict(factors=(2,), l2_weights=(0.01, 1.0), optimizers=("lbfgs",))
  clean = tuning.tune_biased_mf(split, base, **kwargs)
  dirty = tuning.tune_biased_mf(garbage_split, base, **kwargs)
  assert dirty.best.params == clean.best.params
  np.testing.assert_allclose([t.validation_rmse for t in dirty.trials],
                             [t.validation_rmse for t in clean.trials], atol=1e-6)
  assert dirty.metrics["test_rmse"] > clean.metrics["test_rmse"] + 0.5


def tune_autorec(split, model_config: training.ModelConfig, train_config: training.TrainConfig,
                 space: tuning.AutoRecSpace, directory: str) -> tuning.TuningResult:
  """Searches AutoRec over `space` on validation, then scores the chosen trial on test."""
  return tuning.search_and_evaluate(
      split, space.hyperparameters(), tuning.autorec_fit(model_config, train_config),
      lambda trained, full: training.evaluate(trained, full, train_config.default_rating),
      directory)


def test_tune_autorec_searches_the_converted_lambda_and_k_grid(split, tmp_path):
  result = tune_autorec(split, training.ModelConfig(),
                        training.TrainConfig(epochs=3, patience=3, verbose=0),
                        tuning.AutoRecSpace(paper_lambdas=(1.0, 1000.0), hidden_units=(4,)),
                        str(tmp_path))
  assert [(t.params["hidden_units"], t.params["paper_lambda"]) for t in result.trials] == [
      (4, 1.0), (4, 1000.0)]
  model_config, _ = tuning.autorec_configs(result.trials[1].params, training.ModelConfig(),
                                           training.TrainConfig())
  assert model_config.l2_lambda == 1000.0
  best = min(result.trials, key=lambda t: t.validation_rmse)
  assert result.best == best
  assert result.metrics["validation_rmse"] == pytest.approx(best.validation_rmse, abs=1e-4)
  assert np.isfinite(result.metrics["test_rmse"])


def test_autorec_configs_apply_every_searched_value():
  values = {"paper_lambda": 100.0, "hidden_units": 40, "activations": "elu:sigmoid",
            "optimizer": "adam", "learning_rate": 0.002}
  model_config, train_config = tuning.autorec_configs(
      values, training.ModelConfig(input_dropout=0.1), training.TrainConfig(epochs=7))
  assert (model_config.hidden_units, model_config.encoder_activation,
          model_config.decoder_activation, model_config.input_dropout) == (
              (40,), "elu", "sigmoid", 0.1)
  assert model_config.l2_weight_for(50_000) == pytest.approx(1e-3)
  assert (train_config.optimizer, train_config.learning_rate, train_config.epochs) == (
      "adam", 0.002, 7)


def test_an_activation_pair_without_a_colon_is_refused():
  with pytest.raises(ValueError, match="'encoder:decoder'.*'sigmoid'"):
    tuning.AutoRecSpace(activations=("sigmoid",)).hyperparameters()


def test_the_bayesian_oracle_never_fits_a_point_twice(split, tmp_path):
  tried = []

  def fit(search_split, values):
    tried.append(values["k"])
    # A smooth valley at k = 4 draws the Gaussian process back to the tried optimum.
    return None, 1.0 + 0.01 * (values["k"] - 4) ** 2, 1

  hyperparameters = keras_tuner.HyperParameters()
  hyperparameters.Choice("k", list(range(8)))
  tuning.search(split, hyperparameters, fit, str(tmp_path), "search", oracle="bayesian",
                max_trials=8, seed=0)
  assert len(tried) == 8
  assert sorted(tried) == list(range(8))
