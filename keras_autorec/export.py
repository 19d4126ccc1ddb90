"""Export of a trained AutoRec as a versioned SavedModel for TensorFlow Serving.

`export_model` writes `serving.tables` (the arrays below) through `serving.module` (the
signatures) with `serving.warmup` records and metadata, published by `serving.publish`.

The export is a biased dot-product model precomputed from the trained network:

    rating(u, i) = clip(f(user_vector[u] . item_vector[i] + user_bias[u] + item_bias[i]))

  I-AutoRec (rows are items): item_vector[i] = z_i, the last hidden code of item i's training
    ratings; user_vector[u] = W_out[:, u], user_bias[u] = b_out[u], item_bias = 0.
  U-AutoRec (rows are users): user_vector[u] = z_u; item_vector[i] = W_out[:, i],
    item_bias[i] = b_out[i], user_bias = 0.

so a rating costs O(hidden units) and top-K over all items one matrix product. f is the decoder
activation and the clip is to the rating scale, exactly as `AutoRec.predict_ratings`.

Signatures (method predict, named inputs, dict outputs):
  serving_default        user_id str [B], item_id str [B] -> rating float32 [B]; the fallback's
                         rating (`keras_autorec.fallback`) when the user or the item has no
                         training ratings. Exported with a rare-rows blend
                         (`keras_autorec.blend`), the blended rating, as evaluated; the other
                         signatures rank and rate by the model alone.
  recommend              user_id str [B] -> item_ids str [B, K], scores float32 [B, K],
                         ratings float32 [B, K]; items the user rated in training are excluded.
  recommend_for_ratings  item_ids str [B, L], ratings float32 [B, L] ("" pads) -> item_ids,
                         scores, ratings; a user not seen in training, folded in without
                         retraining; the given items are excluded and unknown item ids ignored.
                         List each item once: a repeated item counts twice (I-AutoRec) or has its
                         ratings summed (U-AutoRec).
  similar_items          item_id str [B] -> item_ids, scores: cosine similarity of item vectors,
                         the item itself excluded.

Inputs are checked in the graph, so TF Serving answers INVALID_ARGUMENT (and
`tf.saved_model.load` raises InvalidArgumentError) instead of broadcasting: every input must have
exactly the rank above, paired inputs (user_id and item_id; item_ids and ratings) the same shape,
the top-K signatures at most `ExportConfig.max_batch_size` rows and recommend_for_ratings at most
`ExportConfig.max_rating_slots` values; a rating of a known item must be finite and within the
rating scale, while ratings on padding and unknown items are ignored whatever their value.

Top-K lists are sorted by score, best first. The recommendation score of an item is

    score(u, i) = f(user_vector[u] . item_vector[i] + user_bias[u] + item_bias[i])
                  + popularity_weight * popularity[i],

the unclipped predicted rating plus a popularity bonus, popularity[i] being log(1 + training
ratings of item i) standardised over the items (`ExportConfig.popularity_weight`): a predicted
rating alone ranks rarely rated items first, which seldom are the ones users rate next. `ratings`
are the listed items' predicted ratings, clipped like serving_default. Slots with no candidate left
(K exceeds the items not excluded) have item id "", score -inf and rating -inf; an unknown item_id
gets only such slots from similar_items.

Cold start: a user id unknown to `recommend` gets the same list as `recommend_for_ratings` with no
ratings. For U-AutoRec that is the model's reconstruction of an empty rating vector; for I-AutoRec
the decoder column of the average training user (the mean of W_out's columns and of b_out), which
is also the prior the I-AutoRec fold-in shrinks towards.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

import numpy as np
import tensorflow as tf

import keras_autorec
from keras_autorec import fallback as fallback_lib
from keras_autorec.blend import RatingBlend, ServingBlend
from keras_autorec.config import ExportConfig
from keras_autorec.data.layout import RowLayout
from keras_autorec.model import AutoRec
from keras_autorec.serving import publish, tables, warmup
from keras_autorec.serving.module import ServingModule
from keras_autorec.serving.publish import existing_versions  # noqa: F401 (public API)
from keras_autorec.serving.tables import fold_in_l2  # noqa: F401 (public API)
from keras_autorec.serving.warmup import WARMUP_FILE

__all__ = ["ASSETS_EXTRA", "METADATA_FILE", "SIGNATURE_NAMES", "WARMUP_FILE", "ExportConfig",
           "existing_versions", "export_model", "fold_in_l2", "version_metadata"]

SIGNATURE_NAMES = ("serving_default", "recommend", "recommend_for_ratings", "similar_items")
ASSETS_EXTRA = "assets.extra"
METADATA_FILE = "metadata.json"


def _json_value(value):
  if isinstance(value, (np.generic, np.ndarray)):
    return value.tolist()
  return str(value)


def _write_metadata(path: str, model: AutoRec, layout: RowLayout, config: ExportConfig,
                    metadata: dict | None) -> None:
  record = {
      "keras_autorec_version": keras_autorec.__version__,
      "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
      "model_config": model.get_config(),
      "export_config": dataclasses.asdict(config),
      "item_based": layout.item_based,
      "num_users": int(layout.user_ids().shape[0]),
      "num_items": int(layout.item_ids().shape[0]),
      "training_ratings": layout.train.nnz,
      "rating_scale": list(layout.rating_scale),
      "signatures": list(SIGNATURE_NAMES),
      **(metadata or {}),
  }
  with open(path, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True, default=_json_value)


def _write_saved_model(directory: str, model: AutoRec, layout: RowLayout, config: ExportConfig,
                       metadata: dict | None, blend: RatingBlend | None = None,
                       fallback: fallback_lib.RatingBiases | None = None) -> None:
  """Writes the complete SavedModel with its assets.extra into `directory`."""
  arrays = tables.serving_arrays(model, layout)
  serving_blend = (None if blend is None
                   else ServingBlend(blend, model.item_based, model.rating_scale))
  module = ServingModule(arrays, model, config,
                         tables.fallback_tables(fallback, layout, config.default_rating),
                         serving_blend)
  tf.saved_model.save(module, directory, signatures=module.serving_signatures())
  extra = os.path.join(directory, ASSETS_EXTRA)
  os.makedirs(extra, exist_ok=True)
  _write_metadata(os.path.join(extra, METADATA_FILE), model, layout, config, metadata)
  if config.warmup_requests:
    warmup.write_warmup_requests(os.path.join(extra, WARMUP_FILE),
                                 warmup.warmup_inputs(arrays, float(np.mean(model.rating_scale)),
                                                      config.max_batch_size,
                                                      config.max_rating_slots))


def version_metadata(version_dir: str) -> dict:
  """The `assets.extra/metadata.json` of an exported version; {} if it has none."""
  path = os.path.join(version_dir, ASSETS_EXTRA, METADATA_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def export_model(model: AutoRec, layout: RowLayout, config: ExportConfig,
                 metadata: dict | None = None, blend: RatingBlend | None = None,
                 fallback: fallback_lib.RatingBiases | None = None) -> str:
  """Exports a new integer version under config.export_dir atomically; returns its path.

  Args:
    model: the trained AutoRec.
    layout: the training layout the model was fitted on (ids, training ratings).
    config: where and how to export.
    metadata: JSON-serialisable facts to record, e.g. the dataset, split and metrics; written
      with the model and export configuration to `<version>/assets.extra/metadata.json`.
    blend: the rare-rows blend the model was evaluated with (`TrainedModel.blend`):
      serving_default then serves the blended ratings.
    fallback: serving_default's predictor for a user or item without training ratings, fitted on
      the model's training ratings (`TrainedModel.fallback`); None: `config.default_rating`.
  """
  if config.top_k < 1:
    raise ValueError(f"top_k must be positive, got {config.top_k}")
  if not np.isfinite(config.popularity_weight):
    raise ValueError(f"popularity_weight must be finite, got {config.popularity_weight}")
  if config.fold_in_l2 is not None and not config.fold_in_l2 > 0:
    raise ValueError(f"fold_in_l2 must be positive, got {config.fold_in_l2}")
  if config.max_batch_size < 1 or config.max_rating_slots < 1:
    raise ValueError(f"max_batch_size and max_rating_slots must be positive, got "
                     f"{config.max_batch_size} and {config.max_rating_slots}")
  config = dataclasses.replace(config, fold_in_l2=tables.fold_in_l2(config, model, layout))
  with publish.partial_directory(config.export_dir) as partial_dir:
    _write_saved_model(partial_dir, model, layout, config, metadata, blend, fallback)
    return publish.publish_version(partial_dir, config.export_dir)
