"""A partition engine's state is bounded: fixed-size per-row arrays from a row's first bar on,
at most ``cooldown_bars + 1`` pattern-history entries per row, at most ``dedup_window``
remembered string trade ids per series, however long it runs (structural, not timed; the
``detector_memory`` bench measures the bytes)."""

from __future__ import annotations

from typing import Any

from common.contracts import Tick, TickBatch
from detectors.partition import EngineConfig, PartitionEngine
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import synthetic_ticks

CONFIG = EngineConfig(timeframes=parse_timeframes("1s,5s"), allowed_lateness_ms=0)
SYMBOLS = 4


def shapes(engine: PartitionEngine) -> dict[str, Any]:
    """Sizes of every per-series and per-row structure of the engine."""
    agg = engine.agg
    out: dict[str, Any] = {
        "series": len(agg.series),
        "index": len(agg.index),
        "coarse_bars": (agg.coarse_time.shape, agg.coarse_vals.shape, agg.coarse_trades.shape),
        "id_hwm": agg.id_hwm.shape,
        "fine_max": agg.fine_max.shape,
        "next_end": agg.next_end.shape,
        "str_ids": len(agg.str_ids),
        "window": engine.space.window.shape,
        "pattern_state": (
            engine.space.pstate.totals.shape,
            engine.space.pstate.bars.shape,
            engine.space.pstate.hikkake.shape,
        ),
        "recent_rows": len(engine.recent),
    }
    out.update({name: arr.shape for name, arr in engine.space.ind.arrays().items()})
    return out


def test_state_stops_growing_and_recent_stays_within_its_horizon() -> None:
    # 4 symbols at 5 trades/s each: nearly every 1s bar exists; 2,000 s = 400 bars of 5s,
    # far past the 26 bars after which a row's pattern history has its final size.
    ticks = synthetic_ticks("binance", SYMBOLS, 20.0, seed=11, count=40_000)
    engine = PartitionEngine(CONFIG)
    bound = CONFIG.cooldown_bars + 1
    rows = SYMBOLS * len(CONFIG.timeframes)
    batch: list[Tick] = []
    snapshots: list[dict[str, Any]] = []
    events = 0
    for n, tick in enumerate(ticks, 1):
        batch.append(tick)
        if len(batch) == 100:
            events += len(engine.apply(TickBatch.from_ticks(batch)).events)
            batch = []
            assert max((len(v) for v in engine.recent.values()), default=0) <= bound
            assert set(engine.recent) <= set(range(rows))
        if n % 4_000 == 0:  # every 200 s of event time
            snapshots.append(shapes(engine))
    assert events > 1_000, "the series should fire patterns all along"
    # From 40 bars of the longest timeframe on, no structure changes size.
    assert all(s == snapshots[1] for s in snapshots[1:]), snapshots
    assert sum(len(v) for v in engine.recent.values()) <= rows * bound


def test_string_trade_ids_are_remembered_up_to_the_window() -> None:
    config = EngineConfig(timeframes=parse_timeframes("1s"), dedup_window=8)
    engine = PartitionEngine(config)
    base = 1_700_000_000_000_000_000
    for k in range(10):
        batch = [
            Tick("bybit", "BTC-USDT-PERP", "BTCUSDT", f"id-{k}-{i}", 1.0, 1.0, "buy", ts, ts)
            for i in range(5)
            for ts in [base + i * 300_000_000 + k * 2_000_000_000]
        ]
        engine.apply(TickBatch.from_ticks(batch))
        ids, index = engine.agg.str_ids[0]
        assert len(ids) == len(index) == min(8, 5 * (k + 1))
    assert engine.agg.counters.duplicates == 0
