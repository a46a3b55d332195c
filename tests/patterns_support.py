"""Shared helpers for the pattern tests and bench: reference runs and bar data.

* ``engine_outputs`` feeds many series bar by bar through ``PatternDetector`` (the way the
  detector does: one ``evaluate`` per bar-close boundary with all series stacked).
* ``talib_outputs`` runs ``talib.CDLxxx`` on each whole series (the reference).
* ``recorded_bars`` buckets the real Binance trades of ``../shared/data`` into OHLC bars
  (a minimal numpy stand-in for the detectors' aggregator, which is not under test here).
* ``generated_bars`` makes series that trigger many patterns: integer-tick random walks,
  dojis, one-trade bars (o=h=l=c), equal prices and gaps.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import talib
from numpy.typing import NDArray

from detectors.patterns import PatternDetector

F64 = NDArray[np.float64]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def engine_outputs(engine: PatternDetector, o: F64, h: F64, lo: F64, c: F64) -> NDArray[np.int32]:
    """(S, T, P) engine values, evaluating bar t of all S series in one call per t."""
    s, t = o.shape
    w = engine.window
    pad = np.full((s, w - 1), np.nan)
    po, ph, pl, pc = (np.hstack([pad, a]) for a in (o, h, lo, c))
    state = engine.new_state(s)
    out = np.zeros((s, t, len(engine.names)), dtype=np.int32)
    for k in range(t):
        seen = np.full(s, k + 1, dtype=np.int64)
        sl = slice(k, k + w)
        out[:, k] = engine.evaluate(po[:, sl], ph[:, sl], pl[:, sl], pc[:, sl], seen, state=state)
    return out


def talib_outputs(names: tuple[str, ...], o: F64, h: F64, lo: F64, c: F64) -> NDArray[np.int32]:
    """(S, T, P) values of TA-Lib run on each whole series."""
    s, t = o.shape
    out = np.zeros((s, t, len(names)), dtype=np.int32)
    for p, name in enumerate(names):
        fn = getattr(talib, name)
        for r in range(s):
            out[r, :, p] = fn(o[r], h[r], lo[r], c[r])
    return out


def mismatches(engine: PatternDetector, o: F64, h: F64, lo: F64, c: F64) -> dict[str, int]:
    """Per pattern: number of (series, bar) cells where engine and TA-Lib disagree."""
    got = engine_outputs(engine, o, h, lo, c)
    want = talib_outputs(engine.names, o, h, lo, c)
    bad = (got != want).sum(axis=(0, 1))
    return {n: int(b) for n, b in zip(engine.names, bad, strict=True) if b}


def fired(engine: PatternDetector, o: F64, h: F64, lo: F64, c: F64) -> dict[str, int]:
    """Per pattern: non-zero TA-Lib values in the data (proof the data exercises it)."""
    want = talib_outputs(engine.names, o, h, lo, c)
    return {n: int(v) for n, v in zip(engine.names, (want != 0).sum(axis=(0, 1)), strict=True)}


def load_trades(path: Path) -> tuple[NDArray[np.int64], F64]:
    """Trade times (ms) and prices from a recording (trade frames only)."""
    times: list[int] = []
    prices: list[float] = []
    with gzip.open(path, "rt") as f:
        for line in f:
            _, _, frame = line.partition(" ")
            if '"e":"trade"' not in frame:
                continue
            data = json.loads(frame)["data"]
            times.append(int(data["T"]))
            prices.append(float(data["p"]))
    return np.array(times, dtype=np.int64), np.array(prices)


def bucket(times: NDArray[np.int64], prices: F64, key: NDArray[np.int64]) -> tuple[F64, ...]:
    """OHLC of consecutive trades sharing ``key`` (trades in time order); empty keys skipped."""
    del times
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], key.shape[0]]
    o = prices[starts]
    c = prices[ends - 1]
    h = np.maximum.reduceat(prices, starts)
    lo = np.minimum.reduceat(prices, starts)
    return o, h, lo, c


BUCKETS_MS = (1_000, 2_000, 5_000, 10_000, 15_000, 60_000)
BUCKETS_TRADES = (3, 5, 8)


def recorded_series() -> list[tuple[str, tuple[F64, F64, F64, F64]]]:
    """Per bucket kind, both symbols' whole bar series (cut to the shorter one), ``(2, T)``.

    The recordings cover 5.8 minutes, so besides 1 s .. 1 min time buckets the trades are
    also bucketed by count (every 3 / 5 / 8 trades) for longer series.
    """
    trades = []
    for path in sorted(DATA.glob("*.rec.gz")):
        times, prices = load_trades(path)
        order = np.argsort(times, kind="stable")
        trades.append((times[order], prices[order]))
    out = []
    kinds = [(f"{ms // 1000}s", ms, 0) for ms in BUCKETS_MS]
    kinds += [(f"{n}trades", 0, n) for n in BUCKETS_TRADES]
    for label, ms, n in kinds:
        per_symbol = []
        for times, prices in trades:
            key = times // ms if ms else np.arange(times.shape[0]) // n
            per_symbol.append(bucket(times, prices, key))
        length = min(b[0].shape[0] for b in per_symbol)
        o, h, lo, c = (np.array([b[f][:length] for b in per_symbol]) for f in range(4))
        out.append((label, (o, h, lo, c)))
    return out


def recorded_bars(length: int) -> tuple[F64, F64, F64, F64]:
    """Many series of ``length`` bars: the recorded series above cut into chunks."""
    chunks: list[list[F64]] = [[], [], [], []]
    for _, bars in recorded_series():
        total = bars[0].shape[1]
        for begin in range(0, total - length + 1, length):
            for f in range(4):
                chunks[f].append(bars[f][:, begin : begin + length])
    o, h, lo, c = (np.concatenate(parts) for parts in chunks)
    return o, h, lo, c


def generated_bars(rng: np.random.Generator, n_series: int, length: int) -> tuple[F64, ...]:
    """Integer-tick OHLC random walks mixing long bodies, dojis, one-trade bars and gaps."""
    step = rng.integers(-3, 4, size=(n_series, length)).astype(np.float64)
    gap = rng.random((n_series, length)) < 0.15
    step[gap] *= 4
    o = 1000.0 + np.cumsum(step, axis=1)
    kind = rng.random((n_series, length))
    body = rng.integers(-8, 9, size=(n_series, length)).astype(np.float64)
    body[kind < 0.25] = 0.0  # doji
    body[(kind >= 0.25) & (kind < 0.3)] = rng.integers(-1, 2, size=1)[0]
    c = o + body
    up = rng.integers(0, 5, size=(n_series, length)) * (rng.random((n_series, length)) < 0.6)
    dn = rng.integers(0, 5, size=(n_series, length)) * (rng.random((n_series, length)) < 0.6)
    h = np.maximum(o, c) + up
    lo = np.minimum(o, c) - dn
    flat = kind > 0.93  # one-trade bars
    c[flat] = o[flat]
    h[flat] = o[flat]
    lo[flat] = o[flat]
    return o, h, lo, c


# Candle sequences (open, high, low, close in ticks from a base price) for the patterns
# that random walks rarely produce; quiet bars before them keep TA-Lib's averages small.
TEMPLATES: dict[str, list[tuple[int, int, int, int]]] = {
    "2crows": [(0, 10, 0, 10), (14, 14, 12, 12), (13, 13, 5, 5)],
    "3starsinsouth": [(20, 20, -2, 10), (15, 15, 5, 11), (8, 8, 7, 7)],
    "concealbabyswall": [(40, 40, 30, 30), (29, 29, 20, 20), (18, 24, 15, 15), (25, 25, 11, 12)],
    "mathold": [(0, 10, 0, 10), (13, 13, 12, 12), (10, 10, 9, 9), (9, 9, 8, 8), (9, 15, 9, 15)],
    "upsidegap2crows": [(0, 10, 0, 10), (13, 13, 12, 12), (14, 14, 11, 11)],
    "3blackcrows": [(0, 12, 0, 10), (11, 11, 6, 6), (9, 9, 3, 3), (7, 7, 0, 0)],
    "3linestrike": [(0, 5, 0, 5), (3, 8, 3, 8), (6, 11, 6, 11), (12, 12, -1, -1)],
    "breakaway": [(20, 20, 10, 10), (8, 8, 6, 6), (5, 7, 4, 4), (4, 5, 2, 2), (3, 9, 3, 9)],
    "identical3crows": [(20, 20, 15, 15), (15, 15, 10, 10), (10, 10, 5, 5)],
    "risefall3methods": [(0, 10, 0, 10), (8, 8, 7, 7), (7, 7, 6, 6), (6, 6, 5, 5), (6, 16, 6, 16)],
    "ladderbottom": [
        (30, 30, 25, 25),
        (28, 28, 22, 22),
        (25, 25, 18, 18),
        (18, 21, 16, 16),
        (19, 24, 19, 24),
    ],
    "xsidegap3methods": [(0, 5, 0, 5), (7, 10, 7, 10), (9, 9, 3, 3)],
    "advanceblock": [(0, 10, 0, 10), (8, 14, 8, 14), (13, 17, 13, 15)],
    "abandonedbaby": [(0, 10, 0, 10), (13, 14, 12, 13), (11, 11, 4, 4)],
    "kicking": [(10, 10, 0, 0), (12, 22, 12, 22)],
    "tasukigap": [(0, 5, 0, 5), (7, 10, 7, 10), (9, 9, 6, 6)],
    "3whitesoldiers": [(0, 5, 0, 5), (4, 10, 4, 10), (9, 15, 9, 15)],
    "stalledpattern": [(0, 10, 0, 10), (9, 19, 9, 19), (19, 20, 19, 20)],
    "darkcloudcover": [(0, 10, 0, 10), (12, 12, 3, 3)],
    "piercing": [(10, 10, 0, 0), (-2, 8, -2, 8)],
    "thrusting": [(10, 10, 0, 0), (-2, 3, -2, 3)],
    "inneck": [(10, 10, 0, 0), (-2, 0, -2, 0)],
    "onneck": [(10, 10, 0, 1), (-2, 0, -2, 0)],
    "unique3river": [(20, 20, 10, 10), (15, 15, 5, 12), (7, 8, 7, 8)],
    "homingpigeon": [(20, 20, 10, 10), (18, 18, 12, 17)],
    "3inside": [(0, 10, 0, 10), (6, 6, 5, 5), (5, 5, -1, -1)],
    "hikkake": [(0, 10, 0, 5), (3, 8, 2, 5), (4, 7, 1, 2), (2, 12, 2, 12)],
    "hikkakemod": [(0, 10, 0, 5), (3, 8, 2, 3), (4, 7, 3, 5), (4, 6, 1, 2), (2, 12, 2, 12)],
}


def _valid(o: float, h: float, lo: float, c: float) -> tuple[float, float, float, float]:
    return o, max(h, o, c), min(lo, o, c), c


def templated_bars(rng: np.random.Generator, n_series: int, length: int) -> tuple[F64, ...]:
    """Quiet stretches alternating with (jittered, scaled, mirrored) pattern templates."""
    names = list(TEMPLATES)
    out = np.zeros((4, n_series, length))
    for s in range(n_series):
        bars: list[tuple[float, float, float, float]] = []
        base = 1000.0
        while len(bars) < length:
            for _ in range(int(rng.integers(8, 15))):
                o = base + rng.integers(-1, 2)
                c = o + rng.integers(-1, 2)
                bars.append(
                    _valid(o, max(o, c) + rng.integers(0, 2), min(o, c) - rng.integers(0, 2), c)
                )
                base = c
            scale = float(rng.integers(1, 4))
            sign = -1.0 if rng.random() < 0.3 else 1.0  # mirrored: the opposite-direction variant
            jitter = rng.random() < 0.5
            for o, h, lo, c in TEMPLATES[names[int(rng.integers(len(names)))]]:
                vals = [base + sign * scale * v for v in (o, h, lo, c)]
                if jitter:
                    vals = [v + rng.integers(-1, 2) * (rng.random() < 0.3) for v in vals]
                vo, vh, vl, vc = vals
                bars.append(_valid(vo, max(vh, vl), min(vh, vl), vc))
            base = bars[-1][3]
        arr = np.array(bars[:length]).T
        out[:, s] = arr
    return out[0], out[1], out[2], out[3]


def drifting_bars(rng: np.random.Generator, n_series: int, length: int) -> tuple[F64, ...]:
    """Bars whose price level jumps between ~0.001 and ~1000 (a mis-scaled feed, a
    re-denomination) with runs of one-trade bars (all ranges 0). Sums of ranges of such
    different magnitudes are inexact, so TA-Lib's running sums drift away from a fresh
    window sum (to tiny non-zero values over flat runs) and comparisons such as
    ``body <= average`` hinge on the exact history."""
    o, h, lo, c = generated_bars(rng, n_series, length)
    level = np.where(
        (np.arange(length)[None, :] // 40 + rng.integers(0, 2, (n_series, 1))) % 2, 1e3, 1e-3
    )
    noise = 1.0 + rng.random((n_series, length)) * 1e-3
    flat = (np.arange(length)[None, :] // 13 + rng.integers(0, 3, size=(n_series, 1))) % 3 == 1
    o, h, lo, c = (np.where(flat, o, a) for a in (o, h, lo, c))
    return tuple(a / 1000.0 * level * noise for a in (o, h, lo, c))
