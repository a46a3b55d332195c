"""The end-to-end benchmark's paced run: signal latency and memory (see ``bench_e2e``).

:func:`soak` is importable and runs alone (``BENCH_E2E_PARTS=latency python -m tests.bench
e2e``): a stack as in ``bench_e2e``, trades at ``RATE`` ticks/s whose event times are the
wall clock, for ``SOAK_S`` seconds (60 with ``BENCH_QUICK=1``), then the trailer; every
signal's latency is its Redis entry-id time minus the receive time of the trade that closed
its bar (the first trade of its partition at or past the bar's end). The signals the trailer
closes (the last bars of every series, up to 3,000 at once, by a jump of event time that a
detector sleeping between reads takes up to ``COALESCE_MS`` to see) are counted apart. The
trades go through the in-process writer (receive time: when the bench offers them), or with
``BENCH_E2E_LATENCY_FEED=ws`` (``soak(..., via_ws=True)``) as Binance frames through the
ingest processes (receive time: ingest's stamp, read back from the ``ticks:{p}`` entries).
The rows are checked against ``alphapulse replay`` of the same trades.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis

from common.columns import event_columns
from common.contracts import TickBatch
from common.names import partition_of
from detectors.timeframes import parse_timeframe
from ingest.writer import TickWriter
from tests.bench.e2e_expected import Check, compare, run_replay
from tests.bench.e2e_feed import FeedServer, ws_frames
from tests.bench.e2e_support import (
    INGESTS,
    MS_NS,
    PARTITIONS,
    SYMBOLS,
    Stack,
    TradeArrays,
    Trades,
    cpu_snapshot,
    idle_since,
    rss_kib,
    until_written,
    write_recording,
    writer_for,
)

QUICK = os.environ.get("BENCH_QUICK") == "1"
SOAK_S = 60 if QUICK else 600
RATE = 10_000
# The bench's readers (``keep``) read at most this often: a few reads a second, not one per
# entry, and they only keep what they read; everything is worked out after the run.
KEEP_PAUSE_S = 0.1
LATENCY_WS = os.environ.get("BENCH_E2E_LATENCY_FEED", "writer") == "ws"


@dataclass
class Soak:
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (s, ms)
    emitted: list[float] = field(default_factory=list)  # emitted_at - closing tick, ms
    pattern_latencies: list[float] = field(default_factory=list)  # pattern entry, ms
    # Per signal, the hops (ms): receipt -> the closing trade's ticks:{p} entry (ingest),
    # -> its pattern event's entry (detectors), -> the signal's entry (signals).
    hops: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # MiB
    sent: int = 0
    seconds: float = 0.0
    rows: dict[str, Check] = field(default_factory=dict)
    feed: str = ""  # what wrote the ticks
    symbols: int = SYMBOLS
    cpu: dict[str, float] = field(default_factory=dict)  # cores used over the paced run
    # The trailer (sent after the paced run, its event time a minute or more ahead, to close
    # the last bars for the check against replay) is no trade of the paced load: the
    # latencies of what it closed are kept apart (ms), out of the figures above.
    trailer_sent_ns: int = 0
    trailer_latencies: list[float] = field(default_factory=list)


class Closers:
    """Per partition, the receive time of its first tick in each second of event time, and
    the id time (ms) of the ``ticks:{p}`` entry that carried it."""

    def __init__(self) -> None:
        self.secs: list[list[int]] = [[] for _ in range(PARTITIONS)]
        self.recv: list[list[int]] = [[] for _ in range(PARTITIONS)]
        self.entry_ms: list[dict[int, int]] = [{} for _ in range(PARTITIONS)]  # sec -> ms

    def add_entry(self, p: int, ts_ns: np.ndarray[Any, Any], entry_ms: int) -> None:
        """A ``ticks:{p}`` entry (in stream order): the seconds it is the first to reach."""
        seen = self.entry_ms[p]
        for sec in np.unique(ts_ns // 10**9).tolist():
            seen.setdefault(sec, entry_ms)

    def closing_entry_ms(self, p: int, end_ms: int) -> int | None:
        """Id time of the entry that carried :meth:`closing_recv`'s trade (None if unread)."""
        i = self._closing(p, end_ms)
        return self.entry_ms[p].get(self.secs[p][i]) if i is not None else None

    def add(self, part: np.ndarray[Any, Any], ts_ns: np.ndarray[Any, Any], recv_ns: Any) -> None:
        """Ticks in arrival order; ``recv_ns`` one time for all or one per tick."""
        keys = part * 10**12 + ts_ns // 10**9
        uniq, first = np.unique(keys, return_index=True)
        recv = np.broadcast_to(np.asarray(recv_ns, np.int64), keys.shape)[first].tolist()
        parts, secs = (uniq // 10**12).tolist(), (uniq % 10**12).tolist()
        for p, sec, r in zip(parts, secs, recv, strict=True):
            if not self.secs[p] or sec > self.secs[p][-1]:
                self.secs[p].append(sec)
                self.recv[p].append(r)

    def closing_recv(self, p: int, end_ms: int) -> int | None:
        """Receive time (ns) of partition ``p``'s first tick at or after ``end_ms``."""
        i = self._closing(p, end_ms)
        return self.recv[p][i] if i is not None else None

    def _closing(self, p: int, end_ms: int) -> int | None:
        """Index of the first second of partition ``p`` at or after ``end_ms`` (None: none yet)."""
        i = bisect.bisect_left(self.secs[p], -(-end_ms // 1000))
        return i if i < len(self.secs[p]) else None


class PacedFeed:
    """Where the paced run's trades go: the in-process writer, or (``via_ws``) Binance frames
    to the ingest processes through a live :class:`FeedServer`, the closing trades' receive
    times then read back from the ``ticks:{p}`` entries ingest wrote (``TickBatch`` recv)."""

    def __init__(self, trades: Trades, via_ws: bool) -> None:
        self.trades, self.via_ws = trades, via_ws
        self.closers = Closers()
        self.group_of = trades.partition * INGESTS // PARTITIONS
        groups = [
            frozenset(n for n, g in zip(trades.natives, self.group_of, strict=True) if g == i)
            for i in range(INGESTS)
        ]
        self.server = FeedServer([(g, b"") for g in groups], live=True) if via_ws else None
        self.writer: TickWriter | None = None
        # (trades, receive time ns, their frames if the feed rendered them), in sending order
        self.sent: list[tuple[TradeArrays, int, list[bytes] | None]] = []
        self.receipts: list[Received] = []  # ``ticks:{p}`` entries as read, decoded after
        self.tasks: list[asyncio.Task[None]] = []
        self.stop = asyncio.Event()  # ends the receipts reader

    async def start(self, redis: aioredis.Redis) -> Stack:
        if self.server is None:
            stack = Stack(store_ticks=False)
            await stack.start(redis)
            self.writer = writer_for(redis, stack)
            await self.writer.__aenter__()
            self._keep_receipts(redis, stack)
            return stack
        await self.server.start()
        natives = [sorted(syms) for syms, _ in self.server.groups]
        stack = Stack(store_ticks=False, ingest=[(self.server.url, n) for n in natives])
        await stack.start(redis)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self.server.subscribed)), 120)
        self._keep_receipts(redis, stack)
        return stack

    def _keep_receipts(self, redis: aioredis.Redis, stack: Stack) -> None:
        """Keep every ``ticks:{p}`` entry ingest writes, tagged with its partition, for
        :func:`closing_receipts`."""
        tags = {stack.keys.ticks(p): p for p in range(PARTITIONS)}
        self.tasks.append(asyncio.create_task(keep(redis, tags, self.receipts, self.stop)))

    def send(self, a: TradeArrays, now: int) -> None:
        """Hand the trades to ingest (its writer, or the feed server as frames); what the
        bench itself needs of them is kept as it is and worked out after the run
        (:meth:`record`), so the bench's bookkeeping does not take CPU from the stages."""
        if self.writer is not None:
            self.sent.append((a, now, None))
            self.writer.offer_columns(self.trades.columns(a, now))
            return
        assert self.server is not None
        frames, tick_group = self.trades.frames(a), self.group_of[a.idx]
        self.sent.append((a, now, frames))
        for g in range(INGESTS):
            picked = np.flatnonzero(tick_group == g).tolist()
            if picked:
                self.server.push(g, ws_frames([frames[i] for i in picked]))

    def record(self, recording: Path) -> None:
        """After the run: the trades sent, in order, as the recording ``alphapulse replay``
        reads, and (writer path) each partition's closing receive times."""
        for a, now, frames in self.sent:
            if not self.via_ws:
                self.closers.add(self.trades.partition[a.idx], a.ts_ns, now)
            write_recording(recording, frames or self.trades.frames(a), a.ts_ns)
        self.sent.clear()

    async def drain(self) -> None:
        if self.writer is not None:
            await self.writer.__aexit__(None, None, None)
            self.writer = None

    def check(self) -> None:
        """Raise what ended the receipts reader early, if anything did."""
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError("the ticks:{p} reader failed") from task.exception()

    async def close(self) -> None:
        await self.drain()
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.close()
            self.server = None


