"""The Procfile that ``make run`` starts: its processes, their fixed metrics ports, and the
"where to look" block printed before the workers' output.

Ports: a process gets ``METRICS_PORT=<n>`` when its Procfile line sets one, else
``BASE_PORT + PORT_STEP * i`` where ``i`` is its position in the *whole* Procfile — not among
the processes started. So a port depends only on the file, never on ``FEED`` (``FEED=live``
leaves the simulator out; honcho's ``PORT`` arithmetic then moved ingest from 5100 to 5000),
and a process added to the Procfile later gets its own port and its own line in the block
without anything else to edit.

The block is a pure function of the processes and a few environment values, so it is tested
without starting anything.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BASE_PORT",
    "PORT_STEP",
    "Process",
    "console_workers",
    "procfile_names",
    "read_procfile",
    "where_to_look",
]

BASE_PORT = 5000
PORT_STEP = 100
_EXPLICIT_PORT = re.compile(r"(?:^|\s)METRICS_PORT=(\d+)(?:\s|$)")
#: Procfile processes that serve no /metrics (the console's overview leaves them out).
NO_METRICS = frozenset({"simulator", "tail"})

#: Queries that work on the sink's tables (sink/migrations) whatever the namespace.
#: (More in docs/running.md; the block keeps to two so that it stays short.)
SQL_QUERIES = (
    "SELECT timeframe, count(*), max(open_time) FROM bars GROUP BY 1 ORDER BY 1",
    "SELECT open_time, symbol, timeframe, direction, round(score::numeric, 3) AS score, "
    "patterns FROM signals ORDER BY open_time DESC LIMIT 5",
)


@dataclass(frozen=True, slots=True)
class Process:
    """One Procfile line: its name, shell command and fixed metrics port."""

    name: str
    command: str
    metrics_port: int


def _entries(text: str) -> list[tuple[str, str]]:
    entries = []
    for line in text.splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            entries.append((name.strip(), command.strip()))
    return entries


def procfile_names(text: str) -> tuple[str, ...]:
    """The process names of a Procfile (``name: command`` lines), in file order."""
    return tuple(name for name, _ in _entries(text))


def read_procfile(text: str, base_port: int = BASE_PORT) -> tuple[Process, ...]:
    """Every process of the Procfile with its metrics port (see the module docstring);
    ``base_port`` moves the whole table (``make run METRICS_BASE=...``, e.g. for a second run
    on the same machine)."""
    processes = []
    for i, (name, command) in enumerate(_entries(text)):
        explicit = _EXPLICIT_PORT.search(command)
        port = int(explicit.group(1)) if explicit else base_port + PORT_STEP * i
        processes.append(Process(name, command, port))
    return tuple(processes)


def where_to_look(
    processes: Sequence[Process],
    *,
    summary: str,
    namespace: str,
    env: Mapping[str, str],
) -> list[str]:
    """The lines ``make run`` prints before starting ``processes`` (those it starts).

    ``env`` supplies ``SIGNALS_WS_PORT``/``SIGNALS_WS_TOKENS`` (signals-ws), ``CONSOLE_PORT``/
    ``CONSOLE_PASSWORD`` (a ``web`` console process) and ``DATABASE_URL``. A token is shown
    only when it is the development default ``dev-token``; one set by the user is not echoed.
    """
    names = {p.name for p in processes}
    lines = [f"alphapulse run: {summary}; Ctrl-C stops everything"]
    if "web" in names:
        port = env.get("CONSOLE_PORT", "8790")
        password = env.get("CONSOLE_PASSWORD")
        login = f"  login dev / {password}" if password else ""
        lines.append(f"  console  http://127.0.0.1:{port}/{login}")
    if "signals-ws" in names:
        port = env.get("SIGNALS_WS_PORT", "8780")
        tokens = env.get("SIGNALS_WS_TOKENS", "dev-token")
        token = "dev-token" if tokens == "dev-token" else "one of SIGNALS_WS_TOKENS"
        lines.append(f"  signals  ws://127.0.0.1:{port}/?token={token}  (WebSocket, JSON)")
    ports = "  ".join(f"{p.name}:{p.metrics_port}" for p in processes)
    lines.append(f"  metrics  http://127.0.0.1:PORT/metrics and /readyz  {ports}")
    lines.append(
        f"  CLI      make status | make tail  (= NAMESPACE={shlex.quote(namespace)} "
        ".venv/bin/alphapulse status | tail signals)"
    )
    db = shlex.quote(env.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    queries = " ".join(f"-c {shlex.quote(q)}" for q in SQL_QUERIES)
    lines.append(f"  SQL      psql {db} {queries}")
    return lines


def console_workers(processes: Sequence[Process], host: str = "127.0.0.1") -> str:
    """``CONSOLE_WORKERS`` for these processes: ``name=http://host:port,...`` of every one
    that serves /metrics, in Procfile order (what the console's overview page polls)."""
    return ",".join(
        f"{p.name}=http://{host}:{p.metrics_port}" for p in processes if p.name not in NO_METRICS
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m common.procfile console-workers``: print ``CONSOLE_WORKERS`` (``make run``)."""
    parser = argparse.ArgumentParser(prog="python -m common.procfile", description=main.__doc__)
    parser.add_argument("what", choices=["console-workers"])
    parser.add_argument("-f", "--procfile", default="Procfile")
    parser.add_argument("--port-base", type=int, default=BASE_PORT)
    args = parser.parse_args(argv)
    processes = read_procfile(Path(args.procfile).read_text(), args.port_base)
    print(console_workers(processes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
