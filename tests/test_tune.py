"""The tune command: a KerasTuner search that exports, resumes, and runs on a chief + workers."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys

import pytest
from absl.testing import flagsaver

from keras_autorec import training, tune, tuning

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Three trials of a tiny model: the paper's lambda 1, 100 and 1000 at k = 4.
SMALL_SEARCH = ["--oracle=grid", "--max_trials=0", "--tune_lambdas=1,100,1000",
                "--tune_hidden_units=4", "--epochs=4", "--patience=4", "--verbose=0"]


def read_trials(project_dir) -> list[dict]:
  with open(os.path.join(project_dir, "trials.csv")) as f:
    return list(csv.DictReader(f))


def test_a_three_trial_search_writes_the_table_and_exports_the_chosen_model(
    tmp_path, ratings_file, capsys):
  tune_dir, export_dir = tmp_path / "tuning", tmp_path / "export"
  argv = ["tune", "--dataset=csv", f"--ratings_file={ratings_file}", f"--tune_dir={tune_dir}",
          f"--export_dir={export_dir}", f"--metrics_file={tmp_path / 'metrics.json'}",
          *SMALL_SEARCH]
  with flagsaver.flagsaver():
    tune.FLAGS(argv)
    assert tune.main(["tune"]) == 0
  rows = read_trials(tune_dir / "autorec")
  assert [row["paper_lambda"] for row in rows] == ["1.0", "100.0", "1000.0"]
  assert all(row["status"] == "COMPLETED" for row in rows)
  chosen = [row for row in rows if row["chosen"] == "yes"]
  assert len(chosen) == 1
  assert float(chosen[0]["validation_rmse"]) == min(float(row["validation_rmse"]) for row in rows)
  # The trial's l2_weight is train's for --l2_lambda: lambda / (2 N), N the search split's 648
  # training ratings taken as 50,000.
  assert [float(row["l2_weight"]) for row in rows] == pytest.approx(
      [v / (2 * 50_000) for v in (1.0, 100.0, 1000.0)], rel=1e-2)
  markdown = (tune_dir / "autorec" / "trials.md").read_text()
  assert markdown.count("\n") == 2 + 3 and "| yes |" in markdown
  assert "| trial | status | paper_lambda |" in capsys.readouterr().out
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["tuning"]["chosen_trial"] == chosen[0]["trial"]
  # The trial scores AutoRec alone; train's validation_rmse is that of the rare-rows blend.
  assert metrics["runs"][0]["validation_rmse_autorec_alone"] == pytest.approx(
      float(chosen[0]["validation_rmse"]), abs=1e-3)
  versions = os.listdir(export_dir)
  assert len(versions) == 1
  assert os.path.exists(export_dir / versions[0] / "saved_model.pb")
  assert os.path.basename(metrics["runs"][0]["export_path"]) == versions[0]


def counting_fit(calls: list, interrupt_at: int | None = None) -> tuning.FitFunction:
  """An AutoRec trial fit that records each call's values and can be 'killed' at call n."""
  fit = tuning.autorec_fit(training.ModelConfig(),
                           training.TrainConfig(epochs=3, patience=3, verbose=0))

  def counted(split, values):
    calls.append(dict(values))
    if len(calls) == interrupt_at:
      raise KeyboardInterrupt  # As a Ctrl-C or kill would: not caught as a failed trial.
    return fit(split, values)
  return counted


def test_a_rerun_with_more_trials_resumes_without_repeating_the_first(tmp_path, split):
  space = tuning.AutoRecSpace(paper_lambdas=(1.0, 100.0, 1000.0), hidden_units=(4,))
  first_calls, second_calls = [], []
  first = tuning.search(split, space.hyperparameters(), counting_fit(first_calls),
                        str(tmp_path), "search", oracle="grid", max_trials=1)
  assert [t.trial_id for t in first.trials()] == ["0"]
  first_rmse = first.trials()[0].validation_rmse
  second = tuning.search(split, space.hyperparameters(), counting_fit(second_calls),
                         str(tmp_path), "search", oracle="grid", max_trials=3)
  assert [c["paper_lambda"] for c in first_calls] == [1.0]
  assert [c["paper_lambda"] for c in second_calls] == [100.0, 1000.0]
  trials = second.trials()
  assert [t.params["paper_lambda"] for t in trials] == [1.0, 100.0, 1000.0]
  assert all(t.status == "COMPLETED" for t in trials)
  assert trials[0].validation_rmse == first_rmse


