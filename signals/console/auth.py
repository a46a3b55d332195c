"""Who may use the console: users with roles, hashed passwords, sessions, tokens, login limits.

Pure (no I/O): the server (``server.py``) calls these. Passwords are argon2id hashes made by
``argon2-cffi`` (``alphapulse console-user`` prints a users-file line); the plain password is
never stored. Sessions are random 256-bit ids kept in this process's memory with an expiry and
a CSRF token each; a restart logs everyone out (the console is one process; see
docs/console.md). API tokens for scripts are compared by their SHA-256 in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.errors import ConfigError

ROLES = ("viewer", "admin")
_HASHER = PasswordHasher()
# Verifying against this when the user does not exist costs the same time as a real check,
# so response times do not tell which user names exist.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    role: str
    digest: bytes = field(repr=False)  # SHA-256 of the token

    @classmethod
    def of(cls, name: str, role: str, token: str) -> ApiToken:
        return cls(name, role, hashlib.sha256(token.encode()).digest())

    @classmethod
    def viewer(cls, token: str) -> ApiToken:
        """A signals WebSocket token (SIGNALS_WS_TOKENS): read-only on the console too."""
        return cls.of("signals-ws-token", "viewer", token)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def _role(role: str, variable: str) -> str:
    if role not in ROLES:
        raise ConfigError(variable, f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def parse_users(lines: Iterable[str], variable: str) -> list[User]:
    """Users from ``name role hash`` lines (a file) or ``name:role:hash`` items (env);
    blank lines and ``#`` comments are skipped. A plain (unhashed) password is refused."""
    users = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":", 2) if ":" in line.split()[0] else line.split(None, 2)
        if len(parts) != 3 or not parts[0]:
            raise ConfigError(variable, "expected 'name role argon2-hash' per user")
        name, role, hashed = (p.strip() for p in parts)
        if not hashed.startswith("$argon2"):
            raise ConfigError(
                variable,
                f"user {name!r}: the password must be an argon2 hash "
                "(make one with `alphapulse console-user NAME`)",
            )
        users.append(User(name, _role(role, variable), hashed))
    return users


def parse_tokens(items: Iterable[str], variable: str) -> tuple[ApiToken, ...]:
    """``name:role:token`` items."""
    tokens = []
    for item in items:
        parts = item.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise ConfigError(variable, "expected name:role:token items (comma-separated)")
        tokens.append(ApiToken.of(parts[0], _role(parts[1], variable), parts[2]))
    return tuple(tokens)


def check_password(users: Iterable[User], name: str, password: str) -> User | None:
    """The user when ``password`` is right, else None (same cost either way)."""
    user = next((u for u in users if u.name == name), None)
    try:
        _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def check_token(tokens: Iterable[ApiToken], token: str) -> ApiToken | None:
    digest = hashlib.sha256(token.encode()).digest()
    found = None
    for t in tokens:  # compare with every one: the time does not say which matched
        if hmac.compare_digest(t.digest, digest):
            found = t
    return found


@dataclass(slots=True)
class Session:
    id: str = field(repr=False)
    user: str
    role: str
    csrf: str = field(repr=False)
    expires: float


class SessionStore:
    """Live sessions by id; expired ones are dropped when met."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, user: str, role: str) -> Session:
        s = Session(
            secrets.token_urlsafe(32),
            user,
            role,
            secrets.token_urlsafe(32),
            self.clock() + self.ttl_s,
        )
        self._sessions[s.id] = s
        return s

    def get(self, session_id: str | None) -> Session | None:
        s = self._sessions.get(session_id or "")
        if s is not None and s.expires <= self.clock():
            del self._sessions[s.id]
            return None
        return s

    def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        now = self.clock()
        for sid in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]
        return len(self._sessions)


class LoginLimiter:
    """At most ``failures`` failed logins per key (a user name, an address) in ``window_s``;
    past that, every attempt for the key is refused until the oldest failure ages out."""

    def __init__(
        self, failures: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._seen.setdefault(key, deque())
        horizon = self.clock() - self.window_s
        while q and q[0] <= horizon:
            q.popleft()
        if not q:
            del self._seen[key]
        return q

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login for these keys may be tried again (0: now)."""
        waits = [0.0]
        for key in keys:
            q = self._recent(key)
            if len(q) >= self.failures:
                waits.append(q[0] + self.window_s - self.clock())
        return max(waits)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            self._seen.setdefault(key, deque()).append(now)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._seen.pop(key, None)
