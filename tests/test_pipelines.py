"""The TFX-style pipeline: caching, blessing, the no-push path, resume, and the TFX run_fn."""

from __future__ import annotations

import dataclasses
import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from conftest import make_ratings
from keras_autorec import evaluation, export, training
from keras_autorec.data import sources
from keras_autorec.data.layout import build_layout
from keras_autorec.data.splits import RatingsSplit, SplitConfig
from pipelines import artifacts, components, pipeline, trainer_module

ALL_COMPONENTS = list(pipeline.COMPONENTS)


def _write_csv(path: str, ratings) -> str:
  with open(path, "w") as f:
    f.write("user,item,rating\n")
    for user, item, rating in zip(ratings.user_ids[ratings.user_index],
                                  ratings.item_ids[ratings.item_index], ratings.rating):
      f.write(f"{user},{item},{rating}\n")
  return path


@pytest.fixture
def config(tmp_path) -> pipeline.PipelineConfig:
  ratings_file = _write_csv(str(tmp_path / "ratings.csv"), make_ratings())
  return pipeline.PipelineConfig(
      pipeline_root=str(tmp_path / "pipeline_root"),
      example_gen=components.ExampleGenConfig(
          data=sources.DataConfig(dataset="csv", ratings_file=ratings_file)),
      trainer=components.TrainerConfig(
          model=training.ModelConfig(hidden_units=(8,)),
          train=training.TrainConfig(epochs=3, verbose=0)),
      # Three epochs of a tiny model do not beat 1.0; these tests are about the pipeline.
      evaluator=components.EvaluatorConfig(rmse_threshold=4.0, change_threshold=4.0),
      pusher=components.PusherConfig(export.ExportConfig(
          export_dir=str(tmp_path / "saved_models" / "autorec"), top_k=5)))


def _with(config: pipeline.PipelineConfig, **changes) -> pipeline.PipelineConfig:
  """`config` with fields of its component configs replaced, e.g. evaluator={"top_k": 5}."""
  return dataclasses.replace(config, **{
      name: dataclasses.replace(getattr(config, name), **fields)
      for name, fields in changes.items()})


def _ran(result: pipeline.PipelineResult) -> list[str]:
  return [name for name, status in result.statuses().items() if status == "ran"]


def test_second_run_is_cached_and_a_training_change_reruns_only_trainer_onwards(config):
  first = pipeline.run_pipeline(config)
  assert first.succeeded and _ran(first) == ALL_COMPONENTS
  serving_dir = config.pusher.serving_model_dir
  assert first.pushed_version == os.path.join(serving_dir, "1")
  metadata = components.pushed_metadata(first.pushed_version)
  model_run = next(run for run in first.components if run.component == "Trainer")
  assert metadata["pipeline"]["model_fingerprint"] == model_run.outputs["model"].fingerprint
  assert "ndcg@10" in metadata["metrics"] and "recall@10" in metadata["metrics"]

  second = pipeline.run_pipeline(config)
  assert set(second.statuses().values()) == {"cached"}
  assert second.pushed_version is None and export.existing_versions(serving_dir) == [1]

  changed = _with(config, trainer={"model": dataclasses.replace(config.trainer.model,
                                                                l2_weight=0.01)})
  third = pipeline.run_pipeline(changed)
  assert _ran(third) == ["Trainer", "Evaluator", "Pusher"]
  assert third.pushed_version == os.path.join(serving_dir, "2")
  blessing = next(run for run in third.components if run.component == "Evaluator")
  assert any("vs baseline" in reason for reason in blessing.outputs["blessing"].properties[
      "reasons"])

  manifest = json.load(open(third.manifest_path))
  assert manifest["status"] == "succeeded"
  assert [entry["component"] for entry in manifest["components"]] == ALL_COMPONENTS
  assert all(entry["cache_key"] and entry["started"] and entry["ended"]
             for entry in manifest["components"])


