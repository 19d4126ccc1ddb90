"""The Kubeflow Pipelines spec (pipelines.kubeflow_runner) and its steps (pipelines.kubeflow_steps)."""

from __future__ import annotations

import json
import os

import pytest
from absl.testing import flagsaver

from keras_autorec import export, training
from keras_autorec.data import sources
from pipelines import artifacts, blessing, components, kubeflow_steps, pipeline

kfp = pytest.importorskip("kfp", reason="kfp is not installed: pip install '.[kubeflow]'")
from kfp import components as kfp_components  # noqa: E402

from pipelines import kubeflow_runner  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "registry.example.com/keras-autorec:test"
TASKS = {"ExampleGen": "example-gen", "StatisticsGen": "statistics-gen",
         "ExampleValidator": "example-validator", "Transform": "transform",
         "Trainer": "trainer", "Evaluator": "evaluator", "Pusher": "pusher"}
# Each component's upstream tasks and its input and output artifacts (name: type).
UPSTREAM = {"example-gen": set(), "statistics-gen": {"example-gen"},
            "example-validator": {"example-gen", "statistics-gen"},
            "transform": {"example-gen", "example-validator"},
            "trainer": {"example-gen", "transform"},
            "evaluator": {"example-gen", "transform", "trainer"},
            "pusher": {"example-gen", "transform", "trainer", "evaluator"}}
OUTPUTS = {"example-gen": {"examples": "system.Dataset"},
           "statistics-gen": {"statistics": "system.Artifact"},
           "example-validator": {"schema": "system.Artifact"},
           "transform": {"transform_graph": "system.Artifact"},
           "trainer": {"model": "system.Model"},
           "evaluator": {"evaluation": "system.Artifact", "blessing": "system.Artifact"},
           "pusher": {"pushed_model": "system.Artifact"}}
PARAMETERS = {"example-gen": {"example_gen_config"}, "statistics-gen": set(),
              "example-validator": {"validator_config"}, "transform": set(),
              "trainer": {"trainer_config"}, "evaluator": {"evaluator_config", "pusher_config"},
              "pusher": {"pusher_config", "metadata", "run_id"}}


def _config(tmp_path, ratings_file: str, enable_cache: bool = True) -> pipeline.PipelineConfig:
  return pipeline.PipelineConfig(
      pipeline_root=str(tmp_path / "pipeline_root"),
      example_gen=components.ExampleGenConfig(
          data=sources.DataConfig(dataset="csv", ratings_file=ratings_file)),
      validator=components.ValidatorConfig(max_empty_row_fraction=0.2),
      trainer=components.TrainerConfig(model=training.ModelConfig(hidden_units=(8,)),
                                       train=training.TrainConfig(epochs=5, verbose=0)),
      evaluator=components.EvaluatorConfig(rmse_threshold=5.0, change_threshold=0.02),
      pusher=components.PusherConfig(export.ExportConfig(export_dir=str(tmp_path / "serving"),
                                                          top_k=7)),
      enable_cache=enable_cache)


@pytest.fixture
def spec(tmp_path, ratings_file):
  """The compiled spec of _config, loaded back by the KFP SDK's own loader."""
  config = _config(tmp_path, ratings_file)
  path = kubeflow_runner.compile_pipeline(config, str(tmp_path / "pipeline.yaml"), IMAGE)
  return config, kfp_components.load_component_from_file(path).pipeline_spec


def test_spec_has_the_seven_components_in_order(spec):
  _, pipeline_spec = spec
  tasks = pipeline_spec.root.dag.tasks
  assert {task.task_info.name: name for name, task in tasks.items()} == TASKS
  for task_name, upstream in UPSTREAM.items():
    assert set(tasks[task_name].dependent_tasks) == upstream, task_name
  # Kahn's order of the graph is the in-process pipeline's order.
  done, order = set(), []
  while len(order) < len(UPSTREAM):
    ready = sorted(name for name, up in UPSTREAM.items() if name not in done and up <= done)
    assert len(ready) == 1, ready
    order.append(ready[0])
    done.add(ready[0])
  assert order == [TASKS[name] for name in pipeline.COMPONENTS]


