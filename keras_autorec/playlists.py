"""`python -m keras_autorec.train` with implicit feedback by default, on synthetic Melon data
unless --dataset says otherwise: the same flags, run, table, metrics file and export.

  python -m keras_autorec.playlists --synthetic_playlists=5000
  python -m keras_autorec.playlists --dataset=ml1m --data_dir=/work/shared/data --repeats=3

is `python -m keras_autorec.train --dataset=synthetic_melon ...` and
`python -m keras_autorec.train --dataset=ml1m --feedback=implicit ...`.
"""

from __future__ import annotations

# First, before anything imports TensorFlow.
from keras_autorec import quiet_tensorflow  # noqa: F401  pylint: disable=unused-import

from absl import app, flags

from keras_autorec import cli_help, train

DEFAULTS = {"feedback": "implicit", "dataset": "synthetic_melon"}


def set_defaults() -> None:
  """Makes train's flags default to this command's: implicit feedback, synthetic Melon."""
  for name, value in DEFAULTS.items():
    flags.FLAGS.set_default(name, value)


if __name__ == "__main__":
  # Only when run as this command: importing the module leaves train's defaults alone.
  set_defaults()
  app.run(train.main, flags_parser=cli_help.flags_parser(train.HELP_GROUPS, __doc__))
