"""The seven components as Kubeflow Pipelines steps: JSON configs in, artifact directories out.

Each step runs inside the project's image (`Dockerfile`) and calls the same component function
as the in-process `pipelines.local_runner`; only the plumbing differs. A KFP output artifact is
a directory (`artifact.path`) holding the component's outputs and `artifact.json`, which records
the component's `Artifact` (type, fingerprint, properties, uri relative to the directory) so the
next step reads it back wherever KFP mounted or copied it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Mapping

from pipelines import artifacts, components
from pipelines.artifacts import Artifact

RECORD_FILE = "artifact.json"


def config_to_json(config) -> str:
  """A (nested) config dataclass as the JSON string a pipeline parameter holds."""
  return json.dumps(dataclasses.asdict(config), sort_keys=True)


def config_from_json(cls, text: str):
  """The dataclass `cls` from `config_to_json`'s JSON; unknown fields are a ValueError."""
  return _from_dict(cls, json.loads(text))


def _from_dict(cls, values: Mapping):
  hints = typing.get_type_hints(cls)
  names = {field.name for field in dataclasses.fields(cls)}
  unknown = sorted(set(values) - names)
  if unknown:
    raise ValueError(f"{cls.__name__} has no field(s) {unknown}; it has {sorted(names)}")
  fields = {}
  for name, value in values.items():
    hint = hints[name]
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
      value = _from_dict(hint, value)
    elif isinstance(value, list):
      value = tuple(value)  # The configs' sequences are tuples (hidden_units, rating_scale).
    fields[name] = value
  return cls(**fields)


def write_artifact(artifact: Artifact, directory: str) -> None:
  """Records `artifact` (a component output under `directory`) for the steps that read it."""
  record = {**artifact.to_json(), "uri": os.path.relpath(artifact.uri, directory)}
  artifacts.write_json(os.path.join(directory, RECORD_FILE), record)


def read_artifact(directory: str) -> Artifact:
  """The Artifact that `write_artifact` recorded in `directory`, with its uri under it."""
  record = artifacts.read_json(os.path.join(directory, RECORD_FILE))
  return Artifact.from_json({**record, "uri": os.path.join(directory, record["uri"])})


def _run(outputs: dict[str, Artifact], directories: Mapping[str, str]) -> dict[str, Artifact]:
  for name, directory in directories.items():
    write_artifact(outputs[name], directory)
  return outputs


def _output_dir(directory: str) -> str:
  os.makedirs(directory, exist_ok=True)
  return directory


def example_gen(config_json: str, examples_dir: str) -> dict[str, Artifact]:
  """ExampleGen: loads and splits the ratings into `examples_dir`."""
  config = config_from_json(components.ExampleGenConfig, config_json)
  return _run(components.example_gen(config, _output_dir(examples_dir)),
              {"examples": examples_dir})


def statistics_gen(examples_dir: str, statistics_dir: str) -> dict[str, Artifact]:
  """StatisticsGen: the split's statistics into `statistics_dir`."""
  return _run(components.statistics_gen(read_artifact(examples_dir),
                                        _output_dir(statistics_dir)),
              {"statistics": statistics_dir})


def example_validator(config_json: str, examples_dir: str, statistics_dir: str,
                      schema_dir: str) -> dict[str, Artifact]:
  """ExampleValidator: the schema into `schema_dir`; raises on anomalies."""
  config = config_from_json(components.ValidatorConfig, config_json)
  return _run(components.example_validator(read_artifact(examples_dir),
                                           read_artifact(statistics_dir), config,
                                           _output_dir(schema_dir)),
              {"schema": schema_dir})


def transform(examples_dir: str, schema_dir: str, transform_dir: str) -> dict[str, Artifact]:
  """Transform: vocabularies and row layout into `transform_dir`."""
  return _run(components.transform(read_artifact(examples_dir), read_artifact(schema_dir),
                                   _output_dir(transform_dir)),
              {"transform_graph": transform_dir})


def trainer(config_json: str, examples_dir: str, transform_dir: str,
            model_dir: str) -> dict[str, Artifact]:
  """Trainer: fits AutoRec; the model, curves and metrics into `model_dir`."""
  config = config_from_json(components.TrainerConfig, config_json)
  return _run(components.trainer(read_artifact(examples_dir), read_artifact(transform_dir),
                                 config, _output_dir(model_dir)),
              {"model": model_dir})


def evaluator(config_json: str, pusher_config_json: str, examples_dir: str, transform_dir: str,
              model_dir: str, evaluation_dir: str, blessing_dir: str) -> dict[str, Artifact]:
  """Evaluator: test metrics and the blessing against the newest version the Pusher pushed.

  The baseline is resolved here, as the in-process pipeline's Resolver step does before it.
  """
  config = config_from_json(components.EvaluatorConfig, config_json)
  serving_model_dir = config_from_json(components.PusherConfig,
                                       pusher_config_json).serving_model_dir
  model = read_artifact(model_dir)
  baseline = components.resolve_baseline(serving_model_dir, model.fingerprint)
  output_dir = _output_dir(evaluation_dir + ".outputs")
  outputs = components.evaluator(read_artifact(examples_dir), read_artifact(transform_dir),
                                 model, baseline, config, output_dir)
  # The component writes both outputs under one directory; KFP wants one per artifact.
  for name, directory in (("evaluation", evaluation_dir), ("blessing", blessing_dir)):
    os.replace(outputs[name].uri, directory)
    outputs[name] = dataclasses.replace(outputs[name], uri=directory)
  os.rmdir(output_dir)
  return _run(outputs, {"evaluation": evaluation_dir, "blessing": blessing_dir})


def pusher(config_json: str, metadata_json: str, run_id: str, examples_dir: str,
           transform_dir: str, model_dir: str, blessing_dir: str,
           pushed_dir: str) -> dict[str, Artifact]:
  """Pusher: exports a blessed model as the next version of the serving model directory."""
  config = config_from_json(components.PusherConfig, config_json)
  metadata = {**json.loads(metadata_json), "pipeline_run": run_id}
  return _run(components.pusher(read_artifact(examples_dir), read_artifact(transform_dir),
                                read_artifact(model_dir), read_artifact(blessing_dir), config,
                                _output_dir(pushed_dir), metadata),
              {"pushed_model": pushed_dir})
