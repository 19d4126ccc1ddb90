"""Measures the exported SavedModel's signatures in-process, on synthetic ML-1M shape.

It generates seeded synthetic ratings of ML-1M shape (6040 users x 3706 items, 1M ratings), builds
an I-AutoRec (k = --hidden) and, with --train_epochs 0 (the default), exports it with its initial
weights: serving cost does not depend on the weights' values, only on the tables' shapes. It then
loads the export with `tf.saved_model.load` and times each signature over --calls calls after
--warmup calls, with inputs prepared as tensors beforehand, so a figure is the signature call
alone (Python dispatch included, no gRPC/REST):

  serving_default        pairs/s at batch 1 and at --batch (median call latency).
  recommend              latency p50/p99, one known user per call.
  recommend_for_ratings  latency p50/p99, one new user with --fold_in_ratings ratings per call.
  similar_items          latency p50/p99, one item per call.

Timings on a shared machine are noisy: the table prints the 1-minute load average per row, and
the mean process CPU time per call ("cpu ms", all threads) next to the wall-clock percentiles.
For a before/after comparison at the same load, export with the older code and keep it, then
time it interleaved, call by call, with this code's export (columns "base p50", "base cpu"):

  PYTHONPATH=. python benchmarks/serving_speed.py
  PYTHONPATH=. python benchmarks/serving_speed.py --train_epochs 2 --calls 500
  PYTHONPATH=/path/to/older/checkout python benchmarks/serving_speed.py --keep_export /tmp/before
  PYTHONPATH=. python benchmarks/serving_speed.py --baseline /tmp/before/1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Read when TensorFlow loads.

import numpy as np
import tensorflow as tf

from keras_autorec import export, training
from keras_autorec.data import splits, synthetic
from keras_autorec.data.layout import build_layout

TARGET_PAIRS_PER_SECOND = 1_000_000
TARGET_RECOMMEND_P50_MS = 5.0


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shape", default="ml1m", choices=sorted(synthetic.SHAPES))
  parser.add_argument("--hidden", type=int, default=500)
  parser.add_argument("--top_k", type=int, default=100)
  parser.add_argument("--train_epochs", type=int, default=0,
                      help="full-batch Rprop epochs before export; 0 exports initial weights")
  parser.add_argument("--batch", type=int, default=1024, help="serving_default's large batch")
  parser.add_argument("--fold_in_ratings", type=int, default=20,
                      help="ratings of the new user in each recommend_for_ratings call")
  parser.add_argument("--warmup", type=int, default=20)
  parser.add_argument("--calls", type=int, default=300)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--keep_export", default=None,
                      help="export under this folder and keep it (default: a temporary one)")
  parser.add_argument("--baseline", default=None,
                      help="a SavedModel version folder of the same shape and seed to time "
                           "interleaved with this export")
  return parser.parse_args()


def call_seconds(functions: list, inputs: list[dict],
                 warmup: int) -> list[tuple[np.ndarray, float]]:
  """Per function, the wall time of each call on `inputs` and the mean process CPU time per call.

  `warmup` untimed calls come first. With several functions, each input goes to all of them in
  an order that alternates, so they share the machine's load. CPU time counts every thread of
  the process, so with other processes competing for the cores it shows what the call costs
  apart from waiting for them.
  """
  for function in functions:
    for n in range(warmup):
      function(**inputs[n % len(inputs)])
  seconds = [[] for _ in functions]
  cpu_seconds = [0.0 for _ in functions]
  for n, kwargs in enumerate(inputs):
    order = range(len(functions)) if n % 2 == 0 else reversed(range(len(functions)))
    for index in order:
      cpu_start, start = time.process_time(), time.perf_counter()
      outputs = functions[index](**kwargs)
      # Reads a result back, so that no asynchronous work is left outside the timing.
      next(iter(outputs.values())).numpy()
      seconds[index].append(time.perf_counter() - start)
      cpu_seconds[index] += time.process_time() - cpu_start
  return [(np.asarray(wall), cpu / len(inputs)) for wall, cpu in zip(seconds, cpu_seconds)]


def build_export(args: argparse.Namespace, export_dir: str) -> tuple[str, np.ndarray, np.ndarray,
                                                                     str]:
  """Builds (and optionally trains) the I-AutoRec, exports it; returns path, ids, weights note."""
  ratings = synthetic.generate(args.shape, seed=args.seed)
  model_config = training.ModelConfig(hidden_units=(args.hidden,))
  if args.train_epochs > 0:
    split = splits.random_split(ratings, test_fraction=0.0, validation_fraction=0.0,
                                seed=args.seed)
    trained = training.fit(split, model_config,
                           training.TrainConfig(epochs=args.train_epochs, verbose=0,
                                                seed=args.seed))
    model, layout = trained.model, trained.layout
    weights = f"trained {trained.epochs_run} full-batch Rprop epochs"
  else:
    layout = build_layout(ratings, item_based=True)
    model = training.build_model(model_config, layout)
    weights = "initial weights, not trained"
  path = export.export_model(model, layout,
                             export.ExportConfig(export_dir=export_dir, top_k=args.top_k,
                                                 warmup_requests=False))
  return path, layout.user_ids().astype(str), layout.item_ids().astype(str), weights


def main():
  args = parse_args()
  rng = np.random.default_rng(args.seed)
  with tempfile.TemporaryDirectory() as directory:
    start = time.perf_counter()
    path, user_ids, item_ids, weights = build_export(
        args, args.keep_export or os.path.join(directory, "autorec"))
    build_seconds = time.perf_counter() - start
    signatures = tf.saved_model.load(path).signatures
    baseline = tf.saved_model.load(args.baseline).signatures if args.baseline else None

    def users(size):
      return tf.constant(rng.choice(user_ids, size))

    def items(size):
      return tf.constant(rng.choice(item_ids, size))

    def fold_in(size):
      chosen = rng.choice(item_ids, (1, size), replace=False)
      return {"item_ids": tf.constant(chosen),
              "ratings": tf.constant(rng.integers(1, 6, (1, size)).astype(np.float32))}

    calls = args.calls
    cases = [
        ("serving_default", 1, [{"user_id": users(1), "item_id": items(1)}
                                for _ in range(calls)]),
        ("serving_default", args.batch, [{"user_id": users(args.batch),
                                          "item_id": items(args.batch)} for _ in range(calls)]),
        ("recommend", 1, [{"user_id": users(1)} for _ in range(calls)]),
        ("recommend_for_ratings", 1, [fold_in(args.fold_in_ratings) for _ in range(calls)]),
        ("similar_items", 1, [{"item_id": items(1)} for _ in range(calls)]),
    ]
    print(f"{args.shape}: {user_ids.shape[0]} users x {item_ids.shape[0]} items, I-AutoRec "
          f"k={args.hidden}, top_k={args.top_k}, {weights}; built and exported in "
          f"{build_seconds:.0f} s; {calls} timed calls after {args.warmup} warm-up calls each; "
          f"{os.cpu_count()} CPUs; export at {path}"
          + (f"; baseline {args.baseline} timed interleaved" if baseline else ""))
    print(f"{'signature':<22} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>8} "
          f"{'pairs/s':>11}  {'target':<22} {'met':<4} {'load':>5}"
          + (f" {'base p50':>8} {'base cpu':>8}" if baseline else ""))
    for name, batch, inputs in cases:
      timings = call_seconds([signatures[name]] + ([baseline[name]] if baseline else []),
                             inputs, args.warmup)
      seconds, cpu_seconds = timings[0]
      p50, p99 = np.percentile(seconds, [50, 99]) * 1e3
      base = ""
      if baseline:
        base = f" {np.median(timings[1][0]) * 1e3:>8.3f} {timings[1][1] * 1e3:>8.3f}"
      pairs = f"{batch / (p50 / 1e3):,.0f}" if name == "serving_default" else "-"
      target, met = "", ""
      if name == "serving_default" and batch == args.batch:
        target = f">= {TARGET_PAIRS_PER_SECOND:,} pairs/s"
        met = "yes" if batch / (p50 / 1e3) >= TARGET_PAIRS_PER_SECOND else "NO"
      elif name == "recommend":
        target = f"p50 <= {TARGET_RECOMMEND_P50_MS:g} ms"
        met = "yes" if p50 <= TARGET_RECOMMEND_P50_MS else "NO"
      print(f"{name:<22} {batch:>5} {p50:>8.3f} {p99:>8.3f} {cpu_seconds * 1e3:>8.3f} "
            f"{pairs:>11}  {target:<22} {met:<4} {os.getloadavg()[0]:>5.2f}{base}")


if __name__ == "__main__":
  main()
