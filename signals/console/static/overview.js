// Overview: one snapshot a second over /api/live/overview (no reload); reconnects on loss.
"use strict";
window.overviewState = { updates: 0, last: null };
function table(id, head, rows) {
  document.getElementById(id).innerHTML = "<tr>" + head.map(h => `<th>${h}</th>`).join("") + "</tr>"
    + rows.map(r => "<tr>" + r.map(c => `<td>${c}</td>`).join("") + "</tr>").join("");
}
function render(o) {
  const r = o.rates;
  document.getElementById("rates").innerHTML = [
    ["ticks/s", r.ticks_applied_per_s ?? r.ticks_per_s], ["tick batches/s", r.ticks_per_s], ["bars/s", r.bars_per_s], ["patterns/s", r.patterns_per_s], ["signals/s", r.signals_per_s],
    ["dead letters", o.streams.reduce((a, s) => a + s.dead_letters, 0)], ["detectors", o.detectors.length],
  ].map(([k, v]) => `<div class="card">${k}<b id="card-${k.replace(/\W/g, "")}">${v ?? "…"}</b></div>`).join("");
  document.getElementById("alerts-source").textContent = `(${o.alerts_source})`;
  table("alerts", ["alert", "severity", "about"], o.alerts.length ? o.alerts.map(a => [esc(a.alert), esc(a.severity), esc(a.about)]) : [["none", "", ""]]);
  table("consumers", ["instance", "stream", "group", "up", "pending", "idle"], o.consumers.map(c =>
    [esc(c.consumer), esc(c.stream), esc(c.group), c.up ? '<span class="ok">up</span>' : '<span class="bad">down</span>', c.pending, (c.idle_ms / 1000).toFixed(1) + " s"]));
  table("workers", ["name", "up", "ready", "url"], o.workers.map(w =>
    [esc(w.name), w.up ? '<span class="ok">up</span>' : '<span class="bad">down</span>', w.ready ? '<span class="ok">ready</span>' : '<span class="bad">not ready</span>', esc(w.url)]));
  table("streams", ["stream", "length", "dead letters", "groups (lag / pending)"], o.streams.map(s =>
    [esc(s.stream), s.length, s.dead_letters, s.groups.map(g => `${esc(g.group)} ${g.lag ?? "?"} / ${g.pending}`).join(", ")]));
  table("owners", ["partition", "owner"], Object.entries(o.owners).map(([p, m]) => [p, m ? esc(m) : '<span class="bad">unowned</span>']));
  document.getElementById("updated").textContent = "updated " + new Date(o.time * 1000).toISOString();
}
function connect() {
  const ws = new WebSocket(Console.wsUrl("/api/live/overview"));
  ws.onmessage = ev => {
    const m = JSON.parse(ev.data);
    if (m.type === "overview") { window.overviewState.updates++; window.overviewState.last = m.overview; render(m.overview); }
  };
  ws.onclose = () => setTimeout(connect, 1000);
}
Console.init("overview").then(connect);
