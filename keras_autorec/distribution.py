"""Mixed precision policies and tf.distribute strategies by name."""

from __future__ import annotations

import keras
import tensorflow as tf

MIXED_PRECISION = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
_MIRRORED: dict[tuple[str, ...], tf.distribute.MirroredStrategy] = {}
_MULTI_WORKER: list[tf.distribute.MultiWorkerMirroredStrategy] = []


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
  """MultiWorkerMirroredStrategy whose `reduce` takes what Keras 3's `fit` passes it.

  Keras reduces its first (inputs, targets, mask) batch in one call, a nest that TensorFlow's
  collective reduce does not accept, and each step's scalar logs with axis=0, which scalars do
  not have: here nests are reduced component by component, scalars over replicas only (as
  MirroredStrategy's logs are).
  """

  def reduce(self, reduce_op, value, axis=None):
    parent = super()

    def reduce_component(component):
      local = self.experimental_local_results(component)[0]
      return parent.reduce(reduce_op, component, None if local.shape.rank == 0 else axis)

    return tf.nest.map_structure(reduce_component, value)


def set_mixed_precision(mode: str) -> None:
  """Sets Keras' global dtype policy: 'off', 'float16' or 'bfloat16'.

  Variables stay float32; the output layer and the loss are float32 in every mode.
  """
  if mode not in MIXED_PRECISION:
    raise ValueError(f"mixed_precision must be one of {sorted(MIXED_PRECISION)}, got {mode!r}")
  keras.mixed_precision.set_global_policy(MIXED_PRECISION[mode])


def make_strategy(name: str, tpu_address: str | None = None) -> tf.distribute.Strategy:
  """The tf.distribute strategy called `name`.

  'mirrored' uses every local GPU, else the CPUs; 'multi_worker' the workers of TF_CONFIG
  (`keras_autorec.multi_worker`).
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = tuple(d.name for d in gpus) or tuple(
        d.name for d in tf.config.list_logical_devices("CPU"))
    # A second MirroredStrategy over the same devices in one process breaks collective ops
    # (mismatched collective instances on minibatch training), so each process keeps one.
    if devices not in _MIRRORED:
      _MIRRORED[devices] = tf.distribute.MirroredStrategy(devices=list(devices))
    return _MIRRORED[devices]
  if name == "multi_worker":
    # It configures TensorFlow's collective ops, which can happen once per process and before
    # any op runs (`multi_worker.worker_outputs` creates it first), so the process keeps one.
    if not _MULTI_WORKER:
      _MULTI_WORKER.append(_MultiWorkerMirroredStrategy())
    return _MULTI_WORKER[0]
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def split_cpu(num_devices: int) -> None:
  """Splits the physical CPU into `num_devices` logical devices (before TensorFlow starts)."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
