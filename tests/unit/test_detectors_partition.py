"""The partition engine: checkpoint round-trips, restart/batching independence, and pattern
values on the produced bar series equal TA-Lib run on the whole series."""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from common.contracts import RECENT_FEATURES, Tick, TickBatch
from common.errors import DecodeError
from detectors import checkpoint
from detectors.partition import EngineConfig, Output, PartitionEngine
from detectors.replay import event_record, replay_ticks, sorted_records
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import synthetic_ticks

CONFIG = EngineConfig(timeframes=parse_timeframes("1m,5m,15m"), allowed_lateness_ms=2000)


def ticks(count: int = 12_000, seed: int = 3) -> list[Tick]:
    return list(synthetic_ticks("binance", 4, 1.5, seed=seed, count=count))


def records(out: Output) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return sorted_records(out.bars, out.events, CONFIG)


def test_checkpoint_restore_at_any_point_gives_the_same_outputs() -> None:
    data = ticks()
    whole = replay_ticks(data, CONFIG, partitions=1)
    reference = records(whole)
    rng = random.Random(5)
    # Early cuts checkpoint series that have no closed bar yet (no per-row state so far).
    cuts = sorted({1, 2, 3, 5, 8, *rng.sample(range(10, len(data)), 25)})
    engine = PartitionEngine(CONFIG)
    out = Output()
    for n, (a, b) in enumerate(pairwise([0, *cuts, len(data)])):
        out.extend(engine.apply(TickBatch.from_ticks(data[a:b]), entry_id=f"{n}-0"))
        blob = checkpoint.dumps(engine)
        engine = checkpoint.loads(blob, CONFIG)
        assert engine.last_id == f"{n}-0"
        assert checkpoint.dumps(engine) == blob
    out.extend(engine.close_all())
    assert records(out) == reference
    assert reference[1], "the series should fire some patterns"
    # Pending outcomes travel in the checkpoint too (tests/unit/test_outcomes.py).
    assert sorted(out.outcomes) == sorted(whole.outcomes) and whole.outcomes


def test_checkpoint_rejects_another_configuration_and_garbage() -> None:
    engine = PartitionEngine(CONFIG)
    engine.apply(TickBatch.from_ticks(ticks(500)))
    blob = checkpoint.dumps(engine)
    other = EngineConfig(timeframes=parse_timeframes("1m"), allowed_lateness_ms=2000)
    with pytest.raises(checkpoint.CheckpointMismatch):
        checkpoint.loads(blob, other)
    with pytest.raises(DecodeError):
        checkpoint.loads(b"nonsense", CONFIG)
    with pytest.raises(DecodeError):
        checkpoint.loads(blob[:40], CONFIG)


def test_patterns_and_features_equal_talib_on_the_bar_series() -> None:
    out = replay_ticks(ticks(20_000, seed=11), CONFIG, partitions=1)
    events = {e.bar.id: e for e in out.events}
    engine = PartitionEngine(CONFIG)
    names = engine.patterns.names
    assert len(names) == 61
    checked = fired = 0
    series: dict[tuple[str, str], list[Any]] = {}
    for bar in out.bars:
        series.setdefault((bar.symbol, bar.timeframe), []).append(bar)
    for (_sym, tf), bars in series.items():
        bars.sort(key=lambda b: b.open_time)
        o, h, lo, c = (
            np.array([getattr(b, k) for b in bars]) for k in ("open", "high", "low", "close")
        )
        expected = {n: getattr(talib, n)(o, h, lo, c) for n in names}
        ema = talib.EMA(c, CONFIG.indicators.ema_period)
        rsi = talib.RSI(c, 14)
        for i, bar in enumerate(bars):
            want = {n: int(v[i]) for n, v in expected.items() if v[i]}
            ev = events.get(bar.id)
            assert (ev.patterns if ev else {}) == want, (tf, i)
            checked += 1
            if ev:
                fired += 1
                rec = event_record(ev)
                for key, ref in (("ema", ema[i]), ("rsi", rsi[i])):
                    if np.isnan(ref):
                        assert rec[key] is None
                    else:
                        assert rec[key] == pytest.approx(ref, rel=1e-9)
    assert checked > 500 and fired > 20


def test_recent_carries_earlier_events_within_the_cooldown() -> None:
    out = replay_ticks(ticks(20_000, seed=11), CONFIG, partitions=1)
    by_series: dict[tuple[str, str], list[Any]] = {}
    for ev in out.events:
        by_series.setdefault((ev.bar.symbol, ev.bar.timeframe), []).append(ev)
    tf_ms = {t.name: t.ms for t in CONFIG.timeframes}
    for (_sym, tf), evs in by_series.items():
        evs.sort(key=lambda e: e.bar.open_time)
        for k, ev in enumerate(evs):
            horizon = ev.bar.open_time - CONFIG.cooldown_bars * tf_ms[tf]
            want = [
                {
                    "open_time": e.bar.open_time,
                    "patterns": e.patterns,
                    # Only what a cooldown reads, in the bar's feature order.
                    "features": {f: x for f, x in e.features.items() if f in RECENT_FEATURES},
                }
                for e in evs[:k]
                if e.bar.open_time >= horizon
            ]
            assert ev.recent == want


def test_htf_trend_is_the_next_timeframes_latest_closed_trend() -> None:
    out = replay_ticks(ticks(20_000, seed=11), CONFIG, partitions=1)
    tf_ms = {t.name: t.ms for t in CONFIG.timeframes}
    trends: dict[tuple[str, str], list[tuple[int, int | None]]] = {}
    for sym in {b.symbol for b in out.bars}:
        for tf in ("5m", "15m"):
            bars = sorted(
                (b for b in out.bars if b.symbol == sym and b.timeframe == tf),
                key=lambda b: b.open_time,
            )
            c = np.array([b.close for b in bars])
            ema = talib.EMA(c, CONFIG.indicators.ema_period)
            rows = []
            for i, b in enumerate(bars):
                trend = None
                if i >= CONFIG.indicators.ema_period:
                    slope = ema[i] / ema[i - 1] - 1.0
                    up, down = c[i] > ema[i] and slope > 0, c[i] < ema[i] and slope < 0
                    trend = 1 if up else -1 if down else 0
                rows.append((b.open_time + tf_ms[tf], trend))
            trends[(sym, tf)] = rows
    checked = 0
    for ev in out.events:
        nxt = {"1m": "5m", "5m": "15m"}.get(ev.bar.timeframe)
        if nxt is None:
            assert ev.features["htf_trend"] is None
            continue
        end = ev.bar.open_time + tf_ms[ev.bar.timeframe]
        done = [t for e, t in trends[(ev.bar.symbol, nxt)] if e <= end]
        assert ev.features["htf_trend"] == (done[-1] if done else None)
        checked += done[-1] is not None if done else 0
    assert checked > 20


_SHORT = ticks(1500, seed=21)
_SHORT_REF = records(replay_ticks(_SHORT, CONFIG, partitions=1))


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(1, len(_SHORT) - 1), max_size=12, unique=True),
    st.booleans(),
)
def test_outputs_do_not_depend_on_batches_or_restarts(cuts: list[int], restore: bool) -> None:
    engine = PartitionEngine(CONFIG)
    out = Output()
    for a, b in pairwise([0, *sorted(cuts), len(_SHORT)]):
        out.extend(engine.apply(TickBatch.from_ticks(_SHORT[a:b])))
        if restore:
            engine = checkpoint.loads(checkpoint.dumps(engine), CONFIG, engine.patterns)
    out.extend(engine.close_all())
    assert records(out) == _SHORT_REF
