"""Measures ratings-file parse throughput for the `::`, tab and CSV formats.

Writes a synthetic ML-1M-format file (user::item::rating::timestamp, default 1M lines) in the same
shape in each format to a temporary directory, parses each once (raw columns, then `from_raw`'s id
factorisation and de-duplication) and prints seconds and lines per second. Runtime is bounded by
--lines (about 10 s for 1M lines).

  PYTHONPATH=. python benchmarks/parse_speed.py --lines 1000000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from keras_autorec.data import parsing

FORMATS = (("::", False, "ratings.dat"), ("\t", False, "u.data"), (",", True, "ratings.csv"))


def write_ratings_file(path: str, num_lines: int, delimiter: str, header: bool,
                       seed: int) -> None:
  """Writes `num_lines` random ML-1M-like ratings (6040 users, 3706 items) to `path`."""
  rng = np.random.default_rng(seed)
  user = rng.integers(1, 6041, num_lines).astype(str)
  item = rng.integers(1, 3953, num_lines).astype(str)
  rating = rng.integers(1, 6, num_lines).astype(str)
  timestamp = rng.integers(956703932, 1046454590, num_lines).astype(str)
  lines = [delimiter.join(fields) for fields in zip(user, item, rating, timestamp)]
  with open(path, "w") as f:
    if header:
      f.write(delimiter.join(("userId", "movieId", "rating", "timestamp")) + "\n")
    f.write("\n".join(lines) + "\n")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lines", type=int, default=1_000_000, help="ratings per file")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as directory:
    for delimiter, header, name in FORMATS:
      path = os.path.join(directory, name)
      write_ratings_file(path, args.lines, delimiter, header, args.seed)
      start = time.perf_counter()
      columns = parsing.read_columns(path, delimiter, header=header, timestamp_column=3,
                                     num_fields=4)
      parsed = time.perf_counter()
      ratings = parsing.ratings_from_columns(columns, (1.0, 5.0))
      seconds = time.perf_counter() - start
      print(f"{delimiter!r:6} {name:12} ({os.path.getsize(path) / 1e6:.1f} MB): {seconds:.2f} s, "
            f"{args.lines / seconds:,.0f} lines/s (split and convert {parsed - start:.2f} s, "
            f"ids and de-duplication {seconds - (parsed - start):.2f} s; "
            f"{ratings.num_ratings:,d} ratings, {ratings.duplicates_removed:,d} duplicates)")


if __name__ == "__main__":
  main()
