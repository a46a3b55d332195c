"""``python -m detectors``: own tick partitions, aggregate bars, detect patterns.

Settings: ``detectors.settings`` (``TIMEFRAMES``, ``PATTERNS``, ``ALLOWED_LATENESS_MS``,
``LEASE_TTL_MS``, ``CHECKPOINT_INTERVAL`` ... plus the shared ``REDIS_URL``, ``PARTITIONS``).
"""

from __future__ import annotations

import sys

from common.lifecycle import worker_main
from detectors.service import DetectorService
from detectors.settings import DetectorSettings


def main() -> int:
    return worker_main(DetectorSettings.from_env, DetectorService)


if __name__ == "__main__":
    sys.exit(main())
