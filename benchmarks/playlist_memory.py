"""Peak memory and epoch time of playlist AutoRec training on a synthetic Melon-format shape.

Generates seeded synthetic playlists (`keras_autorec.data.synthetic_melon`, the challenge's
JSON records in memory), builds the song+tag catalog and trains `PlaylistAutoRec` (sparse
inputs, Adam; `multinomial` builds the dense [batch, catalog] logits, `weighted_squared` trains
in factored form without them) for --steps steps after one warm-up step, extrapolating to an
epoch (or a full epoch with --steps=0). Prints peak RSS before and during training, the catalog
size, parameters, and the load average.

  PYTHONPATH=. python benchmarks/playlist_memory.py --playlists 100000 --songs 200000 \
      --tags 30000 --hidden_units 256 --loss weighted_squared --batch_size 4096 --steps 5
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--playlists", type=int, default=100_000)
  parser.add_argument("--songs", type=int, default=200_000)
  parser.add_argument("--tags", type=int, default=30_000)
  parser.add_argument("--genres", type=int, default=30)
  parser.add_argument("--hidden_units", type=int, default=256)
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--loss", default="multinomial")
  parser.add_argument("--steps", type=int, default=20, help="0: a full epoch")
  args = parser.parse_args()

  from keras_autorec.data import synthetic_melon
  from keras_autorec.implicit import fit, interactions, model as model_lib
  import keras

  start = time.perf_counter()
  records = synthetic_melon.generate_records(synthetic_melon.SyntheticMelonConfig(
      num_playlists=args.playlists, num_songs=args.songs, num_tags=args.tags,
      num_genres=args.genres))
  songs, tags = [r["songs"] for r in records], [r["tags"] for r in records]
  del records
  catalog = interactions.build_catalog(songs, tags)
  rows, _ = interactions.encode_rows(catalog, songs, tags)
  del songs, tags
  print(f"data: {rows.shape[0]} playlists, catalog {catalog.num_songs} songs + "
        f"{catalog.num_tags} tags = {catalog.size} items, {rows.nnz} entries, "
        f"{time.perf_counter() - start:.0f} s; peak RSS {peak_rss_gib():.2f} GiB")

  keras.utils.set_random_seed(0)
  model = model_lib.PlaylistAutoRec(catalog.size, (args.hidden_units,), loss=args.loss)
  step = fit._train_step(model, keras.optimizers.Adam(1e-3))  # pylint: disable=protected-access
  order = np.random.default_rng(0).permutation(rows.shape[0])
  batches = [order[first:first + args.batch_size]
             for first in range(0, order.size, args.batch_size)]
  step(fit.to_sparse_tensor(rows[batches[0]]))  # warm-up: tracing and optimizer slots
  timed = batches[1:1 + args.steps] if args.steps else batches
  start, cpu_start = time.perf_counter(), time.process_time()
  for batch in timed:
    float(step(fit.to_sparse_tensor(rows[batch])))
  seconds = (time.perf_counter() - start) / len(timed)
  cpu_seconds = (time.process_time() - cpu_start) / len(timed)
  parameters = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  print(f"model: {parameters / 1e6:.1f} M parameters ({parameters * 4 / 2**30:.2f} GiB float32, "
        f"x3 with Adam's slots); {seconds:.2f} s per {args.batch_size}-row step over "
        f"{len(timed)} steps, epoch ({len(batches)} steps) "
        f"{'measured' if not args.steps else 'extrapolated'} {seconds * len(batches):.0f} s; "
        f"CPU {cpu_seconds:.2f} s per step (all threads)")
  print(f"peak RSS {peak_rss_gib():.2f} GiB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
