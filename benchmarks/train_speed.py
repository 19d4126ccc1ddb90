"""Measures I-AutoRec training speed, dense vs sparse execution, on synthetic data shapes.

For each shape (ml1m, ml10m, netflix by default) it generates seeded synthetic ratings, lays them
out as item rows over user columns, and times:

  sparse  `training.sparse.trainer.SparseTrainer` with --optimizer (default full-batch Rprop, the
          paper's setting) over --row_batches row groups (one step each; 1 = full batch) for
          --sparse_epochs epochs after one warm-up step (tracing), reporting the median epoch;
          with --max_steps, only that many steps per epoch are timed and extrapolated.
  dense   Keras `model.fit` on the dense-per-batch tf.data input (Adam, --dense_batch rows per
          step) for --dense_steps steps after one warm-up step, extrapolated to an epoch; skipped
          when a batch of dense rows would exceed --dense_max_cells.

Each shape runs in its own process so that its peak RSS is its own. Peak RSS is sampled during
training only (after the data is generated and its Ratings dropped; sparse runs first, so the
dense run's freed memory does not count against it), and reported next to the process peak,
which includes data generation. Timings on a shared machine are noisy: the table
prints the 1-minute load average before each shape.

  PYTHONPATH=. python benchmarks/train_speed.py --shapes ml1m ml10m
  PYTHONPATH=. python benchmarks/train_speed.py --shapes netflix --compute off --row_batches 4 \
      --optimizer adam --sparse_epochs 1 --max_steps 2 --allocator system

--allocator system makes TensorFlow's oneDNN allocator return freed memory to the system (with
transparent huge pages), so RSS is the live memory; the default "pool" keeps every freed block for
reuse, so RSS is the pool's high-water mark (2 GB more at Netflix scale, where model building
alone leaves 2 GB of freed initialiser temporaries in the pool).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import resource
import threading
import time

import psutil


class PeakRss:
  """Samples this process's resident set size in a thread; `peak` is the largest seen (bytes)."""

  def __init__(self, interval: float = 0.05):
    self.interval = interval
    self.peak = 0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self):
    process = psutil.Process()
    while not self._stop.is_set():
      self.peak = max(self.peak, process.memory_info().rss)
      time.sleep(self.interval)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def _time_sparse_epochs(trainer, args: argparse.Namespace) -> tuple[list[float], int, float]:
  """(seconds of each timed epoch, steps timed per epoch, last loss) after one warm-up step."""
  trainer.run_epoch(max_steps=1)
  steps = len(trainer.groups) if args.max_steps is None else min(args.max_steps,
                                                                 len(trainer.groups))
  epoch_seconds = []
  for _ in range(args.sparse_epochs):
    epoch_start = time.perf_counter()
    loss = trainer.run_epoch(max_steps=steps)
    epoch_seconds.append((time.perf_counter() - epoch_start) / steps * len(trainer.groups))
  return epoch_seconds, steps, loss


