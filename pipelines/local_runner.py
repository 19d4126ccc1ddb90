r"""Runs the AutoRec pipeline locally: ExampleGen ... Pusher with caching and a run manifest.

  python -m pipelines.local_runner --dataset=ml100k --data_dir=../shared/data \
      --pipeline_root=pipeline_root [--serving_model_dir=saved_models/ml100k] \
      [--rmse_threshold=1.0] [--change_threshold=0.01] [--no_cache] [--epochs=... --l2_weight=...]

The data, split, model and training flags are those of `python -m keras_autorec.train`
(`keras_autorec.cli_flags`); --model_dir is not used here.
"""

from __future__ import annotations

# First, before anything imports TensorFlow.
from keras_autorec import quiet_tensorflow  # noqa: F401  pylint: disable=unused-import

import dataclasses
import logging
import sys

from absl import app, flags

from keras_autorec import cli_flags, cli_help
from pipelines import components, pipeline

FLAGS = flags.FLAGS

HELP_GROUPS = [cli_flags.define_data_flags(), cli_flags.define_split_flags(),
               cli_flags.define_model_flags(), cli_flags.define_train_flags(),
               cli_help.HelpGroup("pipeline", (
                   "pipeline_root", "serving_model_dir", "rmse_threshold", "change_threshold",
                   "max_empty_row_fraction", "no_cache")), cli_flags.define_export_flags()]
flags.DEFINE_string("pipeline_root", "pipeline_root", "Where component outputs, the cache and "
                    "run manifests (runs/<run id>.json) go.")
flags.DEFINE_string("serving_model_dir", None, "TF Serving model base path the Pusher adds "
                    "versions to; default saved_models/<data>, as python -m keras_autorec.train "
                    "exports to.")
flags.DEFINE_float("rmse_threshold", components.EvaluatorConfig.rmse_threshold,
                   "Bless only if the test RMSE is at most this.")
flags.DEFINE_float("change_threshold", components.EvaluatorConfig.change_threshold,
                   "Bless only if the test RMSE exceeds the pushed model's by at most this.")
flags.DEFINE_float("max_empty_row_fraction", components.ValidatorConfig.max_empty_row_fraction,
                   "Largest share of rows (items for I-AutoRec) allowed no training rating.")
flags.DEFINE_boolean("no_cache", False, "Rerun every component even if its inputs and "
                     "parameters are unchanged.")


def config_from_flags() -> pipeline.PipelineConfig:
  """PipelineConfig filled from the command line."""
  data_config = cli_flags.data_config()
  model_config = cli_flags.model_config()
  train_config = dataclasses.replace(cli_flags.train_config(), model_dir=None)
  return pipeline.PipelineConfig(
      pipeline_root=FLAGS.pipeline_root,
      example_gen=components.ExampleGenConfig(data=data_config, split=cli_flags.split_config()),
      validator=components.ValidatorConfig(item_based=model_config.item_based,
                                           max_empty_row_fraction=FLAGS.max_empty_row_fraction),
      trainer=components.TrainerConfig(model=model_config, train=train_config),
      evaluator=components.EvaluatorConfig(rmse_threshold=FLAGS.rmse_threshold,
                                           change_threshold=FLAGS.change_threshold,
                                           default_rating=FLAGS.default_rating),
      pusher=components.PusherConfig(
          export=cli_flags.export_config(data_config, FLAGS.serving_model_dir or None)),
      enable_cache=not FLAGS.no_cache)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.getLogger().setLevel(logging.INFO)
  result = pipeline.run_pipeline(config_from_flags())
  for run in result.components:
    print(f"{run.component:<17} {run.status:<8} {run.seconds:8.1f} s"
          + (f"  {run.error}" if run.error else ""))
  print(f"manifest: {result.manifest_path}")
  if not result.succeeded:
    print(f"error: {result.push_reason}; rerun to resume from the failed component",
          file=sys.stderr)
    return 1
  print(result.push_reason)
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli_help.flags_parser(HELP_GROUPS, __doc__))
