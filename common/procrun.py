"""``alphapulse run-procs``: what ``make run`` starts — the Procfile's processes, one block
saying where to look, their output prefixed by name, and one summary line when they stop.

It replaces ``honcho start`` for three reasons: every process gets its fixed metrics port
(common/procfile.py), the where-to-look block comes first, and Ctrl-C ends with one line
and exit code 0 instead of a ``stopped (rc=-15)`` per process and make's ``Error 130``.

Signals: each process runs in its own process group, so the terminal's Ctrl-C reaches only
this runner, which forwards ONE SIGINT (SIGTERM on SIGTERM) to every group — a worker stops
gracefully on the first signal and cancels its in-flight work on a second one, so it must
not get the terminal's copy *and* a forwarded one. When stdin is a terminal this runner
also makes its own process group the terminal's foreground group for the run (restored at
the end), so Ctrl-C does not reach ``make`` either (make would print ``*** Interrupt`` and
die of SIGINT whatever its recipe returns). A second Ctrl-C is forwarded as well (the
workers then stop at once); processes still running ``KILL_AFTER_S`` after the first stop
are killed.

A process that exits on its own stops the others, as honcho does; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from redis.exceptions import RedisError, ResponseError

from common.cli import add_command
from common.errors import ConfigError
from common.procfile import BASE_PORT, Process, read_procfile, where_to_look
from common.redis import redis_from_settings
from common.settings import CommonSettings

__all__ = ["register", "run_processes", "summary_line"]

KILL_AFTER_S = 30.0


def summary_line(
    *,
    elapsed_s: float,
    codes: Mapping[str, int | None],
    requested: bool,
    counts: Mapping[str, int] | None,
    namespace: str,
) -> str:
    """The one line printed when everything has stopped."""
    minutes, seconds = divmod(int(elapsed_s), 60)
    how = "stopped" if requested else "ended (a process exited on its own)"
    bad = {n: c for n, c in codes.items() if c != 0}
    if bad:
        state = "; not clean: " + ", ".join(f"{n} exit {c}" for n, c in sorted(bad.items()))
    else:
        state = f"; {len(codes)} processes stopped cleanly"
    made = ""
    if counts is not None:
        made = "; " + ", ".join(f"{n} {what}" for what, n in counts.items())
        made += f" in namespace {namespace!r}"
    return f"alphapulse run: {how} after {minutes}m{seconds:02d}s{state}{made}"


async def _pump(name: str, width: int, stream: asyncio.StreamReader, out: TextIO) -> None:
    """Copy one process's output to ``out``, each line prefixed by its name."""
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip("\n")
        out.write(f"{name:<{width}} | {text}\n")
        out.flush()


async def run_processes(
    processes: Sequence[Process],
    env: Mapping[str, str],
    out: TextIO,
    *,
    on_signal: Callable[[Callable[[signal.Signals], None]], None],
) -> tuple[dict[str, int | None], bool]:
    """Start ``processes``, wait for a stop (signal or one exits), stop the rest, reap.

    Returns each process's exit code (negative: killed by that signal) and whether the stop
    was requested by a signal. ``on_signal`` installs the handler for SIGINT/SIGTERM.
    """
    width = max(len(p.name) for p in processes)
    children: dict[str, asyncio.subprocess.Process] = {}
    stop = asyncio.Event()
    requested: list[signal.Signals] = []

    def forward(sig: signal.Signals) -> None:
        requested.append(sig)
        stop.set()
        for child in children.values():
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, sig)

    on_signal(forward)  # before the first start: a Ctrl-C meanwhile reaches those started
    for p in processes:
        if stop.is_set():  # and starts no more
            break
        child_env = {**env, "METRICS_PORT": str(p.metrics_port), "PORT": str(p.metrics_port)}
        children[p.name] = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            p.command,
            env=child_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: see the module docstring
            limit=1 << 20,  # long log lines (tracebacks) are fine
        )
    pumps = [
        asyncio.create_task(_pump(n, width, c.stdout, out))
        for n, c in children.items()
        if c.stdout is not None  # always: stdout=PIPE
    ]
    waits = {asyncio.create_task(c.wait()): n for n, c in children.items()}
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
    if not requested:  # one exited on its own: stop the others
        for child in children.values():
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
    _, pending = await asyncio.wait(waits, timeout=KILL_AFTER_S)
    for task in pending:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(children[waits[task]].pid, signal.SIGKILL)
    await asyncio.gather(*waits, *pumps)
    stopper.cancel()
    return {n: c.returncode for n, c in children.items()}, bool(requested)


