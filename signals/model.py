"""The scoring model: a parameter table for all 61 TA-Lib candlestick patterns plus the rule knobs.

Each pattern has a *kind* and a *reliability prior*:

* ``reversal``     — signals the end of the prevailing trend (hammer, engulfing, morning star…);
  its direction is the sign TA-Lib gives (``+100`` bullish, ``-100`` bearish).
* ``continuation`` — signals that the prevailing trend goes on (rising/falling three methods,
  tasuki gap…); direction again by TA-Lib's sign.
* ``indecision``   — a balance of buyers and sellers (doji, spinning top, high wave…). TA-Lib's
  sign carries no direction for these (``CDLGRAVESTONEDOJI`` is always ``+100``), so the model
  reads them as a weak hint *against* the prevailing trend and ignores them in a flat market.

The priors are rough hit rates in the spirit of Bulkowski's *Encyclopedia of Candlestick
Charts*, scaled to [0, 1]; they are a starting point meant to be tuned, so every number here can
be overridden from a JSON or TOML file (``SIGNALS_MODEL_FILE``) without touching code::

    threshold = 0.7
    [patterns.CDLHAMMER]
    reliability = 0.7
    weight = 1.2

A *calibrated* model (``alphapulse calibrate``, see ``docs/statistics.md``) adds a
``calibration`` table: a monotone map from the rule score to the estimated probability that
the signal's h-bar return is positive, as interpolation knots::

    [calibration]
    horizon = 5
    x = [0.0, 0.41, 0.77, 1.0]
    y = [0.47, 0.49, 0.55, 0.58]

``Model.fingerprint`` (a hash of every parameter) travels in each signal as ``model`` so a
consumer can tell which parameter set scored it.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from common.errors import ConfigError

Kind = Literal["reversal", "continuation", "indecision"]
KINDS: tuple[Kind, ...] = ("reversal", "continuation", "indecision")
MODEL_FILE_VAR = "SIGNALS_MODEL_FILE"


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """How one pattern counts: its kind, reliability prior and a free base weight."""

    kind: Kind
    reliability: float
    weight: float = 1.0


# name: (kind, reliability prior). Sorted by name; exactly TA-Lib's "Pattern Recognition" group.
_TABLE: dict[str, tuple[Kind, float]] = {
    "CDL2CROWS": ("reversal", 0.55),
    "CDL3BLACKCROWS": ("reversal", 0.78),
    "CDL3INSIDE": ("reversal", 0.65),
    "CDL3LINESTRIKE": ("continuation", 0.60),
    "CDL3OUTSIDE": ("reversal", 0.68),
    "CDL3STARSINSOUTH": ("reversal", 0.55),
    "CDL3WHITESOLDIERS": ("reversal", 0.75),
    "CDLABANDONEDBABY": ("reversal", 0.75),
    "CDLADVANCEBLOCK": ("reversal", 0.55),
    "CDLBELTHOLD": ("reversal", 0.50),
    "CDLBREAKAWAY": ("reversal", 0.60),
    "CDLCLOSINGMARUBOZU": ("continuation", 0.50),
    "CDLCONCEALBABYSWALL": ("reversal", 0.60),
    "CDLCOUNTERATTACK": ("reversal", 0.50),
    "CDLDARKCLOUDCOVER": ("reversal", 0.62),
    "CDLDOJI": ("indecision", 0.40),
    "CDLDOJISTAR": ("reversal", 0.55),
    "CDLDRAGONFLYDOJI": ("indecision", 0.45),
    "CDLENGULFING": ("reversal", 0.63),
    "CDLEVENINGDOJISTAR": ("reversal", 0.70),
    "CDLEVENINGSTAR": ("reversal", 0.72),
    "CDLGAPSIDESIDEWHITE": ("continuation", 0.55),
    "CDLGRAVESTONEDOJI": ("indecision", 0.45),
    "CDLHAMMER": ("reversal", 0.60),
    "CDLHANGINGMAN": ("reversal", 0.55),
    "CDLHARAMI": ("reversal", 0.53),
    "CDLHARAMICROSS": ("reversal", 0.55),
    "CDLHIGHWAVE": ("indecision", 0.35),
    "CDLHIKKAKE": ("continuation", 0.50),
    "CDLHIKKAKEMOD": ("continuation", 0.50),
    "CDLHOMINGPIGEON": ("reversal", 0.56),
    "CDLIDENTICAL3CROWS": ("reversal", 0.70),
    "CDLINNECK": ("continuation", 0.50),
    "CDLINVERTEDHAMMER": ("reversal", 0.55),
    "CDLKICKING": ("reversal", 0.60),
    "CDLKICKINGBYLENGTH": ("reversal", 0.60),
    "CDLLADDERBOTTOM": ("reversal", 0.56),
    "CDLLONGLEGGEDDOJI": ("indecision", 0.40),
    "CDLLONGLINE": ("continuation", 0.45),
    "CDLMARUBOZU": ("continuation", 0.50),
    "CDLMATCHINGLOW": ("reversal", 0.50),
    "CDLMATHOLD": ("continuation", 0.65),
    "CDLMORNINGDOJISTAR": ("reversal", 0.70),
    "CDLMORNINGSTAR": ("reversal", 0.72),
    "CDLONNECK": ("continuation", 0.50),
    "CDLPIERCING": ("reversal", 0.62),
    "CDLRICKSHAWMAN": ("indecision", 0.35),
    "CDLRISEFALL3METHODS": ("continuation", 0.68),
    "CDLSEPARATINGLINES": ("continuation", 0.60),
    "CDLSHOOTINGSTAR": ("reversal", 0.58),
    "CDLSHORTLINE": ("indecision", 0.30),
    "CDLSPINNINGTOP": ("indecision", 0.35),
    "CDLSTALLEDPATTERN": ("reversal", 0.50),
    "CDLSTICKSANDWICH": ("reversal", 0.55),
    "CDLTAKURI": ("reversal", 0.55),
    "CDLTASUKIGAP": ("continuation", 0.55),
    "CDLTHRUSTING": ("continuation", 0.50),
    "CDLTRISTAR": ("reversal", 0.60),
    "CDLUNIQUE3RIVER": ("reversal", 0.55),
    "CDLUPSIDEGAP2CROWS": ("reversal", 0.55),
    "CDLXSIDEGAP3METHODS": ("continuation", 0.58),
}

DEFAULT_PATTERNS: dict[str, PatternSpec] = {
    name: PatternSpec(kind, rel) for name, (kind, rel) in _TABLE.items()
}


@dataclass(frozen=True, slots=True)
class ScoringParams:
    """The rule knobs; each is one row of the parameter table in docs/design.md."""

    threshold: float = 0.65  # minimum score to emit a signal
    max_contribution: float = 0.95  # cap of one pattern's contribution before combining
    indecision_factor: float = 0.5  # indecision patterns count this much, against the trend
    trend_with: float = 1.25  # reversal against / continuation with the trend
    trend_against: float = 0.75  # reversal with / continuation against the trend
    htf_with: float = 1.15  # pattern direction agrees with the higher-timeframe trend
    htf_against: float = 0.85  # ... disagrees with it
    confirmed_factor: float = 1.2  # TA-Lib value |v| >= 200 (confirmed hikkake)
    conflict_penalty: float = 0.8  # score *= 1 - penalty * opposite-direction evidence
    volume_threshold: float = 1.5  # volume_ratio at or above: confirmed
    volume_boost: float = 1.2
    volume_weak_threshold: float = 0.7  # volume_ratio below: unconfirmed
    volume_weak_factor: float = 0.85
    rsi_oversold: float = 30.0
    rsi_overbought: float = 70.0
    rsi_with: float = 1.2  # long when oversold / short when overbought
    rsi_against: float = 0.8  # long when overbought / short when oversold
    cooldown_bars: int = 3  # suppress repeats within this many bars of the same timeframe


@dataclass(frozen=True, slots=True)
class Calibration:
    """Raw score -> probability: linear interpolation through the knots ``(x[i], y[i])``.

    ``x`` strictly increasing and ``y`` non-decreasing, both in [0, 1]; scores outside
    ``[x[0], x[-1]]`` map to the end values. ``horizon`` is the bars the probability is for.
    """

    horizon: int
    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, score: float) -> float:
        xs, ys = self.x, self.y
        if score <= xs[0]:
            return ys[0]
        if score >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_right(xs, score)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (score - x0) / (x1 - x0)


@dataclass(frozen=True)
class Model:
    """Pattern table + rule parameters; immutable so scoring stays a pure function."""

    patterns: Mapping[str, PatternSpec] = field(default_factory=lambda: dict(DEFAULT_PATTERNS))
    params: ScoringParams = field(default_factory=ScoringParams)
    calibration: Calibration | None = None  # None: the score is the rule score itself

    @cached_property
    def fingerprint(self) -> str:
        """First 12 hex digits of SHA-256 over the canonical JSON of every parameter."""
        doc = {
            "params": asdict(self.params),
            "patterns": {k: asdict(v) for k, v in sorted(self.patterns.items())},
        }
        if self.calibration is not None:  # absent: the hash of an uncalibrated model is kept
            doc["calibration"] = asdict(self.calibration)
        raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:12]


def model_from_mapping(doc: Mapping[str, Any], source: str = MODEL_FILE_VAR) -> Model:
    """Apply overrides (``{"threshold":…, "patterns": {"CDLX": {...}}}``) to the default model."""
    param_names = {f.name: f.type for f in fields(ScoringParams)}
    overrides: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("patterns", "calibration"):
            continue
        if key not in param_names:
            raise ConfigError(source, f"unknown scoring parameter {key!r}")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ConfigError(source, f"{key} must be a finite number, got {value!r}")
        if key == "cooldown_bars" and value != int(value):
            raise ConfigError(source, f"cooldown_bars must be a whole number, got {value!r}")
        overrides[key] = int(value) if key == "cooldown_bars" else float(value)
    params = replace(ScoringParams(), **overrides)
    check_params(params, source)
    patterns = dict(DEFAULT_PATTERNS)
    pattern_doc = doc.get("patterns", {})
    if not isinstance(pattern_doc, Mapping):
        raise ConfigError(source, "patterns must be a table of pattern name -> fields")
    for name, spec in pattern_doc.items():
        patterns[name] = _pattern_override(patterns.get(name), name, spec, source)
    calibration = doc.get("calibration")
    return Model(
        patterns, params, None if calibration is None else _calibration(calibration, source)
    )


def _calibration(doc: Any, source: str) -> Calibration:
    """Validate the ``calibration`` table; a bad one is one error naming the key."""
    if not isinstance(doc, Mapping):
        raise ConfigError(source, "calibration must be a table with horizon, x and y")
    unknown = set(doc) - {"horizon", "x", "y"}
    if unknown:
        raise ConfigError(source, f"calibration: unknown fields {sorted(unknown)}")
    horizon = doc.get("horizon")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ConfigError(source, f"calibration.horizon must be an integer >= 1, got {horizon!r}")
    knots = []
    for key in ("x", "y"):
        values = doc.get(key)
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0
            for v in values
        ):
            raise ConfigError(source, f"calibration.{key} must be a list of numbers in [0, 1]")
        knots.append(tuple(float(v) for v in values))
    xs, ys = knots
    if len(xs) < 2 or len(xs) != len(ys):
        raise ConfigError(source, "calibration.x and calibration.y need the same length >= 2")
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise ConfigError(source, "calibration.x must be strictly increasing")
    if any(b < a for a, b in itertools.pairwise(ys)):
        raise ConfigError(source, "calibration.y must be non-decreasing")
    return Calibration(horizon, xs, ys)


# Parameters bounded to [lo, hi]; every other one is a factor, >= 0. A score lies in [0, 1]
# (``scoring`` clips it), so a threshold above 1 would silently emit nothing, ever.
_BOUNDS: dict[str, tuple[float, float]] = {
    "threshold": (0.0, 1.0),
    "max_contribution": (0.0, 1.0),
    "conflict_penalty": (0.0, 1.0),
    "rsi_oversold": (0.0, 100.0),
    "rsi_overbought": (0.0, 100.0),
}


def check_params(params: ScoringParams, source: str = MODEL_FILE_VAR) -> None:
    """Refuse parameters with which scoring cannot work as documented (``ConfigError``)."""
    for f in fields(ScoringParams):
        value = getattr(params, f.name)
        lo, hi = _BOUNDS.get(f.name, (0.0, math.inf))
        if not (math.isfinite(value) and lo <= value <= hi):
            span = f"{lo:g}..{hi:g}" if math.isfinite(hi) else f">= {lo:g}"
            raise ConfigError(source, f"{f.name} must be a number {span}, got {value!r}")
    if params.rsi_oversold >= params.rsi_overbought:
        raise ConfigError(source, "rsi_oversold must be below rsi_overbought")
    if params.volume_weak_threshold > params.volume_threshold:
        raise ConfigError(source, "volume_weak_threshold must not exceed volume_threshold")


def _pattern_override(base: PatternSpec | None, name: str, spec: Any, source: str) -> PatternSpec:
    if not isinstance(spec, Mapping):
        raise ConfigError(source, f"patterns.{name} must be a table")
    unknown = set(spec) - {"kind", "reliability", "weight"}
    if unknown:
        raise ConfigError(source, f"patterns.{name}: unknown fields {sorted(unknown)}")
    if base is None and ("kind" not in spec or "reliability" not in spec):
        raise ConfigError(source, f"patterns.{name}: a new pattern needs kind and reliability")
    current = base or PatternSpec("reversal", 0.0)
    kind = spec.get("kind", current.kind)
    if kind not in KINDS:
        raise ConfigError(source, f"patterns.{name}.kind must be one of {KINDS}")
    try:
        rel = float(spec.get("reliability", current.reliability))
        weight = float(spec.get("weight", current.weight))
    except (TypeError, ValueError) as e:
        raise ConfigError(source, f"patterns.{name}: {e}") from e
    if not 0.0 <= rel <= 1.0 or not 0 <= weight < math.inf:
        raise ConfigError(source, f"patterns.{name}: reliability in [0,1], weight >= 0")
    return PatternSpec(kind, rel, weight)


def read_table_file(path: str, variable: str) -> Mapping[str, Any]:
    """A ``.toml`` file's table or a JSON file's object; ``ConfigError(variable)`` otherwise."""
    p = Path(path)
    try:
        text = p.read_text()
        doc: Any = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise ConfigError(variable, f"cannot read {path}: {e}") from e
    if not isinstance(doc, Mapping):
        raise ConfigError(variable, f"{path} must hold an object/table")
    return doc


def load_model(path: str | None) -> Model:
    """The default model, or the default overridden by a ``.json`` / ``.toml`` file."""
    if not path:
        return Model()
    return model_from_mapping(read_table_file(path, MODEL_FILE_VAR))


def model_to_mapping(model: Model) -> dict[str, Any]:
    """The whole model as the mapping ``model_from_mapping`` reads (every parameter, every
    pattern, the calibration if any): ``model_from_mapping(model_to_mapping(m)) == m``."""
    doc: dict[str, Any] = asdict(model.params)
    doc["patterns"] = {k: asdict(v) for k, v in sorted(model.patterns.items())}
    if model.calibration is not None:
        c = model.calibration
        doc["calibration"] = {"horizon": c.horizon, "x": list(c.x), "y": list(c.y)}
    return doc
