"""Offline signals for ``alphapulse replay``: the same pure scoring, written as JSON lines.

``replay`` scores its pattern events with ``score_events`` and writes them with
``write_signal_list(DIR / "signals.jsonl", signals)``, the events in the order it writes
``patterns.jsonl``. Each line is ``signal_to_json`` of a signal
— byte for byte what the live worker puts in the stream's ``d`` field — except that
``emitted_at`` (wall clock, the only non-deterministic field) is ``null``. ``comparable``
strips it from either side so the two can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from common.contracts import PatternEvent
from signals.contract import Signal, signal_to_json
from signals.model import Model
from signals.versions import ModelHistory


def signal_lines(
    events: Iterable[PatternEvent], model: Model | ModelHistory | None = None
) -> Iterator[bytes]:
    """One JSON document per signal, in event order (long before short within an event)."""
    for signal in score_events(events, model):
        yield signal_to_json(signal)


def score_events(
    events: Iterable[PatternEvent],
    model: Model | ModelHistory | None = None,
    *,
    emit_warming: bool = False,
) -> list[Signal]:
    """Every signal of ``events``, in event order (long before short within an event).

    A single ``Model`` is the history of a namespace that never changed its configuration
    (version 1 from ``effective_from`` 0), so the ``model`` field reads ``v1:<fingerprint>``
    exactly as a live worker seeded with the same model writes it."""
    history = model if isinstance(model, ModelHistory) else ModelHistory.seed(model or Model())
    return [s for e in events for s in history.score(e, emit_warming=emit_warming)]


def write_signal_list(path: Path, signals: Iterable[Signal]) -> int:
    """Write already scored signals as ``signals.jsonl``; returns how many."""
    n = 0
    with path.open("wb") as f:
        for signal in signals:
            f.write(signal_to_json(signal) + b"\n")
            n += 1
    return n


def write_signals_jsonl(
    path: Path, events: Iterable[PatternEvent], model: Model | ModelHistory | None = None
) -> int:
    """Write ``signals.jsonl``; returns the number of signals."""
    return write_signal_list(path, score_events(events, model))


def comparable(signal_json: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """A signal's JSON object without ``emitted_at`` (live vs replay comparisons)."""
    doc = dict(signal_json) if isinstance(signal_json, Mapping) else orjson.loads(signal_json)
    doc.pop("emitted_at", None)
    return doc
