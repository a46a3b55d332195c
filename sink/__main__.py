"""``python -m sink [--burst]``: run one sink worker (see ``sink.service``; settings from env).

``--burst`` returns once every stream is drained and the last batch is committed and acked.
"""

from __future__ import annotations

import sys

from common.lifecycle import worker_main
from sink.service import SinkService
from sink.settings import SinkSettings


def main() -> int:
    burst = "--burst" in sys.argv[1:]
    return worker_main(SinkSettings.from_env, lambda s: SinkService(s, burst=burst))


if __name__ == "__main__":
    sys.exit(main())
