"""``python -m sink [--burst]``: run one sink worker (see ``sink.worker``; settings from env).

``--burst`` returns once every stream is drained and the last batch is committed and acked.
"""

from __future__ import annotations

import sys

from common.lifecycle import run_service
from common.settings import exit_on_config_error
from sink.settings import SinkSettings
from sink.worker import SinkWorker


def main() -> int:
    with exit_on_config_error():
        settings = SinkSettings.from_env()
    burst = "--burst" in sys.argv[1:]
    return run_service(lambda: SinkWorker(settings, burst=burst), settings.common)


if __name__ == "__main__":
    sys.exit(main())
