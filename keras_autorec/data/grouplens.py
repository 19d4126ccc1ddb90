"""The official MovieLens releases from GroupLens, read from a folder or the release zip."""

from __future__ import annotations

import dataclasses
import logging
import os

from keras_autorec.data import parsing
from keras_autorec.data.ratings import Ratings

DOWNLOAD_URL = "https://files.grouplens.org/datasets/movielens/{}.zip"
ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


@dataclasses.dataclass(frozen=True)
class Release:
  """Where a MovieLens release keeps its ratings and how they are laid out."""

  zip_name: str  # The release zip's name without ".zip", as on files.grouplens.org.
  folder: str  # The folder the zip extracts to.
  ratings_file: str
  delimiter: str
  header: bool
  rating_scale: tuple[float, float]
  # Ratings in the release as its README (ML-100K: u.info) documents them; None for a release
  # that changes over time.
  num_ratings: int | None

  @property
  def url(self) -> str:
    return DOWNLOAD_URL.format(self.zip_name)


HALF_STARS = (0.5, 5.0)
RELEASES = {
    "ml100k": Release("ml-100k", "ml-100k", "u.data", "\t", False, (1.0, 5.0), 100_000),
    "ml1m": Release("ml-1m", "ml-1m", "ratings.dat", "::", False, (1.0, 5.0), 1_000_209),
    "ml10m": Release("ml-10m", "ml-10M100K", "ratings.dat", "::", False, HALF_STARS,
                     10_000_054),
    "ml20m": Release("ml-20m", "ml-20m", "ratings.csv", ",", True, HALF_STARS, 20_000_263),
    "ml25m": Release("ml-25m", "ml-25m", "ratings.csv", ",", True, HALF_STARS, 25_000_095),
    "ml-latest-small": Release("ml-latest-small", "ml-latest-small", "ratings.csv", ",", True,
                               HALF_STARS, None),
}


def load_movielens(dataset: str, data_dir: str, rating_scale: tuple[float, float] | None = None,
                   on_bad_lines: str = "error") -> Ratings:
  """Reads the ratings of a MovieLens release (a key of RELEASES) found under `data_dir`.

  Warns when the count read differs from the release's documented count (a truncated download).

  Args:
    dataset: e.g. "ml100k", "ml1m", "ml-latest-small".
    data_dir: the folder holding the extracted release folder or its zip, the release folder
      itself, or the zip file.
    rating_scale: overrides the release's own scale.
    on_bad_lines: "error" or "skip"; see `parsing.parse_columns`.
  """
  release = _release(dataset)
  rating_scale = rating_scale or release.rating_scale
  columns = _read_release_file(release, data_dir, release.ratings_file, rating_scale,
                               on_bad_lines)
  read = int(columns.rating.shape[0])
  if release.num_ratings is not None and read != release.num_ratings:
    logging.warning(
        "%s: read %d ratings, but the %s release has %d; the file is truncated or modified "
        "(download it again from %s)", columns.source, read, release.zip_name, release.num_ratings,
        release.url)
  return parsing.ratings_from_columns(columns, rating_scale)


def load_ml100k_fold(data_dir: str, fold: str, rating_scale: tuple[float, float] | None = None,
                     on_bad_lines: str = "error") -> tuple[Ratings, Ratings]:
  """Reads a canonical ML-100K split (`<fold>.base`, `<fold>.test`) as (train, test).

  Both share one id vocabulary, built from their union. `fold` is one of u1..u5, ua, ub.
  """
  if fold not in ML100K_FOLDS:
    raise ValueError(f"unknown ML-100K fold {fold!r}; expected one of {', '.join(ML100K_FOLDS)}")
  release = RELEASES["ml100k"]
  rating_scale = rating_scale or release.rating_scale
  train, test = parsing.ratings_sharing_vocabulary(
      [_read_release_file(release, data_dir, f"{fold}.{part}", rating_scale, on_bad_lines)
       for part in ("base", "test")], rating_scale)
  logging.info("Loaded ML-100K fold %s: %d train and %d test ratings, %d users, %d items",
               fold, train.num_ratings, test.num_ratings, train.num_users, train.num_items)
  return train, test


def locate(release: Release, data_dir: str, file_name: str) -> tuple[str, str | None]:
  """Returns (path, zip member or None) of a release file under `data_dir`.

  Raises DataNotFoundError naming every place looked at and the release's download URL.
  """
  member = f"{release.folder}/{file_name}"
  zip_file = f"{release.zip_name}.zip"
  candidates = [
      (os.path.join(data_dir, release.folder, file_name), None),
      (os.path.join(data_dir, file_name), None),
      (os.path.join(data_dir, zip_file), member),
  ]
  if data_dir.endswith(".zip"):
    candidates.append((data_dir, member))
  for path, zip_member in candidates:
    if os.path.isfile(path):
      return path, zip_member
  looked_at = "\n  ".join(p if m is None else f"{p} (member {m})" for p, m in candidates)
  raise parsing.DataNotFoundError(
      f"MovieLens file {file_name!r} of {release.zip_name} not found under {data_dir!r}; looked "
      f"at:\n  {looked_at}\nDownload the release from {release.url} and put the zip (or the "
      f"extracted {release.folder}/ folder) in {data_dir!r}.")


def _read_release_file(release: Release, data_dir: str, file_name: str,
                       rating_scale: tuple[float, float],
                       on_bad_lines: str) -> parsing.RawColumns:
  path, member = locate(release, data_dir, file_name)
  return parsing.read_columns(path, release.delimiter, member=member, header=release.header,
                              user_column=0, item_column=1, rating_column=2, timestamp_column=3,
                              num_fields=4, rating_scale=rating_scale, on_bad_lines=on_bad_lines)


def _release(dataset: str) -> Release:
  if dataset not in RELEASES:
    raise ValueError(f"unknown MovieLens release {dataset!r}; expected one of "
                     f"{', '.join(RELEASES)}")
  return RELEASES[dataset]
