"""A calibrated scoring model fitted from outcomes, and its walk-forward evaluation (pure).

Target: for a horizon *h*, ``y = 1`` when the candidate's h-bar return in its direction is
positive (``d·(close[t+h]/close[t] − 1) > 0``, the contract's ``hit_h`` at zero cost).
A *candidate* is every (pattern event, direction) the scorer gives a raw score to, before
the threshold and the cooldown — the population a score has to rank.

Fit (on the earlier part of the data only):

1. **Reliabilities with shrinkage.** For each pattern, ``n`` candidates it voted in and
   ``k`` hits among them; its reliability is the beta-binomial posterior mean
   ``(k + m·b) / (n + m)`` with ``b`` the base rate (hit rate of all candidates) and ``m``
   (``prior_strength``, default 50) pseudo-observations, so a pattern seen 5 times stays
   near the base rate and one seen 5,000 times gets its own rate.
2. **Calibration map.** The scorer (hand-set rules, the new reliabilities) gives each
   training candidate a raw score; an isotonic regression of ``y`` on it (scipy
   ``isotonic_regression``) turns raw scores into probabilities. The map is stored as knots
   and applied by linear interpolation (monotone), so the model's score *reads as the
   estimated probability that the signal's h-bar return is positive*.
3. **Threshold.** Chosen so the calibrated model emits the same share of training
   candidates as the hand-set model did (the signal rate stays comparable); 0.55 when the
   hand-set model emitted none or all of them; or given (``--threshold``).

Evaluation on the later part: Brier score, log loss and expected calibration error (10 equal
bins) for the calibrated model, today's hand-set score read as a probability, and the
constant training base rate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

from signals.analytics.frames import SERIES, bar_outcomes
from signals.model import Calibration, Model, PatternSpec
from signals.scoring import clean_features, raw_scores

EPS = 1e-6
ECE_BINS = 10
FALLBACK_THRESHOLD = 0.55  # when the hand-set model emitted none (or all) of the training set


@dataclass(frozen=True, slots=True)
class Candidates:
    """Scored candidates in time order: their patterns, features, direction and outcome."""

    open_time: np.ndarray
    direction: np.ndarray  # +1 / -1
    y: np.ndarray  # bool: h-bar return in the direction > 0
    events: list[tuple[dict[str, int], dict[str, Any]]]  # (patterns, clean features)


def candidates(
    events: Iterable[Mapping[str, Any]], bars: pd.DataFrame, horizon: int, model: Model
) -> Candidates:
    """Every (event, direction) with evidence under ``model``, joined to its h-bar outcome.

    ``events`` are ``patterns.jsonl`` records; ``bars`` is :func:`frames.bars_frame`.
    Candidates whose horizon is not reached yet are left out.
    """
    ret: dict[tuple[str, str, str, int], float] = {}
    for key, g in bars.groupby(SERIES, sort=False):
        r, _, _ = bar_outcomes(
            g["close"].to_numpy(), g["high"].to_numpy(), g["low"].to_numpy(), horizon
        )
        for t, x in zip(g["open_time"].tolist(), r.tolist(), strict=True):
            if not math.isnan(x):
                ret[(*key, t)] = x
    times, dirs, ys, evs = [], [], [], []
    for e in events:
        outcome = ret.get((e["exchange"], e["symbol"], e["timeframe"], int(e["open_time"])))
        if outcome is None:
            continue
        pats = {str(k): int(v) for k, v in e["patterns"].items()}
        feats = dict(clean_features(e))
        for d in raw_scores(pats, feats, model):
            times.append(int(e["open_time"]))
            dirs.append(d)
            ys.append(d * outcome > 0)
            evs.append((pats, feats))
    order = np.argsort(np.array(times, np.int64), kind="stable")
    return Candidates(
        np.array(times, np.int64)[order],
        np.array(dirs, np.int64)[order],
        np.array(ys, bool)[order],
        [evs[i] for i in order.tolist()],
    )


def raw(c: Candidates, model: Model) -> np.ndarray:
    """Each candidate's score under ``model`` (its calibration map applied, if any)."""
    out = np.empty(len(c.y))
    for i, ((pats, feats), d) in enumerate(zip(c.events, c.direction.tolist(), strict=True)):
        ds = raw_scores(pats, feats, model).get(d)
        out[i] = ds.score if ds is not None else 0.0
    return out


