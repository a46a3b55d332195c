"""``alphapulse console-user NAME [--role viewer|admin]``: a users-file line for the console.

Reads the password from stdin (one line; a prompt on a terminal) and prints
``NAME ROLE <argon2id hash>``, ready to append to ``CONSOLE_USERS_FILE``. The plain password
is never written anywhere. ``make run`` uses it to create its ``dev`` login.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from signals.console.auth import ROLES, hash_password


def _run(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("alphapulse console-user: the password needs at least 8 characters", file=sys.stderr)
        return 2
    print(f"{args.name} {args.role} {hash_password(password)}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "console-user", help="print a console users-file line (password from stdin, hashed)"
    )
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, default="viewer")
    p.set_defaults(func=_run)
