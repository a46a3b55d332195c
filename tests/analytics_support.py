"""Reference outcome records for the statistics tests: a plain loop over bars.

Written straight from ``OUTCOMES_CONTRACT.md`` (one line per pattern firing and per signal,
horizons as string keys, pending horizons absent), independent of the engine's tracker and
of :func:`signals.analytics.frames.bar_outcomes`, so the statistics can be checked against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def reference_outcomes(
    bars: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    signals: Iterable[Mapping[str, Any]] = (),
    horizons: Sequence[int] = (1, 5, 10, 20),
    cost: float = 0.0,
) -> list[dict[str, Any]]:
    series: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for b in bars:
        series.setdefault((b["exchange"], b["symbol"], b["timeframe"]), []).append(b)
    index: dict[tuple[str, str, str, int], int] = {}
    for key, lst in series.items():
        lst.sort(key=lambda b: b["open_time"])
        for i, b in enumerate(lst):
            index[(*key, b["open_time"])] = i

    def outcome(key: tuple[str, str, str], t: int, d: int) -> dict[str, Any]:
        lst = series[key]
        i = index[(*key, t)]
        c0 = lst[i]["close"]
        out: dict[str, Any] = {"returns": {}, "mfe": {}, "mae": {}, "hit": {}}
        for h in horizons:
            if i + h >= len(lst):
                continue
            later = lst[i + 1 : i + h + 1]
            r = d * (lst[i + h]["close"] / c0 - 1)
            if d == 1:
                mfe = max(b["high"] / c0 - 1 for b in later)
                mae = min(b["low"] / c0 - 1 for b in later)
            else:
                mfe = max(1 - b["low"] / c0 for b in later)
                mae = min(1 - b["high"] / c0 for b in later)
            out["returns"][str(h)] = r
            out["mfe"][str(h)] = mfe
            out["mae"][str(h)] = mae
            out["hit"][str(h)] = r > cost
        out["close"] = c0
        return out

    records: list[dict[str, Any]] = []
    for e in events:
        key = (e["exchange"], e["symbol"], e["timeframe"])
        atr = e.get("atr")
        regime = {
            "trend": e.get("trend"),
            "atr_ratio": atr / e["close"] if atr is not None else None,
            "volume_ratio": e.get("volume_ratio"),
        }
        for name, value in e["patterns"].items():
            d = 1 if value > 0 else -1
            records.append(
                {
                    "kind": "pattern",
                    "id": f"{key[0]}:{key[1]}:{key[2]}:{e['open_time']}",
                    "exchange": key[0],
                    "symbol": key[1],
                    "timeframe": key[2],
                    "open_time": e["open_time"],
                    "pattern": name,
                    "direction": "long" if d == 1 else "short",
                    "value": value,
                    "regime": regime,
                    **outcome(key, e["open_time"], d),
                }
            )
    for s in signals:
        key = (s["exchange"], s["symbol"], s["timeframe"])
        d = 1 if s["direction"] == "long" else -1
        feats = s.get("features", {})
        records.append(
            {
                "kind": "signal",
                "id": s["id"],
                "exchange": key[0],
                "symbol": key[1],
                "timeframe": key[2],
                "open_time": s["open_time_ms"],
                "direction": s["direction"],
                "score": s["score"],
                "regime": {
                    "trend": feats.get("trend"),
                    "atr_ratio": None,
                    "volume_ratio": feats.get("volume_ratio"),
                },
                **outcome(key, s["open_time_ms"], d),
            }
        )
    return records