@contextlib.contextmanager
def terminal_foreground() -> Iterator[None]:
    """Make this process's own group the terminal's foreground group while running (see the
    module docstring); nothing happens when stdin is not a terminal we are in front of."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    try:
        before = os.tcgetpgrp(fd) if fd >= 0 and os.isatty(fd) else -1
    except OSError:
        before = -1
    if before < 0 or before != os.getpgrp():
        yield
        return
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # tcsetpgrp from a background group
    try:
        with contextlib.suppress(OSError):  # e.g. a session leader: Ctrl-C reaches make too
            os.setpgid(0, 0)
            os.tcsetpgrp(fd, os.getpgrp())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, before)
        signal.signal(signal.SIGTTOU, old)


async def stream_counts(env: Mapping[str, str]) -> dict[str, int] | None:
    """Entries ever added to the namespace's signals and bars streams (trimming does not
    lower it; a ``bars`` entry is one detector write of many bars); None when Redis cannot
    tell."""
    try:
        settings = CommonSettings.from_env(env)
        keys = settings.keys()
        redis = redis_from_settings(settings)
    except ConfigError:  # the summary goes without counts
        return None
    counts: dict[str, int] = {}
    try:
        for what, key in (("signals", keys.signals), ("bar writes", keys.bars)):
            try:
                info: Any = await redis.xinfo_stream(key)
                counts[what] = int(info.get("entries-added", info["length"]))
            except ResponseError:  # no such stream: nothing was written
                counts[what] = 0
            except (RedisError, OSError):
                return None
    finally:
        await redis.aclose()
    return counts


def _run(args: argparse.Namespace) -> int:
    try:
        everything = read_procfile(Path(args.procfile).read_text(), args.port_base)
    except OSError as e:
        print(f"alphapulse run-procs: cannot read {args.procfile}: {e}", file=sys.stderr)
        return 2
    wanted = args.processes or [p.name for p in everything]
    unknown = sorted(set(wanted) - {p.name for p in everything})
    if unknown:
        print(f"alphapulse run-procs: not in {args.procfile}: {' '.join(unknown)}", file=sys.stderr)
        return 2
    processes = [p for p in everything if p.name in wanted]
    env = dict(os.environ)
    namespace = env.get("NAMESPACE", "")
    out = sys.stdout
    for line in where_to_look(processes, summary=args.summary, namespace=namespace, env=env):
        print(line, file=out)
    out.flush()
    started = time.monotonic()

    async def go() -> tuple[dict[str, int | None], bool, dict[str, int] | None]:
        loop = asyncio.get_running_loop()

        def install(handler: Callable[[signal.Signals], None]) -> None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, handler, sig)

        codes, requested = await run_processes(processes, env, out, on_signal=install)
        return codes, requested, await stream_counts(env)

    with terminal_foreground():
        codes, requested, counts = asyncio.run(go())
    print(
        summary_line(
            elapsed_s=time.monotonic() - started,
            codes=codes,
            requested=requested,
            counts=counts,
            namespace=namespace,
        ),
        file=out,
        flush=True,
    )
    return 0 if requested and all(c == 0 for c in codes.values()) else 1


def register(subparsers: Any) -> None:
    """Entry point of ``alphapulse run-procs`` (used by ``make run``)."""
    p = add_command(
        subparsers,
        "run-procs",
        help="start Procfile processes with fixed metrics ports; Ctrl-C: one summary line",
        doc=__doc__,
    )
    p.add_argument("processes", nargs="*", help="Procfile names to start (default: all)")
    p.add_argument("-f", "--procfile", default="Procfile")
    p.add_argument(
        "--port-base", type=int, default=BASE_PORT, help=f"metrics ports (default {BASE_PORT})"
    )
    p.add_argument("--summary", default="the Procfile", help="what runs (the block's 1st line)")
    p.set_defaults(func=_run)
