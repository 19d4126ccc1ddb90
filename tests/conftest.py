"""Shared test setup: two logical CPUs for distribution tests and small synthetic ratings."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_autorec import distribution  # noqa: E402
from keras_autorec.data import ratings as ratings_lib  # noqa: E402
from keras_autorec.data import splits  # noqa: E402

NUM_USERS, NUM_ITEMS, NUM_RATINGS = 60, 40, 800
# The serving client's stand-in model, fake TF Serving servers and certificates, shared by
# tests/test_autorec_client.py, test_client.py, test_channel.py and test_errors.py.
pytest_plugins = ("client_fixtures",)

try:
  distribution.split_cpu(2)
except RuntimeError:
  # TensorFlow already initialised its devices (imported and used before this conftest);
  # tests that need two CPUs skip themselves.
  pass


def shared_data_dir() -> pathlib.Path:
  """The read-only GroupLens data: $AUTOREC_SHARED_DATA if set, else ../shared/data of the repo."""
  default = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
  return pathlib.Path(os.environ.get("AUTOREC_SHARED_DATA", default))


def num_logical_cpus() -> int:
  return len(tf.config.list_logical_devices("CPU"))


def make_ratings(seed: int = 0, noise: float = 0.3) -> ratings_lib.Ratings:
  """Rank-2 ratings on a 1..5 scale for NUM_RATINGS random (user, item) pairs."""
  rng = np.random.default_rng(seed)
  user_factors = rng.normal(size=(NUM_USERS, 2))
  item_factors = rng.normal(size=(NUM_ITEMS, 2))
  pairs = rng.choice(NUM_USERS * NUM_ITEMS, size=NUM_RATINGS, replace=False)
  users, items = pairs // NUM_ITEMS, pairs % NUM_ITEMS
  expected = 3.0 + 0.8 * np.sum(user_factors[users] * item_factors[items], axis=1)
  rating = np.clip(expected + rng.normal(scale=noise, size=NUM_RATINGS), 1.0, 5.0)
  return ratings_lib.from_raw(
      np.array([f"u{u}" for u in users]), np.array([f"i{i}" for i in items]), rating,
      timestamp=rng.integers(0, 10**9, size=NUM_RATINGS), rating_scale=(1.0, 5.0),
      source="synthetic")


@pytest.fixture(scope="session")
def ratings() -> ratings_lib.Ratings:
  return make_ratings()


@pytest.fixture(scope="session")
def split(ratings) -> splits.RatingsSplit:
  return splits.random_split(ratings, test_fraction=0.1, validation_fraction=0.1, seed=0)


@pytest.fixture
def ratings_file(tmp_path, ratings) -> str:
  """make_ratings() as a user,item,rating CSV file."""
  path = tmp_path / "ratings.csv"
  with open(path, "w") as f:
    f.write("user,item,rating\n")
    for user, item, rating in zip(ratings.user_ids[ratings.user_index],
                                  ratings.item_ids[ratings.item_index], ratings.rating):
      f.write(f"{user},{item},{rating}\n")
  return str(path)


@pytest.fixture
def reset_policy():
  """Restores the float32 global dtype policy however the test ends."""
  yield
  keras.mixed_precision.set_global_policy("float32")
