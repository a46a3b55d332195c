"""Per-firing outcomes from the detectors' bar outcomes (pure): ``replay``'s ``outcomes.jsonl``.

The detectors emit one :class:`~common.contracts.BarOutcome` per pattern event bar and
completed horizon, in the long direction (:mod:`detectors.outcomes`). A firing — one pattern
on a bar, or one signal — takes its bar's outcomes in its own direction *d*:
``r = d*ret``, ``mfe = mfe`` / ``mae = mae`` for d = +1 and ``mfe = -mae`` / ``mae = -mfe``
for d = -1, ``hit = r > cost_bps/1e4``. The database view ``outcome_rows`` (sink migration
0004) applies the same rules in SQL, so the two agree row for row.

One line per firing (``docs/outcomes.md`` and the outcomes contract): ``kind``, ``id``,
``exchange``, ``symbol``, ``timeframe``, ``open_time`` (ms), ``pattern`` (patterns only),
``direction``, ``value`` (patterns) or ``score`` (signals), ``close`` (close[t]),
``returns``/``mfe``/``mae``/``hit`` keyed by horizon (pending horizons absent), ``pending``
(the horizons not reached yet, as strings: it says so) and ``regime`` (``trend``,
``atr_ratio``, ``volume_ratio`` of bar t, null while warming up).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from common.contracts import BarOutcome, PatternEvent
from signals.contract import Signal

_SIGN = {"long": 1, "short": -1}


def directed(outcome: BarOutcome, d: int) -> tuple[float, float, float, bool]:
    """``(r, mfe, mae, hit)`` of ``outcome`` for direction ``d`` (+1 long, -1 short)."""
    if d > 0:
        r, mfe, mae = outcome.ret, outcome.mfe, outcome.mae
    else:
        r, mfe, mae = -outcome.ret, -outcome.mae, -outcome.mfe
    return r, mfe, mae, r > outcome.cost_bps / 1e4


def regime(event: PatternEvent) -> dict[str, float | int | None]:
    """The regime of the event's bar: trend, ATR/close and volume ratio (None: warming up)."""
    f = event.features
    atr = f.get("atr")
    return {
        "trend": f.get("trend"),
        "atr_ratio": None if atr is None else float(atr) / event.bar.close,
        "volume_ratio": f.get("volume_ratio"),
    }


def _paths(
    outcomes: Iterable[BarOutcome], d: int, horizons: Sequence[int]
) -> dict[str, dict[str, Any] | list[str]]:
    returns: dict[str, float] = {}
    mfes: dict[str, float] = {}
    maes: dict[str, float] = {}
    hits: dict[str, bool] = {}
    for o in sorted(outcomes, key=lambda o: o.horizon):
        key = str(o.horizon)
        returns[key], mfes[key], maes[key], hits[key] = directed(o, d)
    pending = [str(h) for h in horizons if str(h) not in returns]
    return {"returns": returns, "mfe": mfes, "mae": maes, "hit": hits, "pending": pending}


def outcome_lines(
    events: Iterable[PatternEvent],
    signals: Iterable[Signal],
    outcomes: Iterable[BarOutcome],
    timeframe_ms: Mapping[str, int],
    horizons: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """Every pattern firing and signal with its outcomes, in the contract's order:
    (exchange, symbol, timeframe duration, open_time, kind, pattern, id); ``horizons`` (the
    engine's) gives each line's ``pending`` list."""
    by_bar: dict[str, list[BarOutcome]] = {}
    for o in outcomes:
        by_bar.setdefault(o.id, []).append(o)
    lines: list[dict[str, Any]] = []
    event_of: dict[str, PatternEvent] = {}
    for event in events:
        b = event.bar
        event_of[b.id] = event
        reg = regime(event)
        for name, value in sorted(event.patterns.items()):
            if value == 0:
                continue
            d = 1 if value > 0 else -1
            lines.append(
                {
                    "kind": "pattern",
                    "id": b.id,
                    "exchange": b.exchange,
                    "symbol": b.symbol,
                    "timeframe": b.timeframe,
                    "open_time": b.open_time,
                    "pattern": name,
                    "direction": "long" if d > 0 else "short",
                    "value": value,
                    "close": b.close,
                    **_paths(by_bar.get(b.id, ()), d, horizons),
                    "regime": reg,
                }
            )
    for s in signals:
        bid = s.id.rsplit(":", 1)[0]
        event = event_of[bid]
        lines.append(
            {
                "kind": "signal",
                "id": s.id,
                "exchange": s.exchange,
                "symbol": s.symbol,
                "timeframe": s.timeframe,
                "open_time": s.open_time_ms,
                "direction": s.direction,
                "score": s.score,
                "close": event.bar.close,
                **_paths(by_bar.get(bid, ()), _SIGN[s.direction], horizons),
                "regime": regime(event),
            }
        )

    def key(line: dict[str, Any]) -> tuple[str, str, int, int, str, str, str]:
        return (
            line["exchange"],
            line["symbol"],
            timeframe_ms.get(line["timeframe"], 0),
            line["open_time"],
            line["kind"],
            line.get("pattern", ""),
            line["id"],
        )

    return sorted(lines, key=key)
