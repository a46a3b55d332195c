"""The one error tree of alphapulse.

Two kinds of failure are kept apart on purpose:

* ``BadInput`` — expected bad data from outside (a malformed frame, a tick with a negative
  price, a stream entry that does not decode). It is counted, dead-lettered with its reason,
  and processing goes on.
* everything else — a bug or an outage. It is logged with its traceback; the runtime retries
  the entry and dead-letters it only after the configured number of deliveries.

``ConfigError`` stops a process at start with a one-line message naming the variable.
``ServerError`` is a server a one-shot command needs (PostgreSQL for ``alphapulse migrate``)
refusing or failing: the command line prints it as one line, like a Redis or socket error.
"""

from __future__ import annotations


class AlphapulseError(Exception):
    """Base of every error alphapulse raises on purpose."""


class ConfigError(AlphapulseError):
    """An invalid setting; the message names the variable and what it accepts."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class ServerError(AlphapulseError):
    """A server a command talks to refused it or failed (wrong password, unreachable...)."""


class BadInput(AlphapulseError):
    """Expected bad input: count it under ``reason``, dead-letter it, go on."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class DecodeError(BadInput):
    """A stream entry or frame that does not decode into its contract."""
