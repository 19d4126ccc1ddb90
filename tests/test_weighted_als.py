"""Weighted ALS: one half-sweep is each row's weighted ridge regression, a fit lowers the loss."""

from __future__ import annotations

import numpy as np

from keras_autorec.baselines import weighted_als


def small_problem(seed=0):
  """12 users x 9 items, 60 weighted ratings, and rank-2 [factors, bias] tables."""
  rng = np.random.default_rng(seed)
  pairs = rng.choice(12 * 9, size=60, replace=False)
  users, items = pairs // 9, pairs % 9
  ratings = rng.integers(1, 6, size=60).astype(np.float64)
  weights = rng.random(60) * (rng.random(60) > 0.2)
  data = weighted_als.WeightedRatings.build(users, items, ratings, weights, (12, 9), mean=3.2)
  return data, rng.normal(size=(12, 3)), rng.normal(size=(9, 3))


def objective(data, users, items, mean, l2_weight):
  """The module docstring's loss, term by term."""
  user, item = users[data.rows], items[data.columns]
  prediction = mean + user[:, 2] + item[:, 2] + np.sum(user[:, :2] * item[:, :2], axis=1)
  penalty = np.sum(user ** 2, axis=1) + np.sum(item ** 2, axis=1)
  return float(np.sum(data.weight * ((data.rating - prediction) ** 2 + l2_weight * penalty)))


def test_build_keeps_positive_weights_scaled_to_one():
  data, _, _ = small_problem()
  assert np.all(data.weight > 0)
  np.testing.assert_allclose(np.sum(data.weight), 1.0)
  assert data.count == np.count_nonzero(data.weight) and data.count < 60
  np.testing.assert_allclose(data.weighted_centred.toarray()[data.rows, data.columns],
                             data.weight * (data.rating - 3.2))


def test_half_sweep_solves_each_users_weighted_ridge_regression():
  data, _, items = small_problem()
  l2_weight = 0.3
  users = weighted_als.half_sweep(data, items, l2_weight)
  for user in range(12):
    mine = data.rows == user
    if not np.any(mine):
      np.testing.assert_allclose(users[user], 0.0, atol=1e-9)
      continue
    features = np.hstack([items[data.columns[mine], :2], np.ones((mine.sum(), 1))])
    target = data.rating[mine] - 3.2 - items[data.columns[mine], 2]
    root = np.sqrt(data.weight[mine])
    # Ridge as least squares: rows sqrt(w) * [x, y] plus sqrt(l2 * W_u) * I against zeros.
    design = np.vstack([root[:, None] * features,
                        np.sqrt(l2_weight * data.weight[mine].sum()) * np.eye(3)])
    expected = np.linalg.lstsq(design, np.concatenate([root * target, np.zeros(3)]),
                               rcond=None)[0]
    np.testing.assert_allclose(users[user], expected, atol=1e-8)


def test_each_half_sweep_lowers_the_objective():
  data, users, items = small_problem(seed=1)
  by_item = data.transpose()
  losses = [objective(data, users, items, 3.2, 0.1)]
  for _ in range(5):
    users = weighted_als.half_sweep(data, items, 0.1)
    losses.append(objective(data, users, items, 3.2, 0.1))
    items = weighted_als.half_sweep(by_item, users, 0.1)
    losses.append(objective(data, users, items, 3.2, 0.1))
  assert np.all(np.diff(losses) <= 1e-12)
  assert losses[-1] < 0.5 * losses[0]


def test_fit_keeps_the_best_sweep_on_validation():
  data, users, items = small_problem(seed=2)
  settings = weighted_als.AlsSettings(l2_weight=0.1, sweeps=30, patience=3, min_delta=0.0)
  validation, _, _ = small_problem(seed=3)
  users, items, best = weighted_als.fit(data, validation, users, items, 3.2, settings, (1.0, 5.0))
  assert 1 <= best <= 30
  scores = []
  fresh_users, fresh_items = small_problem(seed=2)[1:]
  by_item = data.transpose()
  for _ in range(best):
    fresh_users = weighted_als.half_sweep(data, fresh_items, 0.1)
    fresh_items = weighted_als.half_sweep(by_item, fresh_users, 0.1)
    scores.append(weighted_als.weighted_rmse(validation, fresh_users, fresh_items, 3.2,
                                             (1.0, 5.0)))
  assert weighted_als.weighted_rmse(validation, users, items, 3.2, (1.0, 5.0)) == min(scores)
