r"""Compiles the AutoRec pipeline for Kubeflow Pipelines (KFP v2 SDK) into a pipeline spec.

  python -m pipelines.kubeflow_runner --output=autorec_pipeline.yaml \
      [--image=keras-autorec:0.1.0] [--serving_model_dir=/mnt/models/autorec] \
      [--dataset=ml100k --data_dir=/mnt/data ...] [--rmse_threshold=1.0 ...]

The seven components of `pipelines.local_runner` (ExampleGen ... Pusher, same component
functions, same blessing rule), each a container step running the project's image (`Dockerfile`).
The flags are the local runner's; they become the defaults of the spec's five JSON parameters
(one per configured component), which a run can override. Paths in them (data_dir,
serving_model_dir) are paths inside the containers: shared storage mounted on every step.
`--pipeline_root` is unused: KFP stores the artifacts under its own pipeline root.
"""

# No `from __future__ import annotations`: KFP reads the component functions' annotations.

import dataclasses
import json
import sys

from absl import app, flags
from kfp import compiler, dsl

import keras_autorec
from keras_autorec import cli_help
from pipelines import kubeflow_steps, local_runner, pipeline

FLAGS = flags.FLAGS
DEFAULT_IMAGE = f"keras-autorec:{keras_autorec.__version__}"
PIPELINE_NAME = "keras-autorec"
# Components that read state outside their inputs (the data files; the serving directory's
# pushed versions), which KFP's cache key does not see: they always run.
UNCACHED = ("ExampleGen", "Evaluator", "Pusher")

HELP_GROUPS = [*local_runner.HELP_GROUPS,
               cli_help.HelpGroup("kubeflow", ("output", "image", "pipeline_name"))]
flags.DEFINE_string("output", "autorec_pipeline.yaml", "Where to write the pipeline spec (YAML).")
flags.DEFINE_string("image", DEFAULT_IMAGE, "Container image of every step, built from the "
                    "repository's Dockerfile (BUILD.md) and pushed where the cluster pulls.")
flags.DEFINE_string("pipeline_name", PIPELINE_NAME, "Name of the pipeline in the spec.")


def example_gen(example_gen_config: str, examples: dsl.Output[dsl.Dataset]):
  from pipelines import kubeflow_steps
  kubeflow_steps.example_gen(example_gen_config, examples.path)


def statistics_gen(examples: dsl.Input[dsl.Dataset], statistics: dsl.Output[dsl.Artifact]):
  from pipelines import kubeflow_steps
  kubeflow_steps.statistics_gen(examples.path, statistics.path)


def example_validator(validator_config: str, examples: dsl.Input[dsl.Dataset],
                       statistics: dsl.Input[dsl.Artifact], schema: dsl.Output[dsl.Artifact]):
  from pipelines import kubeflow_steps
  kubeflow_steps.example_validator(validator_config, examples.path, statistics.path,
                                   schema.path)


def transform(examples: dsl.Input[dsl.Dataset], schema: dsl.Input[dsl.Artifact],
               transform_graph: dsl.Output[dsl.Artifact]):
  from pipelines import kubeflow_steps
  kubeflow_steps.transform(examples.path, schema.path, transform_graph.path)


def trainer(trainer_config: str, examples: dsl.Input[dsl.Dataset],
             transform_graph: dsl.Input[dsl.Artifact], model: dsl.Output[dsl.Model]):
  from pipelines import kubeflow_steps
  kubeflow_steps.trainer(trainer_config, examples.path, transform_graph.path, model.path)


def evaluator(evaluator_config: str, pusher_config: str, examples: dsl.Input[dsl.Dataset],
              transform_graph: dsl.Input[dsl.Artifact], model: dsl.Input[dsl.Model],
              evaluation: dsl.Output[dsl.Artifact], blessing: dsl.Output[dsl.Artifact]):
  from pipelines import kubeflow_steps
  outputs = kubeflow_steps.evaluator(evaluator_config, pusher_config, examples.path,
                                     transform_graph.path, model.path, evaluation.path,
                                     blessing.path)
  blessing.metadata["blessed"] = outputs["blessing"].properties["blessed"]


def pusher(pusher_config: str, metadata: str, run_id: str, examples: dsl.Input[dsl.Dataset],
            transform_graph: dsl.Input[dsl.Artifact], model: dsl.Input[dsl.Model],
            blessing: dsl.Input[dsl.Artifact], pushed_model: dsl.Output[dsl.Artifact]):
  from pipelines import kubeflow_steps
  outputs = kubeflow_steps.pusher(pusher_config, metadata, run_id, examples.path,
                                  transform_graph.path, model.path, blessing.path,
                                  pushed_model.path)
  pushed_model.metadata["pushed"] = outputs["pushed_model"].properties["pushed"]


