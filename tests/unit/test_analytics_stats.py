"""Statistics over outcomes (signals.analytics): the baseline's definitions, the table's
numbers against a plain count, the overlap-valid p-value, co-occurrence and the CLI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from statsmodels.stats.proportion import proportion_confint

from common.cli import main
from detectors.outcomes import OutcomeConfig
from detectors.partition import EngineConfig
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import synthetic_ticks
from signals.analytics.frames import bar_outcomes, bars_frame, baseline_rows, outcome_rows
from signals.analytics.measures import hac_pvalues
from signals.analytics.stats import StatsOptions, compute_stats
from tests.analytics_support import reference_outcomes
from tests.outcomes_support import replay_outcomes

HORIZONS = (1, 3, 10)
CONFIG = EngineConfig(
    timeframes=parse_timeframes("1s,5s"),
    allowed_lateness_ms=1000,
    outcomes=OutcomeConfig(HORIZONS, cost_bps=0.0),
)


@pytest.fixture(scope="module")
def replayed() -> dict[str, Any]:
    r = replay_outcomes(CONFIG, rate=5.0, seed=11, count=40_000)
    return {"bars": r.bar_rows, "events": r.event_rows, "lines": r.lines}


def test_bar_outcomes_follow_the_contract() -> None:
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200)))
    high = close * (1 + rng.uniform(0, 0.01, 200))
    low = close * (1 - rng.uniform(0, 0.01, 200))
    for h in (1, 4, 13):
        r, mfe, mae = bar_outcomes(close, high, low, h)
        for t in range(200):
            if t + h >= 200:
                assert math.isnan(r[t])
                continue
            assert r[t] == close[t + h] / close[t] - 1
            assert mfe[t] == max(high[t + 1 : t + h + 1]) / close[t] - 1
            assert mae[t] == min(low[t + 1 : t + h + 1]) / close[t] - 1


def test_engine_outcomes_equal_the_baseline_at_their_bar(replayed: dict[str, Any]) -> None:
    """The random-entry baseline and the engine's tracker use one definition."""
    frame = bars_frame(replayed["bars"])
    base = baseline_rows(frame, HORIZONS, 0.0)
    index = {
        (r.exchange, r.symbol, r.timeframe, r.open_time, r.direction, r.horizon): r
        for r in base.itertuples()
    }
    rows = outcome_rows(replayed["lines"])
    assert len(rows) > 1000
    for r in rows.itertuples():
        b = index[(r.exchange, r.symbol, r.timeframe, r.open_time, r.direction, r.horizon)]
        assert (b.ret, b.mfe, b.mae, b.hit) == pytest.approx((r.ret, r.mfe, r.mae, r.hit))


def test_pattern_table_numbers_equal_a_plain_count(replayed: dict[str, Any]) -> None:
    bars, events = replayed["bars"], replayed["events"]
    records = reference_outcomes(bars, events, horizons=HORIZONS)
    frame = bars_frame(bars)
    opts = StatsOptions(min_n=40)
    doc = compute_stats(outcome_rows(records), frame, baseline_rows(frame, HORIZONS, 0.0), opts)
    table = doc["patterns"]
    assert any(r["too_few"] for r in table) and any(not r["too_few"] for r in table)
    for row in table:
        h = str(row["horizon"])
        mine = [
            rec
            for rec in records
            if rec["pattern"] == row["pattern"]
            and rec["direction"] == row["direction"]
            and rec["timeframe"] == row["timeframe"]
            and h in rec["returns"]
        ]
        hits = sum(rec["hit"][h] for rec in mine)
        assert (row["n"], row["hits"]) == (len(mine), hits)
        assert row["mean_ret"] == pytest.approx(np.mean([rec["returns"][h] for rec in mine]))
        lo, hi = proportion_confint(hits, len(mine), method="wilson")
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
        sign = 1 if row["direction"] == "long" else -1
        series = [b for b in bars if b["timeframe"] == row["timeframe"]]
        base = []
        for key in {(b["exchange"], b["symbol"]) for b in series}:
            closes = [b["close"] for b in series if (b["exchange"], b["symbol"]) == key]
            h_i = row["horizon"]
            base += [sign * (closes[t + h_i] / closes[t] - 1) > 0 for t in range(len(closes) - h_i)]
        assert row["base_n"] == len(base)
        assert row["lift"] == pytest.approx(row["hit_rate"] / (sum(base) / len(base)))
        if row["too_few"]:
            assert row["rank"] is None and row["p_hit"] is None
        else:
            assert row["rank"] is not None and 0 <= row["p_hit"] <= 1
    ranked = [r["lift"] for r in table if r["rank"] is not None]
    assert ranked == sorted(ranked, reverse=True)
    for regime in ("trend", "volatility", "volume"):
        assert {r["value"] for r in doc["regimes"][regime]} <= {
            "up",
            "down",
            "flat",
            "low",
            "mid",
            "high",
            "normal",
        }


