"""Test support for outcomes: a synthetic replay with its outcomes and signals (and its
streams written for a sink), ``outcomes.jsonl`` lines and ``outcome_rows`` in one long form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from common.contracts import PatternEvent, encode_outcomes
from common.names import Keys
from detectors.partition import EngineConfig, Output
from detectors.replay import replay_ticks, sorted_events, sorted_records
from ingest.offline.ticks import synthetic_ticks
from signals.contract import Signal, encode_entry
from signals.model import Model
from signals.offline import score_events
from signals.outcomes import outcome_lines

OutcomeRow = tuple[Any, ...]
COLUMNS = (
    "kind", "id", "exchange", "symbol", "timeframe", "open_time", "pattern", "direction",
    "horizon", "ret", "mfe", "mae", "hit", "score", "trend", "atr_ratio", "volume_ratio",
)  # fmt: skip
SELECT_ROWS = f"SELECT {', '.join(COLUMNS)} FROM outcome_rows"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Replayed:
    """Synthetic ticks of two symbols through the engine (one partition) and the default
    model: what the outcome and statistics tests compare the stored or computed views with."""

    out: Output
    events: list[PatternEvent]  # in replay's order
    signals: list[Signal]
    bar_rows: list[dict[str, Any]]  # ``bars.jsonl`` records
    event_rows: list[dict[str, Any]]  # ``patterns.jsonl`` records
    lines: list[dict[str, Any]]  # ``outcomes.jsonl`` lines


def replay_outcomes(config: EngineConfig, *, rate: float, seed: int, count: int) -> Replayed:
    """Replay ``count`` synthetic ticks (``rate`` per second, ``seed``) with ``config``."""
    out = replay_ticks(synthetic_ticks("binance", 2, rate, seed=seed, count=count), config, 1)
    events = sorted_events(out.events, config)
    signals = score_events(events, Model())
    bar_rows, event_rows = sorted_records(out.bars, events, config)
    tf_ms = {t.name: t.ms for t in config.timeframes}
    lines = outcome_lines(events, signals, out.outcomes, tf_ms)
    return Replayed(out, events, signals, bar_rows, event_rows, lines)


async def write_streams(
    redis: aioredis.Redis, keys: Keys, replayed: Replayed, *, bars: bool = True
) -> None:
    """XADD the replay's bars (unless ``bars`` is false), pattern events, signals and outcomes
    (100 a batch) to their streams, as the live stages would."""
    out = replayed.out
    for bar in out.bars if bars else ():
        await redis.xadd(keys.bars, bar.encode())  # type: ignore[arg-type]
    for event in replayed.events:
        await redis.xadd(keys.patterns, event.encode())  # type: ignore[arg-type]
    for s in replayed.signals:
        await redis.xadd(keys.signals, encode_entry(s))  # type: ignore[arg-type]
    for a in range(0, len(out.outcomes), 100):
        await redis.xadd(keys.outcomes, encode_outcomes(out.outcomes[a : a + 100]))  # type: ignore[arg-type]


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def long_rows(lines: Iterable[Mapping[str, Any]]) -> list[OutcomeRow]:
    """``outcomes.jsonl`` lines as ``outcome_rows`` rows (one per completed horizon), sorted."""
    out: list[OutcomeRow] = []
    for line in lines:
        reg = line["regime"]
        for h, ret in line["returns"].items():
            out.append(
                (
                    line["kind"],
                    line["id"],
                    line["exchange"],
                    line["symbol"],
                    line["timeframe"],
                    line["open_time"],
                    line.get("pattern"),
                    line["direction"],
                    int(h),
                    ret,
                    line["mfe"][h],
                    line["mae"][h],
                    line["hit"][h],
                    _float(line.get("score")),
                    _float(reg["trend"]),
                    _float(reg["atr_ratio"]),
                    _float(reg["volume_ratio"]),
                )
            )
    return sorted(out, key=_key)


def db_rows(records: Iterable[Mapping[str, Any]]) -> list[OutcomeRow]:
    """Rows of ``SELECT_ROWS`` with ``open_time`` as epoch ms, sorted like ``long_rows``."""
    out = []
    for r in records:
        row = [r[c] for c in COLUMNS]
        row[5] = (r["open_time"] - _EPOCH) // timedelta(milliseconds=1)
        out.append(tuple(row))
    return sorted(out, key=_key)


def _key(row: OutcomeRow) -> tuple[str, str, str, int]:
    return (row[0], row[1], row[6] or "", row[8])
