r"""Reproduces the AutoRec paper's comparisons: Markdown, CSV and PNG results with 95% CIs.

  python -m keras_autorec.experiments orientation --dataset=ml100k --data_dir=../shared/data \
      --repeats=5 --results_dir=results/ml100k

Experiments: orientation (I- vs U-AutoRec, the paper's table 1a, beside I- and U-RBM),
activations (table 1b plus relu and elu), baselines (tuned BiasedMF, item kNN with baseline,
LLORMA and I/U-RBM vs I-AutoRec, table 1c), hidden_units (RMSE vs k, figure 2),
deep ((500, 250, 500) vs (500,)), or all. Each repeat is a random 90/10 split with seed
seed + repeat (10% of train held out for validation), or with --split=u1..u5 the five canonical
ML-100K folds. Every fitted run is appended to results_dir/runs.jsonl and reused by later
experiments with the same data, split and configuration, so `all` and reruns fit nothing twice.
--refit scores AutoRec on test after refitting on train + validation for the early-stopped number
of epochs. A five-repeat ML-100K run of every experiment is about 65 full-batch fits (~40-80 s
each on two shared cores, mostly the per-epoch validation pass).
"""

from __future__ import annotations

# First, before anything imports TensorFlow.
from keras_autorec import quiet_tensorflow  # noqa: F401  pylint: disable=unused-import

import dataclasses
import hashlib
import json
import logging
import os
import sys
import time

from absl import app, flags

from keras_autorec import cli_flags, cli_help, experiment_report, training, tuning
from keras_autorec.baselines import biased_mf, knn_baseline, llorma, rbm
from keras_autorec.data import sources
from keras_autorec.data.splits import ML100K_FOLDS, RatingsSplit, SplitConfig, load_splits
from keras_autorec.experiment_report import Row

EXPERIMENTS = ("orientation", "activations", "baselines", "hidden_units", "deep")
ALL_FOLDS = "u1..u5"
# Figure 2's k grid thinned to keep a five-repeat ML-100K run of every experiment near an hour.
DEFAULT_HIDDEN_UNITS_GRID = (10, 40, 100, 300, 500)
# (encoder g, decoder f): the paper's four identity/sigmoid combinations, then relu and elu.
ACTIVATION_ROWS = (("identity", "identity"), ("sigmoid", "identity"), ("identity", "sigmoid"),
                   ("sigmoid", "sigmoid"), ("relu", "identity"), ("elu", "identity"))


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """What every experiment shares.

  Attributes:
    data: the ratings.
    split: 'random' (repeats of a seeded 90/10 split), one ML-100K fold name, or 'u1..u5'.
    repeats: number of random splits (ignored for folds: one run per fold).
    seed: seed of the first repeat.
    validation_fraction: share of the training ratings held out for early stopping and tuning.
    results_dir: where the Markdown, CSV, PNG and runs.jsonl go.
    model: the I-AutoRec every experiment varies.
    train: how AutoRec is fitted.
    hidden_units_grid: the k values of the hidden_units experiment.
    refit: AutoRec's test metrics come from a refit on train + validation for the early-stopped
      epoch count (`keras_autorec.training.fit_and_evaluate`).
    mf_factors, mf_l2_weights, mf_optimizers: BiasedMF's tuning grid.
    mf_epochs: BiasedMF's most full-batch steps.
    llorma: LLORMA's settings in `experiments baselines` (the seed is each repeat's).
    rbm_epochs: I-RBM's and U-RBM's most epochs (their other hyper-parameters are
      `keras_autorec.baselines.rbm.default_config`'s).
    rbm_hidden_units: I-RBM's and U-RBM's hidden units (None: `default_config`'s 200; ML-1M's
      validation prefers 400).
  """

  data: sources.DataConfig
  results_dir: str
  split: str = "random"
  repeats: int = 5
  seed: int = 0
  validation_fraction: float = 0.1
  model: training.ModelConfig = training.ModelConfig()
  train: training.TrainConfig = training.TrainConfig(verbose=0)
  hidden_units_grid: tuple[int, ...] = DEFAULT_HIDDEN_UNITS_GRID
  refit: bool = True
  mf_factors: tuple[int, ...] = tuning.BIASED_MF_FACTORS
  mf_l2_weights: tuple[float, ...] = tuning.BIASED_MF_L2_WEIGHTS
  mf_optimizers: tuple[str, ...] = tuning.BIASED_MF_OPTIMIZERS
  mf_epochs: int = biased_mf.BiasedMFConfig.epochs
  llorma: llorma.LlormaConfig = llorma.LlormaConfig()
  rbm_epochs: int = rbm.RBMConfig.epochs
  rbm_hidden_units: int | None = None


