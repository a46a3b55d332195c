"""The safe MINID (the lowest id any consumer group may still need) and the trim policies."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.trimming import (
    INTERNAL,
    GroupPosition,
    TrimPolicy,
    next_id,
    parse_id,
    safe_minid,
    trim_minid,
)


def test_next_id() -> None:
    assert next_id("5-3") == "5-4"
    assert next_id("0-0") == "0-1"
    assert next_id(f"7-{2**64 - 1}") == "8-0"
    assert parse_id("12") == (12, 0)


def test_pending_entries_hold_the_minid_back() -> None:
    groups = [
        GroupPosition("fast", last_delivered="100-0", pending=0, first_pending=None),
        GroupPosition("slow", last_delivered="90-5", pending=3, first_pending="40-2"),
    ]
    assert safe_minid(groups) == "40-2"


def test_undelivered_entries_hold_the_minid_back() -> None:
    groups = [
        GroupPosition("a", last_delivered="100-0", pending=0, first_pending=None),
        GroupPosition("b", last_delivered="20-9", pending=0, first_pending=None),
    ]
    assert safe_minid(groups) == "20-10"


def test_ids_compare_numerically_not_as_text() -> None:
    groups = [
        GroupPosition("a", last_delivered="9-0", pending=0, first_pending=None),
        GroupPosition("b", last_delivered="10-0", pending=0, first_pending=None),
    ]
    assert safe_minid(groups) == "9-1"


def test_no_group_means_no_safe_trim() -> None:
    assert safe_minid([]) is None


def _at(last_delivered: str) -> list[GroupPosition]:
    return [GroupPosition("g", last_delivered=last_delivered, pending=0, first_pending=None)]


def test_internal_policy_is_the_safe_minid_whatever_the_time() -> None:
    assert trim_minid(_at("9000-0"), INTERNAL, now_ms=10**13) == "9000-1"
    assert trim_minid([], INTERNAL, now_ms=10**13) is None


def test_retention_policy_keeps_the_retention_and_what_groups_need() -> None:
    keep_5s = TrimPolicy(retention_ms=5000)
    assert trim_minid([], keep_5s, now_ms=10_000) == "5000-0"  # no group: retention only
    assert trim_minid(_at("2000-2"), keep_5s, now_ms=10_000) == "2000-3"  # a group needs it
    assert trim_minid(_at("9000-0"), keep_5s, now_ms=10_000) == "5000-0"  # keep the retention
    assert trim_minid([], keep_5s, now_ms=3000) == "0-0"  # younger than the retention


def test_keep_everything_policy_never_trims_by_id() -> None:
    assert trim_minid(_at("9000-0"), TrimPolicy(retention_ms=None), now_ms=10**13) is None


ids = st.tuples(st.integers(0, 10**13), st.integers(0, 5))


@given(st.lists(st.tuples(ids, st.lists(ids, max_size=4)), min_size=1, max_size=5))
def test_minid_never_exceeds_an_id_some_group_still_needs(
    groups: list[tuple[tuple[int, int], list[tuple[int, int]]]],
) -> None:
    positions = []
    needed: list[tuple[int, int]] = []
    for n, (last, raw_pending) in enumerate(groups):
        pend = sorted(p for p in raw_pending if p <= last)
        positions.append(
            GroupPosition(
                f"g{n}",
                last_delivered=f"{last[0]}-{last[1]}",
                pending=len(pend),
                first_pending=f"{pend[0][0]}-{pend[0][1]}" if pend else None,
            )
        )
        needed.extend(pend)
        needed.append((last[0], last[1] + 1))  # the first entry this group has not read
    minid = safe_minid(positions)
    assert minid is not None
    assert parse_id(minid) == min(needed)
