"""The rare-items thinning: fewer users, capped items, popular items kept, reproducible."""

from __future__ import annotations

import numpy as np

from keras_autorec.data import rare_items, sources
from keras_autorec.data import ratings as ratings_lib


def dense_ratings(num_users: int = 200, num_items: int = 300, seed: int = 0):
  """Half of all pairs rated, item i rated by about a share (i + 1) / num_items of the users."""
  rng = np.random.default_rng(seed)
  users, items = np.meshgrid(np.arange(num_users), np.arange(num_items), indexing="ij")
  keep = rng.random(users.shape) < (items + 1) / num_items
  users, items = users[keep], items[keep]
  return ratings_lib.from_raw(users.astype(str), np.char.add("i", items.astype(str)),
                              rng.integers(1, 6, users.size).astype(np.float32), None,
                              (1.0, 5.0), "dense")


def test_keeps_the_users_asked_for_and_caps_most_items_to_a_handful():
  ratings = dense_ratings()
  config = rare_items.RareItemsConfig(num_users=80, median_cap=3.0, cap_log_stddev=1.0)
  thinned = rare_items.compact(rare_items.thin(ratings, config))
  assert thinned.num_users == 80
  assert thinned.num_items > thinned.num_users
  counts = np.bincount(thinned.item_index)
  assert 2 <= np.median(counts) <= 4
  # The largest caps go to the items most rated by the kept users: the item keeping the most
  # ratings is one of those (several tie, each rated by every kept user).
  kept_users = np.isin(ratings.user_ids[ratings.user_index], thinned.user_ids)
  source_counts = np.bincount(ratings.item_index[kept_users], minlength=ratings.num_items)
  most_kept = np.flatnonzero(ratings.item_ids == thinned.item_ids[counts.argmax()])[0]
  assert source_counts[most_kept] == source_counts.max()
  assert counts.max() > 10


def test_is_reproducible_and_depends_on_the_seed():
  ratings = dense_ratings()
  first, again, other = (rare_items.thin(ratings, rare_items.RareItemsConfig(num_users=50, seed=s))
                         for s in (0, 0, 1))
  np.testing.assert_array_equal(first.user_index, again.user_index)
  np.testing.assert_array_equal(first.item_index, again.item_index)
  assert first.num_ratings != other.num_ratings or not np.array_equal(first.user_index,
                                                                      other.user_index)


def test_the_csv_reads_back_as_the_same_ratings(tmp_path):
  thinned = rare_items.compact(rare_items.thin(dense_ratings(),
                                               rare_items.RareItemsConfig(num_users=40)))
  path = str(tmp_path / "rare.csv")
  rare_items.write_csv(thinned, path)
  read = sources.load_ratings(sources.DataConfig(dataset="csv", ratings_file=path))
  assert read.num_ratings == thinned.num_ratings
  key = lambda r: sorted(zip(r.user_ids[r.user_index], r.item_ids[r.item_index], r.rating))
  assert key(read) == key(thinned)
  assert "items" in rare_items.describe(thinned)