def rbm_configs(config: ExperimentConfig) -> list[tuple[str, rbm.RBMConfig]]:
  """I-RBM's and U-RBM's labelled configurations: the chosen defaults with the experiment's
  epochs and hidden units."""
  changes = {"epochs": config.rbm_epochs}
  if config.rbm_hidden_units is not None:
    changes["hidden_units"] = config.rbm_hidden_units
  return [("I-RBM", rbm.default_config(item_based=True, **changes)),
          ("U-RBM", rbm.default_config(item_based=False, **changes))]


class Runner:
  """Loads the splits once and fits configurations on every repeat, reusing cached runs."""

  def __init__(self, config: ExperimentConfig):
    self.config = config
    os.makedirs(config.results_dir, exist_ok=True)
    self.cache_path = os.path.join(config.results_dir, "runs.jsonl")
    self.cache: dict[str, dict] = {}
    if os.path.exists(self.cache_path):
      with open(self.cache_path) as f:
        for line in f:
          record = json.loads(line)
          self.cache[record["key"]] = record["metrics"]
    self.splits = list(make_splits(config))

  def _cached(self, kind: str, split: RatingsSplit, config: dict, fit_and_evaluate) -> dict:
    # Every field of every configuration is in the key, so a new or changed field refits.
    description = {"kind": kind, "data": dataclasses.asdict(self.config.data),
                   "split": split.description, "config": config}
    key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
    if key not in self.cache:
      metrics = {"split": split.description, **fit_and_evaluate()}
      self.cache[key] = metrics
      with open(self.cache_path, "a") as f:
        f.write(json.dumps({"key": key, "description": description, "metrics": metrics}) + "\n")
      logging.info("%s on %s: validation RMSE %.4f, test RMSE %.4f (%.1f s)", kind,
                   split.description, metrics["validation_rmse"], metrics["test_rmse"],
                   metrics["train_seconds"])
    return self.cache[key]

  def autorec(self, label: str, params: dict, model_config: training.ModelConfig) -> Row:
    """AutoRec with `model_config` on every repeat."""
    runs = []
    for repeat, split in enumerate(self.splits):
      train_config = dataclasses.replace(self.config.train, seed=self.config.seed + repeat)

      def fit_and_evaluate(split=split, train_config=train_config):
        return training.fit_and_evaluate(split, model_config, train_config,
                                         refit=self.config.refit)[1]

      configs = {"model": dataclasses.asdict(model_config),
                 "train": dataclasses.asdict(train_config)}
      kind = "autorec_refit" if self.config.refit else "autorec"
      runs.append(self._cached(kind, split, configs, fit_and_evaluate))
    return Row(label, params, runs)

  def _seeded_runs(self, kind: str, config, fit, evaluate) -> list[dict]:
    """A baseline fitted with `config`, its seed that of each repeat, on every repeat."""
    runs = []
    for repeat, split in enumerate(self.splits):
      seeded = dataclasses.replace(config, seed=self.config.seed + repeat)
      runs.append(self._cached(kind, split, dataclasses.asdict(seeded),
                               lambda split=split, seeded=seeded: evaluate(fit(split, seeded),
                                                                           split)))
    return runs

  def biased_mf(self, label: str, config: biased_mf.BiasedMFConfig) -> Row:
    """BiasedMF with `config` on every repeat."""
    params = {"factors": config.factors, "l2_weight": config.l2_weight,
              "optimizer": config.optimizer}
    return Row(label, params,
               self._seeded_runs("biased_mf", config, biased_mf.fit, biased_mf.evaluate))

  def llorma(self, label: str, config: llorma.LlormaConfig) -> Row:
    """LLORMA with `config` on every repeat."""
    params = {"anchors": config.anchors, "rank": config.rank,
              "kernel_width": config.kernel_width, "l2_weights": list(config.l2_weights)}
    return Row(label, params, self._seeded_runs("llorma", config, llorma.fit, llorma.evaluate))

  def rbm_cf(self, label: str, config: rbm.RBMConfig) -> Row:
    """RBM-CF with `config` on every repeat."""
    params = {"hidden_units": config.hidden_units, "learning_rate": config.learning_rate,
              "weight_decay": config.weight_decay}
    return Row(label, params, self._seeded_runs("rbm", config, rbm.fit, rbm.evaluate))

  def rbm_rows(self) -> list[Row]:
    """I-RBM and U-RBM with their validation-chosen defaults (the paper's RBM-CF baselines)."""
    return [self.rbm_cf(label, config) for label, config in rbm_configs(self.config)]

  def knn_baseline(self, label: str, config: knn_baseline.KNNBaselineConfig) -> Row:
    """Item-based kNN with baseline on every repeat (deterministic: no seed)."""
    runs = [self._cached("knn_baseline", split, dataclasses.asdict(config),
                         lambda split=split: {**knn_baseline.evaluate(
                             knn_baseline.fit(split, config), split), "best_epoch": 0})
            for split in self.splits]
    return Row(label, {"k": config.k, "shrinkage": config.shrinkage}, runs)


