// Signals: the first page from /api/signals (newest first), then live rows from
// /api/live/signals (same filters; direction is checked here, the feed has no such filter).
// Outcome columns are refreshed from the API every 10 s as horizons pass.
"use strict";
const HORIZONS = ["1", "5", "10", "20"];
window.signalsState = { ids: [], liveReceived: {}, live: 0, subscribed: false };
const form = document.getElementById("filters");
const body = document.querySelector("#signals tbody");
let next = null, socket = null;
function chartHref(s) {
  const q = new URLSearchParams({ exchange: s.exchange, symbol: s.symbol, timeframe: s.timeframe, at: s.open_time_ms });
  return "/chart?" + q;
}
function outcomeCells(s) {
  return HORIZONS.map(h => {
    const o = (s.outcomes || {})[h];
    return o ? `<td class="${o.hit ? "up" : "down"}" data-h="${h}">${pct(o.ret)}</td>` : `<td data-h="${h}" class="dim">…</td>`;
  }).join("");
}
function row(s) {
  const tr = document.createElement("tr");
  tr.id = "sig-" + s.id; tr.dataset.id = s.id;
  tr.innerHTML = `<td><a href="${chartHref(s)}">${esc(s.open_time)}</a></td><td>${esc(s.exchange)}</td><td>${esc(s.symbol)}</td><td>${esc(s.timeframe)}</td>`
    + `<td class="${s.direction}">${s.direction}</td><td>${Number(s.score).toFixed(3)}</td><td>${esc(Object.keys(s.patterns || {}).join(" "))}</td>` + outcomeCells(s);
  return tr;
}
function wanted(s, q) {
  return (!q.get("direction") || s.direction === q.get("direction"));
}
async function loadPage(append) {
  const q = Console.query(form);
  if (append && next) q.set("before", next);
  const r = await fetch("/api/signals?" + q);
  const doc = await r.json();
  if (!r.ok) { document.getElementById("status").textContent = doc.error; return; }
  if (!append) { body.innerHTML = ""; window.signalsState.ids = []; }
  for (const s of doc.signals) { if (!document.getElementById("sig-" + s.id)) { body.appendChild(row(s)); window.signalsState.ids.push(s.id); } }
  next = doc.next;
  document.getElementById("more").disabled = !next;
}
function subscribe() {
  if (socket) { socket.onclose = null; socket.close(); }
  const q = Console.query(form);
  const sub = { type: "subscribe" };
  for (const [k, key] of [["exchange", "exchanges"], ["symbol", "symbols"], ["timeframe", "timeframes"]]) if (q.get(k)) sub[key] = [q.get(k)];
  if (q.get("min_score")) sub.min_score = Number(q.get("min_score"));
  socket = new WebSocket(Console.wsUrl("/api/live/signals"));
  socket.onopen = () => socket.send(JSON.stringify(sub));
  socket.onmessage = ev => {
    const m = JSON.parse(ev.data);
    if (m.type === "subscribed") { window.signalsState.subscribed = true; return; }
    if (m.type !== "signal" || !wanted(m.signal, q)) return;
    const s = m.signal;
    if (document.getElementById("sig-" + s.id)) return;
    body.prepend(row(s));
    window.signalsState.ids.unshift(s.id); window.signalsState.live++;
    window.signalsState.liveReceived[s.id] = Date.now();
  };
  socket.onclose = () => { window.signalsState.subscribed = false; setTimeout(subscribe, 1000); };
}
async function refreshOutcomes() {
  const q = Console.query(form); q.set("limit", "200");
  const r = await fetch("/api/signals?" + q);
  if (!r.ok) return;
  for (const s of (await r.json()).signals) {
    const tr = document.getElementById("sig-" + s.id);
    if (!tr) continue;
    for (const td of tr.querySelectorAll("td[data-h]")) td.remove();
    tr.insertAdjacentHTML("beforeend", outcomeCells(s));
  }
}
function apply() {
  const q = Console.query(form);
  history.replaceState(null, "", "?" + q);
  document.getElementById("export").href = "/export/signals.csv?" + q;
  loadPage(false).then(subscribe);
}
form.onsubmit = ev => { ev.preventDefault(); apply(); };
document.getElementById("more").onclick = () => loadPage(true);
Console.init("signals").then(() => { Console.fillForm(form, new URLSearchParams(location.search)); apply(); setInterval(refreshOutcomes, 10000); });
