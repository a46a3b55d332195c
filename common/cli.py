"""``alphapulse`` — the command line.

Subcommands are contributed by the stages through the ``alphapulse.commands`` entry-point
group (see ``pyproject.toml``): each entry names a function ``register(subparsers)`` that adds
its parser and sets ``func`` (``args -> int`` exit code). So common/ imports no stage.

Whatever a command's servers answer badly — a wrong password, a missing ACL permission, a
refused connection, a TLS handshake that never ends — is printed as one line naming the
command and the error, secrets masked, exit code 1 (an invalid setting: exit code 2); a
traceback is kept for bugs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from redis.exceptions import RedisError

from common.errors import ConfigError, ServerError
from common.secrets import scrub
from common.settings import config_error_line

COMMAND_GROUP = "alphapulse.commands"
EXIT_FAILED = 1
EXIT_CONFIG = 2
# What a server or the network does to a command (OSError: refused, unreachable, TLS, DNS).
SERVER_ERRORS = (RedisError, OSError, ServerError)


def server_error_line(command: str, error: BaseException) -> str:
    """The one line a command prints when a server it needs fails it (secrets masked)."""
    detail = str(error) or "no detail"
    kind = "" if isinstance(error, ServerError) else f"{type(error).__name__}: "
    return scrub(f"alphapulse {command}: {kind}{detail}")


def add_command(subparsers: Any, name: str, *, help: str, doc: str | None) -> Any:
    """Add subcommand ``name`` to ``alphapulse``: ``help`` in the command list, the module's
    docstring ``doc`` (layout kept) as its ``--help`` description; returns its parser."""
    return subparsers.add_parser(
        name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


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
    try:
        return func(args)
    except ConfigError as err:
        print(config_error_line(err), file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except SERVER_ERRORS as err:
        print(server_error_line(args.command, err), file=sys.stderr, flush=True)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
