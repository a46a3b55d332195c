"""``TickRows`` and the binary COPY data of ticks (``sink.tickcopy``), without a server (the
round trip through PostgreSQL and TimescaleDB: tests/integration/test_sink_tickcopy.py)."""

from __future__ import annotations

import numpy as np
import pytest

from common.contracts import Tick, TickBatch
from sink import tickcopy
from sink.rows import TickRows, tick_rows
from tests.sink_support import decoded_batch, odd_tick_batches


def test_tick_rows_are_made_only_when_looked_at_and_equal_tick_rows() -> None:
    first, second = odd_tick_batches()
    rows = TickRows([first])
    assert rows._rows is None and len(rows) == 4
    rows.extend(TickRows([second]))
    assert rows._rows is None and len(rows) == 6 and rows.batches == [first, second]
    expected = tick_rows(first) + tick_rows(second)
    assert [repr(r) for r in rows] == [repr(r) for r in expected]
    assert repr(rows[2]) == repr(expected[2]) and repr(rows[4:]) == repr(expected[4:])
    data = rows.copy_data()
    assert rows.copy_data() is data  # built once (the staging fallback copies it again)
    rows.extend(TickRows([first]))  # after the tuples and the data were made: they follow
    assert rows.copy_data() == tickcopy.copy_data([first, second, first])
    assert len(rows) == len(rows.rows()) == 10
    with pytest.raises(TypeError, match="TickRows extends with TickRows"):
        rows.extend(expected)


def test_a_trade_id_holding_the_separator_is_refused() -> None:
    # Only a batch built in process can hold one (an entry's ids are split on it); the store
    # then takes the record path (ValueError is a rejection), which stores it as it is.
    batch = TickBatch.from_ticks([Tick("binance", "B", "b", "1\x1f2", 1.0, 1.0, "buy", 1, 1)])
    with pytest.raises(ValueError, match="separator"):
        tickcopy.copy_data([batch])


def test_copy_data_is_the_pgcopy_layout() -> None:
    pg_epoch_ns = 946_684_800 * 10**9
    tick = Tick("binance", "BTC", "btc", "42", 1.5, 2.0, "sell", pg_epoch_ns + 1_000,
                pg_epoch_ns + 2_999)  # fmt: skip
    batch = decoded_batch([tick])
    data = tickcopy.copy_data([batch])
    body = data[len(tickcopy.HEADER) : -len(tickcopy.TRAILER)]
    fixed = np.frombuffer(body[:54], dtype=tickcopy._FIXED)[0]
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    assert (fixed["fields"], fixed["time"], fixed["recv"], fixed["trade_id_len"]) == (8, 1, 2, 2)
    assert (fixed["price"], fixed["qty"]) == (1.5, 2.0)
    assert body[54:] == (  # the id (its length ends the fixed part), the symbol and side
        b"42" + b"\x00\x00\x00\x07binance" + b"\x00\x00\x00\x03BTC"
        + b"\x00\x00\x00\x04sell"
    )  # fmt: skip


def test_copy_data_built_in_chunks_is_the_same_data() -> None:
    batches = [*odd_tick_batches(), decoded_batch([]), *odd_tick_batches()]
    whole = tickcopy.copy_data(batches, chunk_rows=10**9)
    assert tickcopy.copy_data(batches, chunk_rows=1) == whole
    assert tickcopy.copy_data(batches, chunk_rows=5) == whole
    assert whole.count(b"ETH-USDT") == 4  # one shared symbol, twice in each pair of entries
