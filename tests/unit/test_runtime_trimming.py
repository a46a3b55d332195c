"""The safe MINID: the lowest id any consumer group may still need."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.trimming import GroupPosition, next_id, parse_id, safe_minid


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