def test_spec_inputs_outputs_images_and_caching(spec):
  _, pipeline_spec = spec
  for task_name, task in pipeline_spec.root.dag.tasks.items():
    component = pipeline_spec.components[task.component_ref.name]
    outputs = {name: definition.artifact_type.schema_title for name, definition
               in component.output_definitions.artifacts.items()}
    assert outputs == OUTPUTS[task_name]
    assert set(component.input_definitions.parameters) == PARAMETERS[task_name]
    for name, argument in task.inputs.artifacts.items():
      producer = argument.task_output_artifact
      assert producer.producer_task in UPSTREAM[task_name]
      assert producer.output_artifact_key == name
    container = pipeline_spec.deployment_spec["executors"][
        component.executor_label]["container"]
    assert container["image"] == IMAGE
    command = " ".join(container["command"])
    assert "kfp.dsl.executor_main" in command and "pip install" not in command
    assert task.caching_options.enable_cache == (
        task.task_info.name not in kubeflow_runner.UNCACHED)


def test_spec_parameters_default_to_the_configs(spec):
  config, pipeline_spec = spec
  parameters = {name: definition.default_value.string_value for name, definition
                in pipeline_spec.root.input_definitions.parameters.items()}
  assert set(parameters) == {"example_gen_config", "validator_config", "trainer_config",
                             "evaluator_config", "pusher_config", "export_metadata"}
  for name, cls, value in (
      ("example_gen_config", components.ExampleGenConfig, config.example_gen),
      ("validator_config", components.ValidatorConfig, config.validator),
      ("trainer_config", components.TrainerConfig, config.trainer),
      ("evaluator_config", components.EvaluatorConfig, config.evaluator),
      ("pusher_config", components.PusherConfig, config.pusher)):
    assert kubeflow_steps.config_from_json(cls, parameters[name]) == value
  assert json.loads(parameters["export_metadata"])["model"]["hidden_units"] == [8]


def test_no_cache_turns_caching_off_everywhere(tmp_path, ratings_file):
  path = kubeflow_runner.compile_pipeline(_config(tmp_path, ratings_file, enable_cache=False),
                                          str(tmp_path / "p.yaml"))
  tasks = kfp_components.load_component_from_file(path).pipeline_spec.root.dag.tasks
  assert not any(task.caching_options.enable_cache for task in tasks.values())


def test_config_json_round_trip_and_unknown_fields():
  config = components.TrainerConfig(model=training.ModelConfig(hidden_units=(500, 250)),
                                    train=training.TrainConfig(epochs=3))
  text = kubeflow_steps.config_to_json(config)
  assert kubeflow_steps.config_from_json(components.TrainerConfig, text) == config
  with pytest.raises(ValueError, match=r"ModelConfig has no field\(s\) \['hidden'\]"):
    kubeflow_steps.config_from_json(components.TrainerConfig,
                                    json.dumps({"model": {"hidden": [3]}}))