def test_statistics_and_training_artifacts_are_written(config):
  result = pipeline.run_pipeline(_with(config, evaluator={"rmse_threshold": 0.0}))
  outputs = {run.component: run.outputs for run in result.components}
  statistics_dir = outputs["StatisticsGen"]["statistics"].uri
  stats = json.load(open(os.path.join(statistics_dir, "statistics.json")))
  assert stats["train"]["ratings"] + stats["validation"]["ratings"] + stats["test"][
      "ratings"] == 800
  assert sum(stats["train"]["rating_histogram"].values()) == stats["train"]["ratings"]
  assert "q50" in stats["train"]["ratings_per_user"] and "unseen_users" in stats["test"]
  assert os.path.getsize(os.path.join(statistics_dir, "rating_histogram.png")) > 0
  model_dir = outputs["Trainer"]["model"].uri
  for name in ("model.keras", "history.json", "curves.png", "metrics.json"):
    assert os.path.exists(os.path.join(model_dir, name)), name
  assert os.path.exists(os.path.join(outputs["Evaluator"]["blessing"].uri, "NOT_BLESSED"))


def test_unmet_value_threshold_pushes_nothing_and_says_why(config):
  result = pipeline.run_pipeline(_with(config, evaluator={"rmse_threshold": 0.01}))
  assert result.succeeded and result.pushed_version is None
  assert "not blessed" in result.push_reason and "> threshold 0.0100" in result.push_reason
  assert not os.path.exists(config.pusher.serving_model_dir)


def test_change_threshold_compares_with_the_pushed_model(config):
  first = pipeline.run_pipeline(config)
  assert first.pushed_version
  # Demands an RMSE improvement of 1.0 over the pushed model, which no retraining achieves.
  stricter = _with(config, evaluator={"change_threshold": -1.0},
                   trainer={"train": dataclasses.replace(config.trainer.train, seed=1)})
  result = pipeline.run_pipeline(stricter)
  assert _ran(result) == ["Trainer", "Evaluator", "Pusher"]
  assert result.pushed_version is None and "change threshold -1.0000" in result.push_reason
  assert export.existing_versions(config.pusher.serving_model_dir) == [1]


def test_blessing_decision_value_and_change_thresholds():
  config = components.EvaluatorConfig(rmse_threshold=0.95, change_threshold=0.01)
  baseline = components.Baseline("saved/1", test_rmse=0.90, test_fingerprint="t",
                                 model_fingerprint="m")
  assert components.blessing_decision(0.905, baseline, config)[0]
  assert not components.blessing_decision(0.92, baseline, config)[0]
  assert not components.blessing_decision(0.96, None, config)[0]
  assert components.blessing_decision(0.94, None, config)[0]
  unmeasured = dataclasses.replace(baseline, test_rmse=None)
  blessed, reasons = components.blessing_decision(0.94, unmeasured, config)
  assert blessed and "change not checked" in reasons[-1]


def test_a_baseline_from_another_test_split_is_re_evaluated_on_this_one(config):
  first = pipeline.run_pipeline(config)
  other_split = dataclasses.replace(config.example_gen.split, seed=3)
  result = pipeline.run_pipeline(_with(config, example_gen={"split": other_split}))
  blessing = next(run for run in result.components if run.component == "Evaluator")
  record = json.load(open(os.path.join(blessing.outputs["blessing"].uri, "blessing.json")))
  examples = next(run for run in result.components if run.component == "ExampleGen")
  test = artifacts.read_split(examples.outputs["examples"].uri).test
  assert record["baseline"]["version_dir"] == first.pushed_version
  assert record["baseline"]["test_rmse"] == pytest.approx(
      evaluation.evaluate_saved_model(first.pushed_version, test).rmse)


def test_failed_component_stops_the_run_and_a_rerun_resumes_from_it(config, monkeypatch):
  def broken_fit(*args, **kwargs):
    raise RuntimeError("out of memory")

  monkeypatch.setattr(components.training, "fit", broken_fit)
  failed = pipeline.run_pipeline(config)
  assert not failed.succeeded and "out of memory" in failed.push_reason
  assert failed.statuses() == {"ExampleGen": "ran", "StatisticsGen": "ran",
                               "ExampleValidator": "ran", "Transform": "ran",
                               "Trainer": "failed", "Evaluator": "not run",
                               "Pusher": "not run"}
  assert json.load(open(failed.manifest_path))["status"] == "failed"
  trainer_dir = os.path.join(config.pipeline_root, "Trainer")
  assert os.listdir(trainer_dir) == []  # nothing half-written survives

  monkeypatch.undo()
  resumed = pipeline.run_pipeline(config)
  assert _ran(resumed) == ["Trainer", "Evaluator", "Pusher"] and resumed.pushed_version


