"""Filtering and printing pattern-table rows (pure): what ``alphapulse stats`` shows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Filters:
    """Row filters of ``alphapulse stats`` and of :func:`signals.analytics.db.pattern_table`
    (``None``: any). ``pattern`` is a TA-Lib name with or without the ``CDL`` prefix."""

    pattern: str | None = None
    direction: str | None = None
    timeframe: str | None = None
    horizon: int | None = None
    exchange: str | None = None
    symbol: str | None = None

    def pattern_name(self) -> str | None:
        if self.pattern is None:
            return None
        p = self.pattern.upper()
        return p if p.startswith("CDL") else f"CDL{p}"

    def keep(self, row: Mapping[str, Any]) -> bool:
        checks = {
            "pattern": self.pattern_name(),
            "direction": self.direction,
            "timeframe": self.timeframe,
            "horizon": self.horizon,
            "exchange": self.exchange,
            "symbol": self.symbol,
        }
        return all(v is None or k not in row or row[k] == v for k, v in checks.items())


def filtered(rows: Iterable[Mapping[str, Any]], f: Filters) -> list[dict[str, Any]]:
    return [dict(r) for r in rows if f.keep(r)]


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def format_table(rows: Sequence[Mapping[str, Any]], extra: Sequence[str] = ()) -> str:
    """The ranked table as fixed-width text (hit rates and returns in %; lift as a ratio)."""
    head = [
        "rank",
        "pattern",
        "dir",
        "tf",
        *extra,
        "h",
        "n",
        "hit%",
        "95% CI",
        "base%",
        "lift",
        "p(hit)",
        "mean%",
        "median%",
        "mfe%",
        "mae%",
        "",
    ]
    lines = [head]
    for r in rows:
        ci = "-" if r.get("ci_low") is None else f"{_pct(r['ci_low'])}-{_pct(r['ci_high'])}"
        lines.append(
            [
                "-" if r.get("rank") is None else str(r["rank"]),
                str(r.get("pattern", "")).removeprefix("CDL"),
                str(r.get("direction", "")),
                str(r.get("timeframe", "")),
                *(str(r.get(e, "")) for e in extra),
                str(r.get("horizon", "")),
                str(r.get("n", "")),
                _pct(r.get("hit_rate")),
                ci,
                _pct(r.get("base_hit_rate")),
                _num(r.get("lift"), ".2f"),
                _num(r.get("p_hit"), ".3f"),
                _num(None if r.get("mean_ret") is None else 100 * r["mean_ret"], ".3f"),
                _num(None if r.get("median_ret") is None else 100 * r["median_ret"], ".3f"),
                _num(None if r.get("mean_mfe") is None else 100 * r["mean_mfe"], ".3f"),
                _num(None if r.get("mean_mae") is None else 100 * r["mean_mae"], ".3f"),
                "too few" if r.get("too_few") else "",
            ]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i not in (1, 2) else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in lines
    )