def closing_receipts(receipts: list[Received], closers: Closers, *, recv: bool) -> None:
    """After the run: each partition's entry times, and with ``recv`` the receive times
    ingest stamped (the bench knows them on the writer path)."""
    for p, entry_ms, fields in receipts:
        rec = TickBatch.decode(fields).records
        if recv:
            closers.add(np.full(len(rec), p), rec["ts"], rec["recv"])
        closers.add_entry(p, rec["ts"], entry_ms)


async def keep(
    redis: aioredis.Redis, tags: dict[str, int], out: list[Received], stop: asyncio.Event
) -> None:
    """Every entry of the streams ``tags`` names, from the start, as it arrives (XREAD, no
    group: trimming waits for the groups only, so this reader keeps up or loses entries),
    kept undecoded as ``(its stream's tag, its id time in ms (Redis's clock), its fields)``;
    a read every ``KEEP_PAUSE_S`` at most. Ends within a read's block time and a pause once
    ``stop`` is set. (Not cancelled instead: redis-py can leave a cancelled blocking read's
    task hanging for good, redis/redis-py#2579.)"""
    last = dict.fromkeys(tags, "0-0")
    while not stop.is_set():
        got: Any = await redis.xread(last, count=10_000, block=200)  # type: ignore[arg-type]
        for raw, entries in got:
            stream = raw.decode()
            for entry_id, fields in entries:
                last[stream] = entry_id.decode()
                out.append((tags[stream], int(last[stream].split("-")[0]), fields))
        if got:  # the entries wait in their streams meanwhile
            await asyncio.sleep(KEEP_PAUSE_S)


