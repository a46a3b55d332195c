"""``alphapulse tail signals``: print signals from the stream as they arrive.

A table by default — bar open time, exchange, symbol, timeframe, direction, score, the bar's
close (``-`` for signals from before ``close`` was added to contract v1), and the *supporting*
patterns (those counted toward the signal's direction, not every pattern on the bar), each
with its sign (``+`` bullish, ``-`` bearish, as TA-Lib gives them) and its contribution to the
score — or the contract's JSON one line per signal with ``--json`` (the exact ``d`` field of
the stream entry, so it can be piped to ``jq``). Reads with XREAD (no consumer group: tailing
never takes signals away from anyone). ``--from beginning`` or an entry id replays what is
still in the stream first; ``--count N`` stops after N signals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from signal import SIGINT, SIGTERM
from typing import Any, TextIO

import orjson

from common.cli import add_command
from common.redis import redis_for_command
from common.settings import CommonSettings, exit_on_config_error
from signals.contract import Signal, decode_entry

CLOSE_TIMEOUT_S = 2.0

COLUMNS = (
    ("open_time", 24),
    ("exchange", 10),
    ("symbol", 12),
    ("tf", 4),
    ("dir", 5),
    ("score", 6),
    ("close", 14),
    ("supporting (contribution)", 40),
)


def table_header() -> str:
    return " ".join(name.ljust(width) for name, width in COLUMNS).rstrip()


def signed_patterns(signal: Signal) -> str:
    """``+HAMMER(0.70),-SPINNINGTOP(0.23)``: the supporting patterns, signed, without the
    ``CDL`` prefix, each with its contribution to the score when the signal carries it."""
    contributions = signal.contributions or {}
    return ",".join(
        f"{'-' if signal.patterns.get(p, 0) < 0 else '+'}{p.removeprefix('CDL')}"
        + (f"({contributions[p]:.2f})" if p in contributions else "")
        for p in signal.supporting
    )


def close_of(document: bytes) -> float | None:
    """The bar's close in a signal's JSON, if it has one (older signals do not)."""
    value = orjson.loads(document).get("close")
    return float(value) if isinstance(value, int | float) else None


def table_row(signal: Signal, close: float | None = None) -> str:
    """One fixed-width line per signal."""
    if close is None:
        close = signal.close
    cells = (
        signal.open_time,
        signal.exchange,
        signal.symbol,
        signal.timeframe,
        signal.direction,
        f"{signal.score:.3f}",
        "-" if close is None else f"{close:.8g}",
        signed_patterns(signal),
    )
    return " ".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip()


async def tail(
    settings: CommonSettings, *, start: str, count: int, as_json: bool, out: TextIO
) -> int:
    redis = await redis_for_command(settings)
    stream = settings.keys().signals
    last = {"now": "$", "beginning": "0-0"}.get(start, start)
    shown = 0
    # SIGINT/SIGTERM end the tail at once: the blocked XREAD is abandoned, not awaited. (With
    # asyncio.run's own SIGINT handling, a tail stopped by `make run` once outlived the
    # runner's 30 s grace and was killed; the cause was not found.)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (SIGINT, SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if last == "$":  # resolve "now" once, so no entry between two reads is skipped
            newest: Any = await redis.xrevrange(stream, count=1)
            last = newest[0][0].decode() if newest else "0-0"
        if not as_json:
            print(table_header(), file=out, flush=True)
        while (not count or shown < count) and not stop.is_set():
            read = asyncio.ensure_future(
                redis.xread({stream: last}, count=100, block=settings.block_ms)
            )
            halt = asyncio.ensure_future(stop.wait())
            await asyncio.wait({read, halt}, return_when=asyncio.FIRST_COMPLETED)
            halt.cancel()
            if not read.done():
                read.cancel()
                break
            reply: Any = read.result()
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    if as_json:
                        print(fields[b"d"].decode(), file=out)
                    else:
                        row = table_row(decode_entry(fields), close_of(fields[b"d"]))
                        print(row, file=out)
                    shown += 1
                    if count and shown >= count:
                        break
                out.flush()
                if count and shown >= count:
                    break
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(redis.aclose(), CLOSE_TIMEOUT_S)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.what != "signals":
        print(f"alphapulse tail: cannot tail {args.what!r} (only: signals)", file=sys.stderr)
        return 2
    with exit_on_config_error():
        settings = CommonSettings.from_env()
    coro = tail(settings, start=args.start, count=args.count, as_json=args.json, out=sys.stdout)
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:  # Ctrl-C, even before the loop ran it (no "never awaited")
        coro.close()
        return 0


def register(subparsers: Any) -> None:
    """Entry point of ``alphapulse tail`` (group ``alphapulse.commands``)."""
    p = add_command(
        subparsers,
        "tail",
        help="print live signals (REDIS_URL, NAMESPACE from the environment)",
        doc=__doc__,
    )
    p.add_argument("what", choices=["signals"], help="what to tail")
    p.add_argument("--json", action="store_true", help="one JSON signal per line")
    p.add_argument(
        "--from",
        dest="start",
        default="now",
        help="now (default), beginning, or a stream entry id to start after",
    )
    p.add_argument("--count", type=int, default=0, help="stop after N signals (0: never)")
    p.set_defaults(func=run)
