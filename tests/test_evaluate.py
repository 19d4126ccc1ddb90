"""Tests of the evaluation of an exported SavedModel against the in-memory evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from keras_autorec import evaluate, export, training
from keras_autorec.data import ratings as ratings_lib
from keras_autorec.data import splits

DEFAULT_RATING = 3.5


def split_with_unseen_ids() -> splits.RatingsSplit:
  """A random split whose test set also rates a user and an item without training ratings."""
  rng = np.random.default_rng(1)
  users, items = np.nonzero(rng.random((40, 25)) < 0.4)
  users = np.append(users.astype(str), ["new-user", "new-user", "3"])
  items = np.append(items.astype(str), ["0", "1", "new-item"])
  ratings = ratings_lib.from_raw(users, items, rng.integers(1, 6, users.shape[0]), None, (1, 5),
                                 "synthetic")
  unseen = ((ratings.user_ids[ratings.user_index] == "new-user")
            | (ratings.item_ids[ratings.item_index] == "new-item"))
  permutation = rng.permutation(np.flatnonzero(~unseen))
  num_held_out = permutation.shape[0] // 10
  test = np.concatenate([permutation[:num_held_out], np.flatnonzero(unseen)])
  validation, train = permutation[num_held_out:2 * num_held_out], permutation[2 * num_held_out:]
  return splits.RatingsSplit(train=ratings.subset(np.sort(train)),
                             validation=ratings.subset(np.sort(validation)),
                             test=ratings.subset(np.sort(test)))


@pytest.mark.parametrize("item_based", [True, False], ids=["I-AutoRec", "U-AutoRec"])
def test_saved_model_errors_equal_the_in_memory_evaluation(item_based, tmp_path):
  split = split_with_unseen_ids()
  trained = training.fit(split, training.ModelConfig(item_based=item_based, hidden_units=(8,)),
                         training.TrainConfig(epochs=3, batch_size=16, verbose=0))
  path = export.export_model(trained.model, trained.layout,
                             export.ExportConfig(export_dir=str(tmp_path),
                                                 default_rating=DEFAULT_RATING,
                                                 warmup_requests=False),
                             fallback=trained.fallback)
  expected = training.evaluate(trained, split, DEFAULT_RATING)
  for name, ratings in (("validation", split.validation), ("test", split.test)):
    # A small batch size so that several signature calls are concatenated.
    errors = evaluate.evaluate_saved_model(path, ratings, batch_size=7)
    assert errors.rmse == pytest.approx(expected[f"{name}_rmse"], abs=1e-4)
    assert errors.mae == pytest.approx(expected[f"{name}_mae"], abs=1e-4)
    assert errors.num_ratings == expected[f"{name}_ratings"]
    assert errors.num_default == expected[f"{name}_default_predictions"]
  assert expected["test_default_predictions"] == 3


def test_no_ratings_give_nan_errors(tmp_path):
  split = split_with_unseen_ids()
  empty = split.test.subset(np.array([], dtype=np.int64))
  errors = evaluate.evaluate_saved_model(str(tmp_path / "never-loaded"), empty)
  assert math.isnan(errors.rmse) and math.isnan(errors.mae)
  assert (errors.num_ratings, errors.num_default) == (0, 0)


@pytest.mark.parametrize("metadata, refit", [
    ({"refit": True, "metrics": {}}, True), ({"refit": False, "metrics": {}}, False),
    # Exports from before "refit" was recorded: refit runs recorded their refit epochs.
    ({"metrics": {"refit_epochs": 81}}, True), ({"metrics": {}}, False), (None, False)])
def test_was_refit_reads_the_export_metadata(tmp_path, metadata, refit):
  if metadata is not None:
    extra = tmp_path / export.ASSETS_EXTRA
    extra.mkdir()
    (extra / export.METADATA_FILE).write_text(json.dumps(metadata))
  assert evaluate.was_refit(str(tmp_path)) is refit