def _measure_dense(train, args: argparse.Namespace) -> dict:
  """Seconds per epoch and peak RSS of Keras `fit` on dense batches, a few steps extrapolated."""
  from keras_autorec.data import row_datasets
  from keras_autorec.model import AutoRec
  from keras_autorec.optimizers import make_optimizer

  model = AutoRec(train.num_columns, hidden_units=(args.hidden,), l2_weight=1e-4)
  model.compile(optimizer=make_optimizer("adam", 1e-3))
  dataset = row_datasets.training_dataset(train, args.dense_batch, seed=0).repeat()
  model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
  steps_per_epoch = -(-train.num_rows // args.dense_batch)
  steps = min(args.dense_steps, steps_per_epoch)
  with PeakRss() as rss:
    step_start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = (time.perf_counter() - step_start) / steps * steps_per_epoch
  del model, dataset
  gc.collect()
  return {"epoch_seconds": seconds, "ratings_per_second": train.nnz / seconds,
          "peak_rss_gb": rss.peak / 1e9,
          "measured": f"{steps} of {steps_per_epoch} steps, extrapolated"}


def _generated_layout(shape: str, result: dict):
  """The I-AutoRec layout of synthetic data of `shape`; adds its size and time to `result`."""
  from keras_autorec.data import synthetic
  from keras_autorec.data.layout import build_layout

  start = time.perf_counter()
  ratings = synthetic.generate(shape, seed=0)
  layout = build_layout(ratings, item_based=True)
  del ratings
  gc.collect()
  train = layout.train
  result.update(generate_seconds=time.perf_counter() - start, rows=train.num_rows,
                columns=train.num_columns, nnz=train.nnz)
  return layout


def measure_shape(shape: str, args: argparse.Namespace) -> dict:
  """Runs in a child process: generates `shape`, times dense and sparse, returns a result row."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras
  import numpy as np
  import tensorflow as tf

  from keras_autorec.model import AutoRec
  from keras_autorec.optimizers import make_optimizer
  from keras_autorec.training.sparse import blocks as sparse_blocks
  from keras_autorec.training.sparse import trainer as sparse

  result = {"shape": shape, "load": os.getloadavg()[0]}
  layout = _generated_layout(shape, result)
  train = layout.train
  num_columns, nnz = train.num_columns, train.nnz
  cells = args.dense_batch * num_columns
  run_dense = cells <= args.dense_max_cells
  batch_size = 0 if args.row_batches <= 1 else -(-train.num_rows // args.row_batches)

  for i, compute in enumerate(args.compute):
    keras.utils.set_random_seed(0)
    with PeakRss() as rss:
      model = AutoRec(num_columns, hidden_units=(args.hidden,), l2_weight=1e-4)
      model(tf.zeros((1, num_columns)))
      model.compile(optimizer=make_optimizer(args.optimizer, 1e-3))
      density = (sparse_blocks.DENSE_COLUMN_DENSITY if args.dense_density is None
                 else args.dense_density)
      trainer = sparse.SparseTrainer(model, train, tf.distribute.get_strategy(), batch_size,
                                     compute_dtype=sparse.COMPUTE_DTYPES[compute],
                                     dense_density=density)
      if i == len(args.compute) - 1 and not run_dense:
        # The trainer's blocks hold their own copy of the ratings: 0.8 GB more at Netflix scale.
        layout = train = None
        gc.collect()
      setup_rss = psutil.Process().memory_info().rss
      epoch_seconds, steps, loss = _time_sparse_epochs(trainer, args)
      # The median: on a shared machine single epochs can take twice as long as the others.
      seconds = float(np.median(epoch_seconds))
    measured = (f"{args.optimizer}, {len(trainer.groups)} row groups; median of "
                f"{args.sparse_epochs} x {steps} steps (mean {np.mean(epoch_seconds):.3g} s) "
                "after 1 warm-up step")
    if steps < len(trainer.groups):
      measured += f", extrapolated to {len(trainer.groups)} steps"
    result[f"sparse_{compute}"] = {
        "epoch_seconds": seconds, "ratings_per_second": nnz / seconds,
        "peak_rss_gb": rss.peak / 1e9, "setup_rss_gb": setup_rss / 1e9, "loss": loss,
        "measured": measured + f"; RSS {setup_rss / 1e9:.1f} GB before the first step"}
    del model, trainer
    gc.collect()
  if not run_dense:
    result["dense"] = f"skipped: a {args.dense_batch}-row dense batch is {cells:.2g} cells"
  else:
    result["dense"] = _measure_dense(train, args)
  result["process_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
  return result


def machine_rates() -> dict:
  """Memory bandwidth (GB/s, numpy copy), float32 and bfloat16 GEMM rates (GFLOP/s), CPU facts."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np
  import tensorflow as tf

  from keras_autorec.training.sparse import kernels as sparse

  source = np.ones(1 << 28, dtype=np.float32)  # 1 GB, far beyond the caches.
  target = np.empty_like(source)
  best_copy = min(_seconds(lambda: np.copyto(target, source)) for _ in range(3))
  rates = {"bandwidth_gb_s": 2 * source.nbytes / best_copy / 1e9,  # A copy reads and writes.
           "native_bfloat16": sparse.native_matmul(tf.bfloat16),
           "onednn_spmm": os.environ.get(sparse.ONEDNN_SPMM)}
  for dtype in (tf.float32, tf.bfloat16):
    left = tf.cast(tf.random.normal([4096, 500]), dtype)
    right = tf.cast(tf.random.normal([500, 8192]), dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(left, right), tf.float32)))
    matmul()
    best_matmul = min(_seconds(lambda: matmul().numpy()) for _ in range(3))
    rates[f"{dtype.name}_gemm_gflop_s"] = 2 * 4096 * 500 * 8192 / best_matmul / 1e9
  return rates


def sparse_onednn_spmm_note(value: str | None) -> str:
  """How the sparse path's SpMMs run: TF_ENABLE_ONEDNN_SPMM as training.sparse.kernels left it."""
  if (value or "").lower() in ("1", "true"):
    return "SpMM by oneDNN"
  return f"SpMM by Eigen (TF_ENABLE_ONEDNN_SPMM={value!r})"


