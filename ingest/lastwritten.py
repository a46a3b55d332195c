"""The last trade id written per (exchange, symbol), kept in Redis so it survives a crash.

The tick writer appends each ``ticks:{p}`` entry with ``append.lua``, which in the same
atomic step raises ``ingest:last_id:{p}[exchange:symbol]`` to the highest id of that symbol in
the entry (value ``<id>:<trade time ns>``). A restarted ingest reads these back
(:func:`load_last_written`) and seeds its deduper (``TradeDeduper.resume``): the first trade
of a symbol after the restart is then compared with what was really written, so trades lost
with the killed process show up as a counted gap (and are backfilled where the exchange has
a REST history) instead of the restarted process silently taking a new baseline.

Only exchanges whose trade ids are consecutive integers (``trade_ids_sequential``) are
remembered: for the others an id says nothing about what is missing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

import numpy as np

from common.contracts import TickBatch
from common.lua import lua_script
from common.names import Keys, partition_of

APPEND_LUA = lua_script("ingest", "append")


class LastWritten(NamedTuple):
    """The highest trade id written for one symbol and that trade's time (ns)."""

    trade_id: int
    ts: int


def member(exchange: str, symbol: str) -> str:
    """The hash field of one (exchange, normalized symbol)."""
    return f"{exchange}:{symbol}"


def encode(last: LastWritten) -> bytes:
    return b"%d:%d" % (last.trade_id, last.ts)


def decode(value: bytes | str) -> LastWritten | None:
    """``b"123:1723161255342000000"`` → LastWritten; None for anything else (not trusted)."""
    raw = value.decode() if isinstance(value, bytes) else value
    tid, sep, ts = raw.partition(":")
    if not sep or not tid.isdigit() or not ts.isdigit():
        return None
    return LastWritten(int(tid), int(ts))


def batch_last_ids(batch: TickBatch, sequential: Collection[str]) -> bytes:
    """``append.lua``'s last-id argument for ``batch``: per symbol whose exchange is in
    ``sequential``, one line ``<hash field>\t<trade id>:<trade time ns>\n`` (the field and the
    value the script stores), all in ONE argument; ``b""`` when there is none.

    One argument per entry, not three per symbol: with many interleaved symbols an entry
    holds hundreds of them, and redis-py's per-argument packing cost more than the entry.
    Fields (``exchange:symbol``) never hold a tab or a newline (normalized names).

    The last trade, not the highest id: parsing every id costs as much as the rest of the
    write path, and the two differ only when a late trade (one filling an earlier gap,
    counted ``late`` by the deduper) is a symbol's last in an entry. ``append.lua`` never
    lowers the remembered id, so it can then only stay *below* what was written: a restart
    right after such an entry refetches a few trades, which the detectors and the sink drop
    by trade id. Ids that are not (ASCII) integers are not remembered."""
    syms = batch.symbols
    n = len(batch)
    prefixes = [f"{ex}:{symbol}\t" if ex in sequential else "" for ex, symbol, _ in syms]
    if not n or not any(prefixes):
        return b""
    if len(syms) == 1:
        sym_rows, last_rows = [0], [n - 1]
    else:  # the last row of each symbol: the first in the reversed index column
        present, first_rev = np.unique(batch.records["sym"][::-1], return_index=True)
        sym_rows, last_rows = present.tolist(), (n - 1 - first_rev).tolist()
    ids, ts = batch.trade_ids, batch.records["ts"][last_rows].tolist()
    lines = [
        f"{prefixes[i]}{ids[k]}:{t}\n"
        for i, k, t in zip(sym_rows, last_rows, ts, strict=True)
        if prefixes[i] and ids[k].isdigit() and ids[k].isascii()
    ]
    return "".join(lines).encode()


def parse_last_ids(packed: bytes) -> list[tuple[str, LastWritten]]:
    """The (hash field, last written) pairs of a :func:`batch_last_ids` argument, as
    ``append.lua`` reads them (for tests and tools; the script parses it in Redis)."""
    out: list[tuple[str, LastWritten]] = []
    for line in packed.decode().splitlines():
        field, _, value = line.partition("\t")
        last = decode(value)
        if last is None:
            raise ValueError(f"bad last-id line {line!r}")
        out.append((field, last))
    return out


async def load_last_written(
    redis: Any, keys: Keys, exchange: str, symbols: Sequence[str]
) -> dict[str, LastWritten]:
    """What the writer remembered for these normalized ``symbols`` of ``exchange`` (symbols
    never written are absent). One HMGET per partition (only at start)."""
    by_partition: dict[int, list[str]] = {}
    for s in symbols:
        by_partition.setdefault(partition_of(exchange, s, keys.partitions), []).append(s)
    order = list(by_partition.items())
    replies = [
        await redis.hmget(keys.ingest_last_ids(p), [member(exchange, s) for s in syms])
        for p, syms in order
    ]
    out: dict[str, LastWritten] = {}
    for (_, syms), values in zip(order, replies, strict=True):
        for s, v in zip(syms, values, strict=True):
            last = decode(v) if v is not None else None
            if last is not None:
                out[s] = last
    return out
