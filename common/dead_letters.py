"""Dead letters: the one way every stage writes to (and reads back from) ``dlq:<stream>``.

A dead letter keeps the entry's own fields under ``f:<name>`` beside what went wrong (error,
reason), where it came from (stream, id, deliveries, group, consumer) and when (``time_ms``),
so ``alphapulse dlq`` can show it and re-XADD the original. Dead-letter streams are capped at
about ``DLQ_MAXLEN`` so a flood of bad input cannot fill Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from redis.typing import EncodableT, FieldT

from common.errors import BadInput
from common.redis import AnyRedis

if TYPE_CHECKING:
    from common.stream_consumer import Entry

__all__ = [
    "DLQ_MAXLEN",
    "dead_letter_fields",
    "error_reason",
    "original_fields",
    "write_dead_letters",
]

DLQ_MAXLEN = 100_000
"""Dead-letter streams are capped (approximately) so a flood of bad input cannot fill Redis."""
_FIELD_PREFIX = b"f:"


def dead_letter_fields(
    entry: Entry, error: BaseException | str, *, reason: str, group: str, consumer: str
) -> dict[bytes, bytes]:
    """The fields of a dead letter: what, why, who, when, and the original fields."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    out: dict[bytes, bytes] = {
        b"stream": entry.stream.encode(),
        b"id": entry.id.encode(),
        b"error": text[:4096].encode(),
        b"reason": reason.encode(),
        b"deliveries": b"%d" % entry.deliveries,
        b"group": group.encode(),
        b"consumer": consumer.encode(),
        b"time_ms": b"%d" % int(time.time() * 1000),
    }
    out.update({_FIELD_PREFIX + k: v for k, v in entry.fields.items()})
    return out


async def write_dead_letters(
    redis: AnyRedis, letters: Iterable[tuple[str, Mapping[bytes, bytes]]]
) -> int:
    """XADD dead letters ``(dlq key, fields)`` in one pipeline, each dead-letter stream capped
    at about ``DLQ_MAXLEN``: every dead letter of every stage is written here. Returns how
    many; a Redis error propagates (nothing is retried here: the callers decide)."""
    pipe = redis.pipeline(transaction=False)
    n = 0
    for key, fields in letters:
        payload: dict[FieldT, EncodableT] = dict(fields.items())
        pipe.xadd(key, payload, maxlen=DLQ_MAXLEN, approximate=True)
        n += 1
    if n:
        await pipe.execute()
    return n


def original_fields(dead_letter: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """The entry's own fields back from a dead letter (to inspect or re-XADD it)."""
    n = len(_FIELD_PREFIX)
    return {k[n:]: v for k, v in dead_letter.items() if k.startswith(_FIELD_PREFIX)}


def error_reason(error: BaseException | str) -> str:
    """The counter label of an error: ``BadInput.reason``, or ``error`` for anything else."""
    return error.reason if isinstance(error, BadInput) else "error"
