"""Searches AutoRec's hyper-parameters with KerasTuner on validation RMSE, then trains and exports
the chosen configuration exactly like `keras_autorec.train`.

  python -m keras_autorec.tune --dataset=ml1m --data_dir=../shared/data --tune_dir=tuning

Trials are stored under --tune_dir/--project_name: the same command started again resumes after
the last completed trial. The search uses seed --seed's split, with its test ratings removed; the
chosen configuration is then trained (early stopping, refit on train + validation) for --repeats
seeds and scored on test once per seed. The trials table goes to trials.csv and trials.md in the
project folder. With KerasTuner's environment variables (KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT) one chief and several workers share one search;
see README.md, "Tuning".
"""

from __future__ import annotations

# First, before anything imports TensorFlow.
from keras_autorec import quiet_tensorflow  # noqa: F401  pylint: disable=unused-import

import csv
import dataclasses
import json
import os
import sys

from absl import app, flags
from keras_tuner.src.distribute import utils as distribute_utils

from keras_autorec import cli_flags, cli_help, train, training, tuning
from keras_autorec.data.splits import load_splits

FLAGS = flags.FLAGS

flags.DEFINE_string("tune_dir", "tuning", "Where KerasTuner stores the trials; a search "
                    "started again on the same folder and project resumes.")
flags.DEFINE_string("project_name", "autorec", "Sub-folder of --tune_dir holding this search.")
flags.DEFINE_enum("oracle", "bayesian", list(tuning.ORACLES), "KerasTuner oracle.")
flags.DEFINE_integer("max_trials", tuning.DEFAULT_MAX_TRIALS, "Most trials (the default "
                     "covers the default search space; the grid oracle also stops when the grid "
                     "is exhausted; 0 = the whole grid).")
flags.DEFINE_list("tune_lambdas", [str(v) for v in tuning.DEFAULT_LAMBDAS], "The paper's "
                  "lambda values to try, each as --l2_lambda (the paper's grid: "
                  f"{','.join(f'{v:g}' for v in tuning.PAPER_LAMBDAS)}).")
flags.DEFINE_list("tune_hidden_units", [str(k) for k in tuning.DEFAULT_HIDDEN_UNITS],
                  "Hidden units k to try (one hidden layer; the paper's grid: "
                  f"{','.join(str(k) for k in tuning.PAPER_HIDDEN_UNITS)}).")
flags.DEFINE_list("tune_activations", list(tuning.AutoRecSpace.activations),
                  "encoder:decoder activation pairs to try, e.g. sigmoid:identity,elu:identity.")
flags.DEFINE_list("tune_optimizers", list(tuning.AutoRecSpace.optimizers),
                  "Optimizers to try: rprop, lbfgs, adam, rmsprop, sgd.")
flags.DEFINE_list("tune_learning_rates", [str(v) for v in tuning.AutoRecSpace.learning_rates],
                  "Learning rates to try (Rprop: initial step; unused by L-BFGS).")
HELP_GROUPS = [*train.HELP_GROUPS, cli_help.HelpGroup(
    "tuning", ("tune_dir", "project_name", "oracle", "max_trials", "tune_lambdas",
               "tune_hidden_units", "tune_activations", "tune_optimizers", "tune_learning_rates"))]


def space_from_flags() -> tuning.AutoRecSpace:
  """The search space from the --tune_* flags."""
  return tuning.AutoRecSpace(
      paper_lambdas=tuple(float(v) for v in FLAGS.tune_lambdas),
      hidden_units=tuple(int(k) for k in FLAGS.tune_hidden_units),
      activations=tuple(FLAGS.tune_activations), optimizers=tuple(FLAGS.tune_optimizers),
      learning_rates=tuple(float(v) for v in FLAGS.tune_learning_rates))


def trial_rows(tuner: tuning.SplitTuner, num_train_ratings: int) -> list[dict]:
  """One dict per trial: id, status, hyper-parameters, l2_weight and validation result."""
  best_id = tuner.best_trial().trial_id
  rows = []
  for trial in tuner.trials():
    l2_weight = training.ModelConfig(l2_lambda=trial.params["paper_lambda"]).l2_weight_for(
        num_train_ratings)
    rows.append({"trial": trial.trial_id, "status": trial.status, **trial.params,
                 "l2_weight": f"{l2_weight:.3g}", "validation_rmse": f"{trial.validation_rmse:.4f}",
                 "best_epoch": trial.best_epoch, "seconds": f"{trial.seconds:.1f}",
                 "chosen": "yes" if trial.trial_id == best_id else ""})
  return rows


def write_tables(rows: list[dict], directory: str) -> tuple[str, str]:
  """Writes the trials as trials.csv and trials.md in `directory`; returns the Markdown."""
  fields = list(rows[0])
  with open(os.path.join(directory, "trials.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
  lines = ["| " + " | ".join(fields) + " |", "|" + " --- |" * len(fields)]
  lines += ["| " + " | ".join(str(row[field]) for field in fields) + " |" for row in rows]
  markdown = "\n".join(lines) + "\n"
  with open(os.path.join(directory, "trials.md"), "w") as f:
    f.write(markdown)
  return markdown


def is_distributed_worker() -> bool:
  """Whether KerasTuner's environment makes this process a worker of a chief's search."""
  return (distribute_utils.has_chief_oracle()
          and not distribute_utils.is_chief_oracle())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  train.configure_logging()
  data_config, split_config = cli_flags.data_config(), cli_flags.split_config()
  model_config, train_config = cli_flags.model_config(), cli_flags.train_config()
  try:
    split = next(load_splits(data_config, split_config))
    num_train = split.train.num_ratings
    tuner = tuning.search(
        split, space_from_flags().hyperparameters(),
        tuning.autorec_fit(model_config, dataclasses.replace(train_config, verbose=0)),
        FLAGS.tune_dir, FLAGS.project_name, oracle=FLAGS.oracle,
        max_trials=FLAGS.max_trials or None, seed=split_config.seed, verbose=1)
    if is_distributed_worker():
      print(f"worker {os.environ['KERASTUNER_TUNER_ID']}: the chief has no trials left")
      return 0
    best = tuner.best_trial()
    markdown = write_tables(trial_rows(tuner, num_train), tuner.project_dir)
    print(markdown)
    print(f"Chosen on seed {split_config.seed}'s validation ratings (trial {best.trial_id}): "
          f"{best.params}, validation RMSE {best.validation_rmse:.4f}")
    chosen_model, chosen_train = tuning.autorec_configs(best.params, model_config, train_config)
    summary = train.run(data_config, split_config, chosen_model, chosen_train, FLAGS.repeats,
                        train.export_config_from_flags(data_config), FLAGS.refit)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  summary["tuning"] = {"oracle": FLAGS.oracle, "tuned_on_seed": split_config.seed,
                       "chosen_trial": best.trial_id, "chosen": best.params,
                       "trials": [dataclasses.asdict(t) for t in tuner.trials()]}
  if FLAGS.metrics_file:
    with open(FLAGS.metrics_file, "w") as f:
      json.dump(summary, f, indent=2)
  train.print_summary(summary, FLAGS.metrics_file)
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli_help.flags_parser(HELP_GROUPS, __doc__))
