"""absl flags shared by the command lines, and the config dataclasses they fill.

Each `define_*` function is idempotent, so several command-line modules (train, evaluate,
experiments, the pipeline runner) can be imported into one process without clashing. Only
command-line `main`s read flags; the library takes the dataclasses.

train's implicit mode (`feedback`) fills `implicit.splits.ImplicitDataConfig` and
`implicit.experiment.ExperimentConfig` from its own flags and from the model and training flags
it shares with rating training (IMPLICIT_FIT_FLAGS), and refuses flags the mode does not take.

Every `define_*` returns its `cli_help.HelpGroup`, which commands pass to `cli_help.flags_parser`
for their `--help`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from absl import app, flags

from keras_autorec import cli_help, fallback
# Short names, so the many definitions below read as a table.
from keras_autorec.cli_help import define as _define, help_group as _help_group
from keras_autorec.config import (EXPORT_TOP_K, POPULARITY_WEIGHT, DataConfig, ExportConfig,
                                  ModelConfig, SplitConfig, TrainConfig, default_export_dir)
from keras_autorec.data import sources
from keras_autorec.data.splits import ML100K_FOLDS
from keras_autorec.implicit import experiment, fit, losses, splits

FLAGS = flags.FLAGS


@_help_group("data")
def define_data_flags() -> None:
  """Flags of `DataConfig`: which ratings to load and how to parse them."""
  _define("enum", "dataset", "ml100k", "Which ratings; melon and synthetic_melon are playlists, "
          "which only keras_autorec.train takes (implicit feedback).",
          enum_values=list(sources.DATASETS + splits.PLAYLIST_DATASETS))
  _define("string", "data_dir", None, "Folder holding the GroupLens or Netflix release (or its "
          "zip), or Melon's train.json, val.json and test.json; without it MovieLens comes from "
          "tensorflow-datasets.")
  _define("string", "tfds_data_dir", None, "tensorflow-datasets data folder.")
  _define("string", "ratings_file", None, "--dataset=csv: the ratings file.")
  _define("string", "delimiter", ",", "--dataset=csv: field delimiter (\\t for tab).")
  _define("boolean", "header", True, "--dataset=csv: whether the first line is a header.")
  _define("string", "user_column", "0", "--dataset=csv: user id column (name or 0-based "
          "position).")
  _define("string", "item_column", "1", "--dataset=csv: item id column.")
  _define("string", "rating_column", "2", "--dataset=csv: rating column.")
  _define("string", "timestamp_column", None, "--dataset=csv: timestamp column, if any.")
  _define("list", "rating_scale", None, "lowest,highest rating; default: the dataset's own.")
  _define("enum", "on_bad_lines", "error", "What a ratings file line that is not a rating does "
          "(wrong field count, blank, not a number, out of the rating scale, too long): error "
          "stops at the earliest one, naming file:line; skip drops them and logs how many and "
          "the first few.", enum_values=["error", "skip"])
  _define("string", "synthetic_shape", "ml100k", "--dataset=synthetic: ml100k, ml1m, ml10m or "
          "netflix.")
  _define("float", "synthetic_noise_stddev", DataConfig.synthetic_noise_stddev,
          "--dataset=synthetic: sigma of the Gaussian noise.")
  _define("integer", "data_seed", 0, "--dataset=synthetic: seed of the generated ratings.")


@_help_group("split")
def define_split_flags() -> None:
  """Flags of `SplitConfig`."""
  _define("string", "split", "random", "random (paper: 90/10, 10% of train for validation), an "
          f"ML-100K fold ({', '.join(ML100K_FOLDS)}), or files (--train_file, --test_file).")
  _define("string", "train_file", None, "--split=files: training ratings file.")
  _define("string", "test_file", None, "--split=files: test ratings file.")
  _define("float", "test_fraction", 0.1, "--split=random: share of ratings for test.")
  _define("float", "validation_fraction", 0.1, "Share of training ratings for validation.")
  _define("integer", "seed", 0, "Seeds the split, the weights and the shuffling.")


@_help_group("split")
def define_repeats_flag(default: int = 1) -> None:
  """--repeats: how many seeds (seed, seed + 1, ...) to run and summarise."""
  _define("integer", "repeats", default, "Runs with seeds seed..seed+repeats-1 and reports the "
          "mean and 95% confidence interval.")


@_help_group("training")
def define_refit_flag() -> None:
  """--refit: after early stopping, retrain on train + validation for the chosen epochs."""
  _define("boolean", "refit", True, "After early stopping on validation, retrain on train + "
          "validation for the chosen number of epochs; test metrics (and any export) are that "
          "model's.")


@_help_group("model")
def define_model_flags() -> None:
  """Flags of `ModelConfig`."""
  _define("enum", "model", "item", "I-AutoRec (item rows) or U-AutoRec (user rows).",
          enum_values=["item", "user"])
  _define("list", "hidden_units", ["500"], "Hidden layer sizes, e.g. 500 or 500,250,500.")
  _define("string", "encoder_activation", "sigmoid", "g: hidden activation.")
  _define("string", "decoder_activation", "identity", "f: output activation.")
  _define("float", "l2_lambda", ModelConfig.l2_lambda, "The paper's lambda: L2 on "
          "kernels at l2_weight = lambda / (2 N) per rating for N training ratings (N at least "
          "50,000), so it suits data sets of different sizes (keras_autorec/losses.py).")
  _define("float", "l2_weight", None, "The per-rating L2 weight on kernels (the loss is the mean "
          "squared error over observed ratings), whatever N; instead of --l2_lambda.")
  _define("float", "input_dropout", 0.0, "Dropout rate on inputs (denoising).")


@_help_group("training")
def define_train_flags() -> None:
  """Flags of `TrainConfig`."""
  defaults = TrainConfig
  _define("string", "optimizer", defaults.optimizer, "rprop, lbfgs, adam, rmsprop or sgd.")
  _define("float", "learning_rate", defaults.learning_rate, "Step size (Rprop: initial step).")
  _define("integer", "epochs", defaults.epochs, "Most epochs.")
  _define("integer", "batch_size", defaults.batch_size, "Rows per step; 0 = full batch.")
  _define("integer", "patience", defaults.patience, "Epochs without a validation RMSE "
          "--min_delta below the last such improvement before stopping; the best weights are "
          "kept.")
  _define("float", "min_delta", defaults.min_delta, "Smallest drop of validation RMSE that "
          "resets the patience.")
  _define("enum", "mixed_precision", "off", "Mixed precision.",
          enum_values=["off", "float16", "bfloat16"])
  _define("enum", "strategy", "default", "tf.distribute strategy; multi_worker trains over the "
          "workers of the TF_CONFIG environment variable (README, Scaling out).",
          enum_values=["default", "mirrored", "multi_worker", "tpu"])
  _define("enum", "fallback", defaults.fallback, "Prediction for a user or item without training "
          "ratings: biases (the known side's shrunk mean rating; keras_autorec/fallback.py) or "
          "constant (--default_rating, the paper's).", enum_values=list(fallback.FALLBACKS))
  _define("float", "default_rating", defaults.default_rating, "--fallback=constant: the rating "
          "(the paper's 3).")
  _define("string", "model_dir", None, "Checkpoints and TensorBoard logs; rerunning with the "
          "same model_dir resumes.")
  _define("integer", "verbose", 1, "0 silent; 1 a live progress line on a terminal, one line "
          "per epoch otherwise (a log file, CI); 2 one line per epoch.")
  _define("enum", "execution", defaults.execution, "dense (per-batch dense rows), sparse "
          "(O(nnz x k) epochs, for large data) or auto (sparse when rows x columns is large).",
          enum_values=["auto", "dense", "sparse"])
  _define("boolean", "blend", defaults.blend, "Blend AutoRec with user and item biases, "
          "weighted by the row's training count and fitted on validation "
          "(keras_autorec/blend.py), which helps rarely rated items; --noblend scores AutoRec "
          "alone, as the paper.")


def data_config() -> DataConfig:
  """DataConfig of ratings from the data flags (playlists are an error: see
  `implicit_data_config`)."""
  if splits.is_playlists(FLAGS.dataset):
    raise app.UsageError(f"--dataset={FLAGS.dataset} holds playlists, not ratings; "
                         "python -m keras_autorec.train runs it (implicit feedback)")
  return _data_config()


def _data_config() -> DataConfig:
  scale = None
  if FLAGS.rating_scale:
    if len(FLAGS.rating_scale) != 2:
      raise app.UsageError("--rating_scale takes two numbers: lowest,highest")
    scale = (float(FLAGS.rating_scale[0]), float(FLAGS.rating_scale[1]))
  return DataConfig(
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, tfds_data_dir=FLAGS.tfds_data_dir,
      ratings_file=FLAGS.ratings_file,
      delimiter="\t" if FLAGS.delimiter == "\\t" else FLAGS.delimiter, header=FLAGS.header,
      user_column=FLAGS.user_column, item_column=FLAGS.item_column,
      rating_column=FLAGS.rating_column, timestamp_column=FLAGS.timestamp_column,
      rating_scale=scale, on_bad_lines=FLAGS.on_bad_lines,
      synthetic_shape=FLAGS.synthetic_shape, synthetic_noise_stddev=FLAGS.synthetic_noise_stddev, seed=FLAGS.data_seed)


def split_config() -> SplitConfig:
  """SplitConfig from the split flags."""
  return SplitConfig(protocol=FLAGS.split, test_fraction=FLAGS.test_fraction,
                     validation_fraction=FLAGS.validation_fraction, seed=FLAGS.seed,
                     train_file=FLAGS.train_file, test_file=FLAGS.test_file)


def model_config() -> ModelConfig:
  """ModelConfig from the model flags."""
  if FLAGS["l2_lambda"].present and FLAGS.l2_weight is not None:
    raise app.UsageError("--l2_lambda and --l2_weight set the same penalty; pass one of them")
  return ModelConfig(
      item_based=FLAGS.model == "item", hidden_units=tuple(int(u) for u in FLAGS.hidden_units),
      encoder_activation=FLAGS.encoder_activation, decoder_activation=FLAGS.decoder_activation,
      l2_lambda=FLAGS.l2_lambda, l2_weight=FLAGS.l2_weight, input_dropout=FLAGS.input_dropout)


def train_config() -> TrainConfig:
  """TrainConfig from the training flags."""
  return TrainConfig(
      optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, epochs=FLAGS.epochs,
      batch_size=FLAGS.batch_size, patience=FLAGS.patience, min_delta=FLAGS.min_delta,
      mixed_precision=FLAGS.mixed_precision, strategy=FLAGS.strategy, model_dir=FLAGS.model_dir,
      seed=FLAGS.seed, fallback=FLAGS.fallback, default_rating=FLAGS.default_rating,
      verbose=FLAGS.verbose, execution=FLAGS.execution, blend=FLAGS.blend)


@_help_group("export")
def define_export_flags() -> None:
  """Flags of `ExportConfig` (the ranking of the exported recommend signatures)."""
  _define("integer", "export_top_k", EXPORT_TOP_K, "K of the exported recommend signatures.")
  _define("float", "export_popularity_weight", POPULARITY_WEIGHT, "beta of the exported "
          "recommendation score, predicted rating + beta * standardised log(1 + the item's "
          "training ratings); 0 ranks by predicted rating alone.")


def export_config(data: DataConfig, export_dir: str | None = None) -> ExportConfig:
  """ExportConfig from the export flags, exporting to `export_dir`.

  None exports to `config.default_export_dir` of `data`, so that different data never share a
  served model.
  """
  if export_dir is None:
    export_dir = default_export_dir(dataclasses.asdict(data))
  return ExportConfig(export_dir=export_dir, top_k=FLAGS.export_top_k,
                      default_rating=FLAGS.default_rating,
                      popularity_weight=FLAGS.export_popularity_weight)


# The model and training flags the implicit experiment takes too, as fields of its FitConfig;
# unset, they keep FitConfig's defaults (a playlist AutoRec's), not the rating AutoRec's.
IMPLICIT_FIT_FLAGS = ("hidden_units", "input_dropout", "l2_weight", "learning_rate", "batch_size",
                      "epochs", "patience")
# The other flags of keras_autorec.train that the implicit experiment takes (besides the implicit
# group's and, for ratings, the data flags).
IMPLICIT_COMMAND_FLAGS = ("dataset", "data_dir", "feedback", "seed", "repeats", "export_dir",
                          "metrics_file")
_IMPLICIT_DATA = splits.ImplicitDataConfig
_IMPLICIT_DATA_HELP = {
    "positive_threshold": "Ratings: ratings at or above it are positives.",
    "num_val_users": "Ratings: users held out for validation (Liang et al. 2018).",
    "num_test_users": "Ratings: users held out for test.",
    "hide_fraction": "Playlists: share of each evaluated playlist's songs and of its tags hidden "
                     "from the model.",
    "holdout_playlists": "melon: playlists of train.json held out for each of val.json and "
                         "test.json that is missing.",
    "min_song_count": "Playlists: songs in fewer training playlists are dropped.",
    "min_tag_count": "Playlists: tags in fewer training playlists are dropped.",
    "synthetic_playlists": "synthetic_melon: number of playlists (generated with each run's "
                           "seed).",
    "synthetic_songs": "synthetic_melon: number of songs.",
    "synthetic_tags": "synthetic_melon: number of tags.",
}
_FIT = fit.FitConfig
_FIT_DEFAULTS = {name: ",".join(map(str, value)) if isinstance(value, tuple) else value
                 for name, value in dataclasses.asdict(_FIT()).items()}


@_help_group("data")
def define_feedback_flag() -> None:
  """--feedback: rating prediction (explicit) or top-N ranking of positives (implicit)."""
  _define("enum", "feedback", "explicit", "explicit: predict ratings (RMSE, the paper). implicit: "
          "ratings >= --positive_threshold are positives, ranked top-N by a playlist AutoRec "
          "beside popularity, item-kNN and EASE (implicit flags below); melon and "
          "synthetic_melon are implicit only.", enum_values=["explicit", "implicit"])


@_help_group("implicit", note=(
    "--feedback=implicit (implied by --dataset=melon or synthetic_melon) takes these flags and, "
    "of those above: --dataset, --data_dir (for ratings, every data flag), --seed, --repeats "
    "(seeds seed..seed+repeats-1), --export_dir (default saved_models/<data>, <data>_implicit "
    "for ratings), --metrics_file, and with defaults of their own " +
    " ".join(f"--{name}={_FIT_DEFAULTS[name]}" for name in IMPLICIT_FIT_FLAGS) +
    ". Setting any other is an error, as is an implicit flag with --feedback=explicit."))
def define_implicit_flags() -> None:
  """Flags of `ImplicitDataConfig` (its defaults) and of the implicit `ExperimentConfig`."""
  for name, help_text in _IMPLICIT_DATA_HELP.items():
    default = getattr(_IMPLICIT_DATA, name)
    _define("float" if isinstance(default, float) else "integer", name, default, help_text)
  _define("list", "methods", list(experiment.METHODS), "Methods to run and compare.")
  _define("list", "losses", list(experiment.ExperimentConfig.losses), "AutoRec losses to try; "
          "the best on validation is kept.")
  _define("float", "zero_weight", _FIT.zero_weight,
          "Weight of absent items in the weighted_squared loss.")
  _define("list", "ease_l2_weights", [f"{value:g}" for value in
                                      experiment.ExperimentConfig.ease_l2_weights],
          "EASE L2 weights to try; the best on validation is kept.")
  _define("integer", "ease_max_items", experiment.ExperimentConfig.ease_max_items,
          "EASE keeps at most this many frequent items.")


def _reject_set_flags(names: Iterable[str], reason: str) -> None:
  """A UsageError naming each of `names` set on the command line; `reason` says why not."""
  present = [f"--{name}" for name in names if FLAGS[name].present]
  if present:
    raise app.UsageError(f"{', '.join(present)} {'does' if len(present) == 1 else 'do'} not "
                         f"apply {reason}")


def feedback(groups: Sequence[cli_help.HelpGroup]) -> str:
  """'explicit' or 'implicit' from --feedback and --dataset (playlists are implicit), after
  checking that no flag of `groups` that the mode (and data set) does not take was set."""
  dataset = FLAGS.dataset
  names = [name for group in groups for name in group.names]
  implicit_names = define_implicit_flags().names
  if not splits.is_playlists(dataset) and FLAGS.feedback == "explicit":
    _reject_set_flags([name for name in names if name in implicit_names],
                      "to --feedback=explicit (implicit feedback only)")
    return "explicit"
  if FLAGS["feedback"].present and FLAGS.feedback == "explicit":
    raise app.UsageError(f"--dataset={dataset} holds playlists: implicit feedback only, not "
                         "--feedback=explicit")
  # Ratings take every data flag (they are read as for explicit training); playlists only
  # --dataset and --data_dir.
  data_names = () if splits.is_playlists(dataset) else define_data_flags().names
  taken = {*IMPLICIT_COMMAND_FLAGS, *IMPLICIT_FIT_FLAGS, *data_names,
           *(name for name in implicit_names if name not in _IMPLICIT_DATA_HELP),
           *splits.settings_used(dataset)}
  _reject_set_flags([name for name in names if name not in taken],
                    f"to --feedback=implicit with --dataset={dataset} (see the implicit flags "
                    "in --help)")
  return "implicit"


def implicit_data_config() -> splits.ImplicitDataConfig:
  """ImplicitDataConfig from the data flags and the implicit flags."""
  return splits.ImplicitDataConfig(
      data=_data_config(), **{field.name: FLAGS[field.name].value
                              for field in dataclasses.fields(splits.ImplicitDataConfig)
                              if field.name != "data"})


def implicit_experiment_config() -> experiment.ExperimentConfig:
  """ExperimentConfig from the implicit flags and those of IMPLICIT_FIT_FLAGS set on the command
  line (the others keep FitConfig's defaults)."""
  values = {name: FLAGS[name].value for name in IMPLICIT_FIT_FLAGS if FLAGS[name].present}
  if "hidden_units" in values:
    values["hidden_units"] = tuple(int(units) for units in values["hidden_units"])
  if values.get("batch_size", 1) < 1:
    raise app.UsageError("--feedback=implicit trains on batches of rows: --batch_size must be "
                         "at least 1")
  for name, chosen, known in (("methods", FLAGS.methods, experiment.METHODS),
                              ("losses", FLAGS.losses, losses.LOSSES)):
    unknown = sorted(set(chosen) - set(known))
    if unknown:
      raise app.UsageError(f"--{name}: unknown {', '.join(unknown)}; expected some of "
                           f"{', '.join(known)}")
  return experiment.ExperimentConfig(
      fit=fit.FitConfig(zero_weight=FLAGS.zero_weight, **values), losses=tuple(FLAGS.losses),
      ease_l2_weights=tuple(float(value) for value in FLAGS.ease_l2_weights),
      ease_max_items=FLAGS.ease_max_items)
