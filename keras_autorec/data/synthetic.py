"""Seeded synthetic ratings with planted nonlinear low-rank structure and a known noise floor.

Each user u and item i get a latent vector (rank `rank`) and a bias; the noise-free rating is

  mean(u, i) = 1 + 4 * sigmoid(offset + b_u + b_i + scale * <p_u, q_i> / sqrt(rank)),

a nonlinear function of a low-rank matrix, always inside (1, 5). The observed rating is
clip(mean + N(0, sigma^2), 1, 5), and `expected_rating` is E[observed | u, i] in closed form (the
mean of a clipped Gaussian), so it is the ideal predictor and `noise_floor_rmse()` is the RMSE of a
perfect model: a little below sigma, because clipping at the scale ends shrinks the noise.

Which pairs are observed follows MovieLens, where it is far from random:
- power laws: user activity and item popularity weights decay like (rank + offset)^-1, the
  offset chosen so the busiest user / most popular item is expected to cover about half of the
  items / users;
- good items are popular: items get the popularity weights in the order of a score correlated
  (0.8) with their bias; the correlation of log(ratings per item) with the item's mean rating is
  then 0.67 at the ml100k shape (ML-100K itself: 0.52);
- users rate what they like: a pair drawn in proportion to user weight x item weight is kept with
  probability min(1, exp(1.5 (x - 2))), x = <p_u, q_i> / sqrt(rank) ~ N(0, 1).
Pairs are drawn without replacement, in blocks of users, so no dense matrix is built.

The defaults (rank 2, sigma 1) give ML-100K-like ratings: mean 3.8, standard deviation 1.1 (ML-100K:
3.5 and 1.1). With the observations missing at random instead, AutoRec stays well above the floor
(README): a zero-filled rating vector cannot tell a low rating from few ratings, and the observed
pattern carries no signal to make up for it.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from keras_autorec.data.ratings import Ratings, pair_keys

RATING_SCALE = (1.0, 5.0)
DEFAULT_SHAPE = "ml100k"
DEFAULT_NOISE_STDDEV = 1.0
DEFAULT_RANK = 2

# Latent-space parameters: with the selection below, the offset puts the mean rating near 3.8 and
# the interaction term gives a noise-free rating variance ~0.6 besides sigma^2.
_OFFSET = -0.3
_BIAS_STDDEV = 0.5
_INTERACTION_SCALE = 1.5
_POPULARITY_EXPONENT = 1.0
_POPULARITY_BIAS_CORRELATION = 0.8
_TASTE_SELECTION = 1.5  # Slope of log P(kept) in the standardised interaction...
_TASTE_THRESHOLD = 2.0  # ...below which pairs are thinned; above it every drawn pair is kept.
_MAX_COVERAGE = 0.5  # Expected share of items (users) rated by the busiest user (top item).
_RATINGS_PER_BLOCK = 2_000_000  # Bounds the memory of per-block temporaries.


@dataclasses.dataclass(frozen=True)
class Shape:
  """Numbers of users, items and observed ratings of a synthetic data set."""

  num_users: int
  num_items: int
  num_ratings: int


SHAPES = {
    "ml100k": Shape(943, 1682, 100_000),
    "ml1m": Shape(6040, 3706, 1_000_209),
    "ml10m": Shape(69_878, 10_677, 10_000_054),
    "netflix": Shape(480_189, 17_770, 100_480_507),
}


def generate(shape: str | Shape = DEFAULT_SHAPE, noise_stddev: float = DEFAULT_NOISE_STDDEV,
             seed: int = 0, rank: int = DEFAULT_RANK) -> Ratings:
  """Generates synthetic Ratings (see the module docstring), deterministic given the arguments.

  Args:
    shape: a key of SHAPES or a Shape.
    noise_stddev: sigma of the Gaussian noise added on the rating scale.
    seed: seeds everything (factors, biases, popularity, observed pairs, noise).
    rank: dimension of the latent user and item vectors.
  """
  shape = _checked_shape(shape, noise_stddev)
  rng = np.random.default_rng(seed)
  user_factors = rng.standard_normal((shape.num_users, rank), dtype=np.float32)
  item_factors = rng.standard_normal((shape.num_items, rank), dtype=np.float32)
  user_bias = rng.normal(0.0, _BIAS_STDDEV, shape.num_users).astype(np.float32)
  item_bias = rng.normal(0.0, _BIAS_STDDEV, shape.num_items).astype(np.float32)
  user_weight = power_law_weights(shape.num_users, _MAX_COVERAGE * shape.num_items /
                                  shape.num_ratings, rng)
  item_weight = power_law_weights(shape.num_items, _MAX_COVERAGE * shape.num_users /
                                  shape.num_ratings, rng)
  rho = _POPULARITY_BIAS_CORRELATION
  popularity_score = (rho * item_bias / _BIAS_STDDEV
                      + math.sqrt(1.0 - rho * rho) * rng.standard_normal(shape.num_items))
  item_weight[np.argsort(-popularity_score)] = np.sort(item_weight)[::-1]

  def keep_probability(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    taste = np.einsum("nk,nk->n", user_factors[users], item_factors[items]) / math.sqrt(rank)
    return np.exp(np.minimum(_TASTE_SELECTION * (taste - _TASTE_THRESHOLD), 0.0))

  user_index = np.empty(shape.num_ratings, dtype=np.int32)
  item_index = np.empty(shape.num_ratings, dtype=np.int32)
  rating = np.empty(shape.num_ratings, dtype=np.float32)
  expected = np.empty(shape.num_ratings, dtype=np.float32)
  item_sampler = AliasSampler(item_weight)
  filled = 0
  for users, count in _user_blocks(user_weight, shape.num_ratings):
    block_users, block_items = _sample_pairs(
        rng, user_weight[users], item_weight, item_sampler, count,
        lambda u, i, start=users.start: keep_probability(u + start, i))
    block_users += users.start
    block = slice(filled, filled + count)
    user_index[block], item_index[block] = block_users, block_items
    interaction = np.einsum("nk,nk->n", user_factors[block_users], item_factors[block_items])
    latent = (_OFFSET + user_bias[block_users] + item_bias[block_items]
              + _INTERACTION_SCALE / math.sqrt(rank) * interaction)
    mean = 1.0 + 4.0 / (1.0 + np.exp(-latent.astype(np.float64)))
    noise = noise_stddev * rng.standard_normal(count)
    rating[block] = np.clip(mean + noise, *RATING_SCALE)
    expected[block] = clipped_gaussian_mean(mean, noise_stddev, *RATING_SCALE)
    filled += count

  return _as_ratings(shape, user_index, item_index, rating, expected,
                     f"synthetic({shape.num_users}x{shape.num_items}x{shape.num_ratings}, "
                     f"rank={rank}, noise_stddev={noise_stddev}, seed={seed})")


def _checked_shape(shape: str | Shape, noise_stddev: float) -> Shape:
  """The Shape `shape` names (or is), once it and `noise_stddev` are valid."""
  if isinstance(shape, str):
    if shape not in SHAPES:
      raise ValueError(f"unknown synthetic shape {shape!r}; expected one of {', '.join(SHAPES)}")
    shape = SHAPES[shape]
  if noise_stddev < 0:
    raise ValueError(f"noise_stddev must be >= 0, got {noise_stddev}")
  if not 0 < shape.num_ratings <= shape.num_users * shape.num_items:
    raise ValueError(f"{shape} cannot hold {shape.num_ratings} distinct (user, item) pairs")
  return shape


def _as_ratings(shape: Shape, user_index: np.ndarray, item_index: np.ndarray,
                rating: np.ndarray, expected: np.ndarray, source: str) -> Ratings:
  """The generated pairs as Ratings over ids u1.. and i1.., logging their variance."""
  user_ids = np.sort(np.char.add("u", np.arange(1, shape.num_users + 1).astype(str)))
  item_ids = np.sort(np.char.add("i", np.arange(1, shape.num_items + 1).astype(str)))
  # Built directly rather than via from_raw: pairs are distinct by construction, and the sorted
  # vocabularies are what from_raw would build (latent vectors are i.i.d., so which id gets which
  # index does not matter).
  ratings = Ratings(user_index=user_index, item_index=item_index, rating=rating,
                    timestamp=np.zeros(shape.num_ratings, dtype=np.int64), user_ids=user_ids,
                    item_ids=item_ids, rating_scale=RATING_SCALE,
                    source=source,
                    expected_rating=expected)
  logging.info("Generated %s: rating variance %.3f, noise-free variance %.3f, noise floor RMSE "
               "%.4f", ratings.source, float(np.var(rating)), float(np.var(expected)),
               ratings.noise_floor_rmse())
  return ratings


def power_law_weights(n: int, max_share: float, rng: np.random.Generator) -> np.ndarray:
  """Returns n weights summing to 1, decaying like (rank + offset)^-1 in a random order.

  The offset is the smallest keeping the largest weight at most `max_share` (when possible).
  """
  ranks = np.arange(1, n + 1, dtype=np.float64)

  def weights(offset: float) -> np.ndarray:
    w = (ranks + offset) ** -_POPULARITY_EXPONENT
    return w / w.sum()

  low, high = 0.0, float(n)
  if weights(low)[0] > max_share:
    for _ in range(50):  # Bisection: the top weight falls as the offset grows.
      middle = (low + high) / 2
      low, high = (middle, high) if weights(middle)[0] > max_share else (low, middle)
  return rng.permutation(weights(high if weights(low)[0] > max_share else low))


def clipped_gaussian_mean(mean: np.ndarray, stddev: float, low: float, high: float) -> np.ndarray:
  """Returns E[clip(X, low, high)] for X ~ Normal(mean, stddev^2), elementwise."""
  if stddev == 0:
    return np.clip(mean, low, high)
  alpha = (low - mean) / stddev
  beta = (high - mean) / stddev
  cdf_alpha, cdf_beta = _normal_cdf(alpha), _normal_cdf(beta)
  pdf_alpha = np.exp(-0.5 * alpha**2) / math.sqrt(2 * math.pi)
  pdf_beta = np.exp(-0.5 * beta**2) / math.sqrt(2 * math.pi)
  return (low * cdf_alpha + high * (1.0 - cdf_beta) + mean * (cdf_beta - cdf_alpha)
          + stddev * (pdf_alpha - pdf_beta))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
  """Standard normal CDF via Abramowitz & Stegun 7.1.26 erf (abs. error < 1.5e-7; no scipy)."""
  z = np.abs(x) / math.sqrt(2.0)
  t = 1.0 / (1.0 + 0.3275911 * z)
  polynomial = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (
      -1.453152027 + t * 1.061405429))))
  erf = 1.0 - polynomial * np.exp(-z * z)
  return 0.5 * (1.0 + np.sign(x) * erf)


class AliasSampler:
  """Draws indices in proportion to weights in O(1) each (Walker's alias method, Vose's build).

  Binary search in a CDF costs a cache miss per level; the rejection sampling of pairs draws
  several times the number of ratings, so that dominated generation at Netflix size.
  """

  def __init__(self, weights: np.ndarray):
    n = weights.shape[0]
    scaled = (np.asarray(weights, np.float64) * (n / weights.sum())).tolist()
    alias = list(range(n))
    small = [i for i, w in enumerate(scaled) if w < 1.0]
    large = [i for i, w in enumerate(scaled) if w >= 1.0]
    while small and large:
      low, high = small.pop(), large[-1]
      alias[low] = high
      scaled[high] -= 1.0 - scaled[low]
      if scaled[high] < 1.0:
        small.append(large.pop())
    for i in small + large:  # Left over only through rounding: they keep their own index.
      scaled[i] = 1.0
    self.keep_own = np.array(scaled)
    self.alias = np.array(alias, dtype=np.int64)

  def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` indices (int64), each i with probability weights[i] / sum(weights)."""
    index = rng.integers(0, self.alias.shape[0], size)
    return np.where(rng.random(size) < self.keep_own[index], index, self.alias[index])


