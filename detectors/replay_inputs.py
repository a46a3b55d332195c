"""What ``alphapulse replay`` reads: a tick file or a bars file, with every unused row counted.

* ``--ticks FILE``: a recording (``--exchange`` names its adapter) or a normalized trades CSV
  (:mod:`ingest.offline.ticks`); lines that are not trades are counted by reason.
* ``--bars FILE --symbol S [--exchange E] [--timeframe TF]``: an OHLCV bars CSV
  (:mod:`ingest.offline.bars`). The bars go straight into the engine (no ticks): the finest
  timeframe is ``TF`` or the file's most common spacing; the coarser ones are the configured
  timeframes (``--timeframes`` / ``TIMEFRAMES``) that are whole multiples of it, built from
  the given bars exactly as from ticks.

Both return the engine :class:`~detectors.partition.Output`, the engine config used and the
:class:`~ingest.offline.bars.Rejections`. Nothing usable raises :class:`NothingUsable`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

from common.errors import ConfigError
from detectors.partition import EngineConfig, Output, PartitionEngine
from detectors.timeframes import Timeframe, parse_timeframe, parse_timeframes

if TYPE_CHECKING:
    from ingest.offline.bars import Rejections

DEFAULT_BARS_EXCHANGE = "history"


class NothingUsable(Exception):
    """The input held no usable tick or bar (the message says what was seen)."""


def bar_timeframes(
    finest: Timeframe, configured: tuple[Timeframe, ...], explicit: bool
) -> tuple[Timeframe, ...]:
    """``finest`` plus the configured timeframes above it that it divides."""
    if explicit:
        if configured[0].ms != finest.ms:
            raise ConfigError("--timeframes", f"must start with the bars' timeframe {finest.name}")
        return configured
    coarser = [t for t in configured if t.ms > finest.ms and t.ms % finest.ms == 0]
    return parse_timeframes([finest.name, *(t.name for t in coarser)], "--timeframe")


def replay_bars_file(
    args: argparse.Namespace, config: EngineConfig, rejections: Rejections
) -> tuple[Output, EngineConfig]:
    """Read, check, sort and de-duplicate a bars file and run it through one engine."""
    from ingest.offline.bars import (  # noqa: PLC0415 - only the CLI needs ingest
        bars_in_order,
        infer_timeframe_ms,
        read_bar_rows,
        timeframe_name,
    )

    if not args.symbol:
        raise ConfigError("--symbol", "a bars file needs --symbol (the series it holds)")
    rows = read_bar_rows(args.bars, rejections.add)
    if args.timeframe:
        finest = parse_timeframe(args.timeframe, "--timeframe")
    else:
        spacing = infer_timeframe_ms([r.open_time for _, r in rows])
        if spacing is None:
            raise NothingUsable(f"{len(rows)} usable rows: too few to infer the timeframe")
        finest = parse_timeframe(timeframe_name(spacing), "--timeframe")
    config = replace(
        config,
        timeframes=bar_timeframes(finest, config.timeframes, bool(args.timeframes)),
    )
    bars = bars_in_order(rows, finest.ms, rejections.add)
    if not bars:
        raise NothingUsable("no usable bar")
    engine = PartitionEngine(config)
    exchange = args.exchange or DEFAULT_BARS_EXCHANGE
    fields = [
        [b.open_time, b.open, b.high, b.low, b.close, b.volume, b.volume * b.close, 1, 0.0]
        for b in bars
    ]
    out = engine.apply_bars(exchange, args.symbol, fields)
    out.extend(engine.close_all())
    return out, config


def recording_summary(path: str, exchange: str) -> str:
    """Why a recording gave no trade: its frames by kind as the adapter read them."""
    from collections import Counter  # noqa: PLC0415

    from common.errors import BadInput  # noqa: PLC0415
    from ingest.offline.ticks import is_csv, read_frames  # noqa: PLC0415
    from ingest.venues import get_adapter  # noqa: PLC0415

    if is_csv(path):
        return "no usable trade"
    adapter = get_adapter(exchange)
    kinds: Counter[str] = Counter()
    for recv, frame in read_frames(path):
        try:
            kinds[adapter.parse(frame, recv).kind.name.lower()] += 1
        except BadInput as e:
            kinds[e.reason] += 1
    seen = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"
    return (
        f"no usable trade: {sum(kinds.values())} frames read as {exchange} ({seen}); "
        "is --exchange the exchange that recorded it?"
    )
