"""Parse-only throughput of the exchange adapters (one core, no I/O).

* Binance: the 9,757 recorded BTCUSDT trade frames of ``shared/data`` through
  ``BinanceSpot.parse`` (frame → ``ParseResult`` with one validated ``Tick``), looped;
  baseline in the same run: plain ``orjson.loads`` over the same frames — the floor a parser
  decoding into dicts pays; next to it the typed msgspec decode alone (``parse``'s first step)
  and the orjson path alone (``_parse_json``: the parser before typed decoding, still what
  every frame the structs refuse takes).
* Binance ``parse_many``: the same frames in batches of 64 and 256 (what a reader holding
  several frames would pass), trades returned in columns — the batch API's figure, next to
  the per-frame one and the same ``orjson.loads`` baseline.
* The other adapters: frames their simulator side renders (one trade per frame, the form a
  quiet market sends), with the same ``orjson.loads`` baseline.

The GC is tuned as ``python -m ingest`` tunes it (gen-0 threshold, start-up objects frozen),
for every figure alike. Best of several rounds (the machine is shared and noisy).
``BENCH_QUICK=1`` for fewer rounds.
"""

from __future__ import annotations

import functools
import gc
import gzip
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import orjson

from common.contracts import Side, Tick
from common.lifecycle import tune_gc
from common.settings import DEFAULT_GC_GEN0
from ingest.simulator.venues import get_server
from ingest.venues import EXCHANGES, get_adapter
from ingest.venues.binance import Binance

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
RECORDING = DATA / "binance-spot-btcusdt-20240808.rec.gz"
T = TypeVar("T")


def _recorded_trade_frames() -> list[bytes]:
    with gzip.open(RECORDING, "rb") as fh:
        lines = [line.rstrip(b"\n").partition(b" ")[2] for line in fh]
    return [fr for fr in lines if fr.startswith(b'{"stream":"btcusdt@trade"')]


def _rate(fn: Callable[[T], object], items: list[T], ticks: int, loops: int, rounds: int) -> float:
    """Best rate over ``rounds`` of ``loops`` passes of ``fn`` over ``items`` (``ticks`` per
    pass)."""
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            for item in items:
                fn(item)
        best = max(best, loops * ticks / (time.perf_counter() - start))
    return best


def _rendered_frames(exchange: str, n: int) -> list[bytes]:
    adapter = get_adapter(exchange)
    native = {"coinbase": "BTC-USD", "kraken": "BTC/USD", "okx": "BTC-USDT"}.get(
        exchange, "BTCUSDT"
    )
    symbol = adapter.normalize(native)
    session = get_server(adapter.name).session()
    frames: list[bytes] = []
    for i in range(n):
        ts = 1_723_161_255_342_000_000 + i * 1_000_000
        side: Side = "buy" if i % 3 else "sell"
        tick = Tick(
            exchange, symbol, native, str(10_000 + i), 61_837.63 + i % 7, 0.0125, side, ts, 0
        )
        frames += [f.encode() for f in session.render_trades([tick])]
    return frames


def main() -> None:
    threshold = gc.get_threshold()
    tune_gc(DEFAULT_GC_GEN0)  # as python -m ingest does; restored for the other benchmarks
    try:
        _main()
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    rounds = 2 if quick else 5
    frames = _recorded_trade_frames()
    binance = get_adapter("binance")
    recv = time.time_ns()
    loops = 3 if quick else 10
    parse = _rate(lambda fr: binance.parse(fr, recv), frames, len(frames), loops, rounds)
    base = _rate(orjson.loads, frames, len(frames), loops, rounds)
    assert isinstance(binance, Binance)
    typed = _rate(binance._decoder.decode, frames, len(frames), loops, rounds)
    json_path = _rate(lambda fr: binance._parse_json(fr, recv), frames, len(frames), loops, rounds)
    print(
        f"binance parse-only, {len(frames):,} recorded trade frames x {loops}: "
        f"{parse:,.0f} ticks/s  (baseline orjson.loads alone: {base:,.0f} frames/s; "
        f"parse costs {base / parse:.2f}x a bare decode)"
    )
    print(
        f"  its typed decode alone (msgspec): {typed:,.0f} frames/s ({typed / base:.2f}x "
        f"orjson.loads); the orjson path alone (parser before): {json_path:,.0f} ticks/s "
        f"(parse is {parse / json_path:.2f}x it)"
    )
    for size in (64, 256):
        batches = [frames[i : i + size] for i in range(0, len(frames), size)]
        many = _rate(lambda b: binance.parse_many(b, recv), batches, len(frames), loops, rounds)
        print(
            f"binance parse_many, batches of {size} recorded trade frames (columns, no Tick "
            f"per trade): {many:,.0f} ticks/s  ({many / parse:.2f}x per-frame parse; "
            f"{many / base:.2f}x orjson.loads alone)"
        )
    for exchange in EXCHANGES:
        if exchange == "binance":
            continue
        adapter = get_adapter(exchange)
        rendered = _rendered_frames(exchange, 2_000)
        rate = _rate(functools.partial(adapter.parse, recv_ts_ns=recv), rendered,
                     len(rendered), loops, rounds)  # fmt: skip
        base = _rate(orjson.loads, rendered, len(rendered), loops, rounds)
        print(
            f"{exchange} parse-only, rendered 1-trade frames: {rate:,.0f} ticks/s  "
            f"(baseline orjson.loads: {base:,.0f} frames/s)"
        )


if __name__ == "__main__":
    main()
