"""``alphapulse simulate``: the local exchange simulator's command line.

Examples::

    # Binance spot from the recording, real time, on ws://127.0.0.1:8765/binance/stream
    alphapulse simulate --feed binance=../shared/data/binance-spot-btcusdt-20240808.rec.gz

    # two exchanges on one port, as fast as possible, with faults, stop when done
    alphapulse simulate --speed 0 --finish --report sim.json \\
        --feed binance=btc.rec.gz --feed kraken=eth-trades.csv \\
        --drop-after-frames 2000 --malformed-every 500 --duplicate-every 300 --skip-every 700

    # synthetic random walk: 20 symbols, 5000 trades/s in total, looping
    alphapulse simulate --feed okx=synthetic --synthetic 20 --rate 5000

A feed's source is a recording (parsed with ``--recording-exchange``, default binance), a
normalized trades CSV, or ``synthetic``; trades of another exchange are re-spelled for the
feed's exchange (``ingest.offline.ticks.as_exchange``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
from typing import Any, Final

import uvloop

from common.lifecycle import tune_gc
from common.logging import configure_logging
from common.settings import DEFAULT_GC_GEN0, CommonSettings
from ingest.offline.ticks import as_exchange, read_ticks, synthetic_ticks
from ingest.simulator.market import Faults, Feed
from ingest.simulator.server import Simulator
from ingest.simulator.venues import SIMULATED
from ingest.venues import EXCHANGES

#: The numeric fault options: (flag, ``Faults`` field, type, metavar, help); 0 = off.
FAULT_OPTIONS: Final[tuple[tuple[str, str, type[float] | type[int], str, str], ...]] = (
    ("--drop-every", "drop_every_s", float, "SECONDS",
     "cut each connection (TCP abort) this long after it opened"),
    ("--drop-after-frames", "drop_after_frames", int, "N",
     "cut each connection after N trade frames (must exceed --overlap)"),
    ("--malformed-every", "malformed_every", int, "N",
     "send a broken frame after every N-th trade frame"),
    ("--duplicate-every", "duplicate_every", int, "N", "send every N-th trade frame twice"),
    ("--skip-every", "skip_every", int, "N",
     "gap injection: drop every N-th trade of each symbol (reported)"),
    ("--stall-every", "stall_every_s", float, "SECONDS",
     "hang each connection (no frames, no pongs) this long after it opened"),
    ("--stall-for", "stall_for_s", float, "SECONDS", "... then cut it this much later"),
)  # fmt: skip


def register(sub: Any) -> None:
    """Add ``simulate`` to the ``alphapulse`` subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="local exchange simulator (WebSocket server speaking the exchanges' protocols)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--feed",
        action="append",
        required=True,
        metavar="EXCHANGE=SOURCE",
        help=f"serve EXCHANGE ({', '.join(SIMULATED)}) from a file or 'synthetic'",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 = any free port")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="replay speed: 1 = real time by trade timestamps, 0 = as fast as possible",
    )
    p.add_argument("--loop", action="store_true", help="repeat the file (ids keep increasing)")
    p.add_argument("--limit", type=int, default=0, help="only the first N trades of each file")
    p.add_argument("--recording-exchange", default="binance", choices=EXCHANGES)
    p.add_argument("--synthetic", type=int, default=10, metavar="N", help="synthetic symbols")
    p.add_argument("--rate", type=float, default=1000.0, help="synthetic trades/s in total")
    p.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds of synthetic trades generated (then looped)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--overlap",
        type=int,
        default=100,
        help="trades re-sent to a new subscription (reconnect overlap)",
    )
    for flag, name, kind, metavar, text in FAULT_OPTIONS:
        p.add_argument(flag, dest=name, type=kind, default=kind(0), metavar=metavar, help=text)
    p.add_argument(
        "--rest-down",
        action="store_true",
        help="answer every REST trade-history request with HTTP 503 (backfill unavailable)",
    )
    p.add_argument(
        "--finish", action="store_true", help="exit once every feed was delivered to the end"
    )
    p.add_argument(
        "--linger",
        type=float,
        default=1.0,
        help="with --finish: seconds to keep serving after the end",
    )
    p.add_argument("--report", metavar="FILE", help="write stats and skipped trade ids (JSON)")
    p.set_defaults(func=run)  # fmt: skip


def build_feeds(args: argparse.Namespace) -> dict[str, Feed]:
    feeds: dict[str, Feed] = {}
    for spec in args.feed:
        exchange, sep, source = spec.partition("=")
        if not sep or exchange not in SIMULATED:
            raise SystemExit(f"--feed {spec!r}: expected EXCHANGE=SOURCE, EXCHANGE in {SIMULATED}")
        if source == "synthetic":
            count = max(1, int(args.rate * args.duration))
            ticks = synthetic_ticks(
                exchange, args.synthetic, args.rate, seed=args.seed, count=count
            )
            loop = args.loop or not args.finish
        else:
            ticks = as_exchange(read_ticks(source, args.recording_exchange), exchange)
            if args.limit:
                ticks = itertools.islice(ticks, args.limit)
            loop = args.loop
        feeds[exchange] = Feed.build(exchange, ticks, loop=loop, skip_every=args.skip_every)
    return feeds


def run(args: argparse.Namespace) -> int:
    configure_logging(CommonSettings(log_format="console"))
    feeds = build_feeds(args)
    tune_gc(DEFAULT_GC_GEN0)  # after loading: the replayed trades are frozen out of GC
    faults = Faults(
        **{name: getattr(args, name) for _, name, *_ in FAULT_OPTIONS}, rest_down=args.rest_down
    )
    sim = Simulator(feeds, host=args.host, port=args.port, speed=args.speed,
                    overlap=args.overlap, faults=faults)  # fmt: skip
    uvloop.run(_serve(sim, args))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(report(sim), f, indent=2)
    return 0


async def _serve(sim: Simulator, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        for name in sim.feeds:
            print(f"{name}: {sim.url(name)}", file=sys.stderr, flush=True)
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if args.finish:
            waiters.append(asyncio.create_task(sim.wait_finished()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if args.finish and not stop.is_set():
            await asyncio.sleep(args.linger)
        for w in waiters:
            w.cancel()


def report(sim: Simulator) -> dict[str, Any]:
    """What the simulator sent and what it left out (skipped trade ids, per exchange)."""
    return {
        "stats": {k: getattr(sim.stats, k) for k in sim.stats.__dataclass_fields__},
        "feeds": {
            name: {
                "trades": feed.total(),
                "skipped": [{"symbol": s, "id": i} for s, i in feed.skipped],
                "delivered": {s: st.head for s, st in feed.symbols.items()},
            }
            for name, feed in sim.feeds.items()
        },
    }
