"""``python -m tests.integration.sink_killed_before_ack``: the sink in burst mode, except that
it SIGKILLs itself at its first ack — right after its first commit, before anything is acked.

``test_sink_crash`` runs it to show that a redelivery stores nothing twice. The crash is
injected here, in the tests, by overriding ``ack``; the production sink knows nothing of it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable

from common.lifecycle import worker_main
from common.stream_worker import Entry
from sink.service import SinkService
from sink.settings import SinkSettings


class SinkKilledBeforeAck(SinkService):
    """Dies by SIGKILL (no cleanup, no flush) where it would ack its first batch."""

    async def ack(self, entries: Iterable[Entry]) -> int:
        del entries
        os.kill(os.getpid(), signal.SIGKILL)
        return 0  # never reached


def main() -> int:
    return worker_main(SinkSettings.from_env, lambda s: SinkKilledBeforeAck(s, burst=True))


if __name__ == "__main__":
    sys.exit(main())
