r"""Writes the rare-items rating set (`keras_autorec.data.rare_items`) of a dataset as CSV.

  python -m keras_autorec.make_rare_items --dataset=ml1m --data_dir=/work/shared/data \
      --output=/tmp/ml1m_rare_items.csv
  python -m keras_autorec.train --dataset=csv --ratings_file=/tmp/ml1m_rare_items.csv
"""

from __future__ import annotations

import sys

from absl import app, flags

from keras_autorec import cli_flags
from keras_autorec.data import rare_items, sources

FLAGS = flags.FLAGS
# One flag --rare_<field> per field of RareItemsConfig.
_CONFIG_HELP = {"num_users": "Users kept.", "median_cap": "Median of the item caps.",
                "cap_log_stddev": "Standard deviation of the log item caps.",
                "seed": "Seed of the user and rating draws."}


def define_flags() -> None:
  """Defines this command's flags."""
  # Only when run as a command: `--output` is also the Kubeflow runner's flag, in absl's one
  # registry that the tests share.
  cli_flags.define_data_flags()
  flags.DEFINE_string("output", None, "Where to write the thinned ratings (CSV).")
  for field, help_text in _CONFIG_HELP.items():
    default = getattr(rare_items.RareItemsConfig, field)
    define = flags.DEFINE_integer if isinstance(default, int) else flags.DEFINE_float
    define(f"rare_{field}", default, help_text)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output:
    raise app.UsageError("--output: where to write the thinned ratings (CSV)")
  config = rare_items.RareItemsConfig(
      **{field: FLAGS[f"rare_{field}"].value for field in _CONFIG_HELP})
  try:
    ratings = rare_items.compact(rare_items.thin(sources.load_ratings(cli_flags.data_config()),
                                                 config))
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  rare_items.write_csv(ratings, FLAGS.output)
  print(f"{FLAGS.output}: {rare_items.describe(ratings)}")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
