"""Times variants of the sparse training path in one process, interleaved, on synthetic shapes.

On a shared machine the speed available to a process changes from minute to minute, so variants
are only comparable when measured in the same process, one epoch of each in turn. The variants
are `SparseTrainer`s sharing one model (I-AutoRec, k = --hidden, full-batch --optimizer): one per
--densities value (the decoder's GEMM/gather-dot split, `training.sparse.blocks.
DENSE_COLUMN_DENSITY`; inf = gather-dots only), and with --baseline, the `SparseTrainer` of a
self-contained sparse module of another commit, with its default settings:

  git show 3d24b19:keras_autorec/sparse.py > /tmp/sparse_before.py
  PYTHONPATH=. python benchmarks/sparse_variants.py --shape ml1m --epochs 9 \
      --baseline /tmp/sparse_before.py

The sparse path was one file, `keras_autorec/sparse.py`, until the commit that made it the package
`keras_autorec/training/sparse/`; a baseline from then on imports its sibling modules from this
tree, so compare such commits by running this script in a checkout of each, alternately.

Every variant runs with the SpMM kernel the process chose: TensorFlow reads TF_ENABLE_ONEDNN_SPMM
(which importing `keras_autorec.training.sparse.kernels` sets to 1 unless it is set) once, at the
first graph with a SparseMatrixMatMul; so oneDNN's SpMM against Eigen's takes two runs, one with
TF_ENABLE_ONEDNN_SPMM=0.

It prints each variant's seconds per epoch (each epoch is one step) and the 1-minute load average
before each round.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", default="ml1m")
  parser.add_argument("--densities", type=float, nargs="+", default=[0.01])
  parser.add_argument("--baseline",
                      help="path of a self-contained sparse.py (of an older commit) to time")
  parser.add_argument("--epochs", type=int, default=5, help="timed epochs per variant")
  parser.add_argument("--hidden", type=int, default=500)
  parser.add_argument("--optimizer", default="rprop")
  parser.add_argument("--compute", choices=["off", "bfloat16", "float16"], default="off",
                      help="compute dtype of every variant: off (float32), bfloat16 or float16")
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras
  import numpy as np
  import tensorflow as tf

  from keras_autorec.data import synthetic
  from keras_autorec.data.layout import build_layout
  from keras_autorec.model import AutoRec
  from keras_autorec.optimizers import make_optimizer
  from keras_autorec.training.sparse import trainer as sparse

  train = build_layout(synthetic.generate(args.shape, seed=0), item_based=True).train
  keras.utils.set_random_seed(0)
  model = AutoRec(train.num_columns, hidden_units=(args.hidden,), l2_weight=1e-4)
  model(tf.zeros((1, train.num_columns)))
  model.compile(optimizer=make_optimizer(args.optimizer, 1e-3))
  strategy = tf.distribute.get_strategy()
  compute_dtype = sparse.COMPUTE_DTYPES[args.compute]
  trainers = {}
  if args.baseline:
    spec = importlib.util.spec_from_file_location("baseline_sparse", args.baseline)
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    trainers["baseline"] = baseline.SparseTrainer(model, train, strategy,
                                                  compute_dtype=compute_dtype)
  for density in args.densities:
    trainer = sparse.SparseTrainer(model, train, strategy, compute_dtype=compute_dtype,
                                   dense_density=density)
    block = trainer.groups[0][0]
    share = np.isin(block.columns.numpy(), block.dense_columns.numpy()).mean()
    print(f"density {density}: {block.dense_columns.shape[0]} of {train.num_columns} columns "
          f"by GEMM, {share:.1%} of the pairs", flush=True)
    trainers[f"density {density}"] = trainer
  for trainer in trainers.values():
    trainer.run_epoch()  # Traces.
  seconds = {name: [] for name in trainers}
  for _ in range(args.epochs):
    print(f"load {os.getloadavg()[0]:.2f}", flush=True)
    for name, trainer in trainers.items():
      start = time.perf_counter()
      trainer.run_epoch()
      seconds[name].append(time.perf_counter() - start)
  print(f"{args.shape}, {train.nnz} ratings; seconds per epoch; "
        f"load after {os.getloadavg()[0]:.2f}")
  for name, values in seconds.items():
    print(f"  {name:16} median {np.median(values):.3f}  min {min(values):.3f}  all "
          + " ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
  main()
