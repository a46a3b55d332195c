"""Plausibility at ingest (``common.plausibility`` through ``ingest.sequence``): id jumps,
the settings (trades ahead of their receipt: ``test_ingest_framestep``)."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from common.plausibility import PlausibilityLimits
from ingest.sequence import TradeDeduper
from ingest.settings import IngestSettings

S = 1_000_000_000
T0 = 1_723_161_255_342 * 1_000_000
LIMITS = PlausibilityLimits(max_ahead_s=60.0, max_id_jump=1000, max_ids_per_s=100.0)


def test_an_id_jump_beyond_the_limit_moves_nothing() -> None:
    dd = TradeDeduper(window=100, sequential_key=int, limits=LIMITS)
    for i in range(1, 11):
        assert dd.check("binance", "BTC-USDT", str(i), T0 + i).keep
    v = dd.check("binance", "BTC-USDT", str(10**15), T0 + 11)
    assert (v.keep, v.implausible) == (False, "id_jump")
    # the real ids go on in order: no duplicates, no gap
    for i in range(11, 200):
        v = dd.check("binance", "BTC-USDT", str(i), T0 + i)
        assert v.keep and not v.gap and not v.duplicate
    stats = dd.stats("binance", "BTC-USDT")
    assert (stats.implausible, stats.duplicates, stats.gaps, stats.missing) == (1, 0, 0, 0)
    assert dd.next_id("binance", "BTC-USDT") == 200


def test_a_quiet_symbol_may_jump_in_proportion_to_the_time_elapsed() -> None:
    dd = TradeDeduper(sequential_key=int, limits=LIMITS)
    assert dd.check("kraken", "BTC-USD", "5", T0).keep  # the first id: only a baseline
    # three hours later: up to 1000 + 100/s * 10800 s ids may have passed
    assert dd.check("kraken", "BTC-USD", str(6 + 1_000_000), T0 + 10_800 * S).gap == 1_000_000
    # ... but not a second later
    v = dd.check("kraken", "BTC-USD", str(6 + 2_000_000), T0 + 10_801 * S)
    assert v.implausible == "id_jump"


def test_runs_accepted_at_once_advance_the_id_jump_clock() -> None:
    dd = TradeDeduper(sequential_key=int, limits=LIMITS)
    dd.check("binance", "BTC-USDT", "1", T0)
    assert dd.accept_runs("binance", [("BTC-USDT", 2, 9)], T0 + 3600 * S)
    # an hour's worth of ids is measured from the run's time, not from the first trade
    assert dd.check("binance", "BTC-USDT", "200000", T0 + 3600 * S + 1).implausible


def test_without_limits_and_for_non_numeric_ids_there_is_no_id_rule() -> None:
    dd = TradeDeduper(sequential_key=int)
    dd.check("binance", "BTC-USDT", "1", T0)
    assert dd.check("binance", "BTC-USDT", str(10**15), T0).keep
    uuids = TradeDeduper(limits=LIMITS)  # Bybit: ids only identify
    assert uuids.check("bybit", "BTC-USDT", "a1b2-c3", T0).keep
    assert uuids.check("bybit", "BTC-USDT", "ffff-0000", T0).keep


def test_plausibility_settings_are_validated_at_start() -> None:
    base = {"EXCHANGES": "binance:BTCUSDT"}
    assert IngestSettings.from_env(base).limits == PlausibilityLimits()
    got = IngestSettings.from_env(base | {"INGEST_MAX_ID_JUMP": "5", "INGEST_MAX_AHEAD_S": "2"})
    assert (got.limits.max_id_jump, got.limits.max_ahead_s) == (5, 2.0)
    for var, bad in (("INGEST_MAX_AHEAD_S", "0"), ("INGEST_MAX_ID_JUMP", "x"),
                     ("INGEST_MAX_IDS_PER_S", "-1")):  # fmt: skip
        with pytest.raises(ConfigError, match=var):
            IngestSettings.from_env(base | {var: bad})
