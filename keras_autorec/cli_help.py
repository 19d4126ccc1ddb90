"""The flags' help: groups of flags as each command's `--help` lists them.

absl's `--help` lists only flags defined in the main module, so every `define_*` function of
`cli_flags` returns its `HelpGroup` and each command passes its groups to `flags_parser`, whose
`--help` lists them all, group by group, with defaults; `--helpfull` is absl's.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import textwrap
from collections.abc import Callable, Sequence

from absl import app, flags

FLAGS = flags.FLAGS
HELP_ARGUMENTS = ("--help", "-help", "--helpshort", "-helpshort", "-?", "-h")
HELP_WIDTH = 98


@dataclasses.dataclass(frozen=True)
class HelpGroup:
  """A titled group of flag names, as `--help` lists them."""

  title: str
  names: tuple[str, ...]
  note: str = ""  # Printed under the title, before the flags.


_defining: list[list[str]] = []  # Names defined by the define_* calls in progress.


def help_group(title: str, note: str = ""):
  """Makes a define_* function return the HelpGroup of the flags it defines."""
  def decorate(define: Callable[..., None]) -> Callable[..., HelpGroup]:
    @functools.wraps(define)
    def define_group(*args, **kwargs) -> HelpGroup:
      _defining.append([])
      try:
        define(*args, **kwargs)
      finally:
        names = _defining.pop()
      return HelpGroup(title, tuple(names), note)
    return define_group
  return decorate


def define(kind: str, name: str, default, help_text: str, enum_values=None) -> None:
  """Defines flag `name` once (later calls only add it to the group being defined)."""
  if _defining:
    _defining[-1].append(name)
  if name in FLAGS:
    return
  if kind == "enum":
    flags.DEFINE_enum(name, default, enum_values, help_text)
  else:
    getattr(flags, f"DEFINE_{kind}")(name, default, help_text)


def _flag_help(name: str) -> str:
  """One flag as absl's --help renders it: name, help, then the default."""
  flag = FLAGS[name]
  usage = f"--[no]{name}" if flag.boolean else f"--{name}"
  default = "none" if flag.default_as_str is None else flag.default_as_str
  # An enum flag's help already starts with <value|...>, as absl's own --help shows it.
  lines = textwrap.wrap(f"{usage}: {flag.help}", HELP_WIDTH, initial_indent="  ",
                        subsequent_indent="    ")
  return "\n".join([*lines, f"    (default: {default})"])


def grouped_help(groups: Sequence[HelpGroup]) -> str:
  """The flags of `groups`, under each title (groups of one title merged, in first order)."""
  names_by_title: dict[str, list[str]] = {}
  for group in groups:
    names_by_title.setdefault(group.title, []).extend(group.names)
  notes_by_title: dict[str, list[str]] = {}
  for group in groups:
    if group.note:
      notes_by_title.setdefault(group.title, []).extend(
          textwrap.wrap(group.note, HELP_WIDTH, initial_indent="  ", subsequent_indent="  "))
  return "\n\n".join(f"{title} flags:\n" + "\n".join([*notes_by_title.get(title, []),
                                                        *map(_flag_help, names)])
                     for title, names in names_by_title.items())


def flags_parser(groups: Sequence[HelpGroup], doc: str) -> Callable[[list[str]], list[str]]:
  """An `app.run` flags parser whose --help prints `doc` and the grouped flags, then exits."""
  def parse(argv: list[str]) -> list[str]:
    arguments = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    if any(argument in HELP_ARGUMENTS for argument in arguments):
      print(f"{doc.strip()}\n\n{grouped_help(groups)}\n\nAll flags, absl's and "
            "TensorFlow's included: --helpfull")
      sys.exit(0)
    return app.parse_flags_with_usage(argv)
  return parse
