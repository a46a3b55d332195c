"""``python -m ingest``: exchange WebSockets → ``ticks:{p}`` (settings: ``ingest.settings``)."""

from __future__ import annotations

import os
import sys

from common.errors import ConfigError
from common.lifecycle import run_service
from common.redis import redis_from_settings
from common.settings import config_error_line
from ingest.service import IngestService
from ingest.settings import IngestSettings, tune_gc


def main() -> int:
    try:
        settings = IngestSettings.from_env(os.environ)
    except ConfigError as err:
        print(config_error_line(err), file=sys.stderr, flush=True)
        return 2
    tune_gc(settings.gc_gen0)
    return run_service(
        lambda: IngestService(settings, redis_from_settings(settings.common)), settings.common
    )


if __name__ == "__main__":
    sys.exit(main())