def test_a_search_killed_during_a_trial_retries_only_that_trial(tmp_path, split):
  space = tuning.AutoRecSpace(paper_lambdas=(1.0, 100.0, 1000.0), hidden_units=(4,))
  killed_calls, resumed_calls = [], []
  with pytest.raises(KeyboardInterrupt):
    tuning.search(split, space.hyperparameters(), counting_fit(killed_calls, interrupt_at=2),
                  str(tmp_path), "search", oracle="grid", max_trials=3)
  resumed = tuning.search(split, space.hyperparameters(), counting_fit(resumed_calls),
                          str(tmp_path), "search", oracle="grid", max_trials=3)
  assert [c["paper_lambda"] for c in killed_calls] == [1.0, 100.0]
  assert [c["paper_lambda"] for c in resumed_calls] == [100.0, 1000.0]
  assert [(t.trial_id, t.params["paper_lambda"], t.status) for t in resumed.trials()] == [
      ("0", 1.0, "COMPLETED"), ("1", 100.0, "COMPLETED"), ("2", 1000.0, "COMPLETED")]


def test_a_changed_search_space_is_refused_on_an_existing_project(tmp_path, split):
  calls = []
  tuning.search(split, tuning.AutoRecSpace(paper_lambdas=(1.0,), hidden_units=(4,))
                .hyperparameters(), counting_fit(calls), str(tmp_path), "search", oracle="grid")
  with pytest.raises(ValueError, match=r"search.*holds a search of .*paper_lambda.*\[1\.0\]"):
    tuning.search(split, tuning.AutoRecSpace(paper_lambdas=(2.0,), hidden_units=(4,))
                  .hyperparameters(), counting_fit(calls), str(tmp_path), "search",
                  oracle="grid")
  assert len(calls) == 1


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_a_chief_and_two_workers_share_one_search(tmp_path, ratings_file):
  """KerasTuner's distributed mode on 127.0.0.1: the chief serves the oracle, workers fit."""
  port = free_port()
  args = [sys.executable, "-m", "keras_autorec.tune", "--dataset=csv",
          f"--ratings_file={ratings_file}", *SMALL_SEARCH, "--tune_lambdas=0.1,1,10,100,1000"]
  processes = {}
  try:
    for tuner_id in ("chief", "tuner0", "tuner1"):
      env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
             "KERASTUNER_ORACLE_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "2"}
      # Each process has its own folder, as on separate machines; only the chief exports.
      processes[tuner_id] = subprocess.Popen(
          [*args, f"--tune_dir={tmp_path / tuner_id}", f"--export_dir={tmp_path / 'export'}"],
          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = {tuner_id: process.communicate(timeout=480)
               for tuner_id, process in processes.items()}
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.kill()
        process.communicate()
  for tuner_id, process in processes.items():
    assert process.returncode == 0, (tuner_id, outputs[tuner_id][1][-3000:])
  rows = read_trials(tmp_path / "chief" / "autorec")
  assert [row["paper_lambda"] for row in rows] == ["0.1", "1.0", "10.0", "100.0", "1000.0"]
  assert all(row["status"] == "COMPLETED" for row in rows)
  # Only workers fit trials, each trial exactly once between them.
  fitted = {tuner_id: re.findall(r"Trial (\d+) \{", outputs[tuner_id][1])
            for tuner_id in processes}
  assert fitted["chief"] == []
  assert sorted(fitted["tuner0"] + fitted["tuner1"], key=int) == [row["trial"] for row in rows]
  assert "the chief has no trials left" in outputs["tuner0"][0]
  assert len(os.listdir(tmp_path / "export")) == 1
