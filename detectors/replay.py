"""``alphapulse replay``: the offline reference path (same pure engine, no Redis).

Ticks from a file (the recording format with ``--exchange``, or the normalized trades CSV)
are split into partitions exactly as ingest splits them (``partition_of`` over
``--partitions``, default ``PARTITIONS`` or 16), each partition runs its own
:class:`~detectors.partition.PartitionEngine` in file order (the watermark is per partition,
as in a live deployment), and every bar still open at the end of the input is closed.

Writes ``DIR/bars.jsonl`` (one closed bar per line) and ``DIR/patterns.jsonl`` (one line per
bar with at least one pattern: the bar's fields, ``patterns``, the features and
``recent``), both sorted by (exchange, symbol, timeframe duration, open_time), and
``DIR/signals.jsonl``: the pattern events scored in that same order by the signals stage's
pure scorer (model from ``SIGNALS_MODEL_FILE``, default model otherwise, as version 1; or,
with ``--config-history FILE`` — what ``alphapulse config history --json`` exports — each
event with the configuration version covering its bar open time, exactly as the live
workers did: see :mod:`signals.versions`; and ``SIGNALS_EMIT_WARMING`` as the live worker
reads it), one signal per
line in the stream's JSON form with ``emitted_at`` null (see :mod:`signals.offline`), and
``DIR/outcomes.jsonl``: every pattern firing and every one of those signals with its forward
outcomes, from the bar outcomes the engines emitted (the live detectors' code path; see
:mod:`signals.outcomes` and ``docs/outcomes.md``).

Layering: the detectors' worker path never imports ``signals``; only this CLI command does,
inside :func:`run` (as it imports ``ingest`` for the tick readers), because the offline
reference is the composition of the stages.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from common.contracts import Bar, PatternEvent, Tick, TickBatch
from common.errors import ConfigError
from common.names import partition_of
from common.settings import env_int
from detectors.partition import EngineConfig, Output, PartitionEngine
from detectors.replay_inputs import NothingUsable, recording_summary, replay_bars_file
from detectors.settings import engine_config_from_env
from detectors.timeframes import parse_timeframes

REPLAY_BATCH = 2048


def replay_ticks(
    ticks: Iterable[Tick], config: EngineConfig, partitions: int, batch_size: int = REPLAY_BATCH
) -> Output:
    """Run ticks through one engine per partition; close everything at the end."""
    pending: dict[int, list[Tick]] = {}
    engines: dict[int, PartitionEngine] = {}
    out = Output()
    part_cache: dict[tuple[str, str], int] = {}

    def flush(p: int) -> None:
        engine = engines.get(p)
        if engine is None:
            engine = engines[p] = PartitionEngine(config)
        out.extend(engine.apply(TickBatch.from_ticks(pending.pop(p))))

    for tick in ticks:
        key = (tick.exchange, tick.symbol)
        p = part_cache.get(key)
        if p is None:
            p = part_cache[key] = partition_of(tick.exchange, tick.symbol, partitions)
        batch = pending.setdefault(p, [])
        batch.append(tick)
        if len(batch) >= batch_size:
            flush(p)
    for p in sorted(pending):
        flush(p)
    for p in sorted(engines):
        out.extend(engines[p].close_all())
    return out


def bar_sort_key(d: dict[str, Any], tf_ms: dict[str, int]) -> tuple[str, str, int, int]:
    return (d["exchange"], d["symbol"], tf_ms.get(d["timeframe"], 0), d["open_time"])


def event_record(event: PatternEvent) -> dict[str, Any]:
    """One ``patterns.jsonl`` line: bar fields, ``patterns``, features, ``recent``."""
    return {
        **event.bar.to_dict(),
        "patterns": event.patterns,
        **event.features,
        "recent": event.recent,
    }


def sorted_events(events: Iterable[PatternEvent], config: EngineConfig) -> list[PatternEvent]:
    """Events in ``patterns.jsonl`` order: (exchange, symbol, timeframe duration, open_time)."""
    tf_ms = {t.name: t.ms for t in config.timeframes}

    def key(e: PatternEvent) -> tuple[str, str, int, int]:
        b = e.bar
        return (b.exchange, b.symbol, tf_ms.get(b.timeframe, 0), b.open_time)

    return sorted(events, key=key)


def sorted_records(
    bars: Iterable[Bar], events: Iterable[PatternEvent], config: EngineConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tf_ms = {t.name: t.ms for t in config.timeframes}
    bar_rows = sorted((b.to_dict() for b in bars), key=lambda d: bar_sort_key(d, tf_ms))
    ev_rows = [event_record(e) for e in sorted_events(events, config)]
    return bar_rows, ev_rows


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with path.open("wb") as f:
        for row in rows:
            f.write(orjson.dumps(row) + b"\n")
            n += 1
    return n


class CountedTicks:
    """An iterator of ticks that counts what passed through it."""

    def __init__(self, ticks: Iterator[Tick]) -> None:
        self.ticks = ticks
        self.n = 0

    def __iter__(self) -> Iterator[Tick]:
        for t in self.ticks:
            self.n += 1
            yield t


def _read_json(path: str) -> Any:
    try:
        return orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise ConfigError("--config-history", f"cannot read {path}: {e}") from e


def run(args: argparse.Namespace) -> int:
    """The ``replay`` subcommand."""
    from ingest.offline.bars import Rejections  # noqa: PLC0415
    from ingest.offline.ticks import read_ticks  # noqa: PLC0415 - only the CLI needs ingest
    from signals.analytics.files import stats_of_records, write_stats  # noqa: PLC0415
    from signals.analytics.stats import StatsOptions  # noqa: PLC0415
    from signals.model import load_model  # noqa: PLC0415 - nor signals (see the docstring)
    from signals.offline import score_events, write_signal_list  # noqa: PLC0415
    from signals.outcomes import outcome_lines  # noqa: PLC0415
    from signals.settings import emit_warming_from_env  # noqa: PLC0415
    from signals.versions import ModelHistory  # noqa: PLC0415

    try:
        model: Any = load_model(os.environ.get("SIGNALS_MODEL_FILE"))
        emit_warming = emit_warming_from_env(os.environ)
        if args.config_history:
            model = ModelHistory.from_export(_read_json(args.config_history))
        config = engine_config_from_env(os.environ)
        if args.timeframes:
            config = replace(config, timeframes=parse_timeframes(args.timeframes, "--timeframes"))
        partitions = args.partitions or env_int(os.environ, "PARTITIONS", 16, lo=1, hi=4096)
    except ConfigError as e:
        print(f"alphapulse replay: {e}", file=sys.stderr)
        return 2
    rejections = Rejections()
    try:
        if args.bars:
            result, config = replay_bars_file(args, config, rejections)
        else:
            ticks = CountedTicks(read_ticks(args.ticks, args.exchange, rejections.add))
            result = replay_ticks(ticks, config, partitions)
            if not ticks.n:
                raise NothingUsable(recording_summary(args.ticks, args.exchange or "binance"))
    except (FileNotFoundError, IsADirectoryError, ValueError, ConfigError) as e:
        print(f"alphapulse replay: {e}", file=sys.stderr)
        return 2
    except NothingUsable as e:
        print(f"alphapulse replay: {args.bars or args.ticks}: {e}", file=sys.stderr)
        for line in rejections.lines():
            print(f"alphapulse replay: {line}", file=sys.stderr)
        return 1
    for line in rejections.lines():
        print(f"replay: {line}", file=sys.stderr)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    events = sorted_events(result.events, config)
    bar_rows, ev_rows = sorted_records(result.bars, events, config)
    nb = write_jsonl(out_dir / "bars.jsonl", bar_rows)
    ne = write_jsonl(out_dir / "patterns.jsonl", ev_rows)
    signals = score_events(events, model, emit_warming=emit_warming)
    ns = write_signal_list(out_dir / "signals.jsonl", signals)
    tf_ms = {t.name: t.ms for t in config.timeframes}
    lines = outcome_lines(events, signals, result.outcomes, tf_ms, config.outcomes.horizons)
    no = write_jsonl(out_dir / "outcomes.jsonl", lines)
    if not args.no_stats and config.outcomes.horizons:
        opts = StatsOptions(cost=config.outcomes.cost_bps / 1e4)
        write_stats(out_dir / "stats.json", stats_of_records(lines, bar_rows, opts))
    print(
        f"replay: {nb} bars, {ne} pattern events, {ns} signals, {no} outcome lines -> {out_dir}",
        file=sys.stderr,
    )
    return 0


def register(sub: Any) -> None:
    """Entry point of ``alphapulse replay`` (group ``alphapulse.commands``)."""
    p = sub.add_parser("replay", help="run the detectors offline over a tick or bars file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ticks", help="recording (.rec[.gz]) or normalized trades CSV")
    src.add_argument("--bars", help="OHLCV bars CSV (time,open,high,low,close[,volume])")
    p.add_argument(
        "--exchange",
        default=None,
        help="exchange of a recording (default binance) or of a bars file (default history)",
    )
    p.add_argument("--symbol", help="symbol of a bars file")
    p.add_argument("--timeframe", help="timeframe of a bars file (default: from its spacing)")
    p.add_argument("--no-stats", action="store_true", help="do not write stats.json")
    p.add_argument(
        "--config-history",
        default=None,
        help="score with these configuration versions (alphapulse config history --json)",
    )
    p.add_argument("--timeframes", default=None, help="e.g. 1m,5m,1h (default TIMEFRAMES)")
    p.add_argument(
        "--partitions", type=int, default=None, help="partition count (default PARTITIONS or 16)"
    )
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)
