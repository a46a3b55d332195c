"""Tick inputs: recordings, normalized trade CSVs and a synthetic generator (pure, no I/O
beyond reading the file).

The one public entry point the rest of alphapulse uses is :func:`read_ticks` — the simulator
replays it and ``alphapulse replay`` (the offline reference path) reads the same files
through it, so both see exactly the same ticks.

Formats
-------
*Recording format* (``../shared/data``): gzip or plain text, one frame per line,
``<local receive time, integer ns> <raw frame as received>``. A recording holds every frame
of a session (depth, bookTicker, REST snapshots...), so it is parsed with the exchange's
adapter and only trades are kept::

    1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,...}}

*Normalized trades CSV* (tardis.dev's export layout), gzip or plain, with a header::

    exchange,symbol,timestamp,local_timestamp,id,side,price,amount
    binance,BTCUSDT,1723161255342000,1723161254087896,3735683259,sell,61837.63,0.02

``timestamp``/``local_timestamp`` are µs since the epoch; ``side`` is the taker's side;
``symbol`` is the exchange's native spelling (a normalized ``BASE-QUOTE`` is accepted too).
``exchange`` is an adapter name (``ingest.venues.EXCHANGES``) or one of tardis's names in
``TARDIS_EXCHANGES``; any other venue (``nasdaq``, a vendor's name) is taken as written, its
symbols too. Any date is accepted (the 2010..2100 window applies to live frames only).
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Final

from common.contracts import Side, Tick
from common.errors import BadInput
from ingest.venues import FrameKind, get_adapter
from ingest.venues.base import check_price_qty
from ingest.venues.symbols import native_of, symbol_names

CSV_HEADER: Final = (
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "id",
    "side",
    "price",
    "amount",
)
TARDIS_EXCHANGES: Final = {
    "bybit-spot": "bybit",
    "okex": "okx",
    "okex-swap": "okx",
    "okex-futures": "okx",
}
HISTORY_MIN_NS: Final = -(2**63) + 1
HISTORY_MAX_NS: Final = 2**63 - 1
#: Called with (line number, raw line, error) for every line a reader had to skip.
OnBad = Callable[[int, str, BadInput], None]


def open_text(path: str | Path) -> IO[str]:
    """Open a text file, gunzipping it when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def is_csv(path: str | Path) -> bool:
    """True when the file starts with the normalized trades CSV header."""
    with open_text(path) as f:
        first = f.readline().strip()
    return tuple(first.split(",")) == CSV_HEADER


def read_ticks(
    path: str | Path, exchange: str | None = None, on_bad: OnBad | None = None
) -> Iterator[Tick]:
    """Every trade in ``path`` (recording or normalized CSV, gzip or plain), in file order.

    For a recording, ``exchange`` names the adapter that parses its frames (default
    ``binance``). For a CSV, each row's ``exchange`` column is used, or ``exchange`` when
    given (to replay a CSV as another exchange). Lines that are not valid trades are skipped
    and reported to ``on_bad`` (nothing is reported for well-formed non-trade frames).
    """
    if is_csv(path):
        return read_trades_csv(path, exchange, on_bad)
    return read_recording(path, exchange or "binance", on_bad)


