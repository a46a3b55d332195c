"""``IngestSettings``: what ``python -m ingest`` reads from the environment (once, in main).

=================================  =========  ================================================
variable                           default    meaning
=================================  =========  ================================================
``EXCHANGES``                      (needed)   ``exchange:SYM,SYM;exchange:SYM`` — symbols native
                                              (``BTCUSDT``, ``BTC/USD``) or ``BASE-QUOTE``
``INGEST_URL_<EXCHANGE>``          adapter's  WebSocket URL override (``-`` → ``_``, e.g.
                                              ``INGEST_URL_BINANCE_FUTURES``): simulator/tests
``INGEST_FLUSH_MS``                5          latency bound of a tick micro-batch
``INGEST_BOUNDARY_FLUSH_MS``       1000       flush at once the first tick of a partition in
                                              each new interval of this length (exchange
                                              time): the tick that closes its bars (0: off)
``INGEST_BATCH_SIZE``              1000       ticks per ``ticks:{p}`` entry at most
``INGEST_QUEUE_BOUND``             100000     ticks held in memory before reads pause
``INGEST_STREAM_MAXLEN``           0          approximate MAXLEN per tick stream (0 = none;
                                              trimming is the runtime's job)
``INGEST_MAX_CONNECTION_AGE_S``    adapter's  rotate connections after this long (Binance
                                              default: 95 % of 24 h)
``INGEST_IDLE_TIMEOUT_S``          adapter's  no frame for this long → reconnect
``INGEST_PING_INTERVAL_S``         adapter's  text ping period (Bybit/OKX/Kraken)
``INGEST_WS_PING_INTERVAL_S``      20         WebSocket ping period
``INGEST_WS_PING_TIMEOUT_S``       20         pong wait before the socket counts as dead
``INGEST_OPEN_TIMEOUT_S``          10         connect + handshake timeout
``INGEST_BACKOFF_BASE_S``          0.5        reconnect backoff: base · 2^attempt, full jitter
``INGEST_BACKOFF_MAX_S``           30         ... capped here
``INGEST_DEDUP_WINDOW``            4096       trade ids remembered per symbol for duplicates
``INGEST_GC_GEN0``                 GC_GEN0    ingest's own ``GC_GEN0`` (the common setting:
                                              Python GC generation-0 threshold, 0: Python's
                                              default 700); fewer collections, ~15 % faster
``INGEST_READ_BATCH``              128        frames already received that a reader handles
                                              as one batch (Binance; 1 = frame by frame)
``INGEST_BACKFILL``                1          fetch the trades of a gap from the exchange's
                                              REST history (binance, binance-futures, kraken)
``INGEST_REST_URL_<EXCHANGE>``     adapter's  REST base URL (``http(s)://``; the simulator's
                                              ``http://HOST:PORT/<exchange>``). With an
                                              ``INGEST_URL_*`` override and no REST URL, that
                                              exchange is not backfilled (a simulated stream
                                              is never filled from the real exchange)
``INGEST_BACKFILL_TIMEOUT_S``      3          a gap's backfill gives up after this long (its
                                              held trades wait that long at most: keep it well
                                              below the detectors' ALLOWED_LATENESS_MS)
``INGEST_BACKFILL_MAX_TRADES``     10000      trades fetched per gap at most
``INGEST_BACKFILL_HOLD_MAX``       20000      live trades held per exchange during backfills
``INGEST_BACKFILL_RATE_PER_S``     5          REST requests per second per exchange
``INGEST_MAX_AHEAD_S``             300        a trade time further ahead of its receipt is
                                              implausible (``time_ahead``, dead-lettered)
``INGEST_MAX_ID_JUMP``             1000000    sequential ids may jump this far ...
``INGEST_MAX_IDS_PER_S``           100000     ... plus this per second of trade time since
                                              the symbol's last trade (else ``id_jump``)
=================================  =========  ================================================

Plus every ``CommonSettings`` variable (``REDIS_URL``, ``PARTITIONS``, ``NAMESPACE``,
``METRICS_PORT``, ``GRACE_SECONDS``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from common.errors import BadInput, ConfigError
from common.plausibility import PlausibilityLimits
from common.settings import CommonSettings, env_bool, env_float, env_int, env_optional
from ingest.venues import EXCHANGES, get_adapter
from ingest.venues.symbols import symbol_names


@dataclass(frozen=True, slots=True)
class IngestSettings:
    common: CommonSettings
    exchanges: tuple[tuple[str, tuple[str, ...]], ...]  # (exchange, native symbols)
    urls: tuple[tuple[str, str], ...] = ()  # (exchange, URL override)
    flush_ms: float = 5.0
    boundary_flush_ms: int = 1000
    batch_size: int = 1000
    queue_bound: int = 100_000
    stream_maxlen: int = 0
    max_connection_age_s: float | None = None
    idle_timeout_s: float | None = None
    ping_interval_s: float | None = None
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0
    open_timeout_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    dedup_window: int = 4096
    read_batch: int = 128
    # --- gap backfill (ingest.backfill); rest_urls: exchanges backfilled, and from where
    rest_urls: tuple[tuple[str, str], ...] = ()
    backfill_timeout_s: float = 3.0
    backfill_max_trades: int = 10_000
    backfill_hold_max: int = 20_000
    backfill_rate_per_s: float = 5.0
    limits: PlausibilityLimits = field(default_factory=PlausibilityLimits)

    def url(self, exchange: str) -> str | None:
        return dict(self.urls).get(exchange)

    def rest_url(self, exchange: str) -> str | None:
        """Where ``exchange``'s gaps are backfilled from (None: they are only counted)."""
        return dict(self.rest_urls).get(exchange)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IngestSettings:
        common = CommonSettings.from_env(env)
        exchanges = parse_exchanges(env.get("EXCHANGES", ""))
        urls = []
        for name, _ in exchanges:
            var = url_variable(name)
            url = env_optional(env, var)
            if url is not None:
                if not url.startswith(("ws://", "wss://")):
                    raise ConfigError(var, f"expected a ws:// or wss:// URL, got {url!r}")
                urls.append((name, url))
        d = DEFAULTS
        batch = env_int(env, "INGEST_BATCH_SIZE", d.batch_size, lo=1, hi=100_000)
        bound = env_int(env, "INGEST_QUEUE_BOUND", d.queue_bound, lo=1, hi=100_000_000)
        if bound < batch:
            raise ConfigError("INGEST_QUEUE_BOUND", f"expected >= INGEST_BATCH_SIZE ({batch})")
        # 0 (the default): the adapter's own value
        age = env_float(env, "INGEST_MAX_CONNECTION_AGE_S", 0.0, lo=0.0)
        idle = env_float(env, "INGEST_IDLE_TIMEOUT_S", 0.0, lo=0.0)
        ping = env_float(env, "INGEST_PING_INTERVAL_S", 0.0, lo=0.0)
        # INGEST_GC_GEN0 (ingest's before GC_GEN0 was everyone's) still wins for ingest.
        gen0 = env_int(env, "INGEST_GC_GEN0", common.gc_gen0, lo=0)
        if gen0 != common.gc_gen0:
            common = replace(common, gc_gen0=gen0)
        return cls(
            common=common,
            exchanges=exchanges,
            urls=tuple(urls),
            flush_ms=env_float(env, "INGEST_FLUSH_MS", d.flush_ms, lo=0.0, hi=60_000),
            boundary_flush_ms=env_int(
                env, "INGEST_BOUNDARY_FLUSH_MS", d.boundary_flush_ms, lo=0, hi=86_400_000
            ),
            batch_size=batch,
            queue_bound=bound,
            stream_maxlen=env_int(env, "INGEST_STREAM_MAXLEN", d.stream_maxlen, lo=0),
            max_connection_age_s=age or None,
            idle_timeout_s=idle or None,
            ping_interval_s=ping or None,
            ws_ping_interval_s=env_float(
                env, "INGEST_WS_PING_INTERVAL_S", d.ws_ping_interval_s, lo=0.1
            ),
            ws_ping_timeout_s=env_float(
                env, "INGEST_WS_PING_TIMEOUT_S", d.ws_ping_timeout_s, lo=0.1
            ),
            open_timeout_s=env_float(env, "INGEST_OPEN_TIMEOUT_S", d.open_timeout_s, lo=0.1),
            backoff_base_s=env_float(env, "INGEST_BACKOFF_BASE_S", d.backoff_base_s, lo=0.0),
            backoff_max_s=env_float(env, "INGEST_BACKOFF_MAX_S", d.backoff_max_s, lo=0.0),
            dedup_window=env_int(env, "INGEST_DEDUP_WINDOW", d.dedup_window, lo=1),
            read_batch=env_int(env, "INGEST_READ_BATCH", d.read_batch, lo=1, hi=4096),
            rest_urls=backfill_urls(env, exchanges, dict(urls)),
            backfill_timeout_s=env_float(
                env, "INGEST_BACKFILL_TIMEOUT_S", d.backfill_timeout_s, lo=0.1, hi=600
            ),
            backfill_max_trades=env_int(
                env, "INGEST_BACKFILL_MAX_TRADES", d.backfill_max_trades, lo=1
            ),
            backfill_hold_max=env_int(env, "INGEST_BACKFILL_HOLD_MAX", d.backfill_hold_max, lo=1),
            backfill_rate_per_s=env_float(
                env, "INGEST_BACKFILL_RATE_PER_S", d.backfill_rate_per_s, lo=0.01
            ),
            limits=PlausibilityLimits.from_env(env, "INGEST"),
        )