def take(c: Candidates, idx: np.ndarray) -> Candidates:
    return Candidates(c.open_time[idx], c.direction[idx], c.y[idx], [c.events[i] for i in idx])


def fit_reliabilities(
    c: Candidates, model: Model, prior_strength: float
) -> tuple[dict[str, PatternSpec], dict[str, dict[str, float]], float]:
    """Shrunk per-pattern hit rates (step 1); returns the new table, the counts and ``b``."""
    base = float(c.y.mean()) if len(c.y) else 0.5
    n: dict[str, int] = {}
    k: dict[str, int] = {}
    for (pats, feats), d, y in zip(c.events, c.direction.tolist(), c.y.tolist(), strict=True):
        ds = raw_scores(pats, feats, model).get(d)
        for name in ds.supporting if ds else ():
            n[name] = n.get(name, 0) + 1
            k[name] = k.get(name, 0) + int(y)
    patterns = dict(model.patterns)
    counts = {}
    for name, spec in model.patterns.items():
        nn, kk = n.get(name, 0), k.get(name, 0)
        rel = (kk + prior_strength * base) / (nn + prior_strength)
        patterns[name] = replace(spec, reliability=round(rel, 6))
        counts[name] = {"n": nn, "hits": kk, "reliability": round(rel, 6)}
    return patterns, counts, base


def fit_map(
    scores: np.ndarray, y: np.ndarray, horizon: int, prior_strength: float = 50.0
) -> Calibration:
    """Isotonic regression of the outcome on the raw score, as interpolation knots.

    Each isotonic block's rate is shrunk toward the overall rate like the reliabilities
    (``(k + m·b) / (n + m)``), so a block of three candidates cannot claim 0% or 100%; a
    second weighted isotonic pass keeps the shrunk values non-decreasing.
    """
    order = np.argsort(scores, kind="stable")
    x = scores[order]
    ys = y[order].astype(np.float64)
    base = float(ys.mean())
    res = isotonic_regression(ys)
    edges = [*res.blocks.tolist()]
    if edges[-1] != len(ys):
        edges.append(len(ys))
    spans = list(itertools.pairwise(edges))
    sizes = np.array([b - a for a, b in spans], np.float64)
    means = np.array([res.x[a] for a, _ in spans])
    shrunk = (means * sizes + prior_strength * base) / (sizes + prior_strength)
    # Shrinking small blocks more than big ones can break the order: restore it (weighted).
    shrunk = isotonic_regression(shrunk, weights=sizes).x
    fitted = np.repeat(shrunk, sizes.astype(np.int64))
    ux, start = np.unique(x, return_index=True)
    uy = np.round([fitted[a:b].mean() for a, b in zip(start, [*start[1:], len(x)], strict=True)], 6)
    if len(ux) == 1:
        ux = np.array([0.0, 1.0])
        uy = np.array([uy[0], uy[0]])
    # drop interior knots that change nothing (flat runs), keep the ends
    keep = np.ones(len(ux), bool)
    keep[1:-1] = (np.diff(uy)[:-1] != 0) | (np.diff(uy)[1:] != 0)
    return Calibration(
        horizon,
        tuple(round(float(v), 6) for v in ux[keep]),
        tuple(float(v) for v in np.clip(uy[keep], 0.0, 1.0)),
    )


def brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def ece(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: bin-weighted |mean prediction − hit rate|, equal bins."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(p) * abs(p[m].mean() - y[m].mean())
    return float(total)


def reliability_curve(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per non-empty bin: mean prediction, observed hit rate, count (the diagram's points)."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"p": float(p[m].mean()), "hit_rate": float(y[m].mean()), "n": int(m.sum())})
    return out


def metrics(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    yf = y.astype(np.float64)
    return {
        "brier": brier(p, yf),
        "log_loss": log_loss(p, yf),
        "ece": ece(p, yf),
        "curve": reliability_curve(p, yf),
    }


def emitted_threshold(scores: np.ndarray, share: float) -> float:
    """The score at or above which ``share`` of the candidates lie (1.0 when none)."""
    if share <= 0 or len(scores) == 0:
        return 1.0
    return float(np.quantile(scores, 1.0 - share, method="higher"))


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    model: Model
    doc: dict[str, Any]  # the model file's content
    report: dict[str, Any]  # sizes, base rates, metrics of the three models


def calibrate(
    events: Sequence[Mapping[str, Any]],
    bars: pd.DataFrame,
    horizon: int,
    hand: Model | None = None,
    *,
    train_frac: float = 0.6,
    prior_strength: float = 50.0,
    threshold: float | None = None,
) -> CalibrationResult:
    """Fit on the first ``train_frac`` of the candidates (by time), evaluate on the rest."""
    hand = hand or Model()
    c = candidates(events, bars, horizon, hand)
    if len(c.y) < 10:
        raise ValueError(f"only {len(c.y)} candidates with a {horizon}-bar outcome: too few")
    cut = int(len(c.y) * train_frac)
    # Never split one bar's candidates across the cut (the test is strictly later).
    while 0 < cut < len(c.y) and c.open_time[cut] == c.open_time[cut - 1]:
        cut += 1
    train, test = take(c, np.arange(cut)), take(c, np.arange(cut, len(c.y)))
    patterns, counts, base = fit_reliabilities(train, hand, prior_strength)
    fitted = Model(patterns, hand.params)
    cal = fit_map(raw(train, fitted), train.y, horizon, prior_strength)
    hand_train = raw(train, hand)
    share = float((hand_train >= hand.params.threshold).mean())
    calibrated = Model(patterns, hand.params, cal)
    if threshold is not None:
        thr = threshold
    elif 0 < share < 1:
        thr = emitted_threshold(raw(train, calibrated), share)
    else:
        thr = FALLBACK_THRESHOLD
    calibrated = Model(patterns, replace(hand.params, threshold=thr), cal)
    report: dict[str, Any] = {
        "horizon": horizon,
        "train": {
            "n": len(train.y),
            "base_rate": base,
            "until": int(train.open_time[-1]) if len(train.y) else None,
        },
        "test": {
            "n": len(test.y),
            "base_rate": float(test.y.mean()) if len(test.y) else None,
            "from": int(test.open_time[0]) if len(test.y) else None,
        },
        "threshold": thr,
        "hand_emitted_share": share,
    }
    if len(test.y):
        report["models"] = {
            "calibrated": metrics(raw(test, calibrated), test.y),
            "hand_set": metrics(raw(test, hand), test.y),
            "base_rate": metrics(np.full(len(test.y), base), test.y),
        }
    report["reliabilities"] = counts
    return CalibrationResult(calibrated, model_document(calibrated, hand), report)


def model_document(model: Model, hand: Model) -> dict[str, Any]:
    """The ``SIGNALS_MODEL_FILE`` content: changed parameters, reliabilities, the map."""
    assert model.calibration is not None
    return {
        "threshold": model.params.threshold,
        "patterns": {
            name: {"reliability": spec.reliability}
            for name, spec in sorted(model.patterns.items())
            if spec != hand.patterns.get(name)
        },
        "calibration": {
            "horizon": model.calibration.horizon,
            "x": list(model.calibration.x),
            "y": list(model.calibration.y),
        },
    }
