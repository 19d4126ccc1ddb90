"""Runs the components in order with TFX-style caching and writes a run manifest.

Each execution's outputs live in `pipeline_root/<Component>/<cache key>/`, the key being a hash
of the component's name, parameters and input fingerprints (and the package version). A
component whose key already has a successful execution is skipped and its recorded outputs are
reused; outputs are built in a temporary sibling directory and renamed into place, so a failed or
killed component leaves nothing that looks successful and a rerun resumes from it.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import time
from collections.abc import Callable

import keras_autorec
from keras_autorec.serving import publish
from pipelines import artifacts, components
from pipelines.artifacts import Artifact

COMPONENTS = ("ExampleGen", "StatisticsGen", "ExampleValidator", "Transform", "Trainer",
              "Evaluator", "Pusher")
EXECUTION_FILE = "execution.json"
_KEY_LENGTH = 16


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything a pipeline run needs; `enable_cache=False` reruns every component."""

  pipeline_root: str
  example_gen: components.ExampleGenConfig = components.ExampleGenConfig()
  validator: components.ValidatorConfig = components.ValidatorConfig()
  trainer: components.TrainerConfig = components.TrainerConfig()
  evaluator: components.EvaluatorConfig = components.EvaluatorConfig()
  pusher: components.PusherConfig = components.PusherConfig()
  enable_cache: bool = True


@dataclasses.dataclass
class ComponentRun:
  """One component's record in the run manifest."""

  component: str
  status: str  # "ran", "cached", "failed" or "not run"
  cache_key: str = ""
  parameters: dict = dataclasses.field(default_factory=dict)
  inputs: dict[str, str | None] = dataclasses.field(default_factory=dict)  # name -> fingerprint
  outputs: dict[str, Artifact] = dataclasses.field(default_factory=dict)
  started: str = ""
  ended: str = ""
  seconds: float = 0.0
  error: str = ""

  def to_json(self) -> dict:
    record = dataclasses.asdict(self)
    record["outputs"] = {name: artifact.to_json() for name, artifact in self.outputs.items()}
    return record


@dataclasses.dataclass
class PipelineResult:
  """The outcome of a run: per-component records, whether a version was pushed, and why."""

  run_id: str
  manifest_path: str
  components: list[ComponentRun]
  succeeded: bool
  pushed_version: str | None
  push_reason: str

  def statuses(self) -> dict[str, str]:
    return {run.component: run.status for run in self.components}


class ComponentFailedError(RuntimeError):
  """A component raised; the run stopped there."""


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def cache_key(component: str, parameters: dict, inputs: dict[str, Artifact | None]) -> str:
  """The hash that identifies an execution: same key, same outputs."""
  return artifacts.fingerprint_json({
      "component": component, "parameters": parameters,
      "inputs": {name: artifact.fingerprint if artifact else None
                 for name, artifact in inputs.items()},
      "keras_autorec_version": keras_autorec.__version__})[:_KEY_LENGTH]


def _load_cached(execution_dir: str) -> dict[str, Artifact] | None:
  path = os.path.join(execution_dir, EXECUTION_FILE)
  if not os.path.exists(path):
    return None
  record = artifacts.read_json(path)
  outputs = {}
  for name, stored in record["outputs"].items():
    # uris are stored relative to the execution, so a moved pipeline_root keeps its cache.
    outputs[name] = Artifact.from_json({**stored, "uri": os.path.join(execution_dir,
                                                                      stored["uri"])})
  return outputs


def _publish(partial_dir: str, execution_dir: str, outputs: dict[str, Artifact]) -> dict:
  relative = {name: dataclasses.replace(artifact, uri=os.path.relpath(artifact.uri, partial_dir))
              for name, artifact in outputs.items()}
  record = {"outputs": {name: artifact.to_json() for name, artifact in relative.items()}}
  artifacts.write_json(os.path.join(partial_dir, EXECUTION_FILE), record)
  # A forced (--no_cache) rerun replaces the old execution.
  publish.publish_directory(partial_dir, execution_dir, replace=True)
  return {name: dataclasses.replace(artifact, uri=os.path.join(execution_dir, artifact.uri))
          for name, artifact in relative.items()}