def make_splits(config: ExperimentConfig) -> list[RatingsSplit]:
  """The repeats' train/validation/test splits: random 90/10 per seed, or one per fold."""
  def split_config(protocol: str) -> SplitConfig:
    return SplitConfig(protocol=protocol, validation_fraction=config.validation_fraction,
                       seed=config.seed)

  if config.split == "random":
    return list(load_splits(config.data, split_config("random"), config.repeats))
  folds = ML100K_FOLDS[:5] if config.split == ALL_FOLDS else (config.split,)
  if any(fold not in ML100K_FOLDS for fold in folds):
    raise ValueError(f"split must be random, {ALL_FOLDS} or one of {ML100K_FOLDS}, "
                     f"got {config.split!r}")
  return [next(load_splits(config.data, split_config(fold))) for fold in folds]


def _with(config: training.ModelConfig, **changes) -> training.ModelConfig:
  return dataclasses.replace(config, **changes)


def orientation(runner: Runner) -> list[Row]:
  """I-AutoRec vs U-AutoRec, beside I-RBM and U-RBM (table 1a)."""
  model = runner.config.model
  return [runner.autorec("I-AutoRec", {}, _with(model, item_based=True)),
          runner.autorec("U-AutoRec", {}, _with(model, item_based=False)),
          *runner.rbm_rows()]


def activations(runner: Runner) -> list[Row]:
  """I-AutoRec with each (g, f) combination (table 1b, plus relu and elu hidden layers)."""
  return [runner.autorec(f"g={encoder}, f={decoder}",
                         {"encoder_activation": encoder, "decoder_activation": decoder},
                         _with(runner.config.model, encoder_activation=encoder,
                               decoder_activation=decoder))
          for encoder, decoder in ACTIVATION_ROWS]


def baselines(runner: Runner) -> list[Row]:
  """BiasedMF tuned on the first repeat's validation ratings, item kNN, LLORMA vs I-AutoRec (1c)."""
  config = runner.config
  grid = {"data": dataclasses.asdict(config.data), "split": runner.splits[0].description,
          "grid": [config.mf_factors, config.mf_l2_weights, config.mf_optimizers],
          "seed": config.seed, "epochs": config.mf_epochs}
  # KerasTuner keeps the grid's trials here, so a killed run resumes after its last fit.
  tuning_dir = os.path.join(config.results_dir, "biased_mf_tuning",
                            hashlib.sha256(json.dumps(grid, sort_keys=True).encode()).hexdigest())
  base = biased_mf.BiasedMFConfig(seed=config.seed, epochs=config.mf_epochs)
  result = tuning.tune_biased_mf(runner.splits[0], base, config.mf_factors,
                                 config.mf_l2_weights, config.mf_optimizers, directory=tuning_dir)
  experiment_report.write_csv(
      os.path.join(config.results_dir, "baselines_biased_mf_tuning.csv"),
      [{**trial.params, "validation_rmse": trial.validation_rmse,
        "best_epoch": trial.best_epoch, "seconds": trial.seconds} for trial in result.trials])
  chosen = dataclasses.replace(base, **result.best.params)
  label = (f"BiasedMF (tuned on validation: {chosen.factors} factors, l2 {chosen.l2_weight}, "
           f"{chosen.optimizer})")
  knn = knn_baseline.KNNBaselineConfig()
  local = config.llorma
  return [runner.biased_mf(label, chosen),
          runner.knn_baseline(f"item kNN with baseline (pearson_baseline, k={knn.k})", knn),
          runner.llorma(f"LLORMA ({local.anchors} anchors, rank {local.rank}, kernel width "
                        f"{local.kernel_width}, l2 from {', '.join(map(str, local.l2_weights))})",
                        local),
          *runner.rbm_rows(),
          runner.autorec("I-AutoRec", {}, config.model)]


