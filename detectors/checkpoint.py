"""Partition state <-> bytes (the checkpoint a new owner restores).

Layout: ``b"APCK"`` + u32 (little-endian) header length + orjson header + ``numpy.savez``
archive of the numeric state. The header holds the small, irregular parts (series names,
watermark, last applied entry id, counters, recent pattern events, string trade-id memory)
and the engine's configuration fingerprint; the archive holds the per-series and per-row
arrays (open bars, id high-water marks, OHLC windows, indicator and pattern state).
Everything is lossless: floats round-trip bit-exactly, so a restored engine produces the
same bars, patterns and outcomes as one that never stopped.

Version 2 adds the pending outcome queues (``out_*`` arrays, only the occupied slots,
:mod:`detectors.outcomes`) and ``outcome_horizons`` to the configuration fingerprint. A
version 1 checkpoint (written before outcome tracking) still restores, with nothing pending:
the events before the upgrade get no outcomes (absent, as if never reached), everything else
continues exactly.
"""

from __future__ import annotations

import io
import struct
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from common.errors import DecodeError
from detectors.bars import NONE, BarAggregator, Counters
from detectors.indicators import IndicatorBank
from detectors.outcomes import OutcomeTracker
from detectors.partition import EngineConfig, PartitionEngine
from detectors.patterns import PatternDetector, PatternState
from detectors.rowspace import RowSpace

MAGIC = b"APCK"
VERSION = 2
#: Versions ``loads`` restores (1: before outcome tracking, restored with nothing pending).
READABLE = (1, 2)
_BAR_FLOATS = 8  # open, high, low, close, volume, quote, taker; + trades kept apart (int)


class CheckpointMismatch(ValueError):
    """The checkpoint was written with another configuration (timeframes, patterns...)."""


def dumps(engine: PartitionEngine) -> bytes:
    """Serialize the engine's whole state."""
    agg = engine.agg
    n = len(agg.series)
    n_tf = engine.n_tf
    ob_time = np.full((n, n_tf), NONE, np.int64)
    ob_vals = np.zeros((n, n_tf, _BAR_FLOATS), np.float64)
    ob_trades = np.zeros((n, n_tf), np.int64)
    agg.fill_open_bars(ob_time, ob_vals, ob_trades)
    # In the engine's row order; series that have not closed a bar yet get their empty rows.
    rows = engine.space_rows(n)
    space = engine.space
    arrays: dict[str, npt.NDArray[Any]] = {
        "ob_time": ob_time,
        "ob_vals": ob_vals,
        "ob_trades": ob_trades,
        "id_hwm": agg.id_hwm[:n],
        "fine_max": agg.fine_max[:n],
        "next_end": agg.next_end[:n],
        "window": space.window[:, rows],
        "pattern_state": np.frombuffer(space.pstate.take(rows).to_bytes(), np.uint8),
    }
    for name, arr in space.ind.arrays().items():
        arrays[name] = arr[rows]
    if space.outcomes.enabled:
        arrays.update(space.outcomes.arrays(rows))
    header = {
        "v": VERSION,
        "config": engine.config.fingerprint(),
        "series": agg.series,
        "max_ts": agg.max_ts,
        "forced_wm": agg.forced_wm,
        "last_id": engine.last_id,
        "counters": [agg.counters.ticks, agg.counters.duplicates, agg.counters.late],
        "str_ids": {str(s): list(q) for s, (q, _) in agg.str_ids.items()},
        # The entries as they were encoded when their events fired: the same JSON as before
        # they were kept encoded (checkpoints are byte-identical either way).
        "recent": {
            str(r): [orjson.Fragment(doc) for doc in docs]
            for r, (_, docs) in engine.recent.items()
            if docs
        },
    }
    head = orjson.dumps(header)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return MAGIC + struct.pack("<I", len(head)) + head + buf.getvalue()


