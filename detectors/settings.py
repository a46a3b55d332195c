"""Detector settings, read from the environment once in ``main()``.

=======================  ================  ===================================================
variable                 default           meaning
=======================  ================  ===================================================
``TIMEFRAMES``           1m,5m,15m,1h,4h,1d bar timeframes (each a multiple of the previous)
``PATTERNS``             (all 61)          comma-separated TA-Lib ``CDL*`` names
``ALLOWED_LATENESS_MS``  5000              watermark = highest event time - this
``IDLE_CLOSE_MS``        10000             live only: after this long without a new tick in
                                           a partition, advance its watermark by the wall
                                           time elapsed since its last progress (0 = off;
                                           set 0 to compare a slow feed with replay)
``COOLDOWN_BARS``        5                 horizon of ``recent`` in a pattern event (bars);
                                           signals refuses a longer cooldown than this
``EMA_PERIOD``           20                EMA behind ``ema``/``ema_slope``/``trend``
``OUTCOME_HORIZONS``     1,5,10,20         bars after a pattern event at which its outcome is
                                           emitted (``off`` = no outcome tracking)
``OUTCOME_COST_BPS``     0                 a return counts as a hit above this (basis points)
``LEASE_TTL_MS``         10000             partition lease time-to-live
``CHECKPOINT_INTERVAL``  1000              ms between checkpoints of a busy partition
``HEARTBEAT_MS``         LEASE_TTL_MS / 3  membership heartbeat / lease renewal period
``WORK_SLICE_MS``        50                a partition applies entries for about this long,
                                           then writes, checkpoints if due and yields, so
                                           heartbeat and renewal are never starved by work
``COALESCE_MS``          50                live, between bar boundaries: a partition that
                                           has caught up reads again after this long, so
                                           the small entries ingest writes every few ms are
                                           applied together; from this long (event time)
                                           before its next bar can close it reads at once;
                                           before that, entries that cannot close a bar are
                                           held (not applied) for up to twice this long
                                           (0 = always read and apply at once)
``DETECTOR_ID``          host-pid-random   this process's member id
``DETECTORS_MAX_AHEAD_S`` 300              a tick further ahead of both its receive time and
                                           the partition's highest event time is rejected
``DETECTORS_MAX_ID_JUMP`` 1000000          numeric ids may jump this far above the series'
``DETECTORS_MAX_IDS_PER_S`` 100000         highest, plus this per second elapsed (else rejected)
=======================  ================  ===================================================

Plus every shared variable of ``CommonSettings`` (``REDIS_URL``, ``PARTITIONS``, ``BATCH_COUNT``,
``BLOCK_MS`` ...). Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from common.errors import ConfigError
from common.plausibility import PlausibilityLimits
from common.settings import (
    CommonSettings,
    env_float,
    env_int,
    env_list,
    env_optional,
    env_str,
    field_defaults,
    recent_bars_from_env,
)
from common.stream_consumer import unique_consumer_name
from detectors.indicators import IndicatorConfig
from detectors.outcomes import DEFAULT_HORIZONS, OutcomeConfig, parse_horizons
from detectors.partition import EngineConfig
from detectors.patterns import PATTERN_NAMES
from detectors.timeframes import DEFAULT_TIMEFRAMES, parse_timeframes


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    common: CommonSettings
    engine: EngineConfig
    idle_close_ms: int = 10_000
    lease_ttl_ms: int = 10_000
    checkpoint_interval_ms: int = 1_000
    heartbeat_ms: int = 3_333
    work_slice_ms: int = 50
    coalesce_ms: int = 50
    detector_id: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DetectorSettings:
        e = os.environ if env is None else env
        d = field_defaults(cls)
        common = CommonSettings.from_env(e)
        lease_ttl = env_int(e, "LEASE_TTL_MS", d["lease_ttl_ms"], lo=500, hi=600_000)
        heartbeat = env_int(e, "HEARTBEAT_MS", lease_ttl // 3, lo=50, hi=lease_ttl - 1)
        member = env_optional(e, "DETECTOR_ID") or unique_consumer_name()
        return cls(
            common=common,
            engine=engine_config_from_env(e),
            idle_close_ms=env_int(e, "IDLE_CLOSE_MS", d["idle_close_ms"], lo=0),
            lease_ttl_ms=lease_ttl,
            checkpoint_interval_ms=env_int(
                e, "CHECKPOINT_INTERVAL", d["checkpoint_interval_ms"], lo=0, hi=3_600_000
            ),
            heartbeat_ms=heartbeat,
            work_slice_ms=env_int(e, "WORK_SLICE_MS", d["work_slice_ms"], lo=1, hi=heartbeat),
            coalesce_ms=env_int(e, "COALESCE_MS", d["coalesce_ms"], lo=0, hi=heartbeat),
            detector_id=member,
        )


def engine_config_from_env(env: Mapping[str, str]) -> EngineConfig:
    """The result-determining part (shared by the worker and ``alphapulse replay``)."""
    d = field_defaults(EngineConfig)
    timeframes = parse_timeframes(env_str(env, "TIMEFRAMES", DEFAULT_TIMEFRAMES))
    chosen = parse_patterns(env_list(env, "PATTERNS"))
    ema = env_int(env, "EMA_PERIOD", field_defaults(IndicatorConfig)["ema_period"], lo=2, hi=1000)
    return EngineConfig(
        timeframes=timeframes,
        allowed_lateness_ms=env_int(env, "ALLOWED_LATENESS_MS", d["allowed_lateness_ms"], lo=0),
        patterns=chosen,
        indicators=IndicatorConfig(ema_period=ema),
        cooldown_bars=recent_bars_from_env(env),
        outcomes=outcome_config_from_env(env),
        limits=PlausibilityLimits.from_env(env, "DETECTORS"),
    )


def outcome_config_from_env(env: Mapping[str, str]) -> OutcomeConfig:
    """``OUTCOME_HORIZONS`` (unset or empty: the default; ``off``: none), ``OUTCOME_COST_BPS``."""
    raw = env_str(env, "OUTCOME_HORIZONS", "")
    if raw.lower() == "off":
        horizons: tuple[int, ...] = ()
    else:
        horizons = parse_horizons(raw) if raw else DEFAULT_HORIZONS
        if not horizons:
            raise ConfigError("OUTCOME_HORIZONS", f"expected bar counts or off, got {raw!r}")
    cost = env_float(
        env, "OUTCOME_COST_BPS", field_defaults(OutcomeConfig)["cost_bps"], lo=0.0, hi=10_000.0
    )
    return OutcomeConfig(horizons=horizons, cost_bps=cost)


def parse_patterns(names: tuple[str, ...], variable: str = "PATTERNS") -> tuple[str, ...]:
    """Validate pattern names (``all`` or empty = every pattern)."""
    upper = tuple(n.upper() for n in names)
    if not upper or upper == ("ALL",):
        return tuple(PATTERN_NAMES)
    unknown = [n for n in upper if n not in PATTERN_NAMES]
    if unknown:
        raise ConfigError(variable, f"unknown pattern(s) {', '.join(unknown)}")
    if len(set(upper)) != len(upper):
        raise ConfigError(variable, "a pattern is listed twice")
    return upper
