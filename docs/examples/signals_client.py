"""Print the signals of `make run` from its WebSocket feed; after a cut, resume where it was.

Usage: .venv/bin/python docs/examples/signals_client.py [LIMIT]  (stop after LIMIT signals)
"""

import asyncio
import json
import os
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

URL = os.environ.get("SIGNALS_URL", "ws://127.0.0.1:8780/?token=dev-token")


async def main(limit: int) -> None:
    cursor, seen = None, 0  # cursor: the stream id of the last signal received
    while True:
        try:
            async with connect(URL) as ws:
                subscribe = {"type": "subscribe"} | ({"resume_from": cursor} if cursor else {})
                await ws.send(json.dumps(subscribe))
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] != "signal":  # subscribed, gap or cursor_ahead
                        continue
                    signal, cursor = message["signal"], message["cursor"]
                    print(signal["id"], signal["score"], ",".join(signal["supporting"]), flush=True)
                    seen += 1
                    if seen == limit:
                        return
        except (OSError, ConnectionClosed) as e:
            print(f"reconnecting: {e}", file=sys.stderr)
            await asyncio.sleep(1)


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
