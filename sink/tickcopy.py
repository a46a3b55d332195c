"""Ticks as PostgreSQL binary ``COPY`` data, built column-wise with numpy (pure, no I/O).

The sink's fast path for ``ticks``: the rows of many ``ticks:{p}`` entries go to the server as
one binary COPY stream without a Python tuple, ``datetime`` or ``str`` per tick. Built per
flush from the decoded batches (``TickBatch``: a numpy record array, the symbol table and the
trade ids), it holds exactly what ``sink.rows.tick_rows`` gives, value for value (time and
receive time truncated to microseconds, ``side`` 'buy' for a non-zero side byte), in the
columns order of :data:`COLUMNS`, rows in batch order.

Format (PostgreSQL's "Binary Format" of COPY): a header, then per row a 16-bit field count and
per field a 32-bit length and the value in network byte order — ``timestamptz`` as 64-bit
microseconds since 2000-01-01 UTC, ``float8`` as an IEEE double, ``text`` as its UTF-8 bytes —
and a trailer. The fixed-size fields come first (one structured array for all rows); each row
then ends with its trade id and the text of its (symbol, side) pair, so a row is three
segments of one source buffer and each chunk of the payload is one numpy gather.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from common.contracts import TRADE_ID_SEP, TickBatch

#: The ``ticks`` columns in the order the COPY data carries them.
COLUMNS = ("time", "price", "qty", "recv_time", "trade_id", "exchange", "symbol", "side")
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # signature, flags, extension
TRAILER = struct.pack(">h", -1)
#: 2000-01-01T00:00:00Z (PostgreSQL's epoch) in Unix microseconds.
PG_EPOCH_US = 946_684_800_000_000
#: Ticks a part of the COPY data is built from at a time (see ``copy_data``).
CHUNK_ROWS = 4096
# A row's fixed part: the field count, four 8-byte fields with their lengths, and the length
# of the trade id that follows it.
_FIXED = np.dtype(
    [
        ("fields", ">i2"),
        ("time_len", ">i4"),
        ("time", ">i8"),
        ("price_len", ">i4"),
        ("price", ">f8"),
        ("qty_len", ">i4"),
        ("qty", ">f8"),
        ("recv_len", ">i4"),
        ("recv", ">i8"),
        ("trade_id_len", ">i4"),
    ]
)


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">i", len(data)) + data


@functools.lru_cache(maxsize=1 << 16)
def _tails(exchange: str, symbol: str) -> tuple[bytes, bytes]:
    """The text fields that end a row of the symbol: exchange, symbol, then side ('sell',
    'buy': side byte 0, 1). Kept for the symbols of the last flushes: a flush sees every
    symbol of its partitions again."""
    head = _text(exchange) + _text(symbol)
    return head + _text("sell"), head + _text("buy")


def copy_data(batches: Sequence[TickBatch], chunk_rows: int = CHUNK_ROWS) -> bytes:
    """The binary COPY data (header to trailer) of every tick of ``batches``, in order.

    Built ``chunk_rows`` ticks at a time (whole batches): a read of a lagging sink can
    hold hundreds of thousands of ticks, and numpy's temporaries for all of them at once (an
    8-byte index for every byte of output) cost more in memory traffic than the work: in the
    end-to-end bench the sink spent most of its CPU there before.
    """
    parts = [HEADER]
    chunk: list[TickBatch] = []
    size = 0
    for batch in batches:
        chunk.append(batch)
        size += len(batch)
        if size >= chunk_rows:
            parts.append(_rows_data(chunk, size))
            chunk, size = [], 0
    if size:
        parts.append(_rows_data(chunk, size))
    parts.append(TRAILER)
    return b"".join(parts)


def _rows_data(batches: Sequence[TickBatch], n: int) -> bytes:
    """The COPY rows (no header, no trailer) of the ``n`` ticks of ``batches``."""
    records = np.concatenate([b.records for b in batches])
    # One (symbol, side) text tail per symbol of the flush: symbols are looked up across the
    # batches, so a symbol seen in many entries is encoded once.
    index: dict[tuple[str, str, str], int] = {}
    remap: list[npt.NDArray[np.int64]] = []
    for b in batches:
        remap.append(np.array([index.setdefault(s, len(index)) for s in b.symbols], np.int64))
    tails = [tail for ex, symbol, _native in index for tail in _tails(ex, symbol)]
    sym = np.concatenate([m[b.records["sym"]] for m, b in zip(remap, batches, strict=True)])
    tail_key = sym * 2 + (records["side"] != 0)
    tail_len = np.array([len(t) for t in tails], np.int64)
    tail_start = np.cumsum(tail_len) - tail_len

    ids = TRADE_ID_SEP.join(itertools.chain.from_iterable(b.trade_ids for b in batches)).encode()
    id_bytes = np.frombuffer(ids, np.uint8)
    separators = np.flatnonzero(id_bytes == ord(TRADE_ID_SEP))
    if len(separators) != n - 1:  # only a batch built in process can hold such an id
        raise ValueError("a trade id contains the entry's id separator")
    id_start = np.empty(n, np.int64)
    id_start[0] = 0
    id_start[1:] = separators + 1
    id_len = np.empty(n, np.int64)
    id_len[:-1] = id_start[1:] - 1 - id_start[:-1]
    id_len[-1] = len(ids) - id_start[-1]

    fixed = np.empty(n, _FIXED)
    fixed["fields"] = len(COLUMNS)
    for name in ("time_len", "price_len", "qty_len", "recv_len"):
        fixed[name] = 8
    fixed["time"] = records["ts"] // 1000 - PG_EPOCH_US
    fixed["price"] = records["price"]
    fixed["qty"] = records["qty"]
    fixed["recv"] = records["recv"] // 1000 - PG_EPOCH_US
    fixed["trade_id_len"] = id_len

    # The source buffer: every fixed part, the joined ids, the tails. Row i is its fixed
    # part, its id and its tail: three segments, gathered byte by byte in one indexing.
    fixed_bytes = fixed.tobytes()
    source = np.frombuffer(fixed_bytes + ids + b"".join(tails), np.uint8)
    seg_start = np.empty((n, 3), np.int64)
    seg_len = np.empty((n, 3), np.int64)
    seg_start[:, 0] = np.arange(n, dtype=np.int64) * _FIXED.itemsize
    seg_len[:, 0] = _FIXED.itemsize
    seg_start[:, 1] = len(fixed_bytes) + id_start
    seg_len[:, 1] = id_len
    seg_start[:, 2] = len(fixed_bytes) + len(ids) + tail_start[tail_key]
    seg_len[:, 2] = tail_len[tail_key]
    lengths = seg_len.ravel()
    out_start = np.cumsum(lengths) - lengths
    gather = np.repeat(seg_start.ravel() - out_start, lengths)
    gather += np.arange(len(gather), dtype=np.int64)
    rows: bytes = source[gather].tobytes()
    return rows