#: Every ingest default, in one place: the field defaults above. The classes ingest builds
#: from the settings (``TickWriter``, ``ConnectionOptions``, ``BackfillOptions``,
#: ``TradeDeduper``, ``HistoryClient``) take their own defaults from here.
DEFAULTS: Final = IngestSettings(common=CommonSettings(), exchanges=())


def rest_url_variable(exchange: str) -> str:
    """``binance-futures`` → ``INGEST_REST_URL_BINANCE_FUTURES`` (its REST history URL)."""
    return "INGEST_REST_URL_" + exchange.upper().replace("-", "_")


def backfill_urls(
    env: Mapping[str, str],
    exchanges: tuple[tuple[str, tuple[str, ...]], ...],
    ws_overrides: Mapping[str, str],
) -> tuple[tuple[str, str], ...]:
    """The exchanges whose gaps are backfilled and their REST base URLs: those with a REST
    history, unless ``INGEST_BACKFILL`` is off; ``INGEST_REST_URL_<X>`` wins, else the
    adapter's — but not for an exchange whose WebSocket URL is overridden (a simulator or a
    test feed must not be filled from the real exchange's history)."""
    enabled = env_bool(env, "INGEST_BACKFILL", True)
    out = []
    for name, _ in exchanges:
        var = rest_url_variable(name)
        url = env_optional(env, var)
        if url is not None and not url.startswith(("http://", "https://")):
            raise ConfigError(var, f"expected an http:// or https:// URL, got {url!r}")
        adapter = get_adapter(name)
        if url is not None and adapter.history_path is None:
            raise ConfigError(var, f"{name} has no REST trade history to backfill from")
        if url is None and name not in ws_overrides:
            url = adapter.default_rest_url
        if enabled and url is not None and adapter.history_path is not None:
            out.append((name, url))
    return tuple(out)


