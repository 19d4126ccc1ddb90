"""Validation-only tuning: the paper's lambda conversion, selection, and blindness to test."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from keras_autorec import training, tuning
from keras_autorec.baselines import biased_mf


def test_paper_lambda_converts_to_the_loss_scale():
  assert tuning.paper_lambda_to_l2_weight(100.0, 50_000) == pytest.approx(1e-3)
  assert tuning.paper_lambda_to_l2_weight(1.0, 1) == pytest.approx(0.5)


def test_grid_search_fits_without_test_ratings_and_picks_the_lowest_validation_rmse(split):
  seen_test_sizes = []

  def fit(search_split, config):
    seen_test_sizes.append(search_split.test.num_ratings)
    return {"config": config}, {"a": 0.9, "b": 0.8, "c": 0.85}[config], 1

  def evaluate(trained, full_split):
    return {"config": trained["config"], "test_ratings": full_split.test.num_ratings}

  result = tuning.grid_search(split, [({"name": n}, n) for n in "abc"], fit, evaluate)
  assert seen_test_sizes == [0, 0, 0]
  assert result.best.params == {"name": "b"}
  assert [t.validation_rmse for t in result.trials] == [0.9, 0.8, 0.85]
  assert result.metrics == {"config": "b", "test_ratings": split.test.num_ratings}


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


def test_tune_autorec_searches_the_converted_lambda_and_k_grid(split):
  result = tuning.tune_autorec(split, training.ModelConfig(),
                               training.TrainConfig(epochs=3, patience=3, verbose=0),
                               paper_lambdas=(1.0, 1000.0), hidden_units=(4,))
  num_train = split.train.num_ratings
  assert [(t.params["hidden_units"], t.params["l2_weight"]) for t in result.trials] == [
      (4, 1.0 / (2 * num_train)), (4, 1000.0 / (2 * num_train))]
  best = min(result.trials, key=lambda t: t.validation_rmse)
  assert result.best == best
  assert result.metrics["validation_rmse"] == pytest.approx(best.validation_rmse, abs=1e-4)
  assert np.isfinite(result.metrics["test_rmse"])
