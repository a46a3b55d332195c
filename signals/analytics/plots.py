"""The report's figures as PNG bytes (matplotlib, headless Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"calibrated": "#1b7837", "hand_set": "#c51b7d", "base_rate": "#4d4d4d"}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def reliability_diagram(models: Mapping[str, Mapping[str, Any]], title: str) -> bytes:
    """Predicted probability vs observed hit rate per bin, one line per model."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1, label="perfect")
    for name, m in models.items():
        curve = m["curve"]
        ax.plot(
            [c["p"] for c in curve],
            [c["hit_rate"] for c in curve],
            marker="o",
            color=COLORS.get(name),
            label=f"{name} (Brier {m['brier']:.4f}, ECE {m['ece']:.3f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability (score)")
    ax.set_ylabel("observed share with a positive return")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def lift_chart(rows: Sequence[Mapping[str, Any]], title: str, top: int = 20) -> bytes:
    """Hit rate with its Wilson interval against the baseline, best-ranked groups first."""
    ranked = [r for r in rows if r.get("rank") is not None][:top]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * max(len(ranked), 3) + 1.2))
    labels = [
        f"{r['pattern'].removeprefix('CDL')} {r['direction']} {r['timeframe']} h{r['horizon']}"
        for r in ranked
    ]
    y = list(range(len(ranked)))[::-1]
    for yi, r in zip(y, ranked, strict=True):
        ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color="#2166ac", lw=2)
        ax.plot(r["hit_rate"], yi, "o", color="#2166ac")
        ax.plot(r["base_hit_rate"], yi, "|", color="#b2182b", ms=12, mew=2)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("hit rate (dot, Wilson 95% bar) vs random entry (red tick)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def decile_chart(rows: Sequence[Mapping[str, Any]], title: str) -> bytes:
    """Signal hit rate per score decile (with intervals) against the baseline."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for h in sorted({r["horizon"] for r in rows}):
        sub = [r for r in rows if r["horizon"] == h]
        ax.errorbar(
            [r["decile"] for r in sub],
            [r["hit_rate"] for r in sub],
            yerr=[
                [r["hit_rate"] - r["ci_low"] for r in sub],
                [r["ci_high"] - r["hit_rate"] for r in sub],
            ],
            marker="o",
            capsize=2,
            label=f"h={h}",
        )
    ax.axhline(0.5, ls="--", color="#999", lw=1)
    ax.set_xlabel("score decile (1 = lowest)")
    ax.set_ylabel("hit rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)