def url_variable(exchange: str) -> str:
    """``binance-futures`` → ``INGEST_URL_BINANCE_FUTURES``: the variable overriding its URL."""
    return "INGEST_URL_" + exchange.upper().replace("-", "_")


def parse_exchanges(raw: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``binance:BTCUSDT,ETHUSDT;kraken:BTC/USD`` → ((exchange, native symbols), ...)."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        name, sep, syms = part.partition(":")
        name = name.strip().lower()
        if not sep or name not in EXCHANGES:
            raise ConfigError(
                "EXCHANGES", f"expected exchange:SYM,SYM;... with exchange in "
                f"{'|'.join(EXCHANGES)}, got {part!r}"
            )  # fmt: skip
        adapter = get_adapter(name)
        natives = out.setdefault(name, [])
        for sym in filter(None, (s.strip() for s in syms.split(","))):
            try:
                natives.append(symbol_names(adapter, sym)[1])
            except BadInput as e:
                raise ConfigError("EXCHANGES", f"{name}: cannot read symbol {sym!r}: {e}") from e
        if not natives:
            raise ConfigError("EXCHANGES", f"{name}: no symbols")
    if not out:
        raise ConfigError("EXCHANGES", "expected exchange:SYM,SYM;..., got nothing")
    return tuple((name, tuple(dict.fromkeys(syms))) for name, syms in out.items())
