"""The run's configuration: one frozen dataclass per concern, filled from flags at the edge."""

from __future__ import annotations

import dataclasses

import numpy as np

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
    execution: 'dense', 'sparse' (O(nnz x k) epochs, `keras_autorec.sparse`) or 'auto' (sparse
      when the rows x columns matrix has over `sparse.AUTO_SPARSE_CELLS` cells and the sparse
      path supports the configuration).
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
  default_rating: float = 3.0
  verbose: int = 1
  execution: str = "auto"
  blend: bool = True
