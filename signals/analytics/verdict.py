"""Plain-language conclusions the report and the CLI print (pure): is there an edge?

* Patterns: the p-values of all ranked groups are corrected for multiple testing with
  Benjamini-Hochberg (statsmodels ``multipletests``, FDR 5%); a group "beats the random
  entry" only if it survives that and its lift is above 1.
* Calibration: the calibrated score has an edge out of sample only if its Brier score is
  below the constant base rate's; it beats today's model if its Brier score is below the
  hand-set model's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from statsmodels.stats.multitest import multipletests

FDR = 0.05


def significant(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Ranked rows whose hit-rate difference survives Benjamini-Hochberg at :data:`FDR`."""
    tested = [r for r in rows if r.get("rank") is not None and r.get("p_hit") is not None]
    if not tested:
        return []
    reject, _, _, _ = multipletests([r["p_hit"] for r in tested], alpha=FDR, method="fdr_bh")
    return [r for r, ok in zip(tested, reject, strict=True) if ok]


def pattern_verdict(rows: Sequence[Mapping[str, Any]]) -> str:
    ranked = [r for r in rows if r.get("rank") is not None]
    too_few = sum(1 for r in rows if r.get("too_few"))
    sig = significant(rows)
    better = [r for r in sig if (r.get("lift") or 0) > 1]
    worse = [r for r in sig if (r.get("lift") or 0) < 1]
    head = f"{len(ranked)} pattern groups have enough firings to rank ({too_few} too few). "
    if not better:
        return head + (
            "None beats a random entry on the same series after correcting for multiple "
            f"testing (Benjamini-Hochberg, FDR {FDR:.0%}): on this data the patterns carry "
            "no detectable edge."
            + (f" {len(worse)} do significantly worse than a random entry." if worse else "")
        )
    names = ", ".join(
        f"{r['pattern'].removeprefix('CDL')} {r['direction']} {r['timeframe']} h{r['horizon']}"
        f" (lift {r['lift']:.2f})"
        for r in better[:8]
    )
    return head + (
        f"{len(better)} beat a random entry after correcting for multiple testing "
        f"(Benjamini-Hochberg, FDR {FDR:.0%}): {names}."
        + (f" {len(worse)} do significantly worse." if worse else "")
    )


def calibration_verdict(report: Mapping[str, Any]) -> str:
    models = report.get("models")
    if not models:
        return "No out-of-sample data to evaluate the calibration on."
    cal, hand, base = (models[k]["brier"] for k in ("calibrated", "hand_set", "base_rate"))
    h = report["horizon"]
    parts = [
        f"Out of sample ({report['test']['n']} candidates, {h}-bar horizon): Brier score "
        f"calibrated {cal:.4f}, hand-set {hand:.4f}, constant base rate {base:.4f}."
    ]
    parts.append(
        "The calibrated model beats the hand-set one."
        if cal < hand
        else "The calibrated model does NOT beat the hand-set one."
    )
    if cal < base:
        parts.append("It also beats the constant base rate: the score carries information.")
    else:
        parts.append(
            "It does not beat the constant base rate: the patterns carry no edge on this data "
            "at this horizon; the calibrated score is honest about that (close to the base "
            "rate), the hand-set one is not."
        )
    return " ".join(parts)
