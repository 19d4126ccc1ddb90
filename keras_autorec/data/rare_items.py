"""A rating set where items far outnumber users and most items have a handful of ratings.

Built reproducibly from a MovieLens release, close to the shape of MovieLens "latest-small" (610
users, 9.7k items, ratings per item quartiles 1, 3, 9, mean 10). From ML-1M the defaults give 33,026
ratings, 610 users, 3,291 items, quartiles 1, 4, 9, mean 10, 62% of items with at most 5 ratings.
The thinning:

  1. keeping a random `num_users` of the users, then
  2. keeping, of each item's remaining ratings, a random min(count, cap_i), the caps drawn from a
     log-normal with median `median_cap` and log-scale spread `cap_log_stddev` and handed out in
     order of popularity (the most rated items get the largest caps and keep all their ratings).

`python -m keras_autorec.make_rare_items` writes it as CSV.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_autorec.data.ratings import Ratings


@dataclasses.dataclass(frozen=True)
class RareItemsConfig:
  """How to thin the ratings (see the module docstring)."""

  num_users: int = 610
  median_cap: float = 3.0
  cap_log_stddev: float = 1.5
  seed: int = 0


def thin(ratings: Ratings, config: RareItemsConfig = RareItemsConfig()) -> Ratings:
  """The subset of `ratings` with `config.num_users` users and log-normally capped items."""
  rng = np.random.default_rng(config.seed)
  num_users = min(config.num_users, ratings.num_users)
  users = np.zeros(ratings.num_users, bool)
  users[rng.choice(ratings.num_users, size=num_users, replace=False)] = True
  kept = np.flatnonzero(users[ratings.user_index])
  caps = np.sort(np.maximum(1, np.round(config.median_cap * np.exp(
      rng.normal(scale=config.cap_log_stddev, size=ratings.num_items)))).astype(np.int64))
  # The largest caps go to the most rated items (ties in random order): popular items stay
  # popular and users keep their many ratings of them, as in a large catalogue's long tail.
  counts = np.bincount(ratings.item_index[kept], minlength=ratings.num_items)
  by_popularity = rng.permutation(ratings.num_items)
  by_popularity = by_popularity[np.argsort(counts[by_popularity], kind="stable")]
  caps[by_popularity] = caps.copy()
  # A random order, then stable by item: each item's first cap_i ratings are a random sample.
  kept = kept[rng.permutation(kept.shape[0])]
  kept = kept[np.argsort(ratings.item_index[kept], kind="stable")]
  items = ratings.item_index[kept]
  first = np.searchsorted(items, items)
  rank = np.arange(kept.shape[0]) - first
  return ratings.subset(np.sort(kept[rank < caps[items]]))


def compact(ratings: Ratings) -> Ratings:
  """The ratings with vocabularies reduced to the users and items that have a rating."""
  users, user_index = np.unique(ratings.user_index, return_inverse=True)
  items, item_index = np.unique(ratings.item_index, return_inverse=True)
  return dataclasses.replace(ratings, user_index=user_index.astype(np.int32),
                             item_index=item_index.astype(np.int32),
                             user_ids=ratings.user_ids[users], item_ids=ratings.item_ids[items])


def describe(ratings: Ratings) -> str:
  """Counts and the item-count quartiles of `ratings`."""
  counts = np.bincount(ratings.item_index, minlength=ratings.num_items)
  counts = counts[counts > 0]
  quartiles = np.percentile(counts, [25, 50, 75]).astype(int).tolist()
  return (f"{ratings.num_ratings} ratings, {np.unique(ratings.user_index).size} users, "
          f"{counts.size} items; ratings per item: quartiles {quartiles}, mean "
          f"{counts.mean():.1f}, max {counts.max()}; {np.mean(counts <= 5):.0%} of items have "
          "at most 5")


def write_csv(ratings: Ratings, path: str) -> None:
  """Writes user,item,rating lines with a header, readable by --dataset=csv."""
  with open(path, "w") as f:
    f.write("user,item,rating\n")
    for user, item, rating in zip(ratings.user_ids[ratings.user_index],
                                  ratings.item_ids[ratings.item_index], ratings.rating):
      f.write(f"{user},{item},{rating:g}\n")
