"""``alphapulse run-env``: which Procfile processes ``make run`` starts, with which feed.

``FEED`` picks where ingest's trades come from:

* ``sim`` (the default; this machine has no internet): the Procfile's ``simulator`` replays
  ``TICKS`` as exchange ``EXCHANGE`` on ``SIM_PORT``; ingest subscribes to the file's
  symbols (``EXCHANGES``) and is pointed at the simulator by ``INGEST_URL_<EXCHANGE>`` (and
  its gap backfill at the simulator's REST history by ``INGEST_REST_URL_<EXCHANGE>``).
* ``live``: no simulator; every ``INGEST_URL_*`` and ``INGEST_REST_URL_*`` is unset, so each
  adapter dials its real
  public endpoint (``default_url``); ingest subscribes to ``EXCHANGES`` when given, else to
  ``LIVE_EXCHANGES`` (BTC and ETH on Binance, Coinbase, Kraken, Bybit and OKX).

The command prints shell lines for the Makefile to ``eval``: ``export``/``unset`` of those
variables, then ``RUN_PROCESSES`` (the process names for ``alphapulse run-procs``) and
``RUN_SUMMARY`` (one line saying what runs). A bad setting prints one line naming the
variable and exits 2, before anything is started: ``FEED``, ``EXCHANGES`` (live), ``TICKS``
(missing, unreadable, or no trade parsed as ``EXCHANGE`` — then the exchange whose adapter
does parse it is suggested), ``EXCHANGE``, ``SPEED``, ``SIM_PORT`` (sim) and
``RUN_TIMEFRAMES`` (the detectors' ``TIMEFRAMES`` rule, checked here so that no detector dies
after everything started).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import BadInput, ConfigError
from common.procfile import procfile_names
from common.settings import config_error_line, env_float, env_int
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import as_exchange, read_ticks
from ingest.settings import parse_exchanges, rest_url_variable, url_variable
from ingest.simulator.venues import SIMULATED, rest_url, stream_url
from ingest.venues import EXCHANGES, get_adapter

FEEDS = ("sim", "live")
SIMULATOR = "simulator"  # the Procfile process FEED=live leaves out

#: FEED=live's default subscriptions (normalized; printed in each exchange's native form).
#: Coinbase and Kraken quote in USD, the others in USDT: each venue's most traded pairs.
LIVE_PAIRS: Mapping[str, tuple[str, ...]] = {
    "binance": ("BTC-USDT", "ETH-USDT"),
    "coinbase": ("BTC-USD", "ETH-USD"),
    "kraken": ("BTC-USD", "ETH-USD"),
    "bybit": ("BTC-USDT", "ETH-USDT"),
    "okx": ("BTC-USDT", "ETH-USDT"),
}


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What ``make run`` exports, unsets and starts."""

    feed: str
    exports: tuple[tuple[str, str], ...]  # (variable, value)
    unset: tuple[str, ...]  # variables removed from the environment
    processes: tuple[str, ...]  # Procfile names, in file order
    summary: str


def format_exchanges(subscriptions: Sequence[tuple[str, Sequence[str]]]) -> str:
    """((exchange, native symbols), ...) → ``exchange:SYM,SYM;exchange:SYM`` (``EXCHANGES``)."""
    return ";".join(f"{name}:{','.join(syms)}" for name, syms in subscriptions)


def live_exchanges() -> str:
    """``LIVE_PAIRS`` as an ``EXCHANGES`` value, symbols in each exchange's native form."""
    return format_exchanges(
        [
            (name, [get_adapter(name).to_native(s) for s in pairs])
            for name, pairs in LIVE_PAIRS.items()
        ]
    )


def plan(
    feed: str,
    *,
    procfile: str,
    exchanges: str = "",
    ticks: str = "",
    exchange: str = "binance",
    sim_port: int = 8765,
    speed: float = 10.0,
    timeframes: str | None = None,
) -> RunPlan:
    """The run of ``FEED=feed``; ``ConfigError`` naming the variable on a bad setting.

    ``procfile`` is the Procfile's text; ``exchanges`` is used by ``live`` only (the
    simulator serves the symbols of ``ticks``); ``timeframes`` (``RUN_TIMEFRAMES``) is
    checked when given.
    """
    names = procfile_names(procfile)
    if timeframes is not None:
        parse_timeframes(timeframes, "RUN_TIMEFRAMES")
    if feed == "live":
        subscriptions = parse_exchanges(exchanges or live_exchanges())
        value = format_exchanges(subscriptions)
        return RunPlan(
            feed=feed,
            exports=(("EXCHANGES", value),),
            unset=tuple(v for x in EXCHANGES for v in (url_variable(x), rest_url_variable(x))),
            processes=tuple(n for n in names if n != SIMULATOR),
            summary=f"live exchanges ({value})",
        )
    if feed == "sim":
        if SIMULATOR not in names:
            raise ConfigError("FEED", f"sim needs a {SIMULATOR!r} process in the Procfile")
        return _sim_plan(names, ticks, exchange, sim_port, speed)
    raise ConfigError("FEED", f"expected {' or '.join(FEEDS)}, got {feed!r}")


