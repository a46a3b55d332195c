"""Scoring a ``patterns`` entry as it comes off the stream (issue 17: signals CPU per event).

A v2/v3 entry (one detector write, :class:`common.columns.EventColumns`) is scored from its
columns: no ``PatternEvent``, ``Bar`` or full feature dict is built for an event, only what
the scoring reads — the bar's key, open time and close, the event's patterns, and the four
features it uses (``FEATURES_USED``, converted column-wise exactly as ``feature_dicts`` and
``clean_features`` convert them). A v3 entry's ``recent`` entries stay JSON documents until a
cooldown reads one the memo does not know (``ModelScorer.prior``); each scored event is
remembered under the document the detectors will write for it. Every event gets exactly the
signals, or the error, that ``ModelHistory.score`` gives its decoded record
(``tests/unit/test_signals_columnar.py`` checks this against the record path). The one
difference: a ``recent`` document that is not JSON makes the record path refuse the whole
entry, while here it fails only the events whose cooldown reads it (each dead-lettered alone).
A v1 entry (one event) is decoded and scored as a record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from common.columns import EventColumns, feature_values, is_v1, pattern_dicts, recent_documents
from common.contracts import Fields, PatternEvent
from common.errors import BadInput
from signals.contract import FeatureValue, Signal
from signals.scoring import FEATURES_USED, Context, scorer_of
from signals.versions import ModelHistory

# One event's outcome: its signals (maybe none), or why it cannot be scored.
Scoring = list[Signal] | BadInput


@dataclass(frozen=True, slots=True)
class ScoredEntry:
    """Per event of one entry, in entry order: its bar's open time and its ``Scoring``;
    ``event(i)`` gives event ``i`` as an entry of its own (to dead-letter it alone: it needs
    no parsing, so an event whose ``recent`` document is not JSON is kept as it came)."""

    open_times: Sequence[int]
    results: Sequence[Scoring]
    event: Callable[[int], Fields]


def score_entry(
    history: ModelHistory, fields: Fields, *, emit_warming: bool, emitted_at: str | None
) -> ScoredEntry:
    """Score every event of a ``patterns`` entry; ``DecodeError`` if the entry does not
    decode (then none of it is scored)."""
    if is_v1(fields, "pattern_event"):
        event = PatternEvent.decode(fields)
        result: Scoring
        try:
            result = history.score(event, emit_warming=emit_warming, emitted_at=emitted_at)
        except BadInput as err:
            result = err
        return ScoredEntry([event.bar.open_time], [result], lambda _: fields)
    columns = EventColumns.decode(fields)
    results = score_columns(history, columns, emit_warming=emit_warming, emitted_at=emitted_at)
    return ScoredEntry(
        columns.bars.records["open_time"].tolist(),
        results,
        lambda i: columns.take(slice(i, i + 1)).encode()[0],
    )


def score_columns(
    history: ModelHistory,
    columns: EventColumns,
    *,
    emit_warming: bool = False,
    emitted_at: str | None = None,
) -> list[Scoring]:
    """Each event's ``ModelHistory.score``, from the columns."""
    keys = columns.bars.keys
    fields = ["key", "open_time", "close"]
    bars: list[tuple[int, int, float]] = columns.bars.records[fields].tolist()
    table, matrix = used_columns(columns)
    values = feature_values(table, matrix)
    features: list[list[FeatureValue]] = values.tolist()
    numbers = scoring_numbers(table, matrix)
    # Each event's own ``recent`` document, under which it is remembered for the next events
    # of its series (``ModelScorer.remember``).
    open_times = [open_time for _, open_time, _ in bars]
    documents = recent_documents(
        open_times, columns.names, columns.fired, table, matrix, values=values
    )
    warming: list[bool] = np.logical_and.reduce(np.isnan(numbers), axis=1).tolist()
    # One version (a namespace whose configuration never changed, or a batch of a version's
    # time): every event's context at once; else each from its own version, one by one.
    only = history.versions[0] if len(history.versions) == 1 else None
    contexts: Sequence[Context | None] = (
        scorer_of(only.model).contexts(numbers) if only is not None else [None] * len(bars)
    )
    out: list[Scoring] = []
    for (key, open_time, close), patterns, used, warm, context, recent, document in zip(
        bars,
        pattern_dicts(columns.names, columns.fired, len(columns)),
        features,
        warming,
        contexts,
        columns.recent,
        documents,
        strict=True,
    ):
        if warm and not emit_warming:
            out.append([])
            continue
        version = only or history.at(open_time)
        try:
            out.append(
                scorer_of(version.model).signals(
                    keys[key],
                    open_time,
                    close,
                    tuple(patterns.items()),
                    used,
                    recent=recent,
                    name=version.name,
                    emitted_at=emitted_at,
                    context=context,
                    documents=True,
                    document=document,
                )
            )
        except BadInput as err:
            out.append(err)
    return out


def used_columns(
    columns: EventColumns,
) -> tuple[list[tuple[str, bool]], npt.NDArray[np.float64]]:
    """The feature table and matrix of what scoring reads: ``FEATURES_USED`` in that order,
    a column each (where a name repeats in the entry's table, its last column; absent: NaN,
    not an integer), so that ``feature_dicts`` of them gives each event's ``clean_features``
    as for the records (NaN or absent ``None``, an integer feature an ``int``)."""
    index = {name: i for i, (name, _) in enumerate(columns.feature_table)}
    table: list[tuple[str, bool]] = []
    matrix = np.full((len(columns), len(FEATURES_USED)), np.nan)
    for j, name in enumerate(FEATURES_USED):
        i = index.get(name)
        table.append((name, i is not None and columns.feature_table[i][1]))
        if i is not None:
            matrix[:, j] = columns.features[:, i]
    return table, matrix


def scoring_numbers(
    table: Sequence[tuple[str, bool]], matrix: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``used_columns``' matrix as the numbers scoring compares (``None``: NaN): an integer
    feature's number is its ``int``, as in the dicts."""
    numbers = matrix.copy()
    for j, (_, is_int) in enumerate(table):
        if is_int:
            present = ~np.isnan(matrix[:, j])
            numbers[present, j] = matrix[present, j].astype(np.int64)
    return numbers
