"""Tests for keras_autorec.serving.publish."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from keras_autorec.serving import publish


def _write(directory: str, name: str, text: str) -> None:
  with open(os.path.join(directory, name), "w") as f:
    f.write(text)


def _read(directory: str, name: str) -> str:
  with open(os.path.join(directory, name)) as f:
    return f.read()


def test_concurrent_publishes_get_distinct_intact_versions(tmp_path):
  base = str(tmp_path / "model")
  writers = 8
  published = [None] * writers
  start = threading.Barrier(writers)

  def writer(index):
    with publish.partial_directory(base) as partial_dir:
      _write(partial_dir, "payload", f"writer {index}\n" * 1000)
      start.wait()
      published[index] = publish.publish_version(partial_dir, base)

  threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert sorted(published) == [os.path.join(base, str(v)) for v in range(1, writers + 1)]
  assert publish.existing_versions(base) == list(range(1, writers + 1))
  assert sorted(os.listdir(base)) == sorted(str(v) for v in range(1, writers + 1))
  for index, version_dir in enumerate(published):
    assert _read(version_dir, "payload") == f"writer {index}\n" * 1000


def test_exception_before_publishing_leaves_nothing(tmp_path):
  base = str(tmp_path / "model")
  with pytest.raises(RuntimeError, match="disk full"):
    with publish.partial_directory(base) as partial_dir:
      _write(partial_dir, "payload", "half")
      raise RuntimeError("disk full")
  assert os.listdir(base) == []


def test_killed_writer_leaves_only_an_inert_partial_directory(tmp_path):
  base = str(tmp_path / "model")
  script = ("import os, sys\n"
            "from keras_autorec.serving import publish\n"
            "with publish.partial_directory(sys.argv[1]) as partial_dir:\n"
            "  open(os.path.join(partial_dir, 'payload'), 'w').write('half')\n"
            "  os._exit(1)\n")
  subprocess.run([sys.executable, "-c", script, base], check=False,
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  names = os.listdir(base)
  assert len(names) == 1 and names[0].startswith(publish.PARTIAL_PREFIX)
  assert publish.existing_versions(base) == []
  with publish.partial_directory(base) as partial_dir:
    _write(partial_dir, "payload", "whole")
    version_dir = publish.publish_version(partial_dir, base)
  assert version_dir == os.path.join(base, "1") and _read(version_dir, "payload") == "whole"


def test_publish_directory_takes_over_empty_and_replaces_only_when_asked(tmp_path):
  target = str(tmp_path / "execution")
  os.makedirs(target)
  for text in ("first", "second"):
    with publish.partial_directory(str(tmp_path)) as partial_dir:
      _write(partial_dir, "payload", text)
      if text == "second":
        with pytest.raises(OSError):
          publish.publish_directory(partial_dir, target)
      publish.publish_directory(partial_dir, target, replace=True)
  assert _read(target, "payload") == "second"
  assert os.listdir(tmp_path) == ["execution"]
