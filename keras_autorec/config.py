"""The run's configuration: one frozen dataclass per concern, filled from flags at the edge.

Data and split (`DataConfig`, `SplitConfig`, defined beside their loaders in `keras_autorec.data`),
model (`ModelConfig`), training (`TrainConfig`) and export (`ExportConfig`);
`keras_autorec.cli_flags` builds each from the command line for every command and the pipeline.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_autorec.data.sources import DataConfig
from keras_autorec.data.splits import SplitConfig

# The prediction for a user or item without training ratings under the 'constant' fallback (the
# paper's), and of serving_default in an export without a fallback.
DEFAULT_RATING = 3.0
# K of the exported recommend, recommend_for_ratings and similar_items signatures.
EXPORT_TOP_K = 100
# beta of the exported ranking score (see `ExportConfig.popularity_weight`).
POPULARITY_WEIGHT = 1.75
EXPORT_BASE = "saved_models"  # Default parent of the TF Serving model base paths.

# The paper's lambda, chosen on validation RMSE on ML-100K and ML-1M (see README, Results): as a
# per-rating weight (lambda / 2N) it is 1.2e-3 on ML-100K and 1.2e-4 on ML-1M; one fixed per-rating
# weight cannot suit both (1.2e-3 under-fits ML-1M: 0.887 validation RMSE against 0.838).
DEFAULT_L2_LAMBDA = 200.0
# lambda / (2 N) was validated from 72k (ML-100K folds) to 810k (ML-1M) training ratings. On a few
# hundred ratings it would be a per-rating weight of 0.2, which under-fits (a 486-rating data set:
# test RMSE 1.19 against 1.04 for 0.9x the ratings' standard deviation); smaller data sets get the
# weight of this many ratings, 2e-3 at the default lambda, near the 1.2e-3 they used to have.
L2_LAMBDA_MIN_RATINGS = 50_000


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The AutoRec architecture; see `keras_autorec.model.AutoRec` for the other fields.

  Attributes:
    l2_lambda: the paper's lambda, whose objective is the summed squared error over the N
      training ratings + lambda / 2 * ||W||^2: the model's per-rating `l2_weight` is
      lambda / (2 N) (`keras_autorec.losses`), so one lambda suits data sets of different sizes;
      N is taken as at least L2_LAMBDA_MIN_RATINGS. Used when `l2_weight` is None.
    l2_weight: the per-rating L2 weight itself, whatever N; None derives it from `l2_lambda`.
  """

  item_based: bool = True
  hidden_units: tuple[int, ...] = (500,)
  encoder_activation: str = "sigmoid"
  decoder_activation: str = "identity"
  l2_lambda: float = DEFAULT_L2_LAMBDA
  l2_weight: float | None = None
  input_dropout: float = 0.0
  init_stddev: float | None = None

  def __post_init__(self):
    for name in ("l2_lambda", "l2_weight"):
      value = getattr(self, name)
      if value is not None and not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {value}")

  def l2_weight_for(self, num_train_ratings: int) -> float:
    """The per-rating L2 weight of a model trained on `num_train_ratings` ratings."""
    if self.l2_weight is not None:
      return float(self.l2_weight)
    return self.l2_lambda / (2.0 * max(L2_LAMBDA_MIN_RATINGS, num_train_ratings))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to fit a model.

  Attributes:
    optimizer: one of `keras_autorec.optimizers.OPTIMIZERS`, or 'lbfgs' (full batch).
    learning_rate: the optimizer's step size (Rprop: the initial per-weight step).
    epochs: the most epochs to run; with full batches an epoch is one step.
    batch_size: rows per step; 0 means every row in one step (full batch, the paper's setting).
    patience: epochs without a validation RMSE `min_delta` below the last such improvement before
      stopping; the best weights are kept.
    min_delta: the smallest drop of validation RMSE that resets the patience, so that a run
      creeping down a plateau (by 1e-5 an epoch) stops instead of running to `epochs`.
    mixed_precision: 'off', 'float16' or 'bfloat16'.
    strategy: a tf.distribute strategy name (see `keras_autorec.distribution`).
    model_dir: where checkpoints and TensorBoard logs go; a run started again on the same
      model_dir resumes after the last completed epoch. None trains without checkpoints.
    seed: seeds weights, dropout and the shuffling of rows.
    fallback: prediction for pairs whose user or item has no training ratings: 'biases' (the
      known side's shrunk mean, `keras_autorec.fallback`) or 'constant' (`default_rating`, the
      paper's choice).
    default_rating: the 'constant' fallback's rating.
    verbose: 0 silent; 1 a live progress line on a terminal, else one line per epoch; 2 one
      line per epoch (`keras_autorec.progress`).
    execution: 'dense', 'sparse' (O(nnz x k) epochs, `keras_autorec.training.sparse`) or 'auto'
      (sparse when the rows x columns matrix has over `training.sparse.trainer.AUTO_SPARSE_CELLS`
      cells and the sparse path supports the configuration).
    blend: blend AutoRec with user and item biases by the row's training count, the blend
      fitted on validation ratings (`keras_autorec.blend`); False scores AutoRec alone (the
      paper).
  """

  optimizer: str = "rprop"
  learning_rate: float = 0.01
  epochs: int = 500
  batch_size: int = 0
  patience: int = 30
  min_delta: float = 1e-4
  mixed_precision: str = "off"
  strategy: str = "default"
  model_dir: str | None = None
  seed: int = 0
  fallback: str = "biases"
  default_rating: float = DEFAULT_RATING
  verbose: int = 1
  execution: str = "auto"
  blend: bool = True


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """How to export a model for TF Serving.

  Attributes:
    export_dir: the TF Serving model base path; versions go to `export_dir/<integer>/`.
    top_k: K of recommend, recommend_for_ratings and similar_items (at most the number of items).
    default_rating: serving_default's rating when the user or item has no training ratings, if
      `export_model` gets no fallback.
    popularity_weight: beta of the `scores` that recommend and recommend_for_ratings rank by,
      (unclipped predicted rating) + beta * popularity, popularity being log(1 + the item's
      training ratings) standardised over the items; beta is in rating points per standard
      deviation of log popularity, and 0 ranks by predicted rating alone. Their `ratings` output
      is the predicted rating either way. The default maximised the validation recall@10 of
      held-out ratings >= 4, averaged over recommend and the fold-in and over ML-100K seeds 0
      and 1 (flat from 1.5 to 3; figures in the README's Serving section).
    fold_in_l2: ridge penalty lambda of the I-AutoRec fold-in, which fits a new user's decoder
      column (w, b) to f^-1(ratings) ~ z_i . w + b over the rated items' codes z_i, minimising
      squared error + lambda * ||(w, b) - (mean trained column, mean trained bias)||^2. Larger
      values trust few ratings less. None (the default) uses the penalty a trained column had,
      (training ratings) * l2_weight (see `keras_autorec.losses`), at least 1. Must be positive,
      which keeps the solve well posed with any number of ratings.
    warmup_requests: whether to write assets.extra/tf_serving_warmup_requests.
    rating_table_max_cells: when users x items is at most this, every rating is computed at
      export (4 bytes each: 100 MB at the default) and serving_default only looks it up;
      above it, serving_default computes each rating from the tables in O(k).
    max_batch_size: the most users or items one recommend, recommend_for_ratings or
      similar_items request may hold; more is INVALID_ARGUMENT. These signatures hold a few
      [batch, items] float32 matrices, so this bounds a request's memory (about 20 bytes x
      batch x items: 76 MB for ML-1M's 3706 items at the default). The client splits larger
      batches into requests of at most this many rows.
    max_rating_slots: the most (user, rating) slots, batch x list length with padding, one
      recommend_for_ratings request may hold; more is INVALID_ARGUMENT. The I-AutoRec fold-in
      holds slots x (hidden units + 1) float64 values.
  """

  export_dir: str = "saved_models/autorec"
  top_k: int = EXPORT_TOP_K
  default_rating: float = DEFAULT_RATING
  popularity_weight: float = POPULARITY_WEIGHT
  fold_in_l2: float | None = None
  warmup_requests: bool = True
  rating_table_max_cells: int = 25_000_000
  max_batch_size: int = 1024
  max_rating_slots: int = 100_000


def data_name(data: dict) -> str:
  """A short name for the data of a `sources.DataConfig` (as a dict): a model name for TF Serving.

  The dataset, or for csv the ratings file's name without extension, or synthetic_<shape>.
  """
  if data.get("dataset") == "csv" and data.get("ratings_file"):
    return os.path.splitext(os.path.basename(data["ratings_file"]))[0]
  if data.get("dataset") == "synthetic":
    return f"synthetic_{data.get('synthetic_shape')}"
  return str(data.get("dataset"))


def default_export_dir(data: dict) -> str:
  """saved_models/<data name> (see `data_name`): each data set gets its own TF Serving model."""
  return os.path.join(EXPORT_BASE, data_name(data))


__all__ = ["DEFAULT_L2_LAMBDA", "DEFAULT_RATING", "EXPORT_BASE", "EXPORT_TOP_K",
           "L2_LAMBDA_MIN_RATINGS", "POPULARITY_WEIGHT", "DataConfig", "ExportConfig",
           "ModelConfig", "SplitConfig", "TrainConfig", "data_name", "default_export_dir"]
