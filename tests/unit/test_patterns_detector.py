"""PatternDetector as the detector uses it: subsets, slots, staggered series, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.patterns import PATTERN_NAMES, PatternDetector, PatternState
from tests.patterns_support import (
    engine_outputs,
    generated_bars,
    talib_outputs,
    templated_bars,
)


def test_unknown_pattern_names_are_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="CDLNOPE") as err:
        PatternDetector(["CDLDOJI", "CDLNOPE"])
    assert "CDLHAMMER" in str(err.value)  # lists the known ones
    with pytest.raises(ValueError, match="twice"):
        PatternDetector(["CDLDOJI", "cdldoji"])


def test_subset_keeps_the_given_order_and_needs_less_history() -> None:
    engine = PatternDetector(["cdlhammer", "CDLENGULFING"])
    assert engine.names == ("CDLHAMMER", "CDLENGULFING")
    assert engine.window < PatternDetector().window
    assert PatternDetector().names == PATTERN_NAMES
    assert PatternDetector(["CDLENGULFING"]).window == 5  # no averages: just the candles


def _window(arrays: tuple[np.ndarray, ...], series: int, bar: int, width: int) -> list[np.ndarray]:
    """Last ``width`` bars up to ``bar`` (inclusive) of one series, NaN-padded on the left."""
    out = []
    for a in arrays:
        part = a[series, max(0, bar + 1 - width) : bar + 1]
        out.append(np.concatenate([np.full(width - part.shape[0], np.nan), part]))
    return out


def test_staggered_series_in_slots_match_talib() -> None:
    """Series close bars at different moments (different bars_seen in one call), each in
    its own state slot, slots in shuffled order; values equal TA-Lib on every bar."""
    rng = np.random.default_rng(11)
    bars = templated_bars(rng, 24, 160)
    engine = PatternDetector()
    want = talib_outputs(engine.names, *bars)
    state = engine.new_state(2)
    state.grow(40)  # more slots than series; unused rows stay empty
    slot_of = rng.permutation(40)[:24]
    done = np.zeros(24, dtype=np.int64)
    got = np.zeros_like(want)
    while (done < 160).any():
        closing = np.flatnonzero((done < 160) & (rng.random(24) < 0.4))
        if closing.size == 0:
            continue
        rng.shuffle(closing)
        windows = [_window(bars, int(s), int(done[s]), engine.window) for s in closing]
        o, h, lo, c = (np.array([w[f] for w in windows]) for f in range(4))
        seen = done[closing] + 1
        values = engine.evaluate(o, h, lo, c, seen, state=state, slots=slot_of[closing])
        got[closing, done[closing]] = values
        done[closing] += 1
    assert (got == want).all()


def test_checkpoint_restore_mid_series_continues_exactly() -> None:
    bars = generated_bars(np.random.default_rng(5), 16, 120)
    engine = PatternDetector()
    want = talib_outputs(engine.names, *bars)
    slots = np.arange(16)
    state = engine.new_state(16)
    got = np.zeros_like(want)
    for bar in range(120):
        if bar in (57, 90):  # checkpoint the rows, restore into a fresh state
            blob = state.take(slots).to_bytes(compress=bar == 90)
            state = engine.new_state(16)
            state.put(slots, PatternState.from_bytes(blob))
        windows = [_window(bars, s, bar, engine.window) for s in range(16)]
        o, h, lo, c = (np.array([w[f] for w in windows]) for f in range(4))
        seen = np.full(16, bar + 1, dtype=np.int64)
        got[:, bar] = engine.evaluate(o, h, lo, c, seen, state=state, slots=slots)
    assert (got == want).all()


def test_not_ready_until_talibs_lookback_and_wider_windows_are_fine() -> None:
    engine = PatternDetector()
    o, h, lo, c = generated_bars(np.random.default_rng(2), 3, 30)
    state = engine.new_state(3)
    extra = 7
    pad = np.full((3, engine.window + extra), 1000.0)
    for bar in range(30):
        win = [
            np.hstack([pad, a[:, : bar + 1]])[:, -(engine.window + extra) :] for a in (o, h, lo, c)
        ]
        seen = np.full(3, bar + 1, dtype=np.int64)
        values = engine.evaluate(win[0], win[1], win[2], win[3], seen, state=state)
        ready = engine.ready(seen)
        assert (ready == (bar >= engine.lookbacks)[None, :]).all()
        assert (values[~ready] == 0).all()


def test_a_skipped_bar_is_refused() -> None:
    engine = PatternDetector(["CDLDOJI"])
    state = engine.new_state(2)
    ones = np.ones((2, engine.window))
    engine.evaluate(ones, ones, ones, ones, np.array([1, 1]), state=state)
    with pytest.raises(ValueError, match="skipped a bar"):
        engine.evaluate(ones, ones, ones, ones, np.array([2, 3]), state=state)


def test_too_short_windows_are_refused() -> None:
    engine = PatternDetector()
    state = engine.new_state(1)
    short = np.ones((1, engine.window - 1))
    with pytest.raises(ValueError, match="expected"):
        engine.evaluate(short, short, short, short, np.array([1]), state=state)


def test_no_series_closing_is_an_empty_result() -> None:
    engine = PatternDetector()
    state = engine.new_state(3)
    none = np.empty((0, engine.window))
    values = engine.evaluate(none, none, none, none, np.empty(0, np.int64), state=state)
    assert values.shape == (0, 61)
    assert values.dtype == np.int32


@pytest.mark.parametrize(
    "names",
    [["CDLHIKKAKEMOD"], ["CDLDOJI", "CDLENGULFING", "CDLMATHOLD"], ["CDLXSIDEGAP3METHODS"]],
)
def test_configured_subsets_match_talib(names: list[str]) -> None:
    """A subset keeps only its own running sums and a shorter window, still exact."""
    engine = PatternDetector(names)
    bars = templated_bars(np.random.default_rng(4), 32, 300)
    got = engine_outputs(engine, *bars)
    want = talib_outputs(engine.names, *bars)
    assert (got == want).all()
    assert (want != 0).any()


def test_slots_outside_the_state_are_refused() -> None:
    engine = PatternDetector(["CDLDOJI"])
    state = engine.new_state(2)
    ones = np.ones((1, engine.window))
    for bad in (-1, 2):
        with pytest.raises(ValueError, match="slots"):
            engine.evaluate(
                ones, ones, ones, ones, np.array([1]), state=state, slots=np.array([bad])
            )
