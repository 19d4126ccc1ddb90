"""Compares the four serving signatures of two exports (e.g. before and after a refactoring).

  python benchmarks/compare_exports.py /tmp/before/1 /tmp/after/1 [--atol 0]

Over the user and item ids of --ratings_file (ML-100K's u.data by default), calls
serving_default on 2,000 seeded (user, item) pairs plus an unknown user and item, recommend for
every user and an unknown one, recommend_for_ratings for 50 seeded lists of 20 rated items,
and similar_items for every item; prints
the largest absolute difference of every output; exits 1 when one exceeds --atol or the id
outputs differ.
"""

from __future__ import annotations

import argparse
import os
import sys


def _calls(ratings_file: str, rng) -> dict:
  """Signature name -> list of keyword inputs, over the user and item ids of `ratings_file`."""
  import numpy as np
  import tensorflow as tf

  user_ids = _vocabulary(ratings_file, 0)
  item_ids = _vocabulary(ratings_file, 1)
  pairs = rng.integers(0, [len(user_ids), len(item_ids)], size=(2000, 2))
  users = np.append(user_ids[pairs[:, 0]], "no-such-user")
  items = np.append(item_ids[pairs[:, 1]], "no-such-item")
  rated = rng.integers(0, len(item_ids), size=(50, 20))
  return {
      "serving_default": [dict(user_id=tf.constant(users[chunk]), item_id=tf.constant(items[chunk]))
                          for chunk in _chunks(len(users))],
      "recommend": [dict(user_id=tf.constant(np.append(user_ids, "no-such-user")[chunk]))
                    for chunk in _chunks(len(user_ids) + 1)],
      "recommend_for_ratings": [dict(
          item_ids=tf.constant(item_ids[rated]),
          ratings=tf.constant(rng.integers(1, 6, size=rated.shape).astype(np.float32)))],
      "similar_items": [dict(item_id=tf.constant(item_ids[chunk]))
                        for chunk in _chunks(len(item_ids))],
  }


def _chunks(size: int, batch: int = 1000) -> list[slice]:
  """Slices of at most `batch` rows: an export takes at most max_batch_size (1024) per request."""
  return [slice(start, start + batch) for start in range(0, size, batch)]


def _vocabulary(path: str, column: int):
  """The distinct ids in `column` of a whitespace-separated ratings file, in first-seen order."""
  import numpy as np

  with open(path) as f:
    ids = [line.split()[column] for line in f if line.strip()]
  return np.array(list(dict.fromkeys(ids)), dtype=object)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("before")
  parser.add_argument("after")
  parser.add_argument("--ratings_file", default="/work/shared/data/ml-100k/u.data",
                      help="whitespace-separated user id, item id, ...: the ids to query")
  parser.add_argument("--atol", type=float, default=0.0)
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np
  import tensorflow as tf

  models = {name: tf.saved_model.load(getattr(args, name)) for name in ("before", "after")}
  calls = _calls(args.ratings_file, np.random.default_rng(0))
  failed = False
  for signature, inputs_list in calls.items():
    for inputs in inputs_list:
      outputs = {name: models[name].signatures[signature](**inputs) for name in models}
      for key in sorted(outputs["before"]):
        before, after = outputs["before"][key].numpy(), outputs["after"][key].numpy()
        if before.dtype == object:
          same = before.shape == after.shape and bool(np.all(before == after))
          print(f"{signature}.{key}: {before.shape} ids {'identical' if same else 'DIFFER'}")
          failed |= not same
        else:
          # Equal infinities (e.g. -inf scores of excluded items) are no difference.
          same = (before == after) | (np.isnan(before) & np.isnan(after))
          with np.errstate(invalid="ignore"):
            difference = float(np.max(np.abs(before - after), where=~same, initial=0.0))
          print(f"{signature}.{key}: {before.shape} max |difference| {difference:.3g}")
          failed |= before.shape != after.shape or not difference <= args.atol
  print("identical" if not failed else "DIFFERENT")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
