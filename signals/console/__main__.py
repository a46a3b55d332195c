"""``python -m signals.console``: the web console (Procfile ``web``)."""

from __future__ import annotations

import sys

from common.lifecycle import worker_main
from signals.console.server import ConsoleServer
from signals.console.settings import ConsoleSettings


def main() -> int:
    return worker_main(ConsoleSettings.from_env, ConsoleServer)


if __name__ == "__main__":
    sys.exit(main())
