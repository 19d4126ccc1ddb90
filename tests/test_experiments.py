"""The experiments CLI on a tiny CSV: writes Markdown, CSV and PNG, reuses cached runs."""

from __future__ import annotations

import csv
import glob
import os
import re

import pytest
from absl.testing import flagsaver

from keras_autorec import experiments, training
from keras_autorec.baselines import llorma, rbm
from keras_autorec.data import sources


def test_cli_writes_the_hidden_units_table_and_plot(tmp_path, ratings_file):
  results = tmp_path / "results"
  argv = ["experiments", "--dataset=csv", f"--ratings_file={ratings_file}", "--repeats=1",
          f"--results_dir={results}", "--epochs=3", "--patience=3", "--hidden_units_grid=4,8"]
  with flagsaver.flagsaver():
    experiments.FLAGS(argv)
    assert experiments.main(["experiments", "hidden_units"]) == 0
  for name in ("hidden_units.md", "hidden_units.csv", "hidden_units_runs.csv", "runs.jsonl"):
    assert os.path.getsize(results / name) > 0
  with open(results / "hidden_units.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(results / "hidden_units.csv") as f:
    rows = list(csv.DictReader(f))
  assert [row["hidden_units"] for row in rows] == ["4", "8"]
  assert all(row["repeats"] == "1" for row in rows)
  assert "| I-AutoRec k=4 |" in (results / "hidden_units.md").read_text()


def test_rbm_rows_take_the_experiments_epochs_and_hidden_units():
  data = sources.DataConfig(dataset="ml100k")
  default = dict(experiments.rbm_configs(experiments.ExperimentConfig(data, "unused")))
  assert default["I-RBM"] == rbm.default_config(item_based=True)
  assert default["U-RBM"] == rbm.default_config(item_based=False)
  changed = experiments.rbm_configs(experiments.ExperimentConfig(
      data, "unused", rbm_epochs=3, rbm_hidden_units=400))
  assert [(label, c.item_based, c.epochs, c.hidden_units) for label, c in changed] == [
      ("I-RBM", True, 3, 400), ("U-RBM", False, 3, 400)]


def test_runs_are_cached_across_experiments(tmp_path, ratings_file):
  config = experiments.ExperimentConfig(
      data=sources.DataConfig(dataset="csv", ratings_file=ratings_file),
      results_dir=str(tmp_path), repeats=1,
      model=training.ModelConfig(hidden_units=(4,)),
      train=training.TrainConfig(epochs=2, patience=2, verbose=0),
      mf_factors=(2,), mf_l2_weights=(0.1,), mf_optimizers=("lbfgs",), rbm_epochs=2,
      llorma=llorma.LlormaConfig(anchors=2, rank=2, kernel_width=0.8, l2_weights=(0.1,),
                                 global_factors=2, sweeps=3, patience=3))
  runner = experiments.Runner(config)
  markdown = experiments.run_experiment("baselines", config, runner)
  assert "BiasedMF (tuned on validation: 2 factors, l2 0.1, lbfgs)" in markdown
  assert "| I-AutoRec |" in markdown
  assert "| item kNN with baseline (pearson_baseline, k=40) |" in markdown
  assert "| LLORMA (2 anchors, rank 2, kernel width 0.8, l2 from 0.1) |" in markdown
  assert "| I-RBM |" in markdown and "| U-RBM |" in markdown
  assert re.search(r"Wall time of this invocation \d+ s", markdown)
  cached = (tmp_path / "runs.jsonl").read_text().count("\n")
  assert cached == 6
  # orientation's I-AutoRec and RBMs are baselines': only U-AutoRec is fitted.
  experiments.run_experiment("orientation", config, experiments.Runner(config))
  assert (tmp_path / "runs.jsonl").read_text().count("\n") == cached + 1
  assert os.path.exists(tmp_path / "baselines_biased_mf_tuning.csv")
  # BiasedMF's grid search is stored by KerasTuner: a rerun resumes it instead of starting over.
  trials = glob.glob(str(tmp_path / "biased_mf_tuning" / "*" / "search" / "trial_*"))
  assert len(trials) == 1
  rerun = experiments.run_experiment("baselines", config, experiments.Runner(config))
  assert "BiasedMF (tuned on validation: 2 factors, l2 0.1, lbfgs)" in rerun
  assert glob.glob(str(tmp_path / "biased_mf_tuning" / "*" / "search" / "trial_*")) == trials


def test_rejects_unknown_splits(tmp_path, ratings_file):
  config = experiments.ExperimentConfig(
      data=sources.DataConfig(dataset="csv", ratings_file=ratings_file),
      results_dir=str(tmp_path), split="u9")
  with pytest.raises(ValueError, match="split"):
    experiments.make_splits(config)
