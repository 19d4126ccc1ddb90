"""A trained AutoRec with its layout, training record, blend and fallback; the model builder."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from keras_autorec import blend as blend_lib
from keras_autorec import fallback as fallback_lib
from keras_autorec.config import ModelConfig
from keras_autorec.data.layout import RowLayout
from keras_autorec.model import AutoRec


@dataclasses.dataclass
class TrainedModel:
  """A fitted model with the layout it was trained on, its training record and its fallback.

  `fallback` predicts the pairs the model cannot (a user or item without training ratings),
  fitted on the same training ratings; None predicts the default rating.
  """

  model: AutoRec
  layout: RowLayout
  history: dict[str, list[float]]
  epochs_run: int
  best_epoch: int
  seconds: float
  blend: blend_lib.RatingBlend | None = None  # applied to the model's ratings where set
  fallback: fallback_lib.RatingBiases | None = None



def build_model(config: ModelConfig, layout: RowLayout) -> AutoRec:
  """An AutoRec sized for `layout`, built so that its weights exist."""
  model = AutoRec(num_inputs=layout.num_columns, item_based=config.item_based,
                  hidden_units=config.hidden_units,
                  encoder_activation=config.encoder_activation,
                  decoder_activation=config.decoder_activation,
                  l2_weight=config.l2_weight_for(layout.train.nnz),
                  input_dropout=config.input_dropout, rating_scale=layout.rating_scale,
                  init_stddev=config.init_stddev)
  model(tf.zeros((1, layout.num_columns)))
  return model
