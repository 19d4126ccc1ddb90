"""MovieLens ratings through tensorflow-datasets (the `movielens/*-ratings` configs).

A data set already prepared in the TFDS data dir is read from there. Otherwise the GroupLens
download host is probed first, so that offline the caller gets a clear error within seconds
instead of a long hang inside the TFDS downloader.
"""

from __future__ import annotations

import logging
import socket
import threading

import numpy as np

from keras_autorec.data import grouplens, netflix
from keras_autorec.data.parsing import DataNotFoundError
from keras_autorec.data.ratings import Ratings, RatingsError, from_raw

TFDS_NAMES = {
    "ml100k": "movielens/100k-ratings",
    "ml1m": "movielens/1m-ratings",
    "ml20m": "movielens/20m-ratings",
    "ml25m": "movielens/25m-ratings",
    "ml-latest-small": "movielens/latest-small-ratings",
}
DOWNLOAD_HOST = ("files.grouplens.org", 443)
PROBE_TIMEOUT_S = 5.0
# Only these features are read; `movie_genres` is variable-length and would break batching.
_FEATURES = ("user_id", "movie_id", "user_rating", "timestamp")
_BATCH_SIZE = 1 << 16


def load_tfds(dataset: str, tfds_data_dir: str | None = None,
              rating_scale: tuple[float, float] | None = None) -> Ratings:
  """Loads a MovieLens data set (a key of TFDS_NAMES) via TFDS, downloading it if needed.

  Args:
    dataset: e.g. "ml100k"; "ml10m" and "netflix" are not in TFDS and raise DataNotFoundError
      saying where to get their files.
    tfds_data_dir: the TFDS data dir; None uses TFDS's default (~/tensorflow_datasets).
    rating_scale: overrides the release's own scale.
  """
  if dataset not in TFDS_NAMES:
    raise _not_in_tfds(dataset)
  name = TFDS_NAMES[dataset]
  release = grouplens.RELEASES[dataset]
  builder = _builder(name, tfds_data_dir)
  if not builder.is_prepared():
    if not download_host_reachable():
      raise DataNotFoundError(
          f"TFDS data set {name} is not prepared in {builder.data_dir} and the download host "
          f"{DOWNLOAD_HOST[0]}:{DOWNLOAD_HOST[1]} is unreachable (offline?). Download "
          f"{release.url} where there is internet, extract or copy it next to this machine and "
          f"pass that folder as --data_dir (the GroupLens files are read directly, without TFDS).")
    logging.info("Downloading and preparing %s into %s", name, builder.data_dir)
    builder.download_and_prepare()
  ratings = ratings_from_dataset(builder.as_dataset(split="train"),
                                 rating_scale or release.rating_scale, source=f"tfds:{name}")
  logging.info("Loaded %s: %d ratings, %d users, %d items, %d duplicates removed", ratings.source,
               ratings.num_ratings, ratings.num_users, ratings.num_items,
               ratings.duplicates_removed)
  return ratings


def ratings_from_dataset(dataset, rating_scale: tuple[float, float], source: str) -> Ratings:
  """Converts a TFDS MovieLens ratings tf.data.Dataset of examples into Ratings."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  columns = {feature: [] for feature in _FEATURES}
  selected = dataset.map(lambda example: {f: example[f] for f in _FEATURES})
  for batch in tfds.as_numpy(selected.batch(_BATCH_SIZE)):
    for feature in _FEATURES:
      columns[feature].append(batch[feature])
  if not columns["user_id"]:
    raise RatingsError(f"{source}: no ratings found (empty data set)")
  # String features arrive as object arrays of bytes; as fixed-width bytes they stay the raw id
  # (object arrays would stringify to "b'1'") and use less memory.
  user = np.concatenate(columns["user_id"]).astype(np.bytes_)
  item = np.concatenate(columns["movie_id"]).astype(np.bytes_)
  return from_raw(user, item, np.concatenate(columns["user_rating"]),
                  np.concatenate(columns["timestamp"]), rating_scale, source)


def download_host_reachable(host: tuple[str, int] = DOWNLOAD_HOST,
                            timeout_s: float = PROBE_TIMEOUT_S) -> bool:
  """Returns whether a TCP connection to `host` opens within `timeout_s`, DNS lookup included.

  The lookup and connect run in a daemon thread because name resolution ignores socket timeouts
  and can block far longer when offline; an abandoned thread does not keep the process alive.
  """
  connected = threading.Event()

  def connect() -> None:
    try:
      with socket.create_connection(host, timeout=timeout_s):
        connected.set()
    except OSError:
      pass

  threading.Thread(target=connect, name="download-host-probe", daemon=True).start()
  return connected.wait(timeout_s)


def _builder(name: str, tfds_data_dir: str | None):
  # Imported here so that the other sources work without loading TensorFlow.
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    return tfds.builder(name, data_dir=tfds_data_dir)
  except ModuleNotFoundError as e:
    # TFDS's movielens builder imports importlib_resources without declaring it.
    raise ModuleNotFoundError(
        f"loading {name} through TFDS needs the module {e.name!r}: pip install {e.name} (or pass "
        f"--data_dir with the GroupLens files to read them without TFDS)") from e


def _not_in_tfds(dataset: str) -> Exception:
  if dataset == "netflix":
    return DataNotFoundError(f"netflix is not available through TFDS and needs --data_dir. "
                             f"{netflix.WHERE_TO_GET}")
  if dataset in grouplens.RELEASES:
    release = grouplens.RELEASES[dataset]
    return DataNotFoundError(
        f"{dataset} is not available through TFDS (4.9 has no such movielens config) and needs "
        f"--data_dir: download {release.url} and pass the folder holding the zip or the "
        f"extracted {release.folder}/ folder as --data_dir.")
  return ValueError(f"unknown TFDS data set {dataset!r}; expected one of {', '.join(TFDS_NAMES)}")
