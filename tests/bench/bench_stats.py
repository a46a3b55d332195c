"""Statistics (issue 12 §2): the pattern table over N outcome rows in TimescaleDB, and a
replay of 45,000 1m bars with outcomes and stats next to the same replay without.

* **SQL** — a private schema on ``TIMESCALE_URL`` (dropped afterwards), migrated, filled
  with generated rows so that the view ``outcome_rows`` holds 10,000,000 pattern rows
  (1.25M event bars x 2 patterns x 4 horizons; ``BENCH_QUICK=1``: 1,000,000). Timed, best
  of 3: ``SELECT count(*) FROM outcome_rows`` (the baseline: one scan of the same join), the
  pattern table's GROUP BY (``signals.analytics.db.outcome_query``) and the whole
  ``pattern_table`` (the GROUP BY, the random-entry baseline from ``bars`` by window
  functions, intervals and ranking).
* **replay** — ``alphapulse replay --bars`` of 45,000 generated 1m bars (``BENCH_QUICK``:
  15,000), with ``OUTCOME_HORIZONS=off --no-stats`` (the baseline) and with the default
  outcomes and ``stats.json``.
"""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import numpy as np

from signals.analytics.db import outcome_query, pattern_table, refresh
from signals.analytics.stats import StatsOptions
from signals.analytics.table import Filters
from sink.migrate import migrate

QUICK = os.environ.get("BENCH_QUICK") == "1"
EVENT_BARS = 125_000 if QUICK else 1_250_000
SERIES = 20
REPLAY_BARS = 15_000 if QUICK else 45_000
PATTERNS = ("CDLDOJI", "CDLHAMMER", "CDLENGULFING", "CDLHARAMI", "CDLSPINNINGTOP",
            "CDLMARUBOZU", "CDLLONGLINE", "CDLBELTHOLD", "CDLHIKKAKE", "CDLSHORTLINE")  # fmt: skip

FILL = """
INSERT INTO bars
SELECT 'bench', 'S' || s, '1m', to_timestamp(1.7e9 + i * 60), p, p * 1.002, p * 0.998, p,
       1, p, 1, 0.5, p
FROM (SELECT s, i, 100 + 10 * sin(i / 50.0 + s) + (i % 7) * 0.1 AS p
      FROM generate_series(0, {series} - 1) s, generate_series(0, {per} - 1) i) x;
INSERT INTO patterns
SELECT exchange, symbol, timeframe, open_time,
       pats[1 + (k + extract(epoch FROM open_time)::bigint / 60) % 10],
       CASE WHEN (extract(epoch FROM open_time)::bigint / 60 + k) % 3 = 0 THEN -100 ELSE 100 END
FROM bars, generate_series(0, 1) k, (SELECT ARRAY{patterns} AS pats) p;
INSERT INTO outcomes
SELECT exchange || ':' || symbol || ':1m:' || (extract(epoch FROM open_time) * 1000)::bigint,
       exchange, symbol, timeframe, open_time, h, close,
       sin(extract(epoch FROM open_time) / 977.0 + h) * 0.01,
       abs(sin(extract(epoch FROM open_time) / 977.0 + h)) * 0.012,
       -abs(cos(extract(epoch FROM open_time) / 977.0 + h)) * 0.012,
       1, 0.002, 1.1, 0
FROM bars, unnest(ARRAY[1, 5, 10, 20]) h;
ANALYZE bars; ANALYZE patterns; ANALYZE outcomes;
"""


async def _best(conn: asyncpg.Connection, sql: str, *args: object) -> float:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        await conn.fetch(sql, *args)
        times.append(time.perf_counter() - t)
    return min(times)


async def _timed_table(conn: asyncpg.Connection, f: Filters, opts: StatsOptions) -> float:
    t = time.perf_counter()
    await pattern_table(conn, f, opts)
    return time.perf_counter() - t