def test_anomalies_stop_the_run_with_a_report(config, tmp_path):
  ratings_file = config.example_gen.data.ratings_file
  # Train and test are the same file: every test pair leaks from training.
  leaky = _with(config, example_gen={"split": SplitConfig(protocol="files",
                                                          train_file=ratings_file,
                                                          test_file=ratings_file)})
  result = pipeline.run_pipeline(leaky)
  assert result.statuses()["ExampleValidator"] == "failed"
  assert result.statuses()["Trainer"] == "not run"
  assert "pairs are also in train" in result.push_reason


def test_find_anomalies_reports_scale_and_empty_rows(split):
  bad_train = dataclasses.replace(split.train, rating=np.where(
      np.arange(split.train.num_ratings) == 0, 7.0, split.train.rating).astype(np.float32))
  anomalies = components.find_anomalies(
      RatingsSplit(bad_train, split.validation, split.test),
      components.ValidatorConfig(max_empty_row_fraction=0.0))
  assert any("outside the scale" in anomaly for anomaly in anomalies)
  assert components.find_anomalies(split, components.ValidatorConfig()) == []


@pytest.mark.parametrize("item_based", [True, False])
def test_top_k_items_matches_a_dense_ranking(split, item_based):
  layout = build_layout(split.train, item_based=item_based)
  model = training.build_model(training.ModelConfig(item_based=item_based, hidden_units=(8,)),
                               layout)
  scores = np.array(model.predict_ratings(layout.train.to_dense()))
  scores[layout.train.to_dense() != 0] = -np.inf
  user_scores = scores.T if item_based else scores
  users = np.array([0, 3, 7])
  top = evaluation.top_k_items(model, layout, users, k=5, batch_size=7)
  expected = np.argsort(-user_scores[users], axis=1, kind="stable")[:, :5]
  np.testing.assert_array_equal(top, expected)


def _write_examples(path: str, ratings) -> None:
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for user, item, rating in zip(ratings.user_index, ratings.item_index, ratings.rating):
      features = {
          "user_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(user)])),
          "item_id": tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[ratings.item_ids[item].encode()])),
          "rating": tf.train.Feature(float_list=tf.train.FloatList(value=[float(rating)]))}
      writer.write(tf.train.Example(features=tf.train.Features(feature=features))
                   .SerializeToString())


def test_tfx_run_fn_trains_and_writes_a_servable_model(split, tmp_path):
  train_dir, eval_dir = tmp_path / "Split-train", tmp_path / "Split-eval"
  train_dir.mkdir()
  eval_dir.mkdir()
  _write_examples(str(train_dir / "data_tfrecord-00000-of-00001.gz"), split.train)
  _write_examples(str(eval_dir / "data_tfrecord-00000-of-00001.gz"), split.validation)
  fn_args = types.SimpleNamespace(
      train_files=[str(train_dir / "*")], eval_files=[str(eval_dir / "*")],
      serving_model_dir=str(tmp_path / "serving_model_dir"),
      model_run_dir=str(tmp_path / "model_run"),
      # model_dir None: checkpoints would bring training.fit's TensorBoard callback, and
      # tensorboard is not a dependency of the package.
      custom_config={"model": {"hidden_units": [8]},
                     "train": {"epochs": 2, "verbose": 0, "model_dir": None},
                     "export": {"top_k": 3}})
  trainer_module.run_fn(fn_args)
  assert os.path.exists(tmp_path / "model_run" / "model.keras")
  loaded = tf.saved_model.load(fn_args.serving_model_dir)
  user = str(int(split.train.user_index[0]))
  item = str(split.train.item_ids[split.train.item_index[0]])
  rating = loaded.signatures["serving_default"](user_id=tf.constant([user]),
                                                item_id=tf.constant([item]))["rating"]
  assert 1.0 <= float(rating[0]) <= 5.0
  assert not [name for name in os.listdir(tmp_path) if name.startswith(".export-")]
