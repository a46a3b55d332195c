"""Running maxima over runs of equal keys, vectorized (pure numpy; the bar aggregator's dedup
and lateness checks use them on every batch).

Given ticks sorted by series, ``group_runs`` finds each series' run and ``prev_group_max``
gives every tick the highest value its series had before it (the series' state first, then
the earlier ticks of the batch), in one ``np.maximum.accumulate`` over the whole batch
instead of a Python loop per series.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
_MAX_KEY = 2**62


def group_runs(sorted_keys: I64) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Start index of each run of equal keys, and each element's run number."""
    if len(sorted_keys) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.intp)
    rank = np.zeros(len(sorted_keys), np.intp)
    rank[change] = 1
    return starts, np.cumsum(rank)


def prev_group_max(rank: npt.NDArray[np.intp], v: I64, init: I64) -> I64:
    """For each element: max of its group's ``init`` and the group's earlier values.

    Groups are runs of equal ``rank`` (0, 1, 2...). Values of group g are shifted into the
    disjoint range ``[g*span, (g+1)*span)`` so one running maximum serves every group.
    """
    if len(v) == 0:
        return v.copy()
    lo = int(v.min()) - 1
    init = np.maximum(init, lo)  # "nothing seen" ranks below every value
    hi = max(int(v.max()), int(init.max()))
    span = hi - lo + 1
    if span * (int(rank[-1]) + 1) >= _MAX_KEY:
        return prev_group_max_loop(rank, v, init)
    offset = rank.astype(np.int64) * span - lo
    key = v + offset
    running = np.maximum.accumulate(key)
    prev = np.empty_like(running)
    prev[0] = init[0] + offset[0]
    prev[1:] = running[:-1]
    result: I64 = np.maximum(prev, init + offset) - offset
    return result


def never_falls(v: I64, starts: npt.NDArray[np.intp], init: I64, *, strict: bool) -> bool:
    """Whether every run of ``v`` (starting at ``starts``) begins above its ``init`` (one
    per run; at or above unless ``strict``) and rises (or never falls) from one element to
    the next: then no element is at or below (``strict``) / below the maximum before it,
    the common case that needs no :func:`prev_group_max`."""
    first = v[starts]
    above = first > init if strict else first >= init
    if not above.all():
        return False
    step = v[1:] > v[:-1] if strict else v[1:] >= v[:-1]
    step[starts[1:] - 1] = True  # a run's first element is compared with its init only
    return bool(step.all())


def prev_group_max_loop(rank: npt.NDArray[np.intp], v: I64, init: I64) -> I64:
    out = np.empty_like(v)
    starts, _ = group_runs(rank.astype(np.int64))
    for a, b in zip(starts.tolist(), [*starts[1:].tolist(), len(v)], strict=True):
        run = np.maximum.accumulate(np.concatenate([[init[a]], v[a : b - 1]]))
        out[a:b] = run
    return out
