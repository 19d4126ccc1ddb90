"""Tests for keras_autorec.data.synthetic."""

from __future__ import annotations

import numpy as np
import pytest

from keras_autorec.data import synthetic


@pytest.fixture(scope="module")
def ml100k():
  return synthetic.generate("ml100k", noise_stddev=0.5, seed=0)


def test_requested_counts_and_unique_pairs(ml100k):
  assert (ml100k.num_users, ml100k.num_items, ml100k.num_ratings) == (943, 1682, 100_000)
  pairs = ml100k.user_index.astype(np.int64) * ml100k.num_items + ml100k.item_index
  assert np.unique(pairs).shape[0] == 100_000
  assert ml100k.duplicates_removed == 0
  assert ml100k.user_index.dtype == np.int32 and ml100k.item_index.dtype == np.int32
  assert ml100k.rating.dtype == np.float32 and ml100k.timestamp.dtype == np.int64


def test_ids_are_sorted_vocabularies(ml100k):
  assert ml100k.user_ids[0] == "u1" and ml100k.user_ids[1] == "u10"
  np.testing.assert_array_equal(ml100k.user_ids, np.sort(ml100k.user_ids))
  assert set(ml100k.item_ids) == {f"i{k}" for k in range(1, 1683)}


def test_deterministic_by_seed(ml100k):
  again = synthetic.generate("ml100k", noise_stddev=0.5, seed=0)
  other = synthetic.generate("ml100k", noise_stddev=0.5, seed=1)
  for field in ("user_index", "item_index", "rating", "expected_rating"):
    np.testing.assert_array_equal(getattr(ml100k, field), getattr(again, field))
  assert not np.array_equal(ml100k.rating, other.rating)


def test_ratings_within_scale_and_noise_floor_near_sigma(ml100k):
  assert ml100k.rating.min() >= 1.0 and ml100k.rating.max() <= 5.0
  floor = ml100k.noise_floor_rmse()
  # Clipping at 1 and 5 shrinks the noise a little below sigma, by design.
  assert 0.85 * 0.5 < floor < 0.5
  # Unbiased: the expected rating is the conditional mean of the clipped rating.
  assert abs(float(np.mean(ml100k.rating - ml100k.expected_rating))) < 0.005


def test_signal_clearly_above_noise(ml100k):
  assert np.var(ml100k.expected_rating) > 2.5 * 0.5**2
  assert 3.5 < ml100k.rating.mean() < 4.2


def test_noise_scales_floor():
  low_noise = synthetic.generate("ml100k", noise_stddev=0.1, seed=0)
  assert low_noise.noise_floor_rmse() == pytest.approx(0.1, rel=0.05)
  noiseless = synthetic.generate("ml100k", noise_stddev=0.0, seed=0)
  np.testing.assert_array_equal(noiseless.rating, noiseless.expected_rating)


def test_popularity_is_heavy_tailed(ml100k):
  per_item = np.sort(np.bincount(ml100k.item_index, minlength=ml100k.num_items))[::-1]
  assert per_item[: len(per_item) // 10].sum() > 0.3 * per_item.sum()
  assert per_item[0] > 8 * np.median(per_item)
  assert per_item[0] <= ml100k.num_users
  per_user = np.sort(np.bincount(ml100k.user_index, minlength=ml100k.num_users))[::-1]
  assert per_user[0] > 6 * np.median(per_user)


def test_defaults_resemble_movielens():
  ratings = synthetic.generate("ml100k", seed=0)
  assert 3.6 < ratings.rating.mean() < 4.0 and 1.0 < ratings.rating.std() < 1.2
  assert ratings.noise_floor_rmse() == pytest.approx(0.80, abs=0.02)
  # Observations are informative, as in MovieLens: popular items are the well rated ones.
  counts = np.bincount(ratings.item_index, minlength=ratings.num_items)
  sums = np.bincount(ratings.item_index, ratings.rating, ratings.num_items)
  rated = counts > 0
  assert np.corrcoef(np.log(counts[rated]), sums[rated] / counts[rated])[0, 1] > 0.5


def test_alias_sampler_probabilities_are_exact():
  weights = synthetic.power_law_weights(500, 0.05, np.random.default_rng(0))
  sampler = synthetic.AliasSampler(weights)
  n = weights.shape[0]
  probabilities = (sampler.keep_own / n
                   + np.bincount(sampler.alias, (1.0 - sampler.keep_own) / n, minlength=n))
  np.testing.assert_allclose(probabilities, weights, rtol=1e-9, atol=1e-15)
  draws = sampler.draw(np.random.default_rng(1), 1_000_000)
  np.testing.assert_allclose(np.bincount(draws, minlength=n) / 1e6, weights, atol=1e-3)


def test_clipped_gaussian_mean_matches_monte_carlo():
  rng = np.random.default_rng(0)
  mean = np.array([0.8, 1.2, 3.0, 4.9])
  samples = np.clip(mean[:, None] + 0.7 * rng.standard_normal((4, 400_000)), 1.0, 5.0)
  np.testing.assert_allclose(synthetic.clipped_gaussian_mean(mean, 0.7, 1.0, 5.0),
                             samples.mean(axis=1), atol=4e-3)


def test_custom_shape_and_dense_corner_case():
  dense = synthetic.generate(synthetic.Shape(20, 30, 600), seed=3)
  assert dense.num_ratings == 600  # Every pair, sampled without replacement.
  with pytest.raises(ValueError, match="cannot hold"):
    synthetic.generate(synthetic.Shape(2, 3, 7))
  with pytest.raises(ValueError, match="ml100k, ml1m, ml10m, netflix"):
    synthetic.generate("ml5m")


def test_power_law_weights_respect_max_share():
  weights = synthetic.power_law_weights(1000, 0.01, np.random.default_rng(0))
  assert weights.sum() == pytest.approx(1.0)
  assert weights.max() <= 0.01 + 1e-9
  assert weights.max() / weights.min() > 5
