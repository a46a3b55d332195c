"""The local exchange simulator: a WebSocket (and REST history) server that speaks each
exchange's protocol, fed from recordings, CSVs or synthetic trades.

``server`` moves frames, ``market`` is the pure market model (replay clock, cursors, faults),
``venues`` holds the server half of each exchange protocol, ``cli`` is ``alphapulse
simulate``. The live ingest path (``python -m ingest``) never imports this package
(tests/unit/test_ingest_isolation.py checks it): a new exchange adapter in ``ingest.venues``
works without a simulator server, and the simulator serves the venues it has a half for.
"""
