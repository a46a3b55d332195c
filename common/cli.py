"""``alphapulse`` — the command line.

Subcommands are contributed by the stages through the ``alphapulse.commands`` entry-point
group (see ``pyproject.toml``): each entry names a function ``register(subparsers)`` that adds
its parser and sets ``func`` (``args -> int`` exit code). So common/ imports no stage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

COMMAND_GROUP = "alphapulse.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alphapulse",
        description="Real-time market pattern pipeline: trades -> bars -> patterns -> signals.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        register: Callable[[Any], None] = ep.load()
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