async def sql_bench() -> None:
    url = os.environ.get("TIMESCALE_URL")
    if not url:
        print(
            "  TIMESCALE_URL not set: `export TIMESCALE_URL=$(bash deploy/timescale-chroot.sh url)`"
        )
        return
    schema = f"bench_stats_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in url else "?"
        conn = await asyncpg.connect(f"{url}{sep}search_path={schema},public")
        try:
            await migrate(conn)
            t = time.perf_counter()
            per = EVENT_BARS // SERIES
            await conn.execute(
                FILL.format(series=SERIES, per=per, patterns=list(PATTERNS)).replace('"', "'")
            )
            n = await conn.fetchval("SELECT count(*) FROM outcome_rows WHERE kind = 'pattern'")
            print(
                f"  {n:,} pattern outcome rows, {EVENT_BARS:,} bars (filled in "
                f"{time.perf_counter() - t:.0f} s); best of 3:"
            )
            base = await _best(conn, "SELECT count(*) FROM outcome_rows")
            sql, args = outcome_query(Filters(), ())
            group = await _best(conn, sql, *args)
            view = await _best(conn, "SELECT * FROM pattern_stats")
            opts = StatsOptions()
            t0 = time.perf_counter()
            rows = await pattern_table(conn, Filters(), opts, fresh=True)
            whole = time.perf_counter() - t0
            t0 = time.perf_counter()
            await refresh(conn)
            refreshed = time.perf_counter() - t0
            agg = min([await _timed_table(conn, Filters(), opts) for _ in range(3)])
            hammer = Filters(pattern="CDLHAMMER", horizon=5)
            one = min([await _timed_table(conn, hammer, opts) for _ in range(3)])
            w = 52
            for label, secs, note in (
                ("SELECT count(*) FROM outcome_rows", base, "(baseline)"),
                ("GROUP BY over outcome_rows (outcome_query)", group,
                 f"({group / base:.1f}x baseline, {len(rows)} groups)"),
                ("SELECT * FROM pattern_stats (live view)", view, ""),
                ("pattern_table(fresh=True): GROUP BY + bars windows", whole, ""),
                ("refresh_outcome_stats() (both aggregates)", refreshed, ""),
                ("pattern_table() from the aggregates", agg, f"({agg / base:.3f}x baseline)"),
                ("pattern_table(HAMMER, h=5) from the aggregates", one, ""),
            ):  # fmt: skip
                print(f"    {label:<{w}} {secs:8.3f} s   {note}".rstrip())
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


def write_bars(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    opens = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.0005, (2, n)))
    high = np.maximum(opens, close) * (1 + spread[0])
    low = np.minimum(opens, close) * (1 - spread[1])
    t0 = 1_700_000_000 - 1_700_000_000 % 86_400
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "open", "high", "low", "close", "volume"])
        for i in range(n):
            w.writerow([t0 + 60 * i, opens[i], high[i], low[i], close[i], 1 + (i % 13)])


def replay_bench() -> None:
    with tempfile.TemporaryDirectory() as d:
        bars = Path(d) / "bars.csv"
        write_bars(bars, REPLAY_BARS)
        exe = [sys.executable, "-m", "common.cli", "replay", "--bars", str(bars), "--symbol",
               "BENCH", "--timeframe", "1m"]  # fmt: skip
        runs = {}
        for name, extra, env in (
            ("without outcomes and stats", ["--no-stats"], {"OUTCOME_HORIZONS": "off"}),
            ("with outcomes and stats.json", [], {}),
        ):
            t = time.perf_counter()
            subprocess.run(
                [*exe, *extra, "--out", str(Path(d) / name.replace(" ", "_"))],
                check=True, env={**os.environ, **env}, capture_output=True,
            )  # fmt: skip
            runs[name] = time.perf_counter() - t
        base = runs["without outcomes and stats"]
        print(f"  replay --bars, {REPLAY_BARS:,} 1m bars (timeframes 1m..1d):")
        for name, s in runs.items():
            print(f"    {name:<32} {s:8.1f} s   ({s / base:.2f}x)")


def main() -> None:
    part = os.environ.get("BENCH_STATS_PART", "")
    if part in ("", "sql"):
        asyncio.run(sql_bench())
    if part in ("", "replay"):
        replay_bench()


if __name__ == "__main__":
    main()
