"""What the database must hold after an end-to-end run: ``alphapulse replay`` of its ticks.

The bench writes every trade it feeds (in feed order) as a recording; ``alphapulse replay``
runs the same pure engine over it with the live detectors' settings (``ENGINE_ENV``) and
writes ``bars.jsonl``, ``patterns.jsonl`` and ``signals.jsonl``. Replay closes every bar
still open at the end of its input, the live detectors do not (``IDLE_CLOSE_MS=0``), so each
feed ends with a *trailer*: one trade per partition at ``trailer_ms``, later than every bar
end, which closes all earlier bars live; the trailer's own bars (``open_time >=
trailer_ms``) are then left out of replay's output. Live and replay feed each partition in
the same order (one connection per partition: see ``bench_e2e``), so the rows must agree
exactly: bars field for field, patterns (bar, name, value), signals as JSON without
``emitted_at`` (``signals.offline.comparable``), compared as multisets. Stored ticks are
checked per symbol in SQL: count, distinct ids, ids 1..count.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from signals.offline import comparable
from sink.rows import BARS, EPOCH
from tests.bench.e2e_support import ENGINE_ENV, EXCHANGE, PARTITIONS, TIMEFRAMES, Stack
from tests.integration.runtime_support import ROOT

MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Check:
    """One table: rows stored, rows expected, and whether the rows themselves agree."""

    stored: int
    expected: int
    same: bool

    @property
    def exact(self) -> bool:
        return self.same and self.stored == self.expected

    def text(self) -> str:
        return f"{self.stored:,}/{self.expected:,}" + ("" if self.same else " (rows differ)")


@dataclass
class Expected:
    bars: Counter[tuple[Any, ...]]
    patterns: Counter[tuple[Any, ...]]
    signals: Counter[bytes]
    seconds: float = 0.0  # how long replay took


def signal_key(doc: Any) -> bytes:
    return orjson.dumps(comparable(doc), option=orjson.OPT_SORT_KEYS)


def run_replay(recording: Path, out: Path, trailer_ms: int) -> Expected:
    """``alphapulse replay`` of ``recording`` (its own process), trailer bars left out."""
    cmd = [sys.executable, "-m", "common.cli", "replay", "--ticks", str(recording)]
    cmd += ["--exchange", EXCHANGE, "--timeframes", TIMEFRAMES]
    cmd += ["--partitions", str(PARTITIONS), "--out", str(out)]
    env = {**os.environ, **ENGINE_ENV}
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, timeout=3600)

    def lines(name: str) -> list[dict[str, Any]]:
        with (out / name).open("rb") as f:
            return [orjson.loads(line) for line in f]

    bars, patterns, signals = (
        Counter[tuple[Any, ...]](),
        Counter[tuple[Any, ...]](),
        Counter[bytes](),
    )
    for d in lines("bars.jsonl"):
        if d["open_time"] < trailer_ms:
            bars[tuple(d[c] for c in BARS.columns)] += 1
    for d in lines("patterns.jsonl"):
        if d["open_time"] < trailer_ms:
            key = (d["exchange"], d["symbol"], d["timeframe"], d["open_time"])
            for name, value in d["patterns"].items():
                patterns[(*key, name, value)] += 1
    for d in lines("signals.jsonl"):
        if d["open_time_ms"] < trailer_ms:
            signals[signal_key(d)] += 1
    return Expected(bars, patterns, signals)


def same(stored: Counter[Any], expected: Counter[Any]) -> Check:
    return Check(stored.total(), expected.total(), stored == expected)


async def compare(
    stack: Stack, expected: Expected, per_symbol: dict[str, int] | None
) -> dict[str, Check]:
    """Each table against replay (and, when ticks are stored, against what was fed)."""
    conn = await asyncpg.connect(stack.db_url, timeout=10)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", stack.schema
            )
        }

        async def fetch(sql: str, table: str) -> list[Any]:
            return (
                list(await conn.fetch(sql.format(t=f"{stack.schema}.{table}")))
                if table in tables
                else []
            )

        bars = Counter(
            (*r[:3], (r[3] - EPOCH) // MS, *r[4:])
            for r in await fetch(f"SELECT {BARS.column_list()} FROM {{t}}", "bars")
        )
        patterns = Counter(
            (*r[:3], (r[3] - EPOCH) // MS, *r[4:])
            for r in await fetch(
                "SELECT exchange, symbol, timeframe, open_time, pattern, value FROM {t}", "patterns"
            )
        )
        signals = Counter(
            signal_key(orjson.loads(r[0]))
            for r in await fetch("SELECT doc::text FROM {t}", "signals")
        )
        out = {
            "bars": same(bars, expected.bars),
            "patterns": same(patterns, expected.patterns),
            "signals": same(signals, expected.signals),
        }
        if per_symbol is not None:
            rows = await fetch(
                "SELECT symbol, count(*), count(DISTINCT trade_id), min(trade_id::int8),"
                " max(trade_id::int8) FROM {t} GROUP BY symbol",
                "ticks",
            )
            got = {r[0]: tuple(r[1:]) for r in rows}
            want = {s: (n, n, 1, n) for s, n in per_symbol.items()}
            out["ticks"] = Check(
                sum(g[0] for g in got.values()), sum(per_symbol.values()), got == want
            )
        return out
    finally:
        await conn.close()
