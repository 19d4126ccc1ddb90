"""Pipeline artifacts: directories with a content fingerprint, and their on-disk formats."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import keras
import numpy as np

from keras_autorec.data.layout import RowLayout, SparseRows
from keras_autorec.data.ratings import Ratings
from keras_autorec.data.splits import RatingsSplit

SPLIT_NAMES = ("train", "validation", "test")
_VOCABULARY_FILE = "vocabulary.npz"
_SPLITS_FILE = "splits.json"
_LAYOUT_FILE = "layout.npz"
MODEL_FILE = "model.keras"


@dataclasses.dataclass(frozen=True)
class Artifact:
  """A component output: its type, directory, content fingerprint and small JSON properties."""

  type_name: str
  uri: str
  fingerprint: str
  properties: dict = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, record: dict) -> "Artifact":
    return cls(**record)


def fingerprint_json(value) -> str:
  """SHA-256 of a JSON value in canonical form (sorted keys, no whitespace)."""
  text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def fingerprint_arrays(arrays: dict[str, np.ndarray]) -> str:
  """SHA-256 of named arrays' dtypes, shapes and bytes; unlike .npz bytes it has no timestamps."""
  digest = hashlib.sha256()
  for name in sorted(arrays):
    array = np.ascontiguousarray(arrays[name])
    digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def fingerprint_paths(paths: list[str]) -> str:
  """SHA-256 of the path, size and modification time of every file at or under `paths`.

  Like TFX's ExampleGen input fingerprint, it notices replaced or edited files without reading
  large data sets.
  """
  entries = []
  for path in paths:
    if os.path.isfile(path):
      files = [path]
    else:
      files = sorted(os.path.join(root, name) for root, _, names in os.walk(path)
                     for name in names)
    for file in files:
      stat = os.stat(file)
      entries.append([os.path.abspath(file), stat.st_size, stat.st_mtime_ns])
  return fingerprint_json(entries)


def write_json(path: str, value) -> None:
  """Writes `value` as indented JSON."""
  with open(path, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True, default=str)


def read_json(path: str):
  """Reads a JSON file."""
  with open(path) as f:
    return json.load(f)


def _ratings_arrays(ratings: Ratings) -> dict[str, np.ndarray]:
  arrays = {"user_index": ratings.user_index, "item_index": ratings.item_index,
            "rating": ratings.rating, "timestamp": ratings.timestamp}
  if ratings.expected_rating is not None:
    arrays["expected_rating"] = ratings.expected_rating
  return arrays


def write_split(split: RatingsSplit, directory: str) -> str:
  """Writes train/validation/test and the shared vocabulary as .npz; returns the fingerprint."""
  train = split.train
  vocabulary = {"user_ids": train.user_ids.astype(str), "item_ids": train.item_ids.astype(str)}
  np.savez_compressed(os.path.join(directory, _VOCABULARY_FILE), **vocabulary)
  fingerprints = {"vocabulary": fingerprint_arrays(vocabulary)}
  counts = {}
  for name in SPLIT_NAMES:
    ratings = getattr(split, name)
    arrays = _ratings_arrays(ratings)
    np.savez_compressed(os.path.join(directory, f"{name}.npz"), **arrays)
    fingerprints[name] = fingerprint_arrays(arrays)
    counts[name] = ratings.num_ratings
  fingerprint = fingerprint_json(fingerprints)
  write_json(os.path.join(directory, _SPLITS_FILE), {
      "description": split.description, "source": train.source,
      "rating_scale": list(train.rating_scale), "duplicates_removed": train.duplicates_removed,
      "num_ratings": counts, "fingerprints": fingerprints, "fingerprint": fingerprint})
  return fingerprint


def split_fingerprints(directory: str) -> dict[str, str]:
  """The per-split and vocabulary fingerprints recorded with an examples artifact."""
  return read_json(os.path.join(directory, _SPLITS_FILE))["fingerprints"]


def read_split(directory: str) -> RatingsSplit:
  """Reads the RatingsSplit that `write_split` wrote."""
  info = read_json(os.path.join(directory, _SPLITS_FILE))
  with np.load(os.path.join(directory, _VOCABULARY_FILE)) as vocabulary:
    user_ids, item_ids = vocabulary["user_ids"], vocabulary["item_ids"]
  parts = {}
  for name in SPLIT_NAMES:
    with np.load(os.path.join(directory, f"{name}.npz")) as arrays:
      parts[name] = Ratings(
          user_index=arrays["user_index"], item_index=arrays["item_index"],
          rating=arrays["rating"], timestamp=arrays["timestamp"], user_ids=user_ids,
          item_ids=item_ids, rating_scale=tuple(info["rating_scale"]), source=info["source"],
          expected_rating=arrays["expected_rating"] if "expected_rating" in arrays else None)
  return RatingsSplit(description=info["description"], **parts)


def write_layout(layout: RowLayout, directory: str) -> str:
  """Writes the row layout (vocabularies and training rows) as .npz; returns its fingerprint."""
  arrays = {
      "item_based": np.array(layout.item_based), "row_ids": layout.row_ids.astype(str),
      "column_ids": layout.column_ids.astype(str), "row_splits": layout.train.row_splits,
      "columns": layout.train.columns, "values": layout.train.values,
      "num_columns": np.array(layout.train.num_columns), "row_of": layout.row_of,
      "column_of": layout.column_of,
      "rating_scale": np.array(layout.rating_scale, dtype=np.float64),
  }
  np.savez_compressed(os.path.join(directory, _LAYOUT_FILE), **arrays)
  return fingerprint_arrays(arrays)


def read_layout(directory: str) -> RowLayout:
  """Reads the RowLayout that `write_layout` wrote."""
  with np.load(os.path.join(directory, _LAYOUT_FILE)) as arrays:
    train = SparseRows(row_splits=arrays["row_splits"], columns=arrays["columns"],
                       values=arrays["values"], num_columns=int(arrays["num_columns"]))
    return RowLayout(item_based=bool(arrays["item_based"]), row_ids=arrays["row_ids"],
                     column_ids=arrays["column_ids"], train=train, row_of=arrays["row_of"],
                     column_of=arrays["column_of"],
                     rating_scale=tuple(float(v) for v in arrays["rating_scale"]))


def subdirectory(output_dir: str, name: str) -> str:
  """`output_dir/name`, created if missing."""
  path = os.path.join(output_dir, name)
  os.makedirs(path, exist_ok=True)
  return path


def model_fingerprint(model: keras.Model) -> str:
  """Fingerprint of a model's configuration and weights (not of its file, which holds a date)."""
  weights = {f"{index:04d}": weight for index, weight in enumerate(model.get_weights())}
  return fingerprint_json([model.get_config(), fingerprint_arrays(weights)])


def load_model(model: Artifact) -> keras.Model:
  """The trained AutoRec of a Model artifact."""
  return keras.saving.load_model(os.path.join(model.uri, MODEL_FILE), compile=False)
