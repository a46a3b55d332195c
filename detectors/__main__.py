"""``python -m detectors``: own tick partitions, aggregate bars, detect patterns.

Settings: ``detectors.settings`` (``TIMEFRAMES``, ``PATTERNS``, ``ALLOWED_LATENESS_MS``,
``LEASE_TTL_MS``, ``CHECKPOINT_INTERVAL`` ... plus the shared ``REDIS_URL``, ``PARTITIONS``).
"""

from __future__ import annotations

import os
import sys

from common.lifecycle import run_service
from common.settings import exit_on_config_error
from detectors.settings import DetectorSettings
from detectors.worker import DetectorService


def main() -> int:
    with exit_on_config_error():
        settings = DetectorSettings.from_env(os.environ)
    return run_service(lambda: DetectorService(settings), settings.common)


if __name__ == "__main__":
    sys.exit(main())
