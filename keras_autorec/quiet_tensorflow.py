"""Keeps TensorFlow's C++ startup lines off the console of the command lines.

On import TensorFlow prints a banner (oneDNN, CPU features, no CUDA driver; twice, from two of
its libraries) and probes CUDA (`failed call to cuInit` on a machine without a GPU): C++ INFO,
WARNING and ERROR lines that are not about the run. Each command's entry module imports this
module before anything else imports TensorFlow. Unless TF_CPP_MIN_LOG_LEVEL is set, it sets it
to 3 (C++ INFO, WARNING and ERROR lines off; the run's errors still raise Python exceptions) and
imports TensorFlow with the process's stderr closed, because the banner lines are logged while
TensorFlow's libraries load, before that variable takes effect. Set the variable yourself to see
them all, e.g. `TF_CPP_MIN_LOG_LEVEL=0 python -m keras_autorec.train ...`.
"""

import os
import sys

TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


def _import_tensorflow_without_stderr() -> None:
  """Imports TensorFlow with file descriptor 2 on /dev/null, restored even if the import fails."""
  sys.stderr.flush()
  saved_stderr = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  finally:
    os.dup2(saved_stderr, 2)
    os.close(saved_stderr)
    os.close(devnull)


if TF_LOG_LEVEL not in os.environ:
  os.environ[TF_LOG_LEVEL] = "3"
  _import_tensorflow_without_stderr()
