"""The one polling helper of the test tree: wait (bounded, not timed) for a condition.

``check`` may be a plain predicate or a coroutine function; either way it is called until it
holds. Past ``timeout_s`` the test fails with ``gave up waiting for <what>``: the bound only
keeps a broken test from hanging, no speed is asserted.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.01,
) -> None:
    """Poll ``check`` every ``interval_s`` until it holds; fail naming ``what`` past the bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(interval_s)
