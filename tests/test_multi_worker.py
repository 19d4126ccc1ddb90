"""--strategy=multi_worker: two worker processes on 127.0.0.1 train as one process would.

The workers are real `python -m keras_autorec.train` processes with their own TF_CONFIG on free
loopback ports; every test reaps both (killing them if need be) within a bounded time.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from keras_autorec import cli_flags, export, multi_worker, train, training
from keras_autorec.data import sources
from keras_autorec.data.splits import SplitConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 900
MODEL = training.ModelConfig(hidden_units=(8,))


def _free_ports(count: int) -> list[int]:
  """Ports the kernel hands out as free on 127.0.0.1 (held until all are chosen)."""
  with contextlib.ExitStack() as stack:
    sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
    for sock in sockets:
      sock.bind(("127.0.0.1", 0))
    return [sock.getsockname()[1] for sock in sockets]


def _train_args(ratings_file: str, out: pathlib.Path, epochs: int, refit: bool,
                execution: str) -> list[str]:
  return ["--dataset=csv", f"--ratings_file={ratings_file}", f"--execution={execution}",
          "--hidden_units=8", f"--epochs={epochs}", "--patience=100", "--verbose=0",
          "--refit" if refit else "--norefit", f"--model_dir={out / 'model_dir'}",
          f"--export_dir={out / 'export'}", f"--metrics_file={out / 'metrics.json'}"]


@contextlib.contextmanager
def _workers(args: list[str], logs: pathlib.Path):
  """Starts two workers of one TF_CONFIG cluster; on exit kills and reaps whichever still runs."""
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  logs.mkdir(parents=True, exist_ok=True)
  processes = []
  try:
    for index in range(2):
      temporary = logs / f"tmp{index}"  # TMPDIR, to see that a worker's temporary files go
      temporary.mkdir(exist_ok=True)
      env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": "1",
             "TF_NUM_INTEROP_THREADS": "1", "TMPDIR": str(temporary),
             multi_worker.TF_CONFIG: json.dumps({"cluster": cluster,
                                                 "task": {"type": "worker", "index": index}})}
      with open(logs / f"worker{index}.log", "w") as log:
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "keras_autorec.train", "--strategy=multi_worker", *args],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    yield processes
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
      process.wait()


def _log_tails(logs: pathlib.Path) -> str:
  return "\n".join(f"--- {path.name}:\n" + "\n".join(path.read_text().splitlines()[-15:])
                   for path in sorted(logs.glob("worker*.log")))


def _wait_all(processes, logs: pathlib.Path) -> None:
  deadline = time.monotonic() + TIMEOUT_SECONDS
  for process in processes:
    try:
      process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      pytest.fail(f"workers still running after {TIMEOUT_SECONDS} s\n{_log_tails(logs)}")
  codes = [process.returncode for process in processes]
  assert codes == [0, 0], f"exit codes {codes}\n{_log_tails(logs)}"


def _single_process(ratings_file: str, out: pathlib.Path, epochs: int, refit: bool,
                    execution: str) -> dict:
  """The same training in this process on the default strategy (no export)."""
  config = training.TrainConfig(epochs=epochs, patience=100, verbose=0, execution=execution,
                                model_dir=str(out / "model_dir"))
  data = sources.DataConfig(dataset="csv", ratings_file=ratings_file)
  return train.run(data, SplitConfig(), MODEL, config, refit=refit)


def _state(model_dir: pathlib.Path) -> dict:
  with open(model_dir / "training_state.json") as f:
    return json.load(f)


def _checkpoint_weights(model_dir: pathlib.Path) -> dict[str, np.ndarray]:
  weights = {}
  with h5py.File(model_dir / (_state(model_dir)["checkpoint"] + ".weights.h5")) as f:
    f.visititems(lambda name, item: weights.__setitem__(name, item[()])
                 if isinstance(item, h5py.Dataset) else None)
  return weights


def _assert_same_training(model_dir: pathlib.Path, reference_dir: pathlib.Path) -> None:
  state, reference = _state(model_dir), _state(reference_dir)
  assert state["epoch"] == reference["epoch"]
  assert set(state["history"]) == set(reference["history"])
  for key, values in reference["history"].items():
    np.testing.assert_allclose(state["history"][key], values, rtol=1e-5, err_msg=key)
  weights, reference_weights = _checkpoint_weights(model_dir), _checkpoint_weights(reference_dir)
  assert weights.keys() == reference_weights.keys() and weights
  for name, value in reference_weights.items():
    np.testing.assert_allclose(weights[name], value, rtol=0,
                               atol=1e-5 * max(1.0, np.abs(value).max()), err_msg=name)


def test_two_workers_train_as_one_process_and_only_the_chief_writes(tmp_path, ratings_file):
  out = tmp_path / "workers"
  args = _train_args(ratings_file, out, epochs=4, refit=True, execution="dense")
  with _workers(args, tmp_path / "logs") as processes:
    _wait_all(processes, tmp_path / "logs")
  reference = _single_process(ratings_file, tmp_path / "reference", epochs=4, refit=True,
                              execution="dense")

  for model_dir in ("model_dir", "model_dir/refit"):
    _assert_same_training(out / model_dir, tmp_path / "reference" / model_dir)
  with open(out / "metrics.json") as f:
    metrics = json.load(f)["runs"][0]
  for key in ("validation_rmse", "test_rmse", "test_mae", "epochs_run", "refit_epochs"):
    np.testing.assert_allclose(metrics[key], reference["runs"][0][key], rtol=1e-5, err_msg=key)
  # One export, by the chief; worker 1's export, checkpoints and metrics went to its TMPDIR,
  # which it removed.
  assert export.existing_versions(str(out / "export")) == [1]
  assert sorted(os.listdir(out / "export")) == ["1"]
  assert metrics["export_path"] == str(out / "export" / "1")
  assert [name for name in os.listdir(tmp_path / "logs" / "tmp1")
          if name.startswith("autorec_")] == []
  assert "worker:1: trained with the chief" in (tmp_path / "logs" / "worker1.log").read_text()
  assert sorted(os.listdir(out)) == ["export", "metrics.json", "model_dir"]


def test_killed_worker_resumes_from_the_last_completed_epoch(tmp_path, ratings_file):
  # On the sparse path, which the other test does not cover.
  epochs = 12
  out, logs = tmp_path / "workers", tmp_path / "logs"
  args = _train_args(ratings_file, out, epochs=epochs, refit=False, execution="sparse")
  state_path = out / "model_dir" / "training_state.json"
  with _workers(args, logs / "first") as processes:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not (state_path.exists() and _state(out / "model_dir")["epoch"] >= 2):
      assert all(p.poll() is None for p in processes), _log_tails(logs / "first")
      assert time.monotonic() < deadline, "no epoch completed in time"
      time.sleep(0.05)
    processes[1].send_signal(signal.SIGKILL)
    # The job controller (a Kubernetes Job, a test) then restarts the whole cluster.
    processes[0].send_signal(signal.SIGKILL)
  killed_after = _state(out / "model_dir")["epoch"]
  assert 2 <= killed_after < epochs, "the workers finished before they could be killed"
  assert not (out / "export").exists() and not (out / "metrics.json").exists()

  with _workers(args, logs / "second") as processes:
    _wait_all(processes, logs / "second")
  for index in range(2):
    assert (f"after epoch {killed_after}" in (logs / "second" / f"worker{index}.log").read_text()
            ), _log_tails(logs / "second")
  reference_dir = tmp_path / "reference"
  _single_process(ratings_file, reference_dir, epochs=epochs, refit=False, execution="sparse")
  _assert_same_training(out / "model_dir", reference_dir / "model_dir")
  assert export.existing_versions(str(out / "export")) == [1]


def test_tf_config_errors_name_what_is_expected():
  worker = {"type": "worker", "index": 0}
  cases = [({}, "needs the TF_CONFIG environment variable"),
           ({"TF_CONFIG": "{cluster"}, "TF_CONFIG is not JSON"),
           ({"TF_CONFIG": json.dumps({"task": worker})}, "needs a 'cluster' and a 'task'"),
           ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]},
                                      "task": {"type": "ps", "index": 0}})}, "task.type"),
           ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]},
                                      "task": {"type": "worker", "index": 1}})},
            "task.index must be 0..0"),
           ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]},
                                      "task": worker})}, "may only name")]
  for environ, message in cases:
    with pytest.raises(ValueError, match=message):
      multi_worker.role_from_tf_config(environ)


def test_roles_and_the_chief():
  def role(cluster, task_type, index):
    return multi_worker.role_from_tf_config({"TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": task_type, "index": index}})})

  workers = {"worker": ["a:1", "b:1"]}
  assert role(workers, "worker", 0).is_chief and not role(workers, "worker", 1).is_chief
  with_chief = {"chief": ["c:1"], "worker": ["a:1", "b:1"]}
  assert role(with_chief, "chief", 0).is_chief
  assert not role(with_chief, "worker", 0).is_chief
  assert role(with_chief, "worker", 1).num_workers == 3


def test_non_chief_writes_to_a_removed_temporary_copy(tmp_path, monkeypatch):
  model_dir = tmp_path / "model_dir"
  (model_dir / "logs").mkdir(parents=True)
  (model_dir / "training_state.json").write_text("{}")
  (model_dir / "logs" / "events").write_text("chief's")
  monkeypatch.setattr(multi_worker, "_create_strategy", lambda: None)
  environ = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:1"]},
                                      "task": {"type": "worker", "index": 1}})}
  config = training.TrainConfig(strategy="multi_worker", model_dir=str(model_dir))
  export_config = export.ExportConfig(export_dir=str(tmp_path / "export"))
  with multi_worker.worker_outputs(config, export_config, str(tmp_path / "m.json"),
                                   environ) as outputs:
    temporary = pathlib.Path(outputs.train_config.model_dir).parent
    assert not outputs.is_chief and str(tmp_path) not in str(temporary)
    assert sorted(os.listdir(outputs.train_config.model_dir)) == ["training_state.json"]
    assert pathlib.Path(outputs.export_config.export_dir).parent == temporary
    assert pathlib.Path(outputs.metrics_file).parent == temporary
  assert not temporary.exists()
  assert sorted(os.listdir(model_dir)) == ["logs", "training_state.json"]


def test_lbfgs_is_refused():
  config = training.TrainConfig(strategy="multi_worker", optimizer="lbfgs")
  with pytest.raises(ValueError, match="lbfgs"):
    with multi_worker.worker_outputs(config, None, None, {}):
      pass


def test_other_strategies_write_where_asked():
  config = training.TrainConfig(model_dir="m")
  with multi_worker.worker_outputs(config, None, "metrics.json", {}) as outputs:
    assert outputs.is_chief and outputs.train_config is config
    assert outputs.metrics_file == "metrics.json"


def test_flag_help_names_tf_config():
  cli_flags.define_train_flags()
  assert "TF_CONFIG" in cli_flags.FLAGS["strategy"].help
