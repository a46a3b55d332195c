"""``python -m ingest``: exchange WebSockets → ``ticks:{p}`` (settings: ``ingest.settings``)."""

from __future__ import annotations

import os
import sys

from common.lifecycle import worker_main
from common.redis import redis_from_settings
from ingest.service import IngestService
from ingest.settings import IngestSettings, tune_gc


def _settings() -> IngestSettings:
    """The settings, with the garbage collector tuned to them before the service starts."""
    settings = IngestSettings.from_env(os.environ)
    tune_gc(settings.gc_gen0)
    return settings


def main() -> int:
    return worker_main(_settings, lambda s: IngestService(s, redis_from_settings(s.common)))


if __name__ == "__main__":
    sys.exit(main())