def loads(
    data: bytes,
    config: EngineConfig,
    patterns: PatternDetector | None = None,
    space: RowSpace | None = None,
) -> PartitionEngine:
    """Restore an engine (its rows in ``space`` if given, else in a row space of its own);
    ``CheckpointMismatch`` if ``config`` differs from the writer's."""
    if data[:4] != MAGIC or len(data) < 8:
        raise DecodeError("checkpoint", "not a detector checkpoint")
    (size,) = struct.unpack("<I", data[4:8])
    try:
        header = orjson.loads(data[8 : 8 + size])
        with np.load(io.BytesIO(data[8 + size :]), allow_pickle=False) as z:
            arrays = {k: z[k].copy() for k in z.files}
    except (orjson.JSONDecodeError, ValueError, OSError) as e:
        raise DecodeError("checkpoint", repr(e)) from e
    version = header.get("v")
    if version not in READABLE:
        raise DecodeError("checkpoint", f"unsupported version {version!r}")
    expected = config.fingerprint()
    if version == 1:  # its fingerprint predates outcome tracking
        expected.pop("outcome_horizons")
    if header["config"] != expected:
        raise CheckpointMismatch(
            f"checkpoint written with {header['config']}, running with {expected}"
        )
    engine = PartitionEngine(config, patterns, space)
    try:
        _restore_rows(engine, header, arrays)
        try:
            engine.recent = {
                int(r): ([int(e["open_time"]) for e in ev], [orjson.dumps(e) for e in ev])
                for r, ev in header["recent"].items()
                if ev
            }
        except (KeyError, TypeError, ValueError) as e:
            raise DecodeError("checkpoint", f"recent events: {e!r}") from e
    except BaseException:
        engine.release()  # a shared row space gets the slots back
        raise
    engine.last_id = header["last_id"]
    return engine


def _restore_rows(engine: PartitionEngine, header: dict[str, Any], arrays: dict[str, Any]) -> None:
    """The open bars, then every row's state, into the engine's slots of its row space."""
    config = engine.config
    _restore_bars(engine.agg, header, arrays)
    n = len(engine.agg.series)
    count = n * engine.n_tf
    ind = IndicatorBank.from_arrays(
        config.indicators, {k: v for k, v in arrays.items() if k.startswith("ind_")}
    )
    pstate = PatternState.from_bytes(arrays["pattern_state"].tobytes())
    window = arrays["window"].reshape(4, count, engine.patterns.window)
    outcomes = None
    if engine.space.outcomes.enabled:
        try:
            outcomes = OutcomeTracker.from_arrays(config.outcomes, count, arrays)
        except (KeyError, ValueError, IndexError) as e:
            raise DecodeError("checkpoint", f"pending outcomes: {e!r}") from e
    if ind.rows != count or len(pstate) != count:
        raise DecodeError("checkpoint", f"row state of {ind.rows} rows for {count}")
    rows = engine.space_rows(n)
    space = engine.space
    space.window[:, rows] = window
    space.ind.put(rows, ind)
    space.pstate.put(rows, pstate)
    if outcomes is not None:
        space.outcomes.put(rows, outcomes)


def _restore_bars(agg: BarAggregator, header: dict[str, Any], arrays: dict[str, Any]) -> None:
    for exchange, symbol in header["series"]:
        agg.sid_of(exchange, symbol)
    n = len(agg.series)
    agg.id_hwm[:n] = arrays["id_hwm"]
    agg.fine_max[:n] = arrays["fine_max"]
    agg.next_end[:n] = arrays["next_end"]
    agg.restore_open_bars(arrays["ob_time"], arrays["ob_vals"], arrays["ob_trades"])
    agg.max_ts = int(header["max_ts"])
    agg.forced_wm = int(header["forced_wm"])
    agg.counters = Counters(*header["counters"])
    for s, ids in header["str_ids"].items():
        agg.str_ids[int(s)] = (deque(ids), set(ids))