def hidden_units(runner: Runner) -> list[Row]:
  """I-AutoRec RMSE against the number of hidden units k (figure 2)."""
  return [runner.autorec(f"I-AutoRec k={k}", {"hidden_units": k},
                         _with(runner.config.model, hidden_units=(k,)))
          for k in runner.config.hidden_units_grid]


def deep(runner: Runner) -> list[Row]:
  """I-AutoRec with three hidden layers (500, 250, 500) vs one (500,)."""
  model = runner.config.model
  return [runner.autorec("I-AutoRec (500,)", {"hidden_units": "500"},
                         _with(model, hidden_units=(500,))),
          runner.autorec("I-AutoRec (500, 250, 500)", {"hidden_units": "500-250-500"},
                         _with(model, hidden_units=(500, 250, 500)))]


EXPERIMENT_FUNCTIONS = {"orientation": orientation, "activations": activations,
                        "baselines": baselines, "hidden_units": hidden_units, "deep": deep}


def setup_text(config: ExperimentConfig, repeats: int, seconds: float) -> str:
  """The experiment's protocol, training and wall time, as one Markdown paragraph."""
  protocol = (f"{repeats} random 90/10 splits (seeds {config.seed}..{config.seed + repeats - 1})"
              if config.split == "random" else f"ML-100K fold(s) {config.split}")
  return (f"Dataset {config.data.dataset}; {protocol}; {config.validation_fraction:.0%} of "
          "train held out for early stopping and tuning; test RMSE mean +/- 95% CI "
          f"(Student t). Training: {config.train.optimizer}, lr {config.train.learning_rate}, "
          f"{'full batch' if not config.train.batch_size else config.train.batch_size}, "
          f"patience {config.train.patience}, at most {config.train.epochs} epochs; base "
          f"model {config.model}"
          f"{'; AutoRec test RMSE after a refit on train + validation' if config.refit else ''}"
          f". Wall time of this invocation {seconds:.0f} s (cached runs cost nothing).")


def run_experiment(name: str, config: ExperimentConfig, runner: Runner | None = None) -> str:
  """Runs one experiment, writes its Markdown, CSVs (and PNG) and returns the Markdown."""
  start = time.time()
  runner = runner or Runner(config)
  rows = EXPERIMENT_FUNCTIONS[name](runner)
  base = os.path.join(config.results_dir, name)
  experiment_report.write_csv(base + ".csv", [row.summary() for row in rows])
  experiment_report.write_csv(base + "_runs.csv", [{"model": row.label, **row.params, **run}
                                                   for row in rows for run in row.runs])
  if name == "hidden_units":
    experiment_report.plot_hidden_units(rows, base + ".png")
  markdown = experiment_report.markdown_table(
      f"{name}: {EXPERIMENT_FUNCTIONS[name].__doc__}",
      setup_text(config, len(rows[0].runs), time.time() - start), rows)
  with open(base + ".md", "w") as f:
    f.write(markdown)
  return markdown


FLAGS = flags.FLAGS

