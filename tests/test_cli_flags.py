"""Tests for keras_autorec.cli_flags and cli_help: the grouped --help of every command line."""

import os
import re
import subprocess
import sys

import pytest
from absl import app, flags
from absl.testing import flagsaver

from keras_autorec import cli_flags, cli_help, experiments, quiet_tensorflow, train

REPO = __file__.rsplit("/tests/", 1)[0]


def _listed_flags(help_text: str) -> set[str]:
  return set(re.findall(r"^  --(?:\[no\])?(\w+):", help_text, flags=re.MULTILINE))


# The shared flags a command does not take: experiments export nothing and predict ratings.
@pytest.mark.parametrize("module, not_taken", [
    (train, set()), (experiments, {"export_top_k", "export_popularity_weight", "feedback",
                                   *cli_flags.define_implicit_flags().names})])
def test_help_lists_every_flag_of_the_command_in_groups(module, not_taken):
  help_text = cli_help.grouped_help(module.HELP_GROUPS)
  own = {flag.name for flag in flags.FLAGS.get_flags_for_module(module.__name__)}
  # cli_help.define makes the DEFINE calls, so absl files every shared flag under cli_help.
  shared = {flag.name for flag in flags.FLAGS.get_flags_for_module(cli_help.__name__)}
  assert own and shared and not_taken <= shared
  assert _listed_flags(help_text) == own | (shared - not_taken)
  titles = re.findall(r"^(\w+) flags:$", help_text, flags=re.MULTILINE)
  assert titles[:4] == ["data", "split", "model", "training"]
  # train's implicit flags come last, under a note saying which other flags implicit mode takes.
  assert titles[4:] == (["export", "implicit"] if module is train else ["experiments"])
  # Each flag once, under its group, with its default.
  data_part = help_text.split("split flags:")[0]
  assert "--dataset: <ml100k|" in data_part and "(default: 'ml100k')" in data_part
  assert help_text.count("--seed:") == 1
  if module is train:
    implicit_part = help_text.split("implicit flags:\n")[1]
    assert implicit_part.startswith("  --feedback=implicit (implied by --dataset=melon")
    assert "--hidden_units=256 " in implicit_part and "--positive_threshold:" in implicit_part


def test_groups_of_one_title_are_merged_in_first_order():
  help_text = cli_help.grouped_help([cli_help.HelpGroup("a", ("seed",)),
                                      cli_help.HelpGroup("b", ("dataset",)),
                                      cli_help.HelpGroup("a", ("split",))])
  assert help_text.index("a flags:") < help_text.index("--seed:") < help_text.index("--split:")
  assert help_text.index("--split:") < help_text.index("b flags:")


@pytest.mark.parametrize("command", ["keras_autorec.train", "keras_autorec.evaluate",
                                     "pipelines.local_runner", "keras_autorec.playlists"])
def test_help_of_the_command_line_is_grouped_and_quiet(command):
  # As a user runs it: importing keras_autorec.train here set the variable in this process.
  env = {k: v for k, v in os.environ.items() if k != quiet_tensorflow.TF_LOG_LEVEL}
  result = subprocess.run([sys.executable, "-m", command, "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
  for title in ("data", "split"):
    assert f"\n{title} flags:\n" in result.stdout
  assert "--dataset:" in result.stdout and "(default: 'random')" in result.stdout
  if command != "keras_autorec.evaluate":
    assert "\nmodel flags:\n" in result.stdout and "--hidden_units:" in result.stdout
  # The playlists command is train with implicit feedback on synthetic Melon by default.
  implicit = command == "keras_autorec.playlists"
  assert ("(default: 'synthetic_melon')" in result.stdout) == implicit
  assert ("(default: 'implicit')" in result.stdout) == implicit
  # TensorFlow's C++ startup lines (banner, CUDA probing) stay off by default.
  assert result.stderr == ""


def test_commands_of_ratings_refuse_playlists():
  with flagsaver.flagsaver():
    flags.FLAGS(["evaluate", "--dataset=melon"])
    with pytest.raises(app.UsageError, match="--dataset=melon holds playlists, not ratings"):
      cli_flags.data_config()
