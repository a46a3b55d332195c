"""All implemented TA-Lib candlestick functions by name, in TA-Lib's (alphabetical) order."""

from __future__ import annotations

from detectors.patterns import (
    kernels_gaps_continuation,
    kernels_hikkake,
    kernels_multi,
    kernels_single,
    kernels_two,
)
from detectors.patterns.detector import PatternDef

PATTERNS: dict[str, PatternDef] = {
    d.name: d
    for d in sorted(
        [
            d
            for m in (
                kernels_single,
                kernels_two,
                kernels_multi,
                kernels_gaps_continuation,
                kernels_hikkake,
            )
            for d in m.REGISTRY.defs
        ],
        key=lambda d: d.name,
    )
}
PATTERN_NAMES: tuple[str, ...] = tuple(PATTERNS)
