"""``tests.polling.until``, the one polling helper of the test tree: it takes a plain or an
async predicate, returns once it holds and fails naming what it waited for."""

from __future__ import annotations

import pytest

from tests.polling import until


async def test_a_plain_predicate_is_polled_until_it_holds() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) == 3

    await until(third_time, "the third call")
    assert len(calls) == 3


async def test_an_async_predicate_is_awaited() -> None:
    calls: list[int] = []

    async def second_time() -> bool:
        calls.append(1)
        return len(calls) == 2

    await until(second_time, "the second call")
    assert len(calls) == 2


async def test_past_the_bound_it_fails_naming_what_it_waited_for() -> None:
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    with pytest.raises(AssertionError, match=r"^gave up waiting for the impossible$"):
        await until(never, "the impossible", timeout_s=0.05)
    assert len(calls) >= 2  # checked again after the first miss, not given up at once
