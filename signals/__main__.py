"""``python -m signals``: run one signals worker (see ``signals.worker``; settings from env)."""

from __future__ import annotations

import sys

from common.lifecycle import run_service
from common.settings import exit_on_config_error
from signals.settings import SignalsSettings
from signals.worker import SignalsWorker


def main() -> int:
    with exit_on_config_error():
        settings = SignalsSettings.from_env()
    burst = "--burst" in sys.argv[1:]
    return run_service(lambda: SignalsWorker(settings, burst=burst), settings.common)


if __name__ == "__main__":
    sys.exit(main())
