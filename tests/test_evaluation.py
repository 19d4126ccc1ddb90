"""Tests for keras_autorec.evaluation."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_autorec import evaluation, fallback, training
from keras_autorec.data import layout as layout_lib


@pytest.fixture(scope="module")
def model_and_layout(split):
  layout = layout_lib.build_layout(split.train, item_based=True)
  keras.utils.set_random_seed(0)
  model = training.build_model(training.ModelConfig(hidden_units=(4,)), layout)
  model.output_layer.bias.assign(np.linspace(1.0, 5.0, layout.num_columns).astype(np.float32))
  return model, layout


def test_predict_pairs(model_and_layout):
  model, layout = model_and_layout
  rows = np.array([3, -1, 0, 3, 7, 2, 0])
  columns = np.array([1, 4, -1, 9, 0, 5, 2])
  predictions = evaluation.predict_pairs(model, layout, rows, columns, default_rating=2.5,
                                         batch_size=2)
  full = model.predict_ratings(layout.train.to_dense()).numpy()
  seen = (rows >= 0) & (columns >= 0)
  np.testing.assert_array_equal(predictions[~seen], 2.5)
  np.testing.assert_allclose(predictions[seen], full[rows[seen], columns[seen]], rtol=1e-6)


def test_evaluate_ratings_counts_defaults(split, model_and_layout):
  model, layout = model_and_layout
  errors = evaluation.evaluate_ratings(model, layout, split.test, default_rating=3.0)
  rows, columns = layout.positions(split.test)
  predictions = evaluation.predict_pairs(model, layout, rows, columns, 3.0)
  assert errors.num_ratings == split.test.num_ratings
  assert errors.num_default == int(np.sum((rows < 0) | (columns < 0)))
  assert errors.rmse == pytest.approx(
      np.sqrt(np.mean((split.test.rating - predictions) ** 2)), rel=1e-6)
  assert set(errors.as_dict("test")) == {"test_rmse", "test_mae", "test_ratings",
                                         "test_default_predictions", "test_fallback_rmse"}


def test_evaluate_ratings_predicts_unseen_pairs_by_the_fallback(split):
  # The test ratings' first user and item have no training ratings here.
  train = split.train.subset(np.flatnonzero((split.train.user_index != split.test.user_index[0])
                                            & (split.train.item_index != split.test.item_index[0])))
  layout = layout_lib.build_layout(train, item_based=True)
  model = training.build_model(training.ModelConfig(hidden_units=(4,)), layout)
  biases = fallback.fit_biases(train)
  errors = evaluation.evaluate_ratings(model, layout, split.test, fallback=biases)
  rows, columns = layout.positions(split.test)
  unseen = (rows < 0) | (columns < 0)
  assert 0 < unseen.sum() < unseen.size
  predictions = evaluation.predict_pairs(model, layout, rows, columns)
  predictions[unseen] = biases.predict(split.test.user_index[unseen],
                                       split.test.item_index[unseen])
  assert errors.rmse == pytest.approx(
      np.sqrt(np.mean((split.test.rating - predictions) ** 2)), rel=1e-6)
  assert errors.fallback_rmse == pytest.approx(
      np.sqrt(np.mean((split.test.rating[unseen] - predictions[unseen]) ** 2)), rel=1e-6)
  assert errors.num_default == unseen.sum()


def test_mean_and_ci95():
  assert evaluation.mean_and_ci95([1.0, 2.0, 3.0]) == pytest.approx((2.0, 4.303 / math.sqrt(3)))
  values = [0.9, 1.1, 1.0, 1.2, 0.8]
  mean, half = evaluation.mean_and_ci95(values)
  assert mean == pytest.approx(1.0)
  assert half == pytest.approx(2.776 * np.std(values, ddof=1) / math.sqrt(5))
  assert evaluation.mean_and_ci95([0.7]) == (pytest.approx(0.7), 0.0)
  many = np.arange(40.0)
  assert evaluation.mean_and_ci95(many)[1] == pytest.approx(
      1.96 * many.std(ddof=1) / math.sqrt(40))


# Top-N ranking metrics of implicit feedback.

def test_ranking_hits():
  from scipy import sparse
  relevant = sparse.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=np.float32))
  hits = evaluation.ranking_hits(np.array([[3, 0, -1], [2, 1, 0]]), relevant)
  assert hits.tolist() == [[True, False, False], [False, False, True]]


def test_mean_ndcg_at_k_by_hand():
  discount = 1.0 / np.log2(np.arange(2, 6))
  hits = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
  # Row 0: 2 hits of 3 relevant; row 1: 1 hit of 6 relevant (ideal capped at k=4); row 2 has
  # none relevant and is left out of the mean.
  expected = np.mean([(discount[0] + discount[2]) / discount[:3].sum(),
                      discount[1] / discount.sum()])
  value = evaluation.mean_ndcg_at_k(hits, np.array([3, 6, 0]), k=4)
  assert value == pytest.approx(expected, rel=1e-6)
  # Only the top k count: a hit at rank 3 is outside NDCG@2.
  assert evaluation.mean_ndcg_at_k(hits[:1], np.array([2]), k=2) == pytest.approx(
      discount[0] / discount[:2].sum(), rel=1e-6)
  assert math.isnan(evaluation.mean_ndcg_at_k(hits, np.zeros(3), k=4))


def test_mean_recall_at_k_divides_by_min_of_k_and_relevant():
  hits = np.array([[1, 0, 1, 1], [0, 1, 0, 0]], dtype=bool)
  # Row 0: 2 hits in the top 2... of 5 relevant -> 1/min(2, 5); row 1: 1 of 1 relevant.
  assert evaluation.mean_recall_at_k(hits, np.array([5, 1]), k=2) == pytest.approx(
      (1 / 2 + 1 / 1) / 2)
  assert evaluation.mean_recall_at_k(hits, np.array([5, 1]), k=4) == pytest.approx(
      (3 / 4 + 1 / 1) / 2)


def test_melon_score_weights():
  assert evaluation.melon_score(0.2, 0.6) == pytest.approx(0.85 * 0.2 + 0.15 * 0.6)
