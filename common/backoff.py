"""Capped exponential backoff with jitter: the one retry-delay formula of every retry loop.

The delay before retry ``attempt`` is drawn uniformly from ``[(1 - jitter)·d, d]`` where
``d = min(cap_s, base_s · 2**attempt)``. ``jitter=1`` is *full jitter* (``uniform(0, d)``,
what AWS's "Exponential Backoff and Jitter" recommends when many clients retry the same
server: the WebSocket reconnects, the Redis writer, the REST history); ``jitter=0.5`` keeps at
least half the nominal delay (the Redis/PostgreSQL outage loops, which want to wait, not to
hammer). Jitter spreads the retries of many processes that lost the same server at the same
moment, so they do not all come back in one burst; the cap keeps a long outage from
stretching the delays beyond what recovery can afford.

Two ways to use it, both pure (no sleeping here; the loops sleep the delay on their own
stop event):

* :meth:`BackoffPolicy.delay` for loops that count their attempts themselves (the connection
  resets its count only once a session has lived long enough);
* :class:`Backoff`, a policy plus the count of consecutive failures: :meth:`Backoff.next`
  after each failure, :meth:`Backoff.reset` after a success.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

#: 2**this already exceeds any sensible cap/base ratio; a larger exponent would only risk a
#: float overflow after very many attempts.
_MAX_EXPONENT: Final = 60


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delays ``uniform((1 - jitter)·d, d)``, ``d = min(cap_s, base_s · 2**attempt)``."""

    base_s: float
    cap_s: float = math.inf
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if not (self.base_s >= 0.0 and self.cap_s >= 0.0 and 0.0 <= self.jitter <= 1.0):
            raise ValueError(f"backoff needs base, cap >= 0 and jitter in [0, 1]: {self}")

    def nominal(self, attempt: int) -> float:
        """The capped delay of ``attempt`` before jitter (its upper bound)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered delay before retry ``attempt`` (``rng``: a seeded one in tests)."""
        d = self.nominal(attempt)
        r = rng.random() if rng is not None else random.random()
        return d * (1.0 - self.jitter + self.jitter * r)


class Backoff:
    """A policy with the count of consecutive failures: ``next()`` after each failure gives
    the delay to wait (the first is that of attempt 0), ``reset()`` after a success."""

    __slots__ = ("failures", "policy", "rng")

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng
        self.failures = 0

    def next(self) -> float:
        delay = self.policy.delay(self.failures, self.rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


#: The outage loops (Redis for the stream workers and the signals WebSocket, PostgreSQL for
#: the sink with its own cap): 0.1 s doubling to 5 s, each delay at least half its nominal.
OUTAGE: Final = BackoffPolicy(0.1, 5.0, jitter=0.5)
