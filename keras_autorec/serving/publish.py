"""Atomic publishing of directories: build under a `.partial-*` sibling, fsync, rename into place.

TF Serving loads only integer version directories and a pipeline reads only complete executions,
so a writer killed before the rename leaves at worst an inert `.partial-*` directory, and a reader
sees either nothing new or the complete directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

PARTIAL_PREFIX = ".partial-"
MAX_VERSION_ATTEMPTS = 100


def existing_versions(base_dir: str) -> list[int]:
  """The integer version directories under `base_dir`, ascending, as TF Serving sees them."""
  if not os.path.isdir(base_dir):
    return []
  return sorted(int(name) for name in os.listdir(base_dir)
                if re.fullmatch(r"\d+", name) and os.path.isdir(os.path.join(base_dir, name)))


@contextlib.contextmanager
def partial_directory(parent: str) -> Iterator[str]:
  """A fresh `.partial-<pid>-*` directory under `parent`, removed on exit unless published."""
  os.makedirs(parent, exist_ok=True)
  partial_dir = tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", dir=parent)
  try:
    yield partial_dir
  finally:
    if os.path.isdir(partial_dir):
      shutil.rmtree(partial_dir, ignore_errors=True)


def publish_version(partial_dir: str, base_dir: str) -> str:
  """Renames `partial_dir` (under `base_dir`) to the next free integer version; returns its path."""
  _fsync_tree(partial_dir)
  for _ in range(MAX_VERSION_ATTEMPTS):
    versions = existing_versions(base_dir)
    version_dir = os.path.join(base_dir, str(versions[-1] + 1 if versions else 1))
    try:
      # Renaming onto a non-empty directory fails, so a version another writer published
      # meanwhile is never replaced.
      os.rename(partial_dir, version_dir)
    except OSError as error:
      if error.errno in (errno.EEXIST, errno.ENOTEMPTY) and os.path.isdir(version_dir):
        continue
      raise
    _fsync_directory(base_dir)  # persists the rename itself
    return version_dir
  raise RuntimeError(f"could not claim a new version under {base_dir} after "
                     f"{MAX_VERSION_ATTEMPTS} attempts")


def publish_directory(partial_dir: str, target_dir: str, replace: bool = False) -> str:
  """Renames `partial_dir` to `target_dir`; returns `target_dir`.

  An empty `target_dir` is taken over. A non-empty one is replaced when `replace` (moved into a
  `.partial-*` sibling first, then deleted), otherwise the rename fails with OSError.
  """
  _fsync_tree(partial_dir)
  if os.path.isdir(target_dir) and not os.listdir(target_dir):
    os.rmdir(target_dir)
  elif os.path.isdir(target_dir) and replace:
    with partial_directory(os.path.dirname(target_dir)) as stale:
      os.rename(target_dir, os.path.join(stale, "stale"))
  os.rename(partial_dir, target_dir)
  _fsync_directory(os.path.dirname(os.path.abspath(target_dir)))
  return target_dir


def _fsync_tree(directory: str) -> None:
  """Flushes every file and directory under `directory` to disk, so a rename publishes data."""
  for root, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        os.fsync(f.fileno())
    _fsync_directory(root)


def _fsync_directory(directory: str) -> None:
  descriptor = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(descriptor)
  finally:
    os.close(descriptor)
