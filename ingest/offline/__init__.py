"""Market data that does not come from a live exchange socket, and the tools around it.

``ticks`` reads and writes trade files (recordings, normalized CSVs) and makes synthetic
trades; ``bars`` reads an OHLCV bars CSV (``alphapulse replay``); ``parse`` is ``alphapulse
parse`` (raw frames → JSON trades); ``runenv`` is ``alphapulse run-env`` (what ``make run``
starts, with the simulator or live exchanges). The live ingest path imports none of them.
"""
