"""IngestSettings from env, the rate-limited log, the dead-letter buffer (frame handling:
``test_ingest_framestep``)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import ingest.settings as settings_module
from common.errors import ConfigError
from common.names import Keys
from ingest.deadletter import DeadLetters, RateLimitedLog
from ingest.metrics import IngestMetrics
from ingest.settings import DEFAULTS, IngestSettings, parse_exchanges


def test_settings_from_env() -> None:
    s = IngestSettings.from_env(
        {
            "EXCHANGES": "binance:BTCUSDT, eth-usdt ; kraken:BTC/USD;okx:BTC-USDT",
            "INGEST_URL_BINANCE": "ws://127.0.0.1:8765/binance/stream",
            "INGEST_FLUSH_MS": "2.5",
            "INGEST_BATCH_SIZE": "500",
            "INGEST_MAX_CONNECTION_AGE_S": "30",
            "PARTITIONS": "8",
        }
    )
    assert s.exchanges == (
        ("binance", ("BTCUSDT", "ETHUSDT")),
        ("kraken", ("BTC/USD",)),
        ("okx", ("BTC-USDT",)),
    )
    assert s.url("binance") == "ws://127.0.0.1:8765/binance/stream"
    assert s.url("kraken") is None
    assert (s.flush_ms, s.batch_size, s.max_connection_age_s) == (2.5, 500, 30.0)
    assert s.idle_timeout_s is None and s.common.gc_gen0 == 50_000
    assert s.common.partitions == 8


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "EXCHANGES"),
        ({"EXCHANGES": "nasdaq:AAPL"}, "EXCHANGES"),
        ({"EXCHANGES": "binance"}, "EXCHANGES"),
        ({"EXCHANGES": "binance:"}, "EXCHANGES"),
        ({"EXCHANGES": "binance:XYZ123"}, "EXCHANGES"),
        ({"EXCHANGES": "binance:BTCUSDT", "INGEST_URL_BINANCE": "http://x"}, "INGEST_URL_BINANCE"),
        ({"EXCHANGES": "binance:BTCUSDT", "INGEST_BATCH_SIZE": "0"}, "INGEST_BATCH_SIZE"),
        (
            {"EXCHANGES": "binance:BTCUSDT", "INGEST_BATCH_SIZE": "50", "INGEST_QUEUE_BOUND": "10"},
            "INGEST_QUEUE_BOUND",
        ),
        ({"EXCHANGES": "binance:BTCUSDT", "INGEST_FLUSH_MS": "soon"}, "INGEST_FLUSH_MS"),
        ({"EXCHANGES": "binance:BTCUSDT", "PARTITIONS": "0"}, "PARTITIONS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as err:
        IngestSettings.from_env(env)
    assert err.value.variable == variable


def test_url_variable_of_a_hyphenated_exchange() -> None:
    s = IngestSettings.from_env(
        {"EXCHANGES": "binance-futures:BTCUSDT", "INGEST_URL_BINANCE_FUTURES": "ws://h/x"}
    )
    assert s.url("binance-futures") == "ws://h/x"
    assert parse_exchanges("binance-futures:BTC-USDT-PERP")[0][1] == ("BTCUSDT",)


def test_rate_limited_log_counts_suppressed() -> None:
    logs = RateLimitedLog(interval=3600)
    assert logs.allow("binance", "bad_type") == 0
    assert logs.allow("binance", "bad_type") is None
    assert logs.allow("binance", "bad_type") is None
    assert logs.allow("kraken", "bad_type") == 0
    logs.interval = 0
    assert logs.allow("binance", "bad_type") == 2


def test_dead_letter_buffer_is_bounded_and_counts_what_it_gives_up() -> None:
    metrics = IngestMetrics(CollectorRegistry())
    redis: Any = None
    dlq = DeadLetters(redis, Keys(4), consumer="t", dropped=metrics.dlq_dropped, max_buffer=3)
    for i in range(5):
        dlq.add("binance", "invalid_json", "", f"junk{i}")
    assert dlq.pending == 3
    assert metrics.value("alphapulse_ingest_dlq_dropped_total") == 2
    assert [e[b"frame"] for e in dlq._buffer] == [b"junk2", b"junk3", b"junk4"]


def test_read_batch_setting() -> None:
    base = {"EXCHANGES": "binance:BTCUSDT"}
    assert IngestSettings.from_env(base).read_batch == 128
    assert IngestSettings.from_env(base | {"INGEST_READ_BATCH": "1"}).read_batch == 1
    for bad in ("0", "x", "5000"):
        with pytest.raises(ConfigError, match="INGEST_READ_BATCH"):
            IngestSettings.from_env(base | {"INGEST_READ_BATCH": bad})


def test_ingest_gc_gen0_is_ingests_own_gc_gen0() -> None:
    """``INGEST_GC_GEN0`` (ingest's setting before ``GC_GEN0`` was shared) still sets ingest's
    collector threshold, over ``GC_GEN0``; unset, ingest takes ``GC_GEN0``."""
    base = {"EXCHANGES": "binance:BTCUSDT"}
    assert IngestSettings.from_env(base).common.gc_gen0 == 50_000
    assert IngestSettings.from_env(base | {"GC_GEN0": "7000"}).common.gc_gen0 == 7000
    both = base | {"GC_GEN0": "7000", "INGEST_GC_GEN0": "0"}
    assert IngestSettings.from_env(both).common.gc_gen0 == 0
    assert IngestSettings.from_env(base | {"INGEST_GC_GEN0": "9000"}).common.gc_gen0 == 9000
    for variable in ("INGEST_GC_GEN0", "GC_GEN0"):
        with pytest.raises(ConfigError) as err:
            IngestSettings.from_env(base | {variable: "-1"})
        assert err.value.variable == variable
        assert err.value.problem == "expected an integer >= 0, got '-1'"


def test_the_documented_defaults_are_the_settings_defaults() -> None:
    """The variable table of ``ingest.settings`` shows the defaults ``DEFAULTS`` holds."""
    rows = re.findall(r"^``(INGEST_\w+)``\s+(\d[\d.]*)\s", settings_module.__doc__ or "", re.M)
    checked = 0
    for variable, shown in rows:
        name = variable.removeprefix("INGEST_").lower()
        for holder in (DEFAULTS, DEFAULTS.limits):
            if hasattr(holder, name):
                assert getattr(holder, name) == float(shown), variable
                checked += 1
    assert checked >= 18
    # and from_env falls back to them
    assert IngestSettings.from_env({"EXCHANGES": "binance:BTCUSDT"}) == dataclasses.replace(
        DEFAULTS,
        exchanges=(("binance", ("BTCUSDT",)),),
        rest_urls=(("binance", "https://api.binance.com"),),
    )
