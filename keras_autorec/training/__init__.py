"""Training AutoRec: `fit` dispatches to the dense, sparse or L-BFGS trainer; all share one early
stopping (`early_stopping`) and, except the dense path under Keras' `fit`, one epoch loop (`loop`).

The names below are the package's public API (`keras_autorec.training.fit_and_evaluate`, ...).
"""

from keras_autorec.config import (DEFAULT_L2_LAMBDA, L2_LAMBDA_MIN_RATINGS, ModelConfig,
                                  TrainConfig)
from keras_autorec.training.early_stopping import (CheckpointMismatchError,
                                                   ResumableEarlyStopping, checkpoint_settings)
from keras_autorec.training.fit import (evaluate, fit, fit_and_evaluate,
                                        fit_on_train_and_validation)
from keras_autorec.training.trained_model import TrainedModel, build_model

__all__ = ["DEFAULT_L2_LAMBDA", "L2_LAMBDA_MIN_RATINGS", "CheckpointMismatchError", "ModelConfig",
           "ResumableEarlyStopping", "TrainConfig", "TrainedModel", "build_model",
           "checkpoint_settings", "evaluate", "fit", "fit_and_evaluate",
           "fit_on_train_and_validation"]