def test_steps_run_the_pipeline_as_the_local_runner_does(tmp_path, ratings_file):
  """The seven steps in order, in this process, on artifact directories as KFP hands them."""
  config = _config(tmp_path, ratings_file)
  defaults = kubeflow_runner.parameter_defaults(config)
  out = {name: str(tmp_path / "kfp" / name) for name in (
      "examples", "statistics", "schema", "transform_graph", "model", "evaluation",
      "blessing", "pushed_model")}
  kubeflow_steps.example_gen(defaults["example_gen_config"], out["examples"])
  kubeflow_steps.statistics_gen(out["examples"], out["statistics"])
  kubeflow_steps.example_validator(defaults["validator_config"], out["examples"],
                                   out["statistics"], out["schema"])
  kubeflow_steps.transform(out["examples"], out["schema"], out["transform_graph"])
  kubeflow_steps.trainer(defaults["trainer_config"], out["examples"], out["transform_graph"],
                         out["model"])
  evaluated = kubeflow_steps.evaluator(defaults["evaluator_config"], defaults["pusher_config"],
                                       out["examples"], out["transform_graph"], out["model"],
                                       out["evaluation"], out["blessing"])
  pushed = kubeflow_steps.pusher(defaults["pusher_config"], defaults["export_metadata"], "run-1",
                                 out["examples"], out["transform_graph"], out["model"],
                                 out["blessing"], out["pushed_model"])["pushed_model"]

  # The component functions' outputs, read back from the artifact records.
  examples = kubeflow_steps.read_artifact(out["examples"])
  assert examples.uri == os.path.join(out["examples"], "examples")
  assert examples.fingerprint == artifacts.read_json(
      os.path.join(examples.uri, "splits.json"))["fingerprint"]
  assert kubeflow_steps.read_artifact(out["transform_graph"]).properties["num_rows"] > 0
  blessed = kubeflow_steps.read_artifact(out["blessing"])
  assert blessed.properties["blessed"] and evaluated["blessing"].uri == out["blessing"]
  assert os.path.exists(os.path.join(out["blessing"], blessing.BLESSED_FILE))
  metrics = artifacts.read_json(os.path.join(out["evaluation"], "metrics.json"))
  # Five epochs of a tiny model: far from converged, but blessed under the 5.0 threshold.
  assert 0.3 < metrics["test_rmse"] <= 5.0
  assert artifacts.read_json(os.path.join(out["blessing"], "blessing.json"))["metrics"] == metrics
  assert blessed.properties["reasons"][0].startswith(f"test RMSE {metrics['test_rmse']:.4f} <=")
  assert pushed.properties["pushed"]
  version_dir = pushed.properties["version_dir"]
  assert version_dir == str(tmp_path / "serving" / "1")
  metadata = export.version_metadata(version_dir)
  assert metadata["pipeline_run"] == "run-1" and metadata["model"]["hidden_units"] == [8]
  assert metadata["pipeline"]["model_fingerprint"] == (
      kubeflow_steps.read_artifact(out["model"]).fingerprint)
  # A second push of the same model is refused, as in the in-process pipeline.
  again = kubeflow_steps.pusher(defaults["pusher_config"], defaults["export_metadata"], "run-2",
                                out["examples"], out["transform_graph"], out["model"],
                                out["blessing"], str(tmp_path / "kfp" / "pushed_again"))
  assert "already holds this model" in again["pushed_model"].properties["reason"]
  assert export.existing_versions(str(tmp_path / "serving")) == [1]


def test_command_line_writes_a_spec_the_sdk_loads(tmp_path, capsys):
  output = tmp_path / "autorec_pipeline.yaml"
  argv = ["kubeflow_runner", f"--output={output}", "--dataset=ml100k", "--data_dir=/mnt/data",
          "--serving_model_dir=/mnt/models/autorec", "--epochs=7", "--rmse_threshold=0.95"]
  with flagsaver.flagsaver():
    kubeflow_runner.FLAGS(argv)
    assert kubeflow_runner.main(["kubeflow_runner"]) == 0
  assert f"pipeline spec: {output}" in capsys.readouterr().out
  spec = kfp_components.load_component_from_file(str(output)).pipeline_spec
  parameters = spec.root.input_definitions.parameters
  trainer = json.loads(parameters["trainer_config"].default_value.string_value)
  assert trainer["train"]["epochs"] == 7 and trainer["train"]["model_dir"] is None
  evaluator = json.loads(parameters["evaluator_config"].default_value.string_value)
  assert evaluator["rmse_threshold"] == 0.95
  pusher = json.loads(parameters["pusher_config"].default_value.string_value)
  assert pusher["export"]["export_dir"] == "/mnt/models/autorec"
  assert len(spec.root.dag.tasks) == 7


@pytest.mark.skipif(os.environ.get("AUTOREC_KFP_LOCAL") != "1", reason=(
    "set AUTOREC_KFP_LOCAL=1: kfp.local starts one Python process per step, and each imports "
    "TensorFlow (~8 s of CPU) and the package; the seven steps cost about a minute of CPU on "
    "2 cores, more than CI's budget for this area"))
def test_kfp_local_runs_the_compiled_pipeline_end_to_end(tmp_path, ratings_file, monkeypatch):
  import kfp.local  # pylint: disable=import-outside-toplevel
  # The steps' `python3 -m kfp.dsl.executor_main` must import this checkout's packages.
  monkeypatch.chdir(REPO)
  kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False),
                 pipeline_root=str(tmp_path / "kfp_root"))
  config = _config(tmp_path, ratings_file)
  kubeflow_runner.build_pipeline(config)()
  assert export.existing_versions(config.pusher.serving_model_dir) == [1]
  metadata = export.version_metadata(os.path.join(config.pusher.serving_model_dir, "1"))
  assert metadata["model"]["hidden_units"] == [8]
  assert metadata["pipeline"]["blessing"][0].startswith("test RMSE ")