def read_frames(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(receive time ns, raw frame)`` of every line of a recording (no parsing).

    A line without a leading integer is returned whole with receive time 0.
    """
    with open_text(path) as f:
        for raw in f:
            line = raw.rstrip("\r\n")
            if not line:
                continue
            head, sep, rest = line.partition(" ")
            if sep and head.isdigit():
                yield int(head), rest
            else:
                yield 0, line


def read_recording(
    path: str | Path, exchange: str = "binance", on_bad: OnBad | None = None
) -> Iterator[Tick]:
    """The trades of a recording, parsed by the ``exchange`` adapter."""
    adapter = get_adapter(exchange)
    for lineno, (recv, frame) in enumerate(read_frames(path), start=1):
        try:
            result = adapter.parse(frame, recv)
        except BadInput as e:
            if on_bad is not None:
                on_bad(lineno, frame, e)
            continue
        if result.kind is FrameKind.TRADE:
            yield from result.ticks


def read_trades_csv(
    path: str | Path, exchange: str | None = None, on_bad: OnBad | None = None
) -> Iterator[Tick]:
    """The rows of a normalized trades CSV as ticks (see the module docstring)."""
    symbols: dict[tuple[str, str], tuple[str, str]] = {}
    with open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != CSV_HEADER:
            raise ValueError(f"{path}: not a normalized trades CSV (header {header!r})")
        for lineno, row in enumerate(reader, start=2):
            try:
                yield _csv_tick(row, exchange, symbols)
            except BadInput as e:
                if on_bad is not None:
                    on_bad(lineno, ",".join(row), e)


def _csv_tick(
    row: list[str], exchange: str | None, symbols: dict[tuple[str, str], tuple[str, str]]
) -> Tick:
    if len(row) != len(CSV_HEADER):
        raise BadInput("missing_field", f"{len(row)} columns, expected {len(CSV_HEADER)}")
    ex_col, sym, ts_us, local_us, trade_id, side, price_s, qty_s = row
    ex = exchange or TARDIS_EXCHANGES.get(ex_col, ex_col)
    names = symbols.get((ex, sym))
    if names is None:
        if not ex or not sym:
            raise BadInput("missing_field", "exchange" if not ex else "symbol")
        try:
            adapter = get_adapter(ex)
        except KeyError:
            # A venue that is not one of ours (a stock exchange, a history vendor): taken as
            # written, symbol too.
            names = symbols[(ex, sym)] = (sym, sym)
        else:
            names = symbols[(ex, sym)] = symbol_names(adapter, sym)
    if side not in ("buy", "sell"):
        raise BadInput("bad_type", f"side {side!r}")
    try:
        ts, recv = int(ts_us) * 1000, int(local_us) * 1000
        price, qty = float(price_s), float(qty_s)
    except ValueError as e:
        raise BadInput("bad_type", str(e)) from e
    if not trade_id:
        raise BadInput("missing_field", "id")
    check_price_qty(price, qty)
    # No 2010..2100 window here (that is a sanity check for live frames): history files may
    # hold any date that integer nanoseconds can carry.
    if not HISTORY_MIN_NS <= ts < HISTORY_MAX_NS:
        raise BadInput("absurd_value", f"trade time {ts_us} µs is outside 1678..2261")
    taker: Side = "buy" if side == "buy" else "sell"
    return Tick(ex, names[0], names[1], trade_id, price, qty, taker, ts, recv)


def write_trades_csv(ticks: Iterable[Tick], out: IO[str]) -> int:
    """Write ticks as a normalized trades CSV (native symbols, µs times); returns the rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    n = 0
    for t in ticks:
        writer.writerow(
            (
                t.exchange,
                t.native_symbol,
                t.ts // 1000,
                t.recv_ts // 1000,
                t.trade_id,
                t.side,
                repr(t.price),
                repr(t.qty),
            )
        )
        n += 1
    return n


# --- synthetic trades -------------------------------------------------------------------
_BASES: Final = ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "AVAX", "DOT", "LINK", "LTC")
SYNTHETIC_START_NS: Final = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def synthetic_symbols(exchange: str, n: int) -> list[tuple[str, str]]:
    """``n`` (normalized, native) symbols the ``exchange`` adapter can spell."""
    adapter = get_adapter(exchange)
    bases = [*_BASES, *(f"SYN{i}" for i in range(max(0, n - len(_BASES))))][:n]
    out = []
    for base in bases:
        for cand in (f"{base}-USDT", f"{base}-USDT-PERP", f"{base}-USD", f"{base}-USD-PERP"):
            native = native_of(adapter, cand)
            if native is not None:
                out.append((cand, native))
                break
        else:
            raise ValueError(f"{exchange}: cannot spell a synthetic symbol for {base}")
    return out


def synthetic_ticks(
    exchange: str,
    n_symbols: int,
    rate: float,
    *,
    seed: int = 0,
    start_ns: int = SYNTHETIC_START_NS,
    count: int | None = None,
) -> Iterator[Tick]:
    """A deterministic random walk of ``n_symbols`` symbols, ``rate`` trades/s in total.

    Trades are evenly spaced in exchange time (``1/rate`` s apart) on a randomly chosen
    symbol; each symbol's ids count 1, 2, 3... (sequential, so gap detection applies) and its
    price moves by a small Gaussian step. Endless unless ``count`` is given.
    """
    if rate <= 0 or n_symbols < 1:
        raise ValueError("synthetic trades need rate > 0 and at least one symbol")
    rng = random.Random(seed)
    symbols = synthetic_symbols(exchange, n_symbols)
    prices = [100.0 * (i + 1) for i in range(n_symbols)]
    next_id = [1] * n_symbols
    step_ns = max(1, round(1e9 / rate))
    ts = start_ns
    made = 0
    while count is None or made < count:
        i = rng.randrange(n_symbols)
        prices[i] = max(0.01, round(prices[i] * (1.0 + rng.gauss(0.0, 2e-4)), 2))
        qty = round(rng.expovariate(1.0), 4) or 0.0001
        side: Side = "buy" if rng.random() < 0.5 else "sell"
        norm, native = symbols[i]
        yield Tick(exchange, norm, native, str(next_id[i]), prices[i], qty, side, ts, ts)
        next_id[i] += 1
        ts += step_ns
        made += 1


def as_exchange(ticks: Iterable[Tick], exchange: str) -> Iterator[Tick]:
    """The same trades as if ``exchange`` had printed them (native symbols re-spelled from
    the normalized ones); lets one recording feed a simulated exchange of another kind."""
    adapter = get_adapter(exchange)
    natives: dict[str, str] = {}
    for t in ticks:
        if t.exchange == exchange:
            yield t
            continue
        native = natives.get(t.symbol)
        if native is None:
            native = natives[t.symbol] = adapter.to_native(t.symbol)
        yield Tick(exchange, t.symbol, native, t.trade_id, t.price, t.qty, t.side, t.ts, t.recv_ts)
