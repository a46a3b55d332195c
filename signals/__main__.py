"""``python -m signals``: run one signals worker (see ``signals.service``; settings from env)."""

from __future__ import annotations

import sys

from common.lifecycle import worker_main
from signals.service import SignalsService
from signals.settings import SignalsSettings


def main() -> int:
    burst = "--burst" in sys.argv[1:]
    return worker_main(SignalsSettings.from_env, lambda s: SignalsService(s, burst=burst))


if __name__ == "__main__":
    sys.exit(main())
