"""``python -m ingest``: exchange WebSockets → ``ticks:{p}`` (settings: ``ingest.settings``)."""

from __future__ import annotations

import os
import sys

from common.lifecycle import worker_main
from common.redis import redis_from_settings
from ingest.service import IngestService
from ingest.settings import IngestSettings


def main() -> int:
    return worker_main(
        lambda: IngestSettings.from_env(os.environ),
        lambda s: IngestService(s, redis_from_settings(s.common)),
    )


if __name__ == "__main__":
    sys.exit(main())
