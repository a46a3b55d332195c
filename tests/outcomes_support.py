"""Test support for outcomes: ``outcomes.jsonl`` lines and ``outcome_rows`` in one long form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

OutcomeRow = tuple[Any, ...]
COLUMNS = (
    "kind", "id", "exchange", "symbol", "timeframe", "open_time", "pattern", "direction",
    "horizon", "ret", "mfe", "mae", "hit", "score", "trend", "atr_ratio", "volume_ratio",
)  # fmt: skip
SELECT_ROWS = f"SELECT {', '.join(COLUMNS)} FROM outcome_rows"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def long_rows(lines: Iterable[Mapping[str, Any]]) -> list[OutcomeRow]:
    """``outcomes.jsonl`` lines as ``outcome_rows`` rows (one per completed horizon), sorted."""
    out: list[OutcomeRow] = []
    for line in lines:
        reg = line["regime"]
        for h, ret in line["returns"].items():
            out.append(
                (
                    line["kind"],
                    line["id"],
                    line["exchange"],
                    line["symbol"],
                    line["timeframe"],
                    line["open_time"],
                    line.get("pattern"),
                    line["direction"],
                    int(h),
                    ret,
                    line["mfe"][h],
                    line["mae"][h],
                    line["hit"][h],
                    _float(line.get("score")),
                    _float(reg["trend"]),
                    _float(reg["atr_ratio"]),
                    _float(reg["volume_ratio"]),
                )
            )
    return sorted(out, key=_key)


def db_rows(records: Iterable[Mapping[str, Any]]) -> list[OutcomeRow]:
    """Rows of ``SELECT_ROWS`` with ``open_time`` as epoch ms, sorted like ``long_rows``."""
    out = []
    for r in records:
        row = [r[c] for c in COLUMNS]
        row[5] = (r["open_time"] - _EPOCH) // timedelta(milliseconds=1)
        out.append(tuple(row))
    return sorted(out, key=_key)


def _key(row: OutcomeRow) -> tuple[str, str, str, int]:
    return (row[0], row[1], row[6] or "", row[8])
