// Print the signals of `make run` from its WebSocket feed; after a cut, resume where it was.
// Usage: node docs/examples/signals_client.mjs [LIMIT]  (stop after LIMIT signals)
// Node 20 has no stable global WebSocket: `ws` comes from package.json (make install).
import WebSocket from "ws";

const url = process.env.SIGNALS_URL ?? "ws://127.0.0.1:8780/?token=dev-token";
const limit = Number(process.argv[2] ?? 0) || Infinity; // 0 or none: never stop
let cursor = null; // the stream id of the last signal received
let seen = 0;

function connect() {
  const ws = new WebSocket(url);
  ws.on("open", () => {
    ws.send(JSON.stringify({ type: "subscribe", ...(cursor && { resume_from: cursor }) }));
  });
  ws.on("message", (raw) => {
    const message = JSON.parse(raw);
    if (message.type !== "signal" || seen === limit) return; // subscribed, gap, cursor_ahead
    const signal = message.signal;
    cursor = message.cursor;
    console.log(signal.id, signal.score, signal.supporting.join(","));
    if (++seen === limit) ws.close();
  });
  ws.on("error", (err) => console.error(`error: ${err.message}`));
  ws.on("close", () => {
    if (seen === limit) return;
    console.error("reconnecting");
    setTimeout(connect, 1000);
  });
}

connect();