class _Run:
  """Executes components one after another, recording each in the manifest as it goes."""

  def __init__(self, config: PipelineConfig):
    self.config = config
    self.run_id = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + f"{os.getpid()}"
    runs_dir = os.path.join(config.pipeline_root, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    self.manifest_path = os.path.join(runs_dir, f"{self.run_id}.json")
    self.records: list[ComponentRun] = []

  def write_manifest(self, status: str, pushed: dict | None = None) -> None:
    artifacts.write_json(self.manifest_path, {
        "run_id": self.run_id, "status": status, "pipeline_root": self.config.pipeline_root,
        "enable_cache": self.config.enable_cache, "push": pushed,
        "components": [record.to_json() for record in self.records]})

  def execute(self, component: str, parameters: dict, inputs: dict[str, Artifact | None],
              body: Callable[[str], dict[str, Artifact]]) -> dict[str, Artifact]:
    """Runs `body(output_dir)` unless an execution with the same key succeeded before."""
    key = cache_key(component, parameters, inputs)
    record = ComponentRun(component=component, status="ran", cache_key=key,
                          parameters=parameters,
                          inputs={name: artifact.fingerprint if artifact else None
                                  for name, artifact in inputs.items()},
                          started=_now())
    self.records.append(record)
    component_dir = os.path.join(self.config.pipeline_root, component)
    execution_dir = os.path.join(component_dir, key)
    start = time.time()
    cached = _load_cached(execution_dir) if self.config.enable_cache else None
    if cached is not None:
      record.status, record.outputs = "cached", cached
      logging.info("%s: cached (%s)", component, execution_dir)
    else:
      logging.info("%s: running (%s)", component, execution_dir)
      with publish.partial_directory(component_dir) as partial_dir:
        try:
          record.outputs = _publish(partial_dir, execution_dir, body(partial_dir))
        except Exception as error:
          record.status, record.error = "failed", f"{type(error).__name__}: {error}"
          record.ended, record.seconds = _now(), time.time() - start
          self.write_manifest("failed")
          raise ComponentFailedError(f"{component} failed: {record.error}") from error
    record.ended, record.seconds = _now(), time.time() - start
    self.write_manifest("running")
    return record.outputs


def run_pipeline(config: PipelineConfig) -> PipelineResult:
  """Runs ExampleGen through Pusher; a failed component stops the run (see PipelineResult)."""
  run = _Run(config)
  logging.info("Pipeline run %s under %s (cache %s)", run.run_id, config.pipeline_root,
               "on" if config.enable_cache else "off")
  try:
    pushed = _run_components(run, config)
  except ComponentFailedError as error:
    logging.error("%s; rerun the same command to resume from it", error)
    done = {record.component for record in run.records}
    run.records += [ComponentRun(component=name, status="not run") for name in COMPONENTS
                    if name not in done]
    run.write_manifest("failed")
    return PipelineResult(run.run_id, run.manifest_path, run.records, succeeded=False,
                          pushed_version=None, push_reason=str(error))
  push = pushed.properties
  if run.records[-1].status == "cached":
    # The recorded push happened in an earlier run; this one publishes nothing.
    version, reason = None, f"nothing new pushed: Pusher cached (earlier: {push['reason']})"
  else:
    version, reason = push["version_dir"] if push["pushed"] else None, push["reason"]
  run.write_manifest("succeeded", {"pushed_version": version, "reason": reason})
  logging.info("Pipeline run %s succeeded; %s", run.run_id, reason)
  return PipelineResult(run.run_id, run.manifest_path, run.records, succeeded=True,
                        pushed_version=version, push_reason=reason)


def _run_components(run: _Run, config: PipelineConfig) -> Artifact:
  example_config = config.example_gen
  source = Artifact("ExternalData", "", artifacts.fingerprint_paths(
      components.example_gen_input_paths(example_config)))
  examples = run.execute(
      "ExampleGen", dataclasses.asdict(example_config), {"source": source},
      lambda out: components.example_gen(example_config, out))["examples"]
  statistics = run.execute(
      "StatisticsGen", {}, {"examples": examples},
      lambda out: components.statistics_gen(examples, out))["statistics"]
  schema = run.execute(
      "ExampleValidator", dataclasses.asdict(config.validator),
      {"examples": examples, "statistics": statistics},
      lambda out: components.example_validator(examples, statistics, config.validator,
                                               out))["schema"]
  transform_graph = run.execute(
      "Transform", {}, {"examples": examples, "schema": schema},
      lambda out: components.transform(examples, schema, out))["transform_graph"]
  trainer_config = config.trainer
  model = run.execute(
      "Trainer", dataclasses.asdict(trainer_config),
      {"examples": examples, "transform_graph": transform_graph},
      lambda out: components.trainer(examples, transform_graph, trainer_config, out))["model"]
  # The Resolver step of TFX: the baseline is an input, so a newly pushed baseline reruns the
  # Evaluator while an unchanged one keeps it cached.
  baseline = components.resolve_baseline(config.pusher.serving_model_dir, model.fingerprint)
  evaluation = run.execute(
      "Evaluator", dataclasses.asdict(config.evaluator),
      {"examples": examples, "transform_graph": transform_graph, "model": model,
       "baseline": baseline.as_artifact() if baseline else None},
      lambda out: components.evaluator(examples, transform_graph, model, baseline,
                                       config.evaluator, out))
  metadata = {"data": dataclasses.asdict(example_config.data),
              "split": dataclasses.asdict(example_config.split),
              "model": dataclasses.asdict(trainer_config.model),
              "train": dataclasses.asdict(trainer_config.train), "pipeline_run": run.run_id}
  return run.execute(
      "Pusher", dataclasses.asdict(config.pusher),
      {"examples": examples, "transform_graph": transform_graph, "model": model,
       "blessing": evaluation["blessing"]},
      lambda out: components.pusher(examples, transform_graph, model, evaluation["blessing"],
                                    config.pusher, out, metadata))["pushed_model"]
