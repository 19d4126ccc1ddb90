"""Multi-worker training over the workers named in TF_CONFIG (MultiWorkerMirroredStrategy).

Every worker runs the same command on the same input. Each builds the same global batches (their
order depends only on the seed and the epoch) and `tf.distribute` splits every global batch
between the workers: worker i gets the i-th of `num_workers` equal slices of each batch (the
dataset reads no files, so tf.data's AUTO shard policy shards by DATA after rebatching each
global batch into per-replica slices; `data.row_datasets` pads batches to a multiple of the
replicas).
The sparse path splits its row blocks by replica id the same way (`sparse.SparseTrainer`).
The gradients are summed over the workers, so the model trains as one process on all the data
would.

Only the chief (task `chief`, or `worker` 0 when the cluster has no chief) writes the outputs
that users see: checkpoints and TensorBoard logs in `model_dir`, the metrics file and the
export. The other workers run the same code (saving can take part in collective ops) but write
into a temporary directory of their own, removed when the run ends, as Keras' multi-worker guide
prescribes. `model_dir` must be storage that every worker reads at the same path (a shared
volume, NFS, a bucket mounted with FUSE): a restarted worker resumes from the chief's last
completed epoch there, whichever worker was killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping

TF_CONFIG = "TF_CONFIG"
WORKER_TASK_TYPES = ("chief", "worker")
# What a model_dir holds that a worker needs to resume; the logs are the chief's alone.
_NOT_COPIED = ("logs",)


@dataclasses.dataclass(frozen=True)
class WorkerRole:
  """This process's place in the cluster of TF_CONFIG."""

  task_type: str
  task_id: int
  num_workers: int  # chief included
  has_chief: bool

  @property
  def is_chief(self) -> bool:
    """Whether this worker writes checkpoints, logs, metrics and the export."""
    return self.task_type == "chief" or (not self.has_chief and self.task_id == 0)

  @property
  def name(self) -> str:
    return f"{self.task_type}:{self.task_id}"


def role_from_tf_config(environ: Mapping[str, str] = os.environ) -> WorkerRole:
  """Reads TF_CONFIG; a missing or malformed one is a ValueError saying what is expected."""
  text = environ.get(TF_CONFIG)
  example = ('e.g. {"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
             '"task": {"type": "worker", "index": 0}}')
  if not text:
    raise ValueError(f"--strategy=multi_worker needs the {TF_CONFIG} environment variable, "
                     f"{example}")
  try:
    config = json.loads(text)
  except json.JSONDecodeError as error:
    raise ValueError(f"{TF_CONFIG} is not JSON ({error}); expected {example}") from error
  cluster = config.get("cluster") if isinstance(config, dict) else None
  task = config.get("task") if isinstance(config, dict) else None
  if not isinstance(cluster, dict) or not isinstance(task, dict):
    raise ValueError(f"{TF_CONFIG} needs a 'cluster' and a 'task' object, {example}")
  task_type, task_id = task.get("type"), task.get("index")
  if task_type not in WORKER_TASK_TYPES:
    raise ValueError(f"{TF_CONFIG} task.type must be one of {WORKER_TASK_TYPES}, got "
                     f"{task_type!r}")
  addresses = cluster.get(task_type)
  if not isinstance(addresses, list) or not addresses:
    raise ValueError(f"{TF_CONFIG} cluster has no {task_type!r} addresses for task "
                     f"{task_type}:{task_id}")
  if not isinstance(task_id, int) or not 0 <= task_id < len(addresses):
    raise ValueError(f"{TF_CONFIG} task.index must be 0..{len(addresses) - 1} for the "
                     f"{len(addresses)} {task_type!r} addresses, got {task_id!r}")
  other_types = set(cluster) - set(WORKER_TASK_TYPES)
  if other_types:
    raise ValueError(f"{TF_CONFIG} cluster may only name {WORKER_TASK_TYPES} for "
                     f"MultiWorkerMirroredStrategy, got {sorted(other_types)}")
  if len(cluster.get("chief", [])) > 1:
    raise ValueError(f"{TF_CONFIG} cluster names {len(cluster['chief'])} chiefs; at most one")
  return WorkerRole(task_type=task_type, task_id=task_id,
                    num_workers=sum(len(cluster.get(t, [])) for t in WORKER_TASK_TYPES),
                    has_chief=bool(cluster.get("chief")))


def unsupported_reason(optimizer: str) -> str | None:
  """Why a run cannot be distributed over workers, or None when it can."""
  if optimizer == "lbfgs":
    return ("--optimizer=lbfgs runs its own full-batch loop on one process and does not "
            "distribute; use --optimizer=rprop or adam with --strategy=multi_worker")
  return None


def copy_model_dir(source: str, destination: str) -> None:
  """Copies the checkpoints and training state of `source` (if any) into `destination`.

  A non-chief worker restores from this copy of the chief's model_dir, so every worker resumes
  after the same epoch, and then writes its own checkpoints over the copy.
  """
  os.makedirs(destination, exist_ok=True)
  if os.path.isdir(source):
    shutil.copytree(source, destination, dirs_exist_ok=True,
                    ignore=lambda directory, names: [n for n in names if n in _NOT_COPIED])


@dataclasses.dataclass(frozen=True)
class WorkerOutputs:
  """This worker's configs: the requested output paths on the chief, temporary ones elsewhere.

  Attributes:
    role: this worker's place in TF_CONFIG; None when not training with 'multi_worker'.
    train_config: a `training.TrainConfig` whose model_dir is this worker's.
    export_config: an `export.ExportConfig` whose export_dir is this worker's, or None.
    metrics_file: where this worker writes the metrics, or None.
  """

  role: WorkerRole | None
  train_config: object
  export_config: object | None
  metrics_file: str | None

  @property
  def is_chief(self) -> bool:
    return self.role is None or self.role.is_chief


def _create_strategy() -> None:
  from keras_autorec import distribution  # Imported here: it imports TensorFlow.
  distribution.make_strategy("multi_worker")


@contextlib.contextmanager
def worker_outputs(train_config, export_config, metrics_file: str | None,
                   environ: Mapping[str, str] = os.environ) -> Iterator[WorkerOutputs]:
  """Where this process writes under `train_config.strategy`; other workers' paths are temporary.

  With 'multi_worker' it also creates the strategy, which must happen before TensorFlow runs any
  op (`distribution.make_strategy` keeps it for the rest of the process). Non-chief workers'
  temporary directory is removed on exit.
  """
  if train_config.strategy != "multi_worker":
    yield WorkerOutputs(None, train_config, export_config, metrics_file)
    return
  reason = unsupported_reason(train_config.optimizer)
  if reason:
    raise ValueError(reason)
  role = role_from_tf_config(environ)
  _create_strategy()
  if role.is_chief:
    yield WorkerOutputs(role, train_config, export_config, metrics_file)
    return
  temporary = tempfile.mkdtemp(prefix=f"autorec_{role.task_type}{role.task_id}_")
  try:
    model_dir = train_config.model_dir
    if model_dir is not None:
      model_dir = os.path.join(temporary, "model_dir")
      copy_model_dir(train_config.model_dir, model_dir)
    if export_config is not None:
      export_config = dataclasses.replace(export_config,
                                          export_dir=os.path.join(temporary, "export"))
    yield WorkerOutputs(
        role, dataclasses.replace(train_config, model_dir=model_dir), export_config,
        metrics_file and os.path.join(temporary, os.path.basename(metrics_file)))
  finally:
    shutil.rmtree(temporary, ignore_errors=True)
