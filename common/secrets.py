"""Secrets kept out of every output: one registry, one ``scrub`` for every rendered string.

Settings register each secret they read once, when they are built (``register_secret``,
``register_url_secret``): the Redis password (``REDIS_URL`` or ``REDIS_PASSWORD``), the
``DATABASE_URL`` password, the WebSocket bearer tokens. ``scrub`` then replaces every
registered secret, and the password of any ``scheme://user:password@host`` URL (registered or
not), with ``***``. The logging pipeline runs it on every value of every event (exception
messages and tracebacks included) and the command line on every error it prints, so a secret
that travels inside a library's exception, a tuple repr or a DSN is still masked.

A secret is matched as written and percent-decoded (``p%40ss`` in a URL is ``p@ss`` to the
client library, and that is what its errors show). Secrets shorter than ``MIN_LENGTH``
characters are masked only where they stand as a URL's password: masking every ``p`` of every
line would destroy the logs, and such a password protects nothing anyway.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote

__all__ = ["MASK", "MIN_LENGTH", "redact_url", "register_secret", "register_url_secret", "scrub"]

MASK = "***"
MIN_LENGTH = 4

# scheme://user:password@  (user and password without '/', '@' or blanks; user may be empty)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^/@\s:]*:)([^/@\s]+)(@)")


class _Registry:
    """The secrets seen so far and one compiled pattern matching any of them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, new: set[str]) -> None:
        with self.lock:
            if new <= self.secrets:
                return
            self.secrets.update(new)
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(self.secrets, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(s) for s in ordered))


_REGISTRY = _Registry()


def register_secret(*values: str | None) -> None:
    """Mask ``values`` (and their percent-decoded forms) in everything ``scrub`` sees from now."""
    _REGISTRY.add(
        {f for v in values if v for f in (v, unquote(v)) if len(f) >= MIN_LENGTH and f != MASK}
    )


def url_password(url: str) -> str | None:
    """The password part of ``scheme://user:password@host...`` (as written), if any."""
    m = _URL_PASSWORD.search(url)
    return m[2] if m else None


def register_url_secret(url: str | None) -> None:
    """Register the password of ``url`` (nothing when it has none)."""
    if url:
        register_secret(url_password(url))


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (user, host, port kept: they help debug).

    Textual, so it works on URLs a parser rejects (a port out of range, a bad scheme).
    """
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", url)


def scrub(text: str) -> str:
    """``text`` with every URL password and every registered secret replaced by ``***``."""
    if "@" in text:
        text = redact_url(text)
    pattern = _REGISTRY.pattern
    return text if pattern is None else pattern.sub(MASK, text)