def test_cooccurrence_joint_plus_alone_is_every_firing(replayed: dict[str, Any]) -> None:
    records = reference_outcomes(replayed["bars"], replayed["events"], horizons=HORIZONS)
    frame = bars_frame(replayed["bars"])
    doc = compute_stats(
        outcome_rows(records),
        frame,
        baseline_rows(frame, HORIZONS, 0.0),
        StatsOptions(),
        cooccurrence_horizon=3,
    )
    assert doc["cooccurrence"]
    for pair in doc["cooccurrence"][:10]:
        for side in ("a", "b"):
            total = sum(
                1
                for rec in records
                if rec["pattern"] == pair[side]
                and rec["direction"] == pair["direction"]
                and rec["timeframe"] == pair["timeframe"]
                and "3" in rec["returns"]
            )
            assert pair["joint"]["n"] + pair[f"{side}_alone"]["n"] == total


def _overlapping_null(rng: np.random.Generator, n: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A random walk's h-bar hits and a 'pattern' firing in runs of h bars at random places:
    no edge, but firings share most of their windows."""
    close = np.exp(np.cumsum(rng.normal(0, 0.01, n + h)))
    hit = close[h:] / close[:-h] - 1 > 0
    fired = np.zeros(n, bool)
    for start in rng.choice(n - h, 30, replace=False):
        fired[start : start + h] = True
    return hit, fired


def test_hac_pvalue_holds_its_size_where_a_naive_test_does_not() -> None:
    rng = np.random.default_rng(7)
    h, n, sims = 10, 1500, 150
    hac_reject = naive_reject = 0
    for _ in range(sims):
        hit, fired = _overlapping_null(rng, n, h)
        p_hit, _ = hac_pvalues(hit, hit.astype(float), fired, np.zeros(n, np.int64), h)
        hac_reject += p_hit is not None and p_hit < 0.05
        k, m, base = int(hit[fired].sum()), int(fired.sum()), float(hit.mean())
        z = (k / m - base) / math.sqrt(base * (1 - base) / m)  # treats windows as independent
        naive_reject += math.erfc(abs(z) / math.sqrt(2)) < 0.05
    assert hac_reject / sims <= 0.11  # nominal 0.05; with maxlags = h it was 0.16
    assert naive_reject / sims >= 0.25


def test_hac_pvalue_finds_a_planted_edge() -> None:
    rng = np.random.default_rng(3)
    n, h = 3000, 5
    close = np.exp(np.cumsum(rng.normal(0, 0.01, n + h)))
    hit = close[h:] / close[:-h] - 1 > 0
    fired = rng.random(n) < 0.05
    fired &= hit | (rng.random(n) < 0.3)  # fires mostly before a rise
    p_hit, p_ret = hac_pvalues(hit, close[h:] / close[:-h] - 1, fired, np.zeros(n, np.int64), h)
    assert p_hit is not None and p_hit < 1e-4
    assert p_ret is not None and p_ret < 1e-4


def test_stats_cli_table_json_and_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ticks = tmp_path / "t.csv"
    from ingest.offline.ticks import write_trades_csv  # noqa: PLC0415

    with ticks.open("w") as f:
        write_trades_csv(synthetic_ticks("binance", 2, 5.0, seed=2, count=20_000), f)
    out = tmp_path / "r"
    assert main(["replay", "--ticks", str(ticks), "--timeframes", "1s,5s", "--out", str(out)]) == 0
    doc = orjson.loads((out / "stats.json").read_bytes())
    assert {"params", "baseline", "patterns", "regimes", "cooccurrence", "signal_deciles"} <= set(
        doc
    )
    capsys.readouterr()
    assert main(["stats", str(out), "--timeframe", "1s", "--horizon", "5", "--min-n", "20"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:4] == ["rank", "pattern", "dir", "tf"]
    assert "too few" in text
    assert main(["stats", str(out), "--json", "--pattern", "doji", "--direction", "long"]) == 0
    rows = orjson.loads(capsys.readouterr().out)["rows"]
    assert rows and {(r["pattern"], r["direction"]) for r in rows} == {("CDLDOJI", "long")}
    assert main(["stats", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_hac_pvalues_on_series_shorter_than_the_lags_are_unknown_not_an_error() -> None:
    """Short series (a short replay, a thin regime) leave no lagged pairs for the HAC
    estimate: the p-values are unknown (None), and the statistics go on."""
    fired = np.array([True, False, True, False])
    groups = np.array([0, 1, 2, 3])
    assert hac_pvalues(fired, np.array([0.1, -0.1, 0.2, 0.0]), fired, groups, 20) == (None, None)