STEP_FUNCTIONS = {"ExampleGen": example_gen, "StatisticsGen": statistics_gen,
                  "ExampleValidator": example_validator, "Transform": transform,
                  "Trainer": trainer, "Evaluator": evaluator, "Pusher": pusher}


def make_components(image: str) -> dict:
  """The seven KFP components, each a container step of `image` (which has the package and kfp)."""
  return {name: dsl.component(function, base_image=image, install_kfp_package=False)
          for name, function in STEP_FUNCTIONS.items()}


def parameter_defaults(config: pipeline.PipelineConfig) -> dict[str, str]:
  """The pipeline's parameters (component configs as JSON) with `config`'s values."""
  trainer = config.trainer
  example_gen = config.example_gen
  return {
      "example_gen_config": kubeflow_steps.config_to_json(example_gen),
      "validator_config": kubeflow_steps.config_to_json(config.validator),
      "trainer_config": kubeflow_steps.config_to_json(trainer),
      "evaluator_config": kubeflow_steps.config_to_json(config.evaluator),
      "pusher_config": kubeflow_steps.config_to_json(config.pusher),
      # What the in-process Pusher records with each version (pipelines.pipeline).
      "export_metadata": json.dumps({"data": dataclasses.asdict(example_gen.data),
                                     "split": dataclasses.asdict(example_gen.split),
                                     "model": dataclasses.asdict(trainer.model),
                                     "train": dataclasses.asdict(trainer.train)},
                                    sort_keys=True),
  }


def build_pipeline(config: pipeline.PipelineConfig, image: str = DEFAULT_IMAGE,
                   name: str = PIPELINE_NAME):
  """The KFP pipeline of `config`'s components, its parameters defaulting to `config`."""
  steps = make_components(image)
  defaults = parameter_defaults(config)

  def configure(task, component: str):
    task.set_display_name(component)
    task.set_caching_options(config.enable_cache and component not in UNCACHED)
    return task

  @dsl.pipeline(name=name, description="AutoRec: ExampleGen -> StatisticsGen -> "
                "ExampleValidator -> Transform -> Trainer -> Evaluator -> Pusher")
  def autorec_pipeline(example_gen_config: str = defaults["example_gen_config"],
                       validator_config: str = defaults["validator_config"],
                       trainer_config: str = defaults["trainer_config"],
                       evaluator_config: str = defaults["evaluator_config"],
                       pusher_config: str = defaults["pusher_config"],
                       export_metadata: str = defaults["export_metadata"]):
    examples = configure(steps["ExampleGen"](example_gen_config=example_gen_config),
                         "ExampleGen").outputs["examples"]
    statistics = configure(steps["StatisticsGen"](examples=examples),
                           "StatisticsGen").outputs["statistics"]
    schema = configure(steps["ExampleValidator"](validator_config=validator_config,
                                                 examples=examples, statistics=statistics),
                       "ExampleValidator").outputs["schema"]
    transform_graph = configure(steps["Transform"](examples=examples, schema=schema),
                                "Transform").outputs["transform_graph"]
    model = configure(steps["Trainer"](trainer_config=trainer_config, examples=examples,
                                       transform_graph=transform_graph),
                      "Trainer").outputs["model"]
    evaluator = configure(steps["Evaluator"](
        evaluator_config=evaluator_config, pusher_config=pusher_config,
        examples=examples, transform_graph=transform_graph, model=model), "Evaluator")
    configure(steps["Pusher"](pusher_config=pusher_config, metadata=export_metadata,
                              run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, examples=examples,
                              transform_graph=transform_graph, model=model,
                              blessing=evaluator.outputs["blessing"]), "Pusher")

  return autorec_pipeline


def compile_pipeline(config: pipeline.PipelineConfig, output: str, image: str = DEFAULT_IMAGE,
                     name: str = PIPELINE_NAME) -> str:
  """Writes the pipeline spec of `config` to `output` (YAML); returns `output`."""
  compiler.Compiler().compile(build_pipeline(config, image, name), package_path=output)
  return output


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    path = compile_pipeline(local_runner.config_from_flags(), FLAGS.output, FLAGS.image,
                            FLAGS.pipeline_name)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(f"pipeline spec: {path} (image {FLAGS.image}); submit it with kfp.Client"
        "(host=...).create_run_from_pipeline_package or upload it in the Kubeflow UI")
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli_help.flags_parser(HELP_GROUPS, __doc__))