def _user_blocks(user_weight: np.ndarray, num_ratings: int):
  """Yields (slice of users, number of ratings) per block; counts sum to num_ratings exactly."""
  num_blocks = max(1, math.ceil(num_ratings / _RATINGS_PER_BLOCK))
  bounds = np.linspace(0, user_weight.shape[0], num_blocks + 1).astype(np.int64)
  share = np.add.reduceat(user_weight, bounds[:-1]) * num_ratings
  counts = np.floor(share).astype(np.int64)
  # Largest remainders get the ratings lost to rounding down.
  counts[np.argsort(counts - share)[:num_ratings - counts.sum()]] += 1
  for start, end, count in zip(bounds[:-1], bounds[1:], counts):
    yield slice(int(start), int(end)), int(count)


def _sample_pairs(rng: np.random.Generator, block_user_weight: np.ndarray,
                  item_weight: np.ndarray, item_sampler: AliasSampler,
                  count: int, keep_probability) -> tuple[np.ndarray, np.ndarray]:
  """Draws `count` distinct (user, item) pairs, ~ user weight x item weight x keep probability.

  Pairs are drawn with replacement in proportion to the weights, each kept with
  `keep_probability(block-local users, items)`, and repeats discarded, in rounds, keeping new
  pairs in the order drawn: this is sequential sampling without replacement. Returns block-local
  user indices and item indices (int32), sorted by pair.
  """
  num_items = item_weight.shape[0]
  user_sampler = AliasSampler(block_user_weight)
  block_mass = block_user_weight.sum()
  chosen = np.empty(0, dtype=np.int64)  # Sorted `pair_keys`, user * num_items + item.
  chosen_mass = 0.0  # Share of the block's proposal probability already taken.
  kept_share = 1.0  # Of the last round's draws; sizes the next round.
  while chosen.shape[0] < count:
    needed = count - chosen.shape[0]
    draws = int(needed / max((1.0 - chosen_mass) * kept_share, 0.02) * 1.1) + 64
    users, items = user_sampler.draw(rng, draws), item_sampler.draw(rng, draws)
    kept = rng.random(draws) < keep_probability(users, items)
    kept_share = max(float(kept.mean()), 0.01)
    users, items = users[kept], items[kept]
    keys, first_drawn = np.unique(pair_keys(users, items, num_items), return_index=True)
    position = np.minimum(np.searchsorted(chosen, keys), max(chosen.shape[0] - 1, 0))
    is_new = (chosen[position] != keys) if chosen.shape[0] else np.ones(keys.shape[0], bool)
    keys, first_drawn = keys[is_new], first_drawn[is_new]
    new_keys = keys[np.argsort(first_drawn, kind="stable")[:needed]]
    # Timsort merges the two sorted runs in linear time (np.union1d would re-hash everything).
    chosen = np.sort(np.concatenate([chosen, np.sort(new_keys)]), kind="stable")
    chosen_mass += float(np.sum(block_user_weight[new_keys // num_items]
                                * item_weight[new_keys % num_items]) / block_mass)
  return (chosen // num_items).astype(np.int32), (chosen % num_items).astype(np.int32)
