"""The pure parts of restart recovery and gap backfill: the deduper resumed from the last
written id, the last ids an entry remembers, which trades of a REST page fill a gap, the
adapters' REST history formats (client and simulator side), the simulator's history slice,
and the backfill settings."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from common.contracts import Tick, TickBatch
from common.errors import BadInput, ConfigError
from common.names import Keys
from ingest.backfill import BackfillOptions, GapFiller, gap_trades
from ingest.lastwritten import LastWritten, batch_last_ids, decode, encode, parse_last_ids
from ingest.metrics import IngestMetrics
from ingest.rest import HistoryClient
from ingest.sequence import TradeDeduper
from ingest.settings import IngestSettings
from ingest.simulator.market import Feed, history_slice
from ingest.simulator.venues import get_server
from ingest.venues import get_adapter
from ingest.venues.base import HistoryQuery
from ingest.writer import TickWriter
from tests.ports import free_port

T0 = 1_723_161_255_342_000_000


def _tick(ex: str, sym: str, native: str, tid: int, i: int = 0) -> Tick:
    return Tick(ex, sym, native, str(tid), 100.0 + i, 0.5, "buy" if i % 2 else "sell",
                T0 + i * 1_000_000, 0)  # fmt: skip


def test_a_resumed_stream_counts_the_first_jump_and_drops_what_was_written() -> None:
    d = TradeDeduper(window=64, sequential_key=int)
    d.resume("binance", "BTC-USDT", 1000)
    assert d.check("binance", "BTC-USDT", "950").duplicate  # written before the restart
    assert d.check("binance", "BTC-USDT", "1000").duplicate
    v = d.check("binance", "BTC-USDT", "1201")
    assert v.keep and v.gap == 200
    assert d.check("binance", "BTC-USDT", "1202") == d.check("binance", "BTC-USDT", "1203")
    # trades recovered for the gap: a live copy of one later is a duplicate
    d.remember_filled("binance", "BTC-USDT", ["1001", "1002"])
    assert d.check("binance", "BTC-USDT", "1001").duplicate
    assert d.stats("binance", "BTC-USDT").backfilled == 2


def test_a_resumed_stream_whose_ids_started_over_takes_a_new_baseline() -> None:
    d = TradeDeduper(window=16, sequential_key=int)
    d.resume("binance", "BTC-USDT", 1000)
    assert d.check("binance", "BTC-USDT", "990").duplicate  # within the window: a repeat
    v = d.check("binance", "BTC-USDT", "5")  # far below: a recording replayed from the start
    assert v.keep and not v.gap and not v.duplicate
    assert d.check("binance", "BTC-USDT", "6").keep
    assert d.stats("binance", "BTC-USDT").rebased == 1
    # once trades above the remembered id were taken, a far older one is a replayed trade
    d.resume("binance", "ETH-USDT", 1000)
    assert d.check("binance", "ETH-USDT", "1001").keep
    assert d.check("binance", "ETH-USDT", "5").duplicate


def test_a_fresh_stream_still_only_sets_a_baseline() -> None:
    d = TradeDeduper(window=16, sequential_key=int)
    assert d.check("binance", "BTC-USDT", "5000").gap == 0


def test_an_entry_remembers_each_sequential_symbols_last_trade() -> None:
    ticks = [_tick("binance", "BTC-USDT", "BTCUSDT", n, n) for n in (5, 6, 7)]
    ticks += [_tick("binance", "ETH-USDT", "ETHUSDT", 3, 9)]
    ticks += [Tick("coinbase", "ETH-USD", "ETH-USD", "a-b", 1.0, 1.0, "buy", T0, 0)]
    got = batch_last_ids(TickBatch.from_ticks(ticks), {"binance"})
    assert parse_last_ids(got) == [
        ("binance:BTC-USDT", LastWritten(7, T0 + 7_000_000)),
        ("binance:ETH-USDT", LastWritten(3, T0 + 9_000_000)),
    ]
    assert batch_last_ids(TickBatch.from_ticks(ticks), set()) == b""
    assert decode(b"7:123") == LastWritten(7, 123)
    assert decode(b"junk") is None and decode("7:") is None


def test_an_entrys_last_ids_travel_as_one_argument_of_lines() -> None:
    # interleaved symbols, one late trade last, a non-integer id: one line per remembered
    # symbol (its last trade), "<field>\t<id>:<ts>\n", in one bytes argument for append.lua
    ticks = [_tick("binance", s, s.replace("-", ""), n, n) for n in range(1, 7)
             for s in ("BTC-USDT", "ETH-USDT", "SOL-USDT")]  # fmt: skip
    ticks += [_tick("binance", "ETH-USDT", "ETHUSDT", 2, 40)]  # late: last, below 6
    ticks += [Tick("binance", "SOL-USDT", "SOLUSDT", "x9", 1.0, 1.0, "buy", T0, 0)]
    packed = batch_last_ids(TickBatch.from_ticks(ticks), {"binance"})
    assert packed == (
        b"binance:BTC-USDT\t6:%d\n" % (T0 + 6_000_000)
        + b"binance:ETH-USDT\t2:%d\n" % (T0 + 40_000_000)
    )
    assert parse_last_ids(packed)[0] == ("binance:BTC-USDT", LastWritten(6, T0 + 6_000_000))
    assert encode(LastWritten(6, T0 + 6_000_000)) in packed  # the value stored verbatim
    single = batch_last_ids(TickBatch.from_ticks(ticks[:1]), {"binance"})
    assert single == b"binance:BTC-USDT\t1:%d\n" % (T0 + 1_000_000)
    with pytest.raises(ValueError, match="bad last-id line"):
        parse_last_ids(b"binance:BTC-USDT\tjunk\n")


def test_gap_trades_keeps_the_gaps_ids_once_in_order() -> None:
    page = [_tick("binance", "BTC-USDT", "BTCUSDT", n) for n in (12, 9, 10, 10, 14, 11, 8)]
    assert [t.trade_id for t in gap_trades(page, 9, 12)] == ["9", "10", "11", "12"]
    assert gap_trades(page, 20, 30) == []


@pytest.mark.parametrize(
    ("exchange", "symbol", "native"),
    [
        ("binance", "BTC-USDT", "BTCUSDT"),
        ("binance-futures", "BTC-USDT-PERP", "BTCUSDT"),
        ("kraken", "BTC-USD", "BTC/USD"),
    ],
)
def test_history_pages_render_and_parse_back_to_the_same_trades(
    exchange: str, symbol: str, native: str
) -> None:
    adapter = get_adapter(exchange)
    ticks = [
        Tick(
            exchange,
            symbol,
            native,
            str(61_044_952 + i),
            30243.4 + i / 8,
            0.34507674,
            side,
            T0 + i * 7_000_000,
            7,
        )
        for i, side in enumerate(("buy", "sell", "sell"))
    ]
    query = HistoryQuery(native, 61_044_952, T0 - 1, 1000)
    params = adapter.history_params(query)
    assert get_server(adapter.name).history_query(params).native == native
    page = adapter.parse_history(get_server(adapter.name).render_history(ticks, query), native, 7)
    assert page.ticks == ticks


def test_the_exchanges_own_history_samples_parse() -> None:
    kraken = get_adapter("kraken").parse_history(
        b'{"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,'
        b'"b","m","",61044952]],"last":"1688671969993150842"}}',
        "BTC/USD",
        0,
    )
    (t,) = kraken.ticks
    assert (t.trade_id, t.price, t.side, t.ts) == ("61044952", 30243.4, "buy", 1688669597827736900)
    assert kraken.next_since_ns == 1688671969993150842
    spot = get_adapter("binance").parse_history(
        b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",'
        b'"time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]',
        "BNBBTC",
        0,
    )
    assert [(t.trade_id, t.price, t.side) for t in spot.ticks] == [("28457", 4.000001, "sell")]


@pytest.mark.parametrize(
    ("exchange", "body"),
    [
        ("binance", b'{"code":-1121,"msg":"Invalid symbol."}'),
        ("binance", b'[{"id":1,"price":"x","qty":"1","time":1499865549590,"isBuyerMaker":true}]'),
        ("binance-futures", b"not json"),
        ("kraken", b'{"error":["EQuery:Unknown asset pair"]}'),
        ("kraken", b'{"error":[],"result":{"A":[],"B":[],"last":"1"}}'),
        ("kraken", b'{"error":[],"result":{"A":[["1","1",1.5,"b","m","",1]],"last":"1"}}'),
    ],
)
def test_bad_history_replies_are_bad_input(exchange: str, body: bytes) -> None:
    with pytest.raises(BadInput):
        get_adapter(exchange).parse_history(body, "BTCUSDT", 0)


def test_the_simulators_history_serves_what_the_market_got_to() -> None:
    ticks = [_tick("binance", "BTC-USDT", "BTCUSDT", 100 + i, i) for i in range(50)]
    stream = Feed.build("binance", ticks).symbols["BTCUSDT"]
    stream.head = 30
    ids = [t.trade_id for t in history_slice(stream, HistoryQuery("BTCUSDT", 120, None, 5), False)]
    assert ids == ["120", "121", "122", "123", "124"]
    tail = history_slice(stream, HistoryQuery("BTCUSDT", 125, None, 1000), False)
    assert [t.trade_id for t in tail] == [str(n) for n in range(125, 130)]  # not past head
    by_time = history_slice(stream, HistoryQuery("BTCUSDT", None, T0 + 27_000_000, 10), False)
    assert [t.trade_id for t in by_time] == ["127", "128", "129"]


def test_backfill_settings() -> None:
    base = {"EXCHANGES": "binance:BTCUSDT;kraken:BTC/USD;coinbase:BTC-USD;okx:BTC-USDT"}
    s = IngestSettings.from_env(base)
    assert s.rest_url("binance") == "https://api.binance.com"
    assert s.rest_url("kraken") == "https://api.kraken.com"
    assert s.rest_url("coinbase") is None and s.rest_url("okx") is None  # no id history
    # a simulated stream is never filled from the real exchange, only from a REST URL given
    sim = base | {"INGEST_URL_BINANCE": "ws://127.0.0.1:1/binance/stream"}
    assert IngestSettings.from_env(sim).rest_url("binance") is None
    given = sim | {"INGEST_REST_URL_BINANCE": "http://127.0.0.1:1/binance"}
    assert IngestSettings.from_env(given).rest_url("binance") == "http://127.0.0.1:1/binance"
    off = IngestSettings.from_env(given | {"INGEST_BACKFILL": "0"})
    assert off.rest_urls == ()


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"INGEST_REST_URL_BINANCE": "ws://x"}, "INGEST_REST_URL_BINANCE"),
        ({"INGEST_REST_URL_COINBASE": "https://x"}, "INGEST_REST_URL_COINBASE"),
        ({"INGEST_BACKFILL": "maybe"}, "INGEST_BACKFILL"),
        ({"INGEST_BACKFILL_TIMEOUT_S": "0"}, "INGEST_BACKFILL_TIMEOUT_S"),
        ({"INGEST_BACKFILL_HOLD_MAX": "0"}, "INGEST_BACKFILL_HOLD_MAX"),
    ],
)
def test_bad_backfill_settings_name_the_variable(extra: dict[str, str], variable: str) -> None:
    env = {"EXCHANGES": "binance:BTCUSDT;coinbase:BTC-USD"} | extra
    with pytest.raises(ConfigError) as err:
        IngestSettings.from_env(env)
    assert err.value.variable == variable


# --- the filler's bounds, with nothing listening for its REST requests --------------------
def _filler(hold_max: int, timeout_s: float = 30.0) -> tuple[GapFiller, TickWriter, IngestMetrics]:
    keys = Keys(4, "t:")
    metrics = IngestMetrics(CollectorRegistry())
    writer = TickWriter(None, keys, metrics, batch_size=10, max_pending=1000)  # not started
    adapter = get_adapter("binance")
    # a port nothing listens on: every request fails at once (refused), then is retried
    client = HistoryClient(adapter, f"http://127.0.0.1:{free_port()}", metrics,
                           backoff_base_s=0.01)  # fmt: skip
    deduper = TradeDeduper(window=64, sequential_key=int)
    options = BackfillOptions(timeout_s=timeout_s, hold_max=hold_max)
    filler = GapFiller(adapter, client, writer=writer, deduper=deduper, metrics=metrics,
                       redis=None, keys=keys, options=options)  # fmt: skip
    return filler, writer, metrics


def _written(writer: TickWriter) -> list[str]:
    buffers, _ = writer.cutter.take()
    return [t.trade_id for ticks in buffers.values() for t in ticks]


async def test_a_full_hold_is_released_at_once_and_its_gap_counted_lost() -> None:
    filler, writer, metrics = _filler(hold_max=3)
    ticks = [_tick("binance", "BTC-USDT", "BTCUSDT", n, n) for n in (110, 111, 112, 113)]
    assert filler.open_gap(ticks[0], 10)  # ids 100..109 missing: 110 is held
    for t in ticks[1:3]:
        filler.hold(t)
    assert _written(writer) == [] and filler.held_count == 3
    filler.hold(ticks[3])  # one past the bound: everything held goes out, in order
    assert _written(writer) == ["110", "111", "112", "113"]
    assert filler.gaps == {} and filler.held_count == 0
    v = metrics.value
    assert v("alphapulse_ingest_backfill_unrecovered_trades_total", exchange="binance") == 10
    assert (
        v("alphapulse_ingest_backfill_failures_total", exchange="binance", reason="hold_full") == 1
    )
    await filler.close()


async def test_a_down_endpoint_releases_the_hold_and_counts_the_loss() -> None:
    filler, writer, metrics = _filler(hold_max=100)
    first = _tick("binance", "ETH-USDT", "ETHUSDT", 500)
    assert filler.open_gap(first, 7)
    filler.hold(_tick("binance", "ETH-USDT", "ETHUSDT", 501))
    task = filler.gaps["ETH-USDT"].task
    assert task is not None
    await asyncio.wait_for(task, 10)
    assert _written(writer)[:2] == ["500", "501"]
    v = metrics.value
    assert v("alphapulse_ingest_backfill_unrecovered_trades_total", exchange="binance") == 7
    assert v("alphapulse_ingest_backfill_failures_total", exchange="binance", reason="http") == 1
    assert v("alphapulse_ingest_backfill_requests_total", exchange="binance") == 3  # 1 + 2 retries
    await filler.close()


async def test_a_slow_backfill_gives_up_at_its_time_limit() -> None:
    filler, writer, metrics = _filler(hold_max=100, timeout_s=0.05)
    filler.client._retries = 1000
    assert filler.open_gap(_tick("binance", "BTC-USDT", "BTCUSDT", 50), 4)
    task = filler.gaps["BTC-USDT"].task
    assert task is not None
    await asyncio.wait_for(task, 10)
    assert _written(writer) == ["50"]
    v = metrics.value
    assert v("alphapulse_ingest_backfill_failures_total", exchange="binance", reason="timeout") == 1
    assert v("alphapulse_ingest_backfill_unrecovered_trades_total", exchange="binance") == 4
    await filler.close()