HELP_GROUPS = [cli_flags.define_data_flags(), cli_flags.define_split_flags(),
               cli_flags.define_repeats_flag(default=5), cli_flags.define_model_flags(),
               cli_flags.define_train_flags(), cli_flags.define_refit_flag(),
               cli_help.HelpGroup("experiments", ("results_dir", "hidden_units_grid",
                                                   "mf_factors", "mf_l2_weights",
                                                   "mf_optimizers", "mf_epochs",
                                                   "llorma_anchors", "llorma_rank",
                                                   "llorma_kernel_width", "llorma_l2_weights",
                                                   "rbm_epochs", "rbm_hidden_units"))]
flags.DEFINE_string("results_dir", "results", "Where results and the run cache go.")
flags.DEFINE_list("hidden_units_grid", [str(k) for k in DEFAULT_HIDDEN_UNITS_GRID],
                  "k values of the hidden_units experiment (paper: 10,20,40,80,100,200,300,400,"
                  "500).")
flags.DEFINE_list("mf_factors", [str(k) for k in tuning.BIASED_MF_FACTORS],
                  "BiasedMF factors grid.")
flags.DEFINE_list("mf_l2_weights", [str(w) for w in tuning.BIASED_MF_L2_WEIGHTS],
                  "BiasedMF per-rating L2 grid.")
flags.DEFINE_list("mf_optimizers", list(tuning.BIASED_MF_OPTIMIZERS), "BiasedMF optimisers.")
flags.DEFINE_integer("mf_epochs", biased_mf.BiasedMFConfig.epochs, "BiasedMF's most full-batch "
                     "steps (L-BFGS iterations); early stopping usually ends it sooner.")

flags.DEFINE_integer("llorma_anchors", llorma.LlormaConfig.anchors, "LLORMA's anchor points.")
flags.DEFINE_integer("llorma_rank", llorma.LlormaConfig.rank, "LLORMA's local rank.")
flags.DEFINE_float("llorma_kernel_width", llorma.LlormaConfig.kernel_width,
                   "LLORMA's Epanechnikov kernel width h (radians of arc-cosine distance).")
flags.DEFINE_list("llorma_l2_weights", [str(w) for w in llorma.LlormaConfig.l2_weights],
                  "LLORMA's per-rating L2 weights; validation picks one for all its models.")


flags.DEFINE_integer("rbm_epochs", rbm.RBMConfig.epochs, "I-RBM's and U-RBM's most epochs; "
                     "early stopping usually ends them sooner.")
flags.DEFINE_integer("rbm_hidden_units", None, "I-RBM's and U-RBM's hidden units (default: "
                     "200, chosen on ML-100K and ML-1M validation; ML-1M's alone prefers 400).")


def main(argv):
  if len(argv) != 2 or argv[1] not in (*EXPERIMENTS, "all"):
    raise app.UsageError(f"Give one experiment: {', '.join(EXPERIMENTS)} or all")
  logging.getLogger().setLevel(logging.INFO)
  config = ExperimentConfig(
      data=cli_flags.data_config(), results_dir=FLAGS.results_dir, split=FLAGS.split,
      repeats=FLAGS.repeats, seed=FLAGS.seed, model=cli_flags.model_config(),
      train=dataclasses.replace(cli_flags.train_config(), verbose=0),
      hidden_units_grid=tuple(int(k) for k in FLAGS.hidden_units_grid), refit=FLAGS.refit,
      mf_factors=tuple(int(k) for k in FLAGS.mf_factors),
      mf_l2_weights=tuple(float(w) for w in FLAGS.mf_l2_weights),
      mf_optimizers=tuple(FLAGS.mf_optimizers), mf_epochs=FLAGS.mf_epochs,
      llorma=llorma.LlormaConfig(anchors=FLAGS.llorma_anchors, rank=FLAGS.llorma_rank,
                                 kernel_width=FLAGS.llorma_kernel_width,
                                 l2_weights=tuple(float(w) for w in FLAGS.llorma_l2_weights)),
      rbm_epochs=FLAGS.rbm_epochs, rbm_hidden_units=FLAGS.rbm_hidden_units)
  try:
    runner = Runner(config)
    for name in EXPERIMENTS if argv[1] == "all" else (argv[1],):
      print(run_experiment(name, config, runner), flush=True)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli_help.flags_parser(HELP_GROUPS, __doc__))
