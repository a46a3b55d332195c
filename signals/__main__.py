"""``python -m signals``: run one signals worker (see ``signals.worker``; settings from env)."""

from __future__ import annotations

import sys

from common.lifecycle import worker_main
from signals.settings import SignalsSettings
from signals.worker import SignalsWorker


def main() -> int:
    burst = "--burst" in sys.argv[1:]
    return worker_main(SignalsSettings.from_env, lambda s: SignalsWorker(s, burst=burst))


if __name__ == "__main__":
    sys.exit(main())
