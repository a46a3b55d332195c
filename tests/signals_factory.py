"""Pattern events for the signals tests and benchmark: the detectors' output built by hand, or by
a detector engine from random walks (``detector_entries``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from common.contracts import Bar, PatternEvent, Tick, TickBatch
from detectors.partition import EngineConfig, PartitionEngine
from detectors.timeframes import parse_timeframes

T0 = 1_723_161_240_000  # 2024-08-08T23:54:00Z, a 1m boundary
MINUTE = 60_000
SECOND = 1_000_000_000  # ns


def make_bar(
    symbol: str = "BTCUSDT", open_time: int = T0, timeframe: str = "1m", exchange: str = "binance"
) -> Bar:
    return Bar(
        exchange,
        symbol,
        timeframe,
        open_time,
        100.0,
        101.0,
        99.0,
        100.5,
        12.0,
        1200.0,
        40,
        6.0,
        100.2,
    )


def make_event(
    patterns: dict[str, int],
    *,
    symbol: str = "BTCUSDT",
    open_time: int = T0,
    timeframe: str = "1m",
    exchange: str = "binance",
    recent: list[dict[str, Any]] | None = None,
    **features: float | int | None,
) -> PatternEvent:
    """An event with neutral features (no trend, normal volume, mid RSI) unless overridden."""
    base: dict[str, float | int | None] = {
        "volume_ratio": 1.0,
        "ema": 100.0,
        "ema_slope": 0.0,
        "trend": 0,
        "htf_trend": 0,
        "rsi": 50.0,
        "atr": 1.0,
    }
    base.update(features)
    return PatternEvent(
        make_bar(symbol, open_time, timeframe, exchange), dict(patterns), base, list(recent or [])
    )


def strong_event(
    symbol: str, open_time: int, direction: int = 1, exchange: str = "binance"
) -> PatternEvent:
    """An event that always yields exactly one signal (a confirmed reversal against the trend)."""
    return make_event(
        {"CDLENGULFING": 100 * direction, "CDLHAMMER": 100}
        if direction > 0
        else {"CDLENGULFING": -100, "CDLSHOOTINGSTAR": -100},
        symbol=symbol,
        open_time=open_time,
        exchange=exchange,
        trend=-direction,
        volume_ratio=2.0,
    )


_MIX: list[dict[str, int]] = [
    {"CDLHAMMER": 100},
    {"CDLENGULFING": -100, "CDLSHOOTINGSTAR": -100},
    {"CDLDOJI": 100},
    {"CDLENGULFING": 100, "CDLSHOOTINGSTAR": -100},
    {"CDLMORNINGSTAR": 100, "CDL3WHITESOLDIERS": 100},
    {"CDLRISEFALL3METHODS": -100},
    {"CDLHIKKAKE": 200},
]


def event_mix(n: int, symbols: int = 50, exchange: str = "binance") -> list[PatternEvent]:
    """``n`` varied events over ``symbols`` symbols (bars in time order per symbol).

    Roughly half give a signal, a few give two, some are cooled down by ``recent``.
    """
    out: list[PatternEvent] = []
    for i in range(n):
        bar_no = i // symbols
        open_time = T0 + bar_no * MINUTE
        patterns = _MIX[(i * 7 + bar_no) % len(_MIX)]
        trend = (i % 3) - 1
        recent: list[dict[str, Any]] = []
        if bar_no and i % 4 == 0:
            recent = [
                {
                    "open_time": open_time - MINUTE,
                    "patterns": patterns,
                    "features": {"trend": trend, "volume_ratio": 2.0},
                }
            ]
        out.append(
            make_event(
                patterns,
                symbol=f"S{i % symbols:04d}",
                open_time=open_time,
                exchange=exchange,
                recent=recent,
                trend=trend,
                htf_trend=((i // 5) % 3) - 1,
                volume_ratio=[0.5, 1.0, 2.0][i % 3 - 1 if i % 2 else 2],
                rsi=[20.0, 50.0, 80.0][(i // 3) % 3],
            )
        )
    return out


def event_series(n: int, symbols: int = 50, recent_bars: int = 3) -> list[PatternEvent]:
    """``n`` events like ``event_mix``'s, but each carries ``recent`` as the detector writes it:
    the same symbol's earlier events within ``recent_bars`` bars (a symbol fires on ~5 bars in
    6), so an entry comes back in the next events of its series, as in a live run."""
    mix = event_mix(n * 6 // 5 + symbols, symbols)
    history: dict[str, list[dict[str, Any]]] = {}
    out: list[PatternEvent] = []
    for i, event in enumerate(mix):
        if i % 6 == 5:
            continue  # no pattern on this bar
        t = event.bar.open_time
        earlier = [
            r
            for r in history.get(event.bar.symbol, [])
            if r["open_time"] >= t - recent_bars * MINUTE
        ]
        out.append(PatternEvent(event.bar, event.patterns, event.features, earlier))
        history[event.bar.symbol] = [
            *earlier,
            {"open_time": t, "patterns": event.patterns, "features": event.features},
        ]
        if len(out) == n:
            break
    return out


def detector_entries(symbols: int, seconds: int, seed: int) -> list[dict[bytes, bytes]]:
    """The ``patterns`` entries a detector writes for random walks of ``symbols`` symbols
    trading every second (1s, 5s and 1m bars): real features, warm-up, ``recent`` lists."""
    engine = PartitionEngine(EngineConfig(timeframes=parse_timeframes("1s,5s,1m")))
    rng = np.random.default_rng(seed)
    price = np.full(symbols, 100.0)
    entries: list[dict[bytes, bytes]] = []
    for second in range(seconds):
        ticks = []
        for k in range(3):
            price += rng.normal(0, 0.05, symbols)
            for i in range(symbols):
                ts = (1_723_161_600 + second) * SECOND + (100 + 300 * k) * 1_000_000
                side = "buy" if (i + k) % 2 else "sell"
                ticks.append(
                    Tick(
                        "binance",
                        f"S{i}",
                        f"S{i}",
                        f"{second}-{k}-{i}",
                        float(price[i]),
                        float(rng.uniform(0.1, 2)),
                        side,
                        ts,
                        ts + 1_000_000,
                    )
                )
        out = engine.apply(TickBatch.from_ticks(ticks))
        if out.event_parts:
            entries += out.event_columns().encode()
    return entries