def _seconds(function) -> float:
  start = time.perf_counter()
  function()
  return time.perf_counter() - start


def _child(shape: str, args: argparse.Namespace, queue) -> None:
  queue.put(measure_shape(shape, args))


def print_table(results: list[dict]) -> None:
  """Prints one line per (shape, variant)."""
  print(f"{'shape':8} {'rows x cols':>16} {'nnz':>11} {'variant':16} {'s/epoch':>8} "
        f"{'ratings/s':>10} {'RSS GB':>7} {'load':>5}  note")
  for r in results:
    dims = f"{r['rows']}x{r['columns']}"
    for variant in [k for k in r if k == "dense" or k.startswith("sparse_")]:
      v = r[variant]
      if isinstance(v, str):
        print(f"{r['shape']:8} {dims:>16} {r['nnz']:>11} {variant:16} {'-':>8} {'-':>10} "
              f"{'-':>7} {r['load']:5.1f}  {v}")
        continue
      print(f"{r['shape']:8} {dims:>16} {r['nnz']:>11} {variant:16} {v['epoch_seconds']:8.2f} "
            f"{v['ratings_per_second']:10.3g} {v['peak_rss_gb']:7.2f} {r['load']:5.1f}  "
            f"{v['measured']}")
    speedups = [r["dense"]["epoch_seconds"] / r[k]["epoch_seconds"] for k in r
                if k.startswith("sparse_") and isinstance(r.get("dense"), dict)]
    if speedups:
      print(f"{'':8} sparse vs dense speed-up: " + ", ".join(f"{s:.1f}x" for s in speedups))
    print(f"{'':8} data generation {r['generate_seconds']:.0f} s; process peak RSS (incl. "
          f"generation) {r['process_peak_rss_gb']:.2f} GB")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shapes", nargs="+", default=["ml1m", "ml10m", "netflix"])
  parser.add_argument("--hidden", type=int, default=500)
  parser.add_argument("--compute", nargs="+", default=["off", "bfloat16"],
                      help="sparse compute dtypes: off (float32) and/or bfloat16")
  parser.add_argument("--dense_batch", type=int, default=1024)
  parser.add_argument("--dense_steps", type=int, default=3)
  parser.add_argument("--dense_max_cells", type=float, default=1e8)
  parser.add_argument("--sparse_epochs", type=int, default=5)
  parser.add_argument("--optimizer", default="rprop", help="sparse path: rprop, adam, ...")
  parser.add_argument("--row_batches", type=int, default=1,
                      help="sparse path: row groups per epoch, one optimizer step each")
  parser.add_argument("--dense_density", type=float,
                      help="sparse path: decoder GEMM for columns above this density (default "
                           "training.sparse.blocks.DENSE_COLUMN_DENSITY; inf: gather-dots only)")
  parser.add_argument("--max_steps", type=int,
                      help="sparse path: time this many steps per epoch and extrapolate")
  parser.add_argument("--allocator", choices=["pool", "system"], default="pool",
                      help="TensorFlow's oneDNN CPU allocator (see the module docstring)")
  parser.add_argument("--json", help="also write the results to this file")
  args = parser.parse_args()
  if args.allocator == "system":
    # Read when the (spawned) child starts. Transparent huge pages for glibc's mmapped chunks:
    # otherwise every fresh GB-sized temporary costs ~260k page faults.
    os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = "1"
    os.environ["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
  results = []
  context = multiprocessing.get_context("spawn")
  with context.Pool(1) as pool:  # In a child: the parent stays free of TensorFlow threads.
    rates = pool.apply(machine_rates)
  print(f"machine: memory bandwidth {rates['bandwidth_gb_s']:.1f} GB/s (numpy copy), GEMM "
        f"{rates['float32_gemm_gflop_s']:.0f} GFLOP/s float32, "
        f"{rates['bfloat16_gemm_gflop_s']:.0f} bfloat16 (native bfloat16 "
        f"{'yes' if rates['native_bfloat16'] else 'no'}), "
        f"{sparse_onednn_spmm_note(rates['onednn_spmm'])}, load {os.getloadavg()[0]:.1f}",
        flush=True)
  for shape in args.shapes:
    queue = context.Queue()
    process = context.Process(target=_child, args=(shape, args, queue))
    process.start()
    while process.is_alive() and queue.empty():
      time.sleep(1)
    if queue.empty():
      print(f"{shape}: the measuring process died (exit code {process.exitcode})", flush=True)
      continue
    results.append(queue.get())
    process.join()
    print(json.dumps(results[-1]), flush=True)
  print_table(results)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
