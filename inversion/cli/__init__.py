"""The command-line tools, one module per command: ``python -m inversion <command> [args]`` or, installed, the
``inversion`` console script (``inversion <command> --help`` for a command's options).

Each command module holds only argument parsing and calls into the library (:func:`inversion.invert.invert_images`,
:mod:`inversion.editing`, :func:`inversion.export.export_official`, ...); commands that read YAML configuration do it
through :func:`inversion.config.compose` with ``key=value`` overrides. A command's module is imported only when it
runs.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "Command", "deprecated_alias", "main", "run"]


@dataclass(frozen=True)
class Command:
    module: str  #: the module with ``main(argv, prog=...) -> int``
    summary: str  #: one line for ``python -m inversion --help``


COMMANDS: dict[str, Command] = {
    "invert": Command("inversion.cli.invert", "photos -> latents + reconstructions (optionally --align, --refine)"),
    "edit": Command("inversion.cli.edit", "edit inverted latents: interpolate, crossover, mix, expression, direction"),
    "sample": Command("inversion.cli.sample", "a grid of images from a configured generator (key=value overrides)"),
    "export": Command("inversion.cli.export", "export a trained encoder as an official pSp / e4e / ReStyle checkpoint"),
    "prepare": Command("inversion.cli.prepare", "write a resized, decode-free copy of an image split for training"),
}


def _prog() -> str:
    """``inversion`` for the console script, ``python -m inversion`` otherwise."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "inversion" if name in ("inversion", "inversion.exe") else "python -m inversion"


def usage(prog: str | None = None) -> str:
    prog = prog or _prog()
    width = max(map(len, COMMANDS))
    lines = [f"usage: {prog} <command> [args ...]", "",
             "StyleGAN inversion tools (pSp / e4e / ReStyle encoders, refinement, editing).", "", "commands:"]
    lines += [f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += ["", f"'{prog} <command> --help' shows a command's options. Training and evaluation: "
              "python train.py / python evaluate.py (Hydra)."]
    return "\n".join(lines)


def run(command: str, argv: Sequence[str] = (), *, prog: str | None = None) -> int:
    """Run one command with its arguments; its exit status (2 for an unknown command)."""
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"{prog or _prog()}: error: unknown command {command!r} (choose from {', '.join(COMMANDS)}){hint}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command].module)
    return int(module.main(list(argv), prog=prog or f"{_prog()} {command}") or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """The dispatcher: ``<command> [args ...]``, ``--help`` or ``--version``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help", "help") and len(args) == 1:
        print(usage())
        return 0
    if args[0] == "help":  # help <command> == <command> --help
        return run(args[1], ["--help"])
    if args[0] == "--version":
        from inversion import __version__

        print(f"inversion {__version__}")
        return 0
    return run(args[0], args[1:])


def deprecated_alias(command: str, old_module: str) -> int:
    """``python -m <old_module> ...``: the pre-CLI spelling, kept working (with a DeprecationWarning)."""
    warnings.warn(f"'python -m {old_module}' is deprecated; use 'python -m inversion {command}' "
                  f"(or the 'inversion {command}' console script)", DeprecationWarning, stacklevel=2)
    return run(command, sys.argv[1:], prog=f"python -m {old_module}")
