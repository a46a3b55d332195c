"""The live ingest path loads neither the simulator nor the offline file tooling (issue 15).

``python -m ingest`` is imported in a fresh interpreter (a clean ``sys.modules``), its
settings are read for every exchange adapter, and every adapter parses a frame; then no
``ingest.simulator*`` module (the exchange simulator and its per-venue server halves) and no
``ingest.offline*`` module (recording/CSV readers, bars input, run-env, the parse CLI) may have
been loaded. So an adapter never needs a simulator server, and production settings never
read a file format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ingest.venues import EXCHANGES

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("ingest.simulator", "ingest.offline")
#: One native symbol per exchange adapter, for the worker's ``EXCHANGES`` setting.
NATIVE = {
    "binance": "BTCUSDT",
    "binance-futures": "BTCUSDT",
    "coinbase": "BTC-USD",
    "kraken": "BTC/USD",
    "bybit": "BTCUSDT",
    "bybit-linear": "BTCUSDT",
    "okx": "BTC-USDT",
}
WORKER = """
import json, os, sys
import ingest.__main__
import ingest.service
from ingest.venues import EXCHANGES, get_adapter
settings = ingest.__main__.IngestSettings.from_env(os.environ)
for name in EXCHANGES:
    get_adapter(name).parse(b'{"unknown":"frame"}', 0)
print(json.dumps({"modules": sorted(sys.modules), "exchanges": [e for e, _ in settings.exchanges]}))
"""


def test_the_live_worker_loads_no_simulator_and_no_offline_module() -> None:
    env = {
        **os.environ,
        "EXCHANGES": ";".join(f"{name}:{NATIVE[name]}" for name in EXCHANGES),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    # A fresh interpreter: this one has imported the simulator for other tests.
    out = subprocess.check_output([sys.executable, "-c", WORKER], env=env, text=True, timeout=60)
    loaded = json.loads(out)
    assert loaded["exchanges"] == list(EXCHANGES)  # every adapter was configured and loaded
    assert "ingest.service" in loaded["modules"]
    assert all(f"ingest.venues.{m}" in loaded["modules"] for m in ("binance", "kraken", "okx"))
    leaked = [m for m in loaded["modules"] if m.startswith(FORBIDDEN)]
    assert not leaked, f"the live ingest path imports {leaked}"
