"""absl flags shared by the command lines, and the config dataclasses they fill.

Each `define_*` function is idempotent, so several command-line modules (train, evaluate,
experiments, the pipeline runner) can be imported into one process without clashing. Only
command-line `main`s read flags; the library takes the dataclasses.

absl's `--help` lists only flags defined in the main module, so every `define_*` returns its
`HelpGroup` and each command passes its groups to `flags_parser`, whose `--help` lists them all,
group by group, with defaults; `--helpfull` is absl's.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import textwrap
from collections.abc import Callable, Sequence

from absl import app, flags

from keras_autorec import fallback
from keras_autorec.config import (EXPORT_TOP_K, POPULARITY_WEIGHT, DataConfig, ExportConfig,
                                  ModelConfig, SplitConfig, TrainConfig, default_export_dir)
from keras_autorec.data import sources
from keras_autorec.data.splits import ML100K_FOLDS

FLAGS = flags.FLAGS
HELP_ARGUMENTS = ("--help", "-help", "--helpshort", "-helpshort", "-?", "-h")
HELP_WIDTH = 98


@dataclasses.dataclass(frozen=True)
class HelpGroup:
  """A titled group of flag names, as `--help` lists them."""

  title: str
  names: tuple[str, ...]


_defining: list[list[str]] = []  # Names defined by the define_* calls in progress.


def _help_group(title: str):
  """Makes a define_* function return the HelpGroup of the flags it defines."""
  def decorate(define: Callable[..., None]) -> Callable[..., HelpGroup]:
    @functools.wraps(define)
    def define_group(*args, **kwargs) -> HelpGroup:
      _defining.append([])
      try:
        define(*args, **kwargs)
      finally:
        names = _defining.pop()
      return HelpGroup(title, tuple(names))
    return define_group
  return decorate


def _define(kind: str, name: str, default, help_text: str, enum_values=None) -> None:
  if _defining:
    _defining[-1].append(name)
  if name in FLAGS:
    return
  if kind == "enum":
    flags.DEFINE_enum(name, default, enum_values, help_text)
  else:
    getattr(flags, f"DEFINE_{kind}")(name, default, help_text)


@_help_group("data")
def define_data_flags() -> None:
  """Flags of `DataConfig`: which ratings to load and how to parse them."""
  _define("enum", "dataset", "ml100k", "Which ratings.", enum_values=list(sources.DATASETS))
  _define("string", "data_dir", None, "Folder holding the GroupLens or Netflix release (or its "
          "zip); without it MovieLens comes from tensorflow-datasets.")
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
  """DataConfig from the data flags."""
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


def _flag_help(name: str) -> str:
  """One flag as absl's --help renders it: name, help, then the default."""
  flag = FLAGS[name]
  usage = f"--[no]{name}" if flag.boolean else f"--{name}"
  default = "none" if flag.default_as_str is None else flag.default_as_str
  # An enum flag's help already starts with <value|...>, as absl's own --help shows it.
  lines = textwrap.wrap(f"{usage}: {flag.help}", HELP_WIDTH, initial_indent="  ",
                        subsequent_indent="    ")
  return "\n".join([*lines, f"    (default: {default})"])


def grouped_help(groups: Sequence[HelpGroup]) -> str:
  """The flags of `groups`, under each title (groups of one title merged, in first order)."""
  names_by_title: dict[str, list[str]] = {}
  for group in groups:
    names_by_title.setdefault(group.title, []).extend(group.names)
  return "\n\n".join(f"{title} flags:\n" + "\n".join(_flag_help(name) for name in names)
                     for title, names in names_by_title.items())


def flags_parser(groups: Sequence[HelpGroup], doc: str) -> Callable[[list[str]], list[str]]:
  """An `app.run` flags parser whose --help prints `doc` and the grouped flags, then exits."""
  def parse(argv: list[str]) -> list[str]:
    arguments = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    if any(argument in HELP_ARGUMENTS for argument in arguments):
      print(f"{doc.strip()}\n\n{grouped_help(groups)}\n\nAll flags, absl's and "
            "TensorFlow's included: --helpfull")
      sys.exit(0)
    return app.parse_flags_with_usage(argv)
  return parse