async def soak(
    redis: aioredis.Redis,
    workdir: Path,
    via_ws: bool | None = None,
    *,
    symbols: int = SYMBOLS,
    seconds: float = SOAK_S,
) -> Soak:
    """The paced run: latency and memory (see the module doc). Importable and runnable alone
    (``BENCH_E2E_PARTS=latency``; ``BENCH_E2E_LATENCY_FEED=ws`` feeds it through ingest).
    ``symbols`` and ``seconds`` set the universe and the length (the ``sweep`` part runs it
    with 10 and 100 symbols: the same 10,000 ticks/s, fewer bars closing per boundary)."""
    result = Soak(symbols=symbols)
    trades = Trades(seed=3, symbols=symbols)
    feed = PacedFeed(trades, LATENCY_WS if via_ws is None else via_ws)
    result.feed = "ingest over a WebSocket" if feed.via_ws else "the in-process writer"
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    recording = workdir / "soak.rec"
    stack: Stack | None = None
    raw: list[Received] = []
    try:
        stack = await feed.start(redis)
        loop = asyncio.get_running_loop()
        t0, t0_ms = loop.time(), time.time() * 1000
        cpu0 = await cpu_snapshot(redis, stack, "bench (writer)")
        outputs_read = asyncio.Event()
        # Signals (tag 0) and pattern entries (tag 1), for ``outputs``.
        tags = {stack.keys.signals: 0, stack.keys.patterns: 1}
        reader = asyncio.create_task(keep(redis, tags, raw, outputs_read))
        memory = asyncio.create_task(sample_rss(stack, t0, result))
        last_ms = 0
        while (elapsed := loop.time() - t0) < seconds:
            due = int(elapsed * RATE) - result.sent
            if due > 0:
                now = time.time_ns()
                last_ms = max(now // MS_NS, last_ms)
                a = trades.make(np.full(due, last_ms * MS_NS, np.int64))
                feed.send(a, now)
                result.sent += due
            await asyncio.sleep(0.005)
        result.seconds = loop.time() - t0
        cpu1 = await cpu_snapshot(redis, stack, "bench (writer)")
        result.cpu = {k: (cpu1[k] - cpu0.get(k, 0.0)) / result.seconds for k in cpu1}
        trailer_ms = (last_ms // 60_000 + 2) * 60_000
        tail = trades.trailer(trailer_ms * MS_NS)
        result.trailer_sent_ns = time.time_ns()
        feed.send(tail, result.trailer_sent_ns)
        await feed.drain()
        if feed.via_ws:
            await until_written(stack, trades.count)
        await idle_since(redis, stack, 300)
        await asyncio.sleep(0.5)
        outputs_read.set()
        await reader
        memory.cancel()
        feed.check()
        await feed.close()  # its readers are done: the bench's bookkeeping starts here
        await asyncio.to_thread(feed.record, recording)
        closing_receipts(feed.receipts, feed.closers, recv=feed.via_ws)
        latencies(outputs(raw, t0_ms), feed.closers, result)
        expected = await asyncio.to_thread(run_replay, recording, workdir / "soak", trailer_ms)
        result.rows = await compare(stack, expected, None)
    finally:
        await feed.close()
        if stack is not None:
            await stack.close(redis)
    return result


# (s since t0, entry-id ms, partition, bar end ms, emitted_at ms or None, bar id)
Output = tuple[float, int, int, int, float | None, str]
# An entry as ``keep`` kept it: (its stream's tag: a partition, or signals 0 / patterns 1,
# entry-id ms, fields)
Received = tuple[int, int, dict[bytes, bytes]]


def outputs(read: list[Received], t0_ms: float) -> list[Output]:
    """After the run: the :data:`Output` of every signal and pattern event kept (tag 1: a
    detector write's pattern events, 0: a signal); ``t0_ms``: the run's start on
    the wall clock, which the entries' id times count on."""
    tf_ms: dict[str, int] = {}

    def where(exchange: str, symbol: str, tf: str, open_ms: int) -> tuple[int, int]:
        if tf not in tf_ms:
            tf_ms[tf] = parse_timeframe(tf).ms
        return partition_of(exchange, symbol, PARTITIONS), open_ms + tf_ms[tf]

    out: list[Output] = []
    for is_patterns, entry_ms, fields in read:
        t = (entry_ms - t0_ms) / 1000
        if is_patterns:  # only the bars' columns, no record per event
            bars = event_columns(fields).bars
            rows: list[tuple[int, int]] = bars.records[["key", "open_time"]].tolist()
            for (key, open_ms), bar_id in zip(rows, bars.ids(), strict=True):
                out.append((t, entry_ms, *where(*bars.keys[key], open_ms), None, bar_id))
            continue
        doc = orjson.loads(fields[b"d"])
        at = emitted_ms(datetime.fromisoformat(doc["emitted_at"].replace("Z", "+00:00")))
        bar_id = doc["id"].rsplit(":", 1)[0]  # the signal id is the bar id + direction
        at_bar = where(doc["exchange"], doc["symbol"], doc["timeframe"], doc["open_time_ms"])
        out.append((t, entry_ms, *at_bar, at, bar_id))
    return out


def latencies(raw: list[Output], closers: Closers, out: Soak) -> None:
    """Latency of every signal (and, for the detectors' share, every pattern event), and
    each signal's hops (:attr:`Soak.hops`)."""
    pattern_ms: dict[tuple[int, int, str], int] = {}  # (partition, bar end, bar id) -> ms
    for _, entry_ms, p, end_ms, emitted, bar in raw:
        if emitted is None:
            pattern_ms[p, end_ms, bar] = entry_ms
    hops = {name: out.hops.setdefault(name, []) for name in ("ingest", "detectors", "signals")}
    for t, entry_ms, p, end_ms, emitted, bar in raw:
        recv = closers.closing_recv(p, end_ms)
        if recv is None:
            raise RuntimeError(f"output before its closing tick: partition {p}, bar end {end_ms}")
        if recv >= out.trailer_sent_ns:  # closed by the trailer, not by the paced trades
            if emitted is not None:
                out.trailer_latencies.append(entry_ms - recv / 1e6)
            continue
        if emitted is None:
            out.pattern_latencies.append(entry_ms - recv / 1e6)
            continue
        out.latencies.append((t, entry_ms - recv / 1e6))
        out.emitted.append(emitted - recv / 1e6)
        ticks_ms, event_ms = closers.closing_entry_ms(p, end_ms), pattern_ms.get((p, end_ms, bar))
        if ticks_ms is not None and event_ms is not None:
            hops["ingest"].append(ticks_ms - recv / 1e6)
            hops["detectors"].append(event_ms - ticks_ms)
            hops["signals"].append(entry_ms - event_ms)


def emitted_ms(at: datetime) -> float:
    return at.timestamp() * 1000


async def sample_rss(stack: Stack, t0: float, out: Soak) -> None:
    loop = asyncio.get_running_loop()
    while True:
        now = loop.time() - t0
        for name, kib in [
            *stack.rss().items(),
            ("bench: writer + bookkeeping", rss_kib(os.getpid())),
        ]:
            if kib is not None:
                out.rss.setdefault(name, []).append((now, kib / 1024))
        await asyncio.sleep(1.0)
