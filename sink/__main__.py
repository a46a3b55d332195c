"""``python -m sink [--burst]``: run one sink worker (see ``sink.worker``; settings from env).

``--burst`` returns once every stream is drained and the last batch is committed and acked.
"""

from __future__ import annotations

import sys

from common.lifecycle import worker_main
from sink.settings import SinkSettings
from sink.worker import SinkWorker


def main() -> int:
    burst = "--burst" in sys.argv[1:]
    return worker_main(SinkSettings.from_env, lambda s: SinkWorker(s, burst=burst))


if __name__ == "__main__":
    sys.exit(main())
