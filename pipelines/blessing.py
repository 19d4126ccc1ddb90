"""The pipeline's Evaluator (metrics and the blessing against the pushed baseline) and Pusher."""

from __future__ import annotations

import dataclasses
import logging
import os

from keras_autorec import evaluation, export
from keras_autorec.config import DEFAULT_RATING, ExportConfig
from keras_autorec.serving import publish
from pipelines import artifacts
from pipelines.artifacts import Artifact

BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"


# Evaluator ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvaluatorConfig:
  """Metrics and blessing thresholds (TFX value and change thresholds on RMSE, lower is better).

  Attributes:
    rmse_threshold: the test RMSE must be at most this.
    change_threshold: the test RMSE may exceed the pushed baseline's by at most this.
    default_rating: prediction for users or items without training ratings.
    top_k: cut-off of NDCG and recall.
    relevant_rating: held-out ratings at least this are the relevant items of the top-N view.
  """

  rmse_threshold: float = 1.0
  change_threshold: float = 0.01
  default_rating: float = DEFAULT_RATING
  top_k: int = 10
  relevant_rating: float = 4.0


@dataclasses.dataclass(frozen=True)
class Baseline:
  """The pushed version the candidate is compared with, and its recorded test metrics."""

  version_dir: str
  test_rmse: float | None
  test_fingerprint: str | None
  model_fingerprint: str | None

  def as_artifact(self) -> Artifact:
    return Artifact("PushedModel", self.version_dir,
                    artifacts.fingerprint_json(dataclasses.asdict(self)))


def pushed_metadata(version_dir: str) -> dict:
  """The export metadata of a pushed version; {} if it has none."""
  return export.version_metadata(version_dir)


def resolve_baseline(serving_model_dir: str, candidate_fingerprint: str) -> Baseline | None:
  """The newest pushed version holding a different model than the candidate, if any.

  A model is never its own baseline: otherwise pushing it would change the Evaluator's input and
  an identical rerun could not come from cache.
  """
  for version in reversed(publish.existing_versions(serving_model_dir)):
    version_dir = os.path.join(serving_model_dir, str(version))
    metadata = pushed_metadata(version_dir)
    pipeline = metadata.get("pipeline", {})
    if pipeline.get("model_fingerprint") == candidate_fingerprint:
      continue
    return Baseline(version_dir=version_dir,
                    test_rmse=metadata.get("metrics", {}).get("test_rmse"),
                    test_fingerprint=pipeline.get("test_fingerprint"),
                    model_fingerprint=pipeline.get("model_fingerprint"))
  return None


def blessing_decision(test_rmse: float, baseline: Baseline | None,
                      config: EvaluatorConfig) -> tuple[bool, list[str]]:
  """Whether the candidate passes the value and change thresholds, with the reasons."""
  reasons = []
  blessed = test_rmse <= config.rmse_threshold
  reasons.append(f"test RMSE {test_rmse:.4f} {'<=' if blessed else '>'} threshold "
                 f"{config.rmse_threshold:.4f}")
  if baseline is None:
    reasons.append("no pushed baseline to compare with")
  elif baseline.test_rmse is None:
    reasons.append(f"baseline {baseline.version_dir} records no test RMSE; change not checked")
  else:
    change = test_rmse - baseline.test_rmse
    within = change <= config.change_threshold
    blessed = blessed and within
    reasons.append(f"test RMSE change {change:+.4f} vs baseline {baseline.version_dir} "
                   f"({baseline.test_rmse:.4f}) {'<=' if within else '>'} change threshold "
                   f"{config.change_threshold:.4f}")
  return blessed, reasons


