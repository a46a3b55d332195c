"""File shell of the statistics: ``replay --out`` directories in, ``stats.json`` out.

A replay directory holds ``bars.jsonl``, ``patterns.jsonl``, ``signals.jsonl`` and
``outcomes.jsonl`` (:mod:`detectors.replay`); :func:`stats_of_dir` derives everything
``stats.json`` holds from ``outcomes.jsonl`` + ``bars.jsonl``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from signals.analytics.frames import bars_frame, baseline_rows, outcome_rows, read_jsonl
from signals.analytics.stats import StatsOptions, compute_stats


def stats_of_records(
    outcomes: Iterable[Mapping[str, Any]],
    bars: Iterable[Mapping[str, Any]],
    opts: StatsOptions,
    horizons: Iterable[int] | None = None,
) -> dict[str, Any]:
    """``stats.json`` content from outcome records and bar records."""
    rows = outcome_rows(outcomes)
    frame = bars_frame(bars)
    hs = sorted(set(horizons) if horizons else {int(h) for h in rows["horizon"].unique()})
    base = baseline_rows(frame, hs or [1], opts.cost)
    return compute_stats(rows, frame, base, opts)


def stats_of_dir(directory: str | Path, opts: StatsOptions) -> dict[str, Any]:
    d = Path(directory)
    return stats_of_records(read_jsonl(d / "outcomes.jsonl"), read_jsonl(d / "bars.jsonl"), opts)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def dumps(doc: Mapping[str, Any]) -> bytes:
    """JSON of a stats document (numpy scalars allowed, NaN -> null), indented."""
    return orjson.dumps(_clean(dict(doc)), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


def write_stats(path: str | Path, doc: Mapping[str, Any]) -> None:
    Path(path).write_bytes(dumps(doc) + b"\n")
