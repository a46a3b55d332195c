"""Incremental indicators equal TA-Lib's batch functions on whole series (1e-9 relative)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import talib

from detectors.indicators import IndicatorBank, IndicatorConfig
from detectors.partition import EngineConfig
from detectors.replay import replay_ticks
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import read_ticks

DATA = Path("/work/shared/data") if Path("/work/shared/data").exists() else Path("data")
F64 = npt.NDArray[np.float64]


def random_bars(rng: np.random.Generator, n: int, scale: float) -> tuple[F64, ...]:
    close = scale * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.004, n)))
    volume = rng.exponential(10.0, n)
    volume[rng.random(n) < 0.05] = 0.0
    flat = rng.random(n) < 0.03  # runs of unchanged closes (RSI's zero branch)
    close[flat] = np.roll(close, 1)[flat]
    high = np.maximum(high, close)
    low = np.minimum(low, close)
    return open_, high, low, close, volume


def feed(
    bank: IndicatorBank, series: list[tuple[F64, ...]], rng: np.random.Generator
) -> dict[str, list[list[float]]]:
    """Feed all series bar by bar, in random interleavings of rows per call."""
    n_rows = len(series)
    bank.grow(n_rows)
    pos = [0] * n_rows
    got: dict[str, list[list[float]]] = {}
    while any(pos[r] < len(series[r][0]) for r in range(n_rows)):
        live = [r for r in range(n_rows) if pos[r] < len(series[r][0])]
        pick = [r for r in live if rng.random() < 0.6] or live[:1]
        rows = np.array(pick, np.int64)
        cols = [np.array([series[r][k][pos[r]] for r in pick]) for k in range(5)]
        feats = bank.update(rows, cols[1], cols[2], cols[3], cols[4])
        for name, arr in feats.items():
            lists = got.setdefault(name, [[] for _ in range(n_rows)])
            for j, r in enumerate(pick):
                lists[r].append(float(arr[j]))
        for r in pick:
            pos[r] += 1
    return got


def assert_close(ours: list[float], ref: F64, name: str) -> None:
    ours_a = np.array(ours)
    assert np.array_equal(np.isnan(ours_a), np.isnan(ref)), name
    ok = ~np.isnan(ref)
    assert np.allclose(ours_a[ok], ref[ok], rtol=1e-9, atol=0.0), name


def check_against_talib(series: list[tuple[F64, ...]], cfg: IndicatorConfig, seed: int) -> None:
    bank = IndicatorBank(cfg)
    got = feed(bank, series, np.random.default_rng(seed))
    for r, (_o, h, lo, c, v) in enumerate(series):
        ema = talib.EMA(c, cfg.ema_period)
        assert_close(got["ema"][r], ema, "ema")
        prev = np.roll(ema, 1)
        prev[0] = np.nan
        assert_close(got["ema_slope"][r], ema / prev - 1.0, "ema_slope")
        assert_close(got["rsi"][r], talib.RSI(c, cfg.rsi_period), "rsi")
        assert_close(got["atr"][r], talib.ATR(h, lo, c, cfg.atr_period), "atr")
        sma = talib.SMA(v, cfg.volume_period)
        assert_close(got["volume_sma"][r], sma, "volume_sma")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(sma > 0, v / sma, np.nan)
        assert_close(got["volume_ratio"][r], ratio, "volume_ratio")
        slope = ema / prev - 1.0
        trend = np.where((c > ema) & (slope > 0), 1.0, np.where((c < ema) & (slope < 0), -1.0, 0))
        trend[np.isnan(slope)] = np.nan
        assert_close(got["trend"][r], trend, "trend")


@pytest.mark.parametrize("cfg", [IndicatorConfig(), IndicatorConfig(5, 3, 7, 2)])
def test_generated_series_equal_talib(cfg: IndicatorConfig) -> None:
    rng = np.random.default_rng(7)
    lengths = [1, 2, cfg.ema_period, cfg.rsi_period + 1, 400, 1500, 3000]
    series = [
        random_bars(rng, n, scale)
        for n, scale in zip(lengths, [1e-4, 1, 50, 3e4, 0.02, 7, 1e5], strict=True)
    ]
    check_against_talib(series, cfg, seed=1)


def test_real_series_equal_talib() -> None:
    """1-second bars of the recorded Binance BTC and ETH trades, through the bar engine."""
    ticks = sorted(
        [
            *read_ticks(DATA / "binance-spot-btcusdt-20240808.rec.gz"),
            *read_ticks(DATA / "binance-spot-ethusdt-20240808.rec.gz"),
        ],
        key=lambda t: t.recv_ts,
    )
    config = EngineConfig(timeframes=parse_timeframes("1s"), allowed_lateness_ms=1000)
    bars = replay_ticks(ticks, config, partitions=1).bars
    series = []
    for sym in ("BTC-USDT", "ETH-USDT"):
        mine = sorted((b for b in bars if b.symbol == sym), key=lambda b: b.open_time)
        assert len(mine) > 300
        cols = [
            np.array([getattr(b, k) for b in mine])
            for k in ("open", "high", "low", "close", "volume")
        ]
        series.append(tuple(cols))
    check_against_talib(series, IndicatorConfig(), seed=2)


@pytest.mark.parametrize("seed", range(4))
def test_warm_rows_take_the_same_steps_as_the_general_path(seed: int) -> None:
    """Rows past every seeding phase use a mask-free path: the same bits, same state."""
    rng = np.random.default_rng(seed)
    config = IndicatorConfig(ema_period=5, rsi_period=3, atr_period=4, volume_period=6)
    bank = IndicatorBank(config, 8)
    series = [random_bars(rng, 60, scale) for scale in (0.01, 1.0, 100.0, 3e4, 1.0, 5.0, 7.0, 9.0)]
    rows = np.arange(8, dtype=np.int64)
    for i in range(60):
        bars = [np.array([s[k][i] for s in series]) for k in range(1, 5)]
        n = bank.count[rows]
        if int(n.min()) > bank.warm:
            twin = copy.deepcopy(bank)
            fast = bank._update_warm(rows, n, (bars[0], bars[1], bars[2], bars[3]))
            slow = twin._update_any(rows, n.copy(), (bars[0], bars[1], bars[2], bars[3]))
            assert list(fast) == list(slow)
            for key, values in slow.items():
                assert np.array_equal(fast[key], values, equal_nan=True), key
            for key, state in twin.arrays().items():
                assert np.array_equal(bank.arrays()[key], state, equal_nan=True), key
        else:
            bank.update(rows, *bars)
    assert int(bank.count.min()) > bank.warm + 30
