"""A free TCP port on 127.0.0.1 for a process a test or bench starts (the one implementation).

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the same range
every outgoing connection takes its source port from; between the check and the child's own
bind, one of the many client connections of a run could take it (seen: an ingest process of
the e2e bench stopped with ``METRICS_PORT ... Address already in use``). So the port is drawn
below that range, where only listeners bind, and checked free.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20_000
_DRAW = random.Random()  # its own generator: tests that seed ``random`` do not repeat ports
_GIVEN: set[int] = set()  # never the same port twice in a process (a caller may take several)


def _ephemeral_start() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A port below the ephemeral range that nothing listens on now and that this process
    has not handed out before."""
    top = max(_LOWEST + 1_000, _ephemeral_start())
    if len(_GIVEN) > (top - _LOWEST) // 2:
        _GIVEN.clear()
    for _ in range(200):
        port = _DRAW.randrange(_LOWEST, top)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free port in {_LOWEST}..{top} after 200 draws")
