"""Hypothesis: random valid OHLC sequences, all 61 patterns, engine == TA-Lib on every bar.

Prices come from a handful of integer levels (ties, dojis, equal highs/lows, gaps and
one-trade bars everywhere, where TA-Lib's ``<`` versus ``<=`` choices matter) or from
arbitrary positive floats of very different magnitudes (inexact running sums).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.patterns import PatternDetector
from tests.patterns_support import engine_outputs, talib_outputs

ENGINE = PatternDetector()
SERIES = 4


@st.composite
def ohlc_sequences(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    length = draw(st.integers(min_value=1, max_value=60))
    if draw(st.booleans()):
        price = st.integers(min_value=1, max_value=8).map(float)
    else:
        price = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
    cells = draw(
        st.lists(
            st.tuples(price, price, price, price),
            min_size=SERIES * length,
            max_size=SERIES * length,
        )
    )
    arr = np.array(cells).reshape(SERIES, length, 4)
    o, c = arr[..., 0], arr[..., 3]
    h = np.maximum(arr[..., 1], np.maximum(o, c))  # valid OHLC: high >= max(open, close)
    lo = np.minimum(arr[..., 2], np.minimum(o, c))  # low <= min(open, close)
    return o, h, lo, c


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ohlc_sequences())
def test_random_ohlc_sequences_match_talib(bars: tuple[np.ndarray, ...]) -> None:
    got = engine_outputs(ENGINE, *bars)
    want = talib_outputs(ENGINE.names, *bars)
    bad = {n for p, n in enumerate(ENGINE.names) if (got[:, :, p] != want[:, :, p]).any()}
    assert bad == set()
