"""The batch path's dedupe step (``symbol_runs`` + ``TradeDeduper.accept_runs``, as
``FrameStep._accept_columns`` uses them) against the per-tick path it stands in for.

For a batch of many interleaved symbols with gaps, repeats and out-of-order ids, on top of
a random history: the batch is accepted at once exactly when every one of its symbols is a
known stream and the per-tick ``check`` would keep every trade cleanly (no gap, no repeat,
no late fill); then the deduper ends in the state the per-tick path leaves (window, highest,
counters); otherwise nothing changed (the caller falls back to ``check`` per tick). The
decision is also the one the previous one-scan-per-symbol code made.
"""

from __future__ import annotations

import copy

import numpy as np
import numpy.typing as npt
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ingest.sequence import TradeDeduper, Verdict, symbol_runs

EX = "binance"
_CLEAN = Verdict(True)


def _view(dd: TradeDeduper) -> dict[tuple[str, str], tuple[object, ...]]:
    """Everything a stream's future verdicts depend on: highest id, the next id's spelling,
    the remembered ids oldest first (the run spelled out), and the counters."""
    out: dict[tuple[str, str], tuple[object, ...]] = {}
    for key, s in dd._streams.items():
        window = [*s.order, *map(str, range(s.run_lo, s.run_hi + 1))]
        assert s.seen == set(s.order)
        out[key] = (s.highest, s.expect, window, copy.copy(s.stats))
    return out


def _previous_decision(dd: TradeDeduper, symbols: list[str], seq: npt.NDArray[np.int64]) -> bool:
    """The code this replaces: one array scan per symbol."""
    names = dict.fromkeys(symbols)
    if len(names) == 1:
        runs = [(symbols[0], seq)]
    else:
        of_trade = np.array(symbols, dtype=object)
        runs = [(sym, seq[of_trade == sym]) for sym in names]
    if not all(
        bool((np.diff(ids) == 1).all()) and dd.next_id(EX, sym) == int(ids[0]) for sym, ids in runs
    ):
        return False
    for sym, ids in runs:
        dd.accept_run(EX, sym, int(ids[0]), len(ids))
    return True


@st.composite
def _scenario(
    draw: st.DrawFn,
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """A window, a history of (symbol, id) checked one by one, and a batch: mostly each
    symbol's next id, sometimes a gap, a repeat or an older id."""
    window = draw(st.integers(min_value=1, max_value=8))
    n_symbols = draw(st.integers(min_value=1, max_value=40))
    names = [f"S{i}-USDT" for i in range(n_symbols)]
    start = {s: draw(st.integers(min_value=0, max_value=5)) for s in names}
    head = dict(start)
    history: list[tuple[str, int]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=60))):
        s = draw(st.sampled_from(names))
        history.append((s, head[s]))
        head[s] += draw(st.sampled_from([1, 1, 1, 2, 0, -1]))
    clean = draw(st.booleans())  # half the batches mostly in order, to reach the fast path
    steps = [1] if clean else [1, 1, 1, 1, 2, 3, 0, -1, -5]
    batch: list[tuple[str, int]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=80))):
        s = draw(st.sampled_from(names))
        batch.append((s, head[s]))
        head[s] += draw(st.sampled_from(steps))
    return window, history, batch


@settings(max_examples=400, deadline=None)
@given(_scenario())
def test_batch_runs_agree_with_the_per_tick_path(
    scenario: tuple[int, list[tuple[str, int]], list[tuple[str, int]]],
) -> None:
    window, history, batch = scenario
    dd = TradeDeduper(window=window, sequential_key=int)
    for sym, tid in history:
        dd.check(EX, sym, str(tid))
    before = _view(dd)
    fast, slow, previous = dd, copy.deepcopy(dd), copy.deepcopy(dd)
    symbols = [s for s, _ in batch]
    seq = np.array([t for _, t in batch], dtype=np.int64)

    runs = symbol_runs(symbols, seq)
    accepted = runs is not None and fast.accept_runs(EX, runs)
    known = all(slow.next_id(EX, s) is not None for s in symbols)
    verdicts = [slow.check(EX, s, str(t)) for s, t in batch]

    event(f"accepted={accepted}, streams known={known}")
    assert accepted == (known and all(v == _CLEAN for v in verdicts))
    assert accepted == _previous_decision(previous, symbols, seq)
    assert _view(fast) == (_view(slow) if accepted else before)
    assert _view(previous) == _view(fast)
    if runs is not None:  # the grouping itself: every trade once, in its symbol's order
        assert [s for s, _, _ in runs] == list(dict.fromkeys(symbols))
        spelled = {s: list(range(lo, lo + n)) for s, lo, n in runs}
        assert spelled == {s: [t for x, t in batch if x == s] for s in spelled}


def test_a_thousand_interleaved_symbols_in_one_batch() -> None:
    dd = TradeDeduper(window=16, sequential_key=int)
    names = [f"S{i}-USDT" for i in range(1000)]
    for s in names:
        dd.check(EX, s, "10")
    rng = np.random.default_rng(7)
    symbols = [names[i] for i in rng.integers(0, 1000, 5000)]
    nxt = dict.fromkeys(names, 11)
    ids = []
    for s in symbols:
        ids.append(nxt[s])
        nxt[s] += 1
    runs = symbol_runs(symbols, np.array(ids, dtype=np.int64))
    assert runs is not None and dd.accept_runs(EX, runs)
    assert sum(n for _, _, n in runs) == 5000
    assert all(dd.next_id(EX, s) == nxt[s] for s in names)
    symbols.append(symbols[0])  # one gap in the last trade: the batch goes the per-tick way
    ids.append(nxt[symbols[0]] + 1)
    assert symbol_runs(symbols, np.array(ids, dtype=np.int64)) is None
