"""Validation RMSE by the item's training count: I-AutoRec vs biases vs item kNN vs the blend.

Fits I-AutoRec (early stopping on validation, no refit) with the given flags' model and training
settings, the biases and the item kNN with baseline on the training ratings of one split, fits the
count blend (`keras_autorec.blend`) on half of the validation ratings and prints, per bucket of
the item's training count, the RMSE of each predictor on the other half (so the blend's figure is
not scored on the ratings that fitted it), then the whole validation set's figures.

  PYTHONPATH=. python benchmarks/rare_rows.py --dataset=csv \
      --ratings_file=/tmp/ml1m_rare_items.csv --seed=0
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from absl import app, flags

from keras_autorec import blend, cli_flags, evaluation, training
from keras_autorec.baselines import knn_baseline
from keras_autorec.data.splits import load_splits

# Lower count edges of the buckets: 1, 2, 3-4, 5-8, ..., 129-256, 257 and more.
BUCKET_EDGES = (1, 2, 3, 5, 9, 17, 33, 65, 129, 257)
FLAGS = flags.FLAGS
cli_flags.define_data_flags()
cli_flags.define_split_flags()
cli_flags.define_model_flags()
cli_flags.define_train_flags()


def _rmse(errors: np.ndarray) -> float:
  return float(np.sqrt(np.mean(np.square(errors)))) if errors.size else float("nan")


def main(argv):
  del argv
  split = next(load_splits(cli_flags.data_config(), cli_flags.split_config()))
  start = time.time()
  trained = training.fit(split, cli_flags.model_config(),
                         dataclasses.replace(cli_flags.train_config(), verbose=0))
  layout = trained.layout
  rows, columns = layout.positions(split.validation)
  seen = (rows >= 0) & (columns >= 0)
  rows, columns = rows[seen], columns[seen]
  targets = split.validation.rating[seen]
  autorec = evaluation.predict_pairs(trained.model, layout, rows, columns)
  biases = blend.fit_row_biases(layout).predict(rows, columns)
  knn = knn_baseline.fit(split)
  neighbours = knn.predict(split.validation.user_index[seen], split.validation.item_index[seen])
  counts = layout.train.row_lengths()[rows]
  half = np.random.default_rng(0).permutation(targets.size) < targets.size // 2
  fitted = blend.fit_blend(targets[half], autorec[half], biases[half], counts[half])
  blended = fitted.apply(autorec, biases, counts)
  print(f"{split.description}; {int(seen.sum())} of {seen.size} validation ratings with a seen "
        f"user and item; {time.time() - start:.0f} s. RMSE on the held-out half:")
  print(f"Blend fitted on the other half: offset {fitted.offset:.2f}, slope {fitted.slope:.3f}.")
  print("| item training ratings | validation ratings | I-AutoRec | biases | item kNN | blend "
        "| blend weight of the biases |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  buckets = np.searchsorted(BUCKET_EDGES, counts, side="right") - 1
  edges = BUCKET_EDGES + (None,)
  for bucket in range(len(BUCKET_EDGES)):
    chosen = (buckets == bucket) & ~half
    label = (f"{edges[bucket]}+" if edges[bucket + 1] is None
             else f"{edges[bucket]}-{edges[bucket + 1] - 1}")
    print(f"| {label} | {int(chosen.sum())} | "
          + " | ".join(f"{_rmse(targets[chosen] - p[chosen]):.4f}"
                       for p in (autorec, biases, neighbours, blended))
          + f" | {fitted.row_weights(np.array([edges[bucket]]))[0]:.2f} |")
  print("| all (held-out half) | " + str(int((~half).sum())) + " | "
        + " | ".join(f"{_rmse(targets[~half] - p[~half]):.4f}"
                     for p in (autorec, biases, neighbours, blended)) + " | |")


if __name__ == "__main__":
  app.run(main)