def _sim_plan(
    names: tuple[str, ...], ticks: str, exchange: str, port: int, speed: float
) -> RunPlan:
    if exchange not in SIMULATED:
        raise ConfigError("EXCHANGE", f"expected one of {'|'.join(SIMULATED)}, got {exchange!r}")
    if not Path(ticks).is_file():
        raise ConfigError(
            "TICKS", f"expected an existing recording (.rec[.gz]) or trades CSV, got {ticks!r}"
        )
    symbols = _symbols(ticks, exchange)
    if not symbols:
        others = [x for x in EXCHANGES if x != exchange and _parses(ticks, x)]
        if others:
            raise ConfigError(
                "EXCHANGE",
                f"the {exchange} adapter parses no trade in {ticks}; its frames are "
                f"{others[0]}'s: EXCHANGE={others[0]}",
            )
        raise ConfigError("TICKS", f"expected trades of some exchange, found none in {ticks}")
    url = stream_url("127.0.0.1", port, exchange)
    rest: tuple[tuple[str, str], ...] = ()
    if get_adapter(exchange).history_path is not None:
        rest = ((rest_url_variable(exchange), rest_url("127.0.0.1", port, exchange)),)
    return RunPlan(
        feed="sim",
        exports=(
            ("EXCHANGES", format_exchanges([(exchange, symbols)])),
            (url_variable(exchange), url),
            *rest,
        ),
        unset=(),
        processes=names,
        summary=f"{ticks} as {exchange} at {speed:g}x (looped, simulator on {url})",
    )


def _symbols(ticks: str, exchange: str) -> list[str]:
    """The native symbols of ``ticks`` parsed as ``exchange``'s trades (as the simulator does:
    a recording is parsed by that exchange's adapter, a CSV re-spelled for it)."""
    try:
        trades = as_exchange(read_ticks(ticks, exchange), exchange)
        return sorted({t.native_symbol for t in trades})
    except BadInput as e:
        raise ConfigError("EXCHANGE", f"{exchange}: cannot spell {ticks}'s symbols: {e}") from e
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise ConfigError("TICKS", f"expected a readable recording or CSV, {ticks}: {e}") from e


def _parses(ticks: str, exchange: str) -> bool:
    """Whether ``exchange``'s adapter finds trades in ``ticks`` (for the suggestion only)."""
    try:
        return bool(_symbols(ticks, exchange))
    except ConfigError:
        return False


def shell_lines(run: RunPlan) -> str:
    """``run`` as shell lines to ``eval`` (values quoted)."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in run.exports]
    if run.unset:
        lines.append("unset " + " ".join(run.unset))
    lines.append("RUN_PROCESSES=" + shlex.quote(" ".join(run.processes)))
    lines.append("RUN_SUMMARY=" + shlex.quote(run.summary))
    return "\n".join(lines) + "\n"


def register(sub: Any) -> None:
    """Add ``run-env`` to the ``alphapulse`` subcommands (used by ``make run``)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "run-env",
        help="shell lines saying what `make run` starts for a FEED (sim or live)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--feed", default="sim", help=f"{' or '.join(FEEDS)} (default sim)")
    p.add_argument("--procfile", default="Procfile")
    p.add_argument("--exchanges", default="", help="live: EXCHANGES (default: BTC, ETH x 5)")
    p.add_argument("--ticks", default="", help="sim: the recording or trades CSV replayed")
    p.add_argument("--exchange", default="binance", help="sim: the exchange it is served as")
    # Strings, checked by run_env: a bad value is one line naming SIM_PORT/SPEED, not usage.
    p.add_argument("--sim-port", default="8765", help="sim: the simulator's port")
    p.add_argument("--speed", default="10", help="sim: replay speed (0 = as fast as possible)")
    p.add_argument("--timeframes", default=None, help="RUN_TIMEFRAMES, checked as TIMEFRAMES")
    p.set_defaults(func=run_env)


def run_env(args: argparse.Namespace) -> int:
    try:
        procfile = Path(args.procfile).read_text()
    except OSError as e:
        print(f"alphapulse run-env: cannot read {args.procfile}: {e}", file=sys.stderr)
        return 2
    given = {"SIM_PORT": args.sim_port, "SPEED": args.speed}
    try:
        run = plan(
            args.feed,
            procfile=procfile,
            exchanges=args.exchanges,
            ticks=args.ticks,
            exchange=args.exchange,
            sim_port=env_int(given, "SIM_PORT", 8765, lo=1, hi=65535),
            speed=env_float(given, "SPEED", 10.0, lo=0, hi=1_000_000),
            timeframes=args.timeframes,
        )
    except ConfigError as err:
        print(config_error_line(err), file=sys.stderr, flush=True)
        return 2
    sys.stdout.write(shell_lines(run))
    return 0
