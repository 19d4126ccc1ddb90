"""The rare-rows blend: its fit, its biases, and that evaluation and the export agree on it."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_autorec import blend, export, training
from keras_autorec.baselines import knn_baseline
from keras_autorec.data.layout import build_layout
from keras_autorec.evaluation import predict_pairs


def blend_problem(offset: float, slope: float, size: int = 20000, seed: int = 0):
  """Ratings that the blend with (offset, slope) predicts up to small noise."""
  rng = np.random.default_rng(seed)
  counts = rng.integers(1, 300, size)
  autorec = rng.uniform(1, 5, size)
  biases = rng.uniform(1, 5, size)
  truth = blend.CountBlend(offset, slope).apply(autorec, biases, counts)
  return truth + rng.normal(scale=0.05, size=size), autorec, biases, counts


def test_recovers_the_weight_curve_of_the_grid():
  fitted = blend.fit_blend(*blend_problem(offset=2.0, slope=1.0))
  assert (fitted.offset, fitted.slope) == (pytest.approx(2.0), pytest.approx(1.0))


def test_weight_is_zero_where_autorec_is_exact():
  _, autorec, biases, counts = blend_problem(offset=0.0, slope=0.0)
  fitted = blend.fit_blend(autorec, autorec, biases, counts)
  assert fitted.row_weights(np.array([1]))[0] < 1e-3


def test_weights_fall_with_the_count():
  weights = blend.CountBlend(offset=1.0, slope=0.5).row_weights(np.array([0, 1, 10, 100]))
  # sigmoid(1 - 0.5 log n), counts below 1 taken as 1.
  expected = 1.0 / (1.0 + np.exp(0.5 * np.log([1, 1, 10, 100]) - 1.0))
  np.testing.assert_allclose(weights, expected, rtol=1e-6)


@pytest.mark.parametrize("item_based", [True, False])
def test_row_biases_are_the_als_biases_of_the_dataset(split, item_based):
  layout = build_layout(split.train, item_based=item_based)
  row_biases = blend.fit_row_biases(layout)
  expected = knn_baseline.fit_baselines(split.train)
  users, items = split.train.user_index, split.train.item_index
  rows, columns = layout.positions(split.train)
  np.testing.assert_allclose(
      row_biases.predict(rows, columns),
      np.clip(expected.predict(users, items), 1.0, 5.0), atol=1e-5)


def test_rating_blend_applies_the_row_count_weight():
  biases = blend.RowBiases(3.0, np.array([0.5, -1.0], np.float32),
                           np.array([0.0, 0.25], np.float32), (1.0, 5.0))
  rating_blend = blend.RatingBlend(blend.CountBlend(0.0, 1.0), biases, np.array([1, 3]))
  # Row 0 (1 rating): weight sigmoid(0) = 1/2, biases 3.5 + 0.25; row 1 (3 ratings): weight
  # 1 / (1 + 3) = 1/4, biases 3 - 1 + 0 = 2.
  np.testing.assert_allclose(rating_blend.apply(np.array([0, 1]), np.array([1, 0]),
                                                np.array([4.0, 4.0])),
                             [4.0 + 0.5 * (3.75 - 4.0), 4.0 + 0.25 * (2.0 - 4.0)], rtol=1e-6)


@pytest.fixture(scope="module", params=[True, False], ids=["I-AutoRec", "U-AutoRec"])
def blended(request, split):
  config = training.ModelConfig(item_based=request.param, hidden_units=(8,))
  train_config = training.TrainConfig(epochs=15, patience=15, verbose=0, seed=0)
  trained, metrics = training.fit_and_evaluate(split, config, train_config, refit=True)
  return trained, metrics


def test_fit_and_evaluate_reports_the_blended_rmse(split, blended):
  trained, metrics = blended
  assert trained.blend is not None
  rows, columns = trained.layout.positions(split.test)
  autorec = predict_pairs(trained.model, trained.layout, rows, columns)
  seen = (rows >= 0) & (columns >= 0)
  expected = autorec.copy()
  expected[seen] = trained.blend.apply(rows[seen], columns[seen], autorec[seen])
  assert metrics["test_rmse"] == pytest.approx(
      float(np.sqrt(np.mean(np.square(split.test.rating - expected)))), abs=1e-5)
  # The refit's blend uses the refit's counts: train + validation ratings per row.
  assert trained.blend.row_counts.sum() == split.train.num_ratings + split.validation.num_ratings
  # Scored where it was fitted, the blend cannot lose to AutoRec alone (weight 0 is on its grid).
  assert metrics["validation_rmse_in_sample"] <= metrics["validation_rmse_autorec_alone"] + 1e-6


def test_cross_fitted_validation_never_scores_a_blend_on_its_own_ratings(split, blended,
                                                                         monkeypatch):
  trained, _ = blended
  fitted_on, scored = [], []
  real_fit, real_evaluate = blend.fit_rating_blend, blend.evaluation.evaluate_ratings

  def pairs(ratings):
    return set(zip(ratings.user_index.tolist(), ratings.item_index.tolist()))

  def recording_fit(model, layout, validation):
    fitted_on.append(pairs(validation))
    return real_fit(model, layout, validation)

  def recording_evaluate(model, layout, ratings, *args, **kwargs):
    errors = real_evaluate(model, layout, ratings, *args, **kwargs)
    scored.append((pairs(ratings), errors))
    return errors

  monkeypatch.setattr(blend, "fit_rating_blend", recording_fit)
  monkeypatch.setattr(blend.evaluation, "evaluate_ratings", recording_evaluate)
  errors = blend.cross_fitted_errors(trained.model, trained.layout, split.validation,
                                     fallback=trained.fallback)
  assert len(fitted_on) == len(scored) == 2
  for fitted, (scored_pairs, _) in zip(fitted_on, scored):
    assert not fitted & scored_pairs and len(fitted | scored_pairs) == split.validation.num_ratings
  halves = [half_errors for _, half_errors in scored]
  assert errors.num_ratings == split.validation.num_ratings
  assert errors.rmse == pytest.approx(np.sqrt(
      sum(e.rmse ** 2 * e.num_ratings for e in halves) / split.validation.num_ratings))


@pytest.mark.parametrize("rating_table_max_cells", [25_000_000, 0], ids=["table", "no_table"])
def test_export_serves_the_blended_ratings(split, blended, tmp_path, rating_table_max_cells):
  trained, _ = blended
  path = export.export_model(
      trained.model, trained.layout,
      export.ExportConfig(export_dir=str(tmp_path), warmup_requests=False,
                          rating_table_max_cells=rating_table_max_cells), blend=trained.blend)
  test = split.test
  rows, columns = trained.layout.positions(test)
  seen = (rows >= 0) & (columns >= 0)
  expected = trained.blend.apply(
      rows[seen], columns[seen], predict_pairs(trained.model, trained.layout, rows[seen],
                                               columns[seen]))
  served = tf.saved_model.load(path).signatures["serving_default"](
      user_id=tf.constant(test.user_ids[test.user_index[seen]].astype(object)),
      item_id=tf.constant(test.item_ids[test.item_index[seen]].astype(object)))["rating"]
  unblended = predict_pairs(trained.model, trained.layout, rows[seen], columns[seen])
  assert np.abs(expected - unblended).max() > 1e-3  # the check can tell the two apart
  np.testing.assert_allclose(served.numpy(), expected, atol=1e-4)


def test_noblend_scores_autorec_alone(split):
  config = training.ModelConfig(hidden_units=(8,))
  train_config = training.TrainConfig(epochs=5, patience=5, verbose=0, blend=False)
  trained, metrics = training.fit_and_evaluate(split, config, train_config, refit=False)
  assert trained.blend is None and "blend_offset" not in metrics
  rows, columns = trained.layout.positions(split.validation)
  autorec = predict_pairs(trained.model, trained.layout, rows, columns)
  assert metrics["validation_rmse"] == pytest.approx(
      float(np.sqrt(np.mean(np.square(split.validation.rating - autorec)))), abs=1e-5)