def evaluator(examples: Artifact, transform_graph: Artifact, model: Artifact,
              baseline: Baseline | None, config: EvaluatorConfig,
              output_dir: str) -> dict[str, Artifact]:
  """Test RMSE/MAE and NDCG/recall@k; blesses the model if it meets the thresholds."""
  split = artifacts.read_split(examples.uri)
  layout = artifacts.read_layout(transform_graph.uri)
  keras_model = artifacts.load_model(model)
  errors = evaluation.evaluate_ratings(keras_model, layout, split.test, config.default_rating)
  metrics = {**errors.as_dict("test"),
             **evaluation.top_n_metrics(keras_model, layout, split.test, config.top_k,
                             config.relevant_rating)}
  test_fingerprint = examples.properties["split_fingerprints"]["test"]
  if baseline is not None and baseline.test_fingerprint != test_fingerprint:
    # Recorded metrics from another test split are not comparable (TFX, too, evaluates the
    # baseline on the candidate's data): measure the pushed version through its signature.
    baseline = dataclasses.replace(
        baseline, test_fingerprint=test_fingerprint,
        test_rmse=evaluation.evaluate_saved_model(baseline.version_dir, split.test).rmse)
    logging.info("Evaluator: baseline %s re-evaluated on this test split: RMSE %.4f",
                 baseline.version_dir, baseline.test_rmse)
  blessed, reasons = blessing_decision(errors.rmse, baseline, config)
  evaluation_uri = artifacts.subdirectory(output_dir, "evaluation")
  artifacts.write_json(os.path.join(evaluation_uri, "metrics.json"), metrics)
  blessing_uri = artifacts.subdirectory(output_dir, "blessing")
  record = {"blessed": blessed, "reasons": reasons, "metrics": metrics,
            "model_fingerprint": model.fingerprint,
            "baseline": dataclasses.asdict(baseline) if baseline else None,
            "thresholds": dataclasses.asdict(config)}
  artifacts.write_json(os.path.join(blessing_uri, "blessing.json"), record)
  # TFX's marker files, so tools that look for BLESSED / NOT_BLESSED find them.
  open(os.path.join(blessing_uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), "w").close()
  logging.info("Evaluator: %s; %s", "BLESSED" if blessed else "NOT BLESSED", "; ".join(reasons))
  return {"evaluation": Artifact("ModelEvaluation", evaluation_uri,
                                 artifacts.fingerprint_json(metrics), metrics),
          "blessing": Artifact("ModelBlessing", blessing_uri, artifacts.fingerprint_json(record),
                               {"blessed": blessed, "reasons": reasons})}


# Pusher -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PusherConfig:
  """How blessed models are exported; `export.export_dir` is the TF Serving model base path."""

  export: ExportConfig = ExportConfig()

  @property
  def serving_model_dir(self) -> str:
    return self.export.export_dir


def pusher(examples: Artifact, transform_graph: Artifact, model: Artifact, blessing: Artifact,
           config: PusherConfig, output_dir: str,
           metadata: dict | None = None) -> dict[str, Artifact]:
  """Exports a blessed model as the next version of serving_model_dir; otherwise says why not."""
  version_dir = None
  versions = publish.existing_versions(config.serving_model_dir)
  latest = (os.path.join(config.serving_model_dir, str(versions[-1])) if versions else None)
  if not blessing.properties["blessed"]:
    reason = "not pushed: the model is not blessed (" + "; ".join(
        blessing.properties["reasons"]) + ")"
  elif latest and pushed_metadata(latest).get("pipeline", {}).get(
      "model_fingerprint") == model.fingerprint:
    reason = f"not pushed: {latest} already holds this model"
  else:
    evaluation_metrics = artifacts.read_json(os.path.join(blessing.uri, "blessing.json"))
    version_dir = export.export_model(
        artifacts.load_model(model), artifacts.read_layout(transform_graph.uri),
        config.export,
        metadata={**(metadata or {}), "metrics": {**evaluation_metrics["metrics"],
                                                  **model.properties},
                  "pipeline": {"model_fingerprint": model.fingerprint,
                               "examples_fingerprint": examples.fingerprint,
                               "test_fingerprint":
                                   examples.properties["split_fingerprints"]["test"],
                               "transform_fingerprint": transform_graph.fingerprint,
                               "blessing": evaluation_metrics["reasons"]}})
    reason = f"pushed {version_dir}"
  logging.info("Pusher: %s", reason)
  uri = artifacts.subdirectory(output_dir, "pushed_model")
  record = {"pushed": version_dir is not None, "version_dir": version_dir, "reason": reason,
            "model_fingerprint": model.fingerprint}
  artifacts.write_json(os.path.join(uri, "push.json"), record)
  return {"pushed_model": Artifact("PushedModel", uri, artifacts.fingerprint_json(record),
                                   record)}
