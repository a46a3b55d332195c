"""Ticks screened before the aggregator (``detectors.plausibility``): each kind of poison is
rejected with its reason and changes nothing, verdicts do not depend on batch boundaries,
and a quiet partition or symbol resuming hours later is not mistaken for poison."""

from __future__ import annotations

import random
from typing import Any

import pytest

from common.contracts import Tick, TickBatch
from common.errors import ConfigError
from common.plausibility import PlausibilityLimits
from detectors.partition import EngineConfig, Output, PartitionEngine
from detectors.settings import engine_config_from_env
from detectors.timeframes import parse_timeframes

T0_MS = 1_723_161_600_000  # 2024-08-09T00:00:00Z
MS = 1_000_000
CONFIG = EngineConfig(timeframes=parse_timeframes("1s,1m"), allowed_lateness_ms=500)


def tick(sym: str, tid: int | str, t_ms: int, price: float = 100.0, *,
         recv_ms: int | None = None) -> Tick:  # fmt: skip
    recv = (t_ms if recv_ms is None else recv_ms) * MS
    return Tick("binance", sym, sym, str(tid), price, 1.0, "buy", t_ms * MS, recv)


def clean_stream() -> list[Tick]:
    """Two symbols, 400 trades each over ~80 s, ids consecutive per symbol."""
    rng = random.Random(3)
    out = []
    for i in range(800):
        sym = "BTC-USDT" if i % 2 else "ETH-USDT"
        out.append(tick(sym, 1000 + i // 2, T0_MS + i * 100, 100.0 + rng.random()))
    return out


def poison(ticks: list[Tick]) -> list[tuple[int, Tick, str]]:
    """(position, tick, the reason it must be rejected for)."""
    base = ticks[300]
    return [
        (100, base._replace(trade_id="5000", price=float("nan")), "bad_price"),
        (150, base._replace(trade_id="5001", qty=-1.0), "bad_qty"),
        (200, base._replace(trade_id="5002", price=float("inf")), "bad_price"),
        (250, base._replace(trade_id="5003", ts=4_070_908_800_000 * MS), "time_ahead"),
        (300, base._replace(trade_id=str(10**15)), "id_jump"),
        (350, base._replace(trade_id="-4"), "bad_id"),
        (400, base._replace(ts=5_000_000_000_000 * MS), "bad_time"),  # 2128
    ]


def with_poison(ticks: list[Tick]) -> tuple[list[Tick], list[tuple[Tick, str]]]:
    out = list(ticks)
    bad = poison(ticks)
    for pos, t, _ in sorted(bad, key=lambda x: -x[0]):
        out.insert(pos, t)
    return out, [(t, r) for _, t, r in bad]


def run(ticks: list[Tick], sizes: list[int], config: EngineConfig = CONFIG) -> Output:
    engine = PartitionEngine(config)
    out = Output()
    i = 0
    k = 0
    while i < len(ticks):
        n = sizes[k % len(sizes)]
        out.extend(engine.apply(TickBatch.from_ticks(ticks[i : i + n])))
        i += n
        k += 1
    out.extend(engine.close_all())
    return out


def verdicts(out: Output) -> list[tuple[str, str]]:
    return [(t.trade_id, reason) for _, t, reason in out.rejected]


def bars(out: Output) -> list[dict[str, Any]]:
    """The bars in a canonical order (the emission order follows batch boundaries)."""
    return sorted(
        (b.to_dict() for b in out.bars), key=lambda d: (d["symbol"], d["timeframe"], d["open_time"])
    )


@pytest.mark.parametrize("sizes", [[1], [7, 1, 50], [1000]])
def test_each_poison_is_rejected_with_its_reason_and_changes_nothing(sizes: list[int]) -> None:
    clean = clean_stream()
    poisoned, expected = with_poison(clean)
    got = run(poisoned, sizes)
    assert bars(got) == bars(run(clean, [1000]))
    assert len(got.events) == len(run(clean, [1000]).events)
    assert sorted((t.trade_id, r) for _, t, r in got.rejected) == sorted(
        (t.trade_id, r) for t, r in expected
    )


def test_each_rejection_gives_the_index_of_its_tick_in_the_batch() -> None:
    poisoned, expected = with_poison(clean_stream())
    out = PartitionEngine(CONFIG).apply(TickBatch.from_ticks(poisoned))
    assert len(out.rejected) == len(expected)
    assert [poisoned[i].trade_id for i, _, _ in out.rejected] == [
        t.trade_id for _, t, _ in out.rejected
    ]


def test_verdicts_do_not_depend_on_batch_boundaries() -> None:
    poisoned, _ = with_poison(clean_stream())
    rng = random.Random(11)
    reference = run(poisoned, [1])
    for _ in range(5):
        sizes = [rng.randint(1, 90) for _ in range(30)]
        got = run(poisoned, sizes)
        assert bars(got) == bars(reference)
        assert verdicts(got) == verdicts(reference)


def test_a_quiet_symbol_resuming_hours_later_is_plausible() -> None:
    hours = 3 * 3_600_000
    ticks = [tick("BTC-USDT", 10 + i, T0_MS + i) for i in range(5)]
    # three hours later, 500,000 trades later on the exchange, received on time
    ticks.append(tick("BTC-USDT", 500_015, T0_MS + hours))
    ticks.append(tick("BTC-USDT", 500_016, T0_MS + hours + 1))
    out = run(ticks, [1])
    assert out.rejected == []
    assert sum(b.trades for b in out.bars if b.timeframe == "1s") == 7


def test_without_a_receive_time_the_partition_time_is_the_reference() -> None:
    # a producer that records no receive time (0): ticks are judged against the partition
    ticks = [tick("BTC-USDT", i, T0_MS + i * 20_000, recv_ms=0) for i in range(1, 40)]
    ticks.insert(20, tick("BTC-USDT", 100, T0_MS + 10_000_000, recv_ms=0))  # 2.7 h ahead
    out = run(ticks, [1])
    assert [(t.trade_id, r) for _, t, r in out.rejected] == [("100", "time_ahead")]
    assert bars(run(ticks, [13])) == bars(out)


def test_non_numeric_ids_have_no_id_rule_and_mixed_batches_keep_it() -> None:
    ticks = [tick("BTC-USDT", i, T0_MS + i) for i in range(1, 10)]
    ticks += [tick("BYB-USDT", f"uuid-{i}", T0_MS + 10 + i) for i in range(5)]
    ticks.append(tick("BTC-USDT", 10**15, T0_MS + 20))  # in a batch with UUIDs
    out = run(ticks, [100])
    assert [(t.trade_id, r) for _, t, r in out.rejected] == [(str(10**15), "id_jump")]


def test_limits_are_settings() -> None:
    config = engine_config_from_env({"DETECTORS_MAX_AHEAD_S": "5", "DETECTORS_MAX_ID_JUMP": "9"})
    assert config.limits == PlausibilityLimits(max_ahead_s=5.0, max_id_jump=9)
    assert engine_config_from_env({}).limits == PlausibilityLimits()
    for var, bad in (("DETECTORS_MAX_AHEAD_S", "0.5"), ("DETECTORS_MAX_ID_JUMP", "-3"),
                     ("DETECTORS_MAX_IDS_PER_S", "many")):  # fmt: skip
        with pytest.raises(ConfigError, match=var):
            engine_config_from_env({var: bad})
