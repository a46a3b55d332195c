// Patterns: statistics from /api/patterns (ranked table with intervals and n, regime split,
// co-occurrence, reliability diagram); a pattern's name drills down to its occurrences
// (/api/outcomes), each linking to the chart at that bar.
"use strict";
const form = document.getElementById("filters");
window.patternsState = { rows: 0, loaded: false };
function table(id, head, rows) {
  document.getElementById(id).innerHTML = "<tr>" + head.map(h => `<th>${h}</th>`).join("") + "</tr>"
    + rows.map(r => "<tr>" + r.map(c => `<td>${c}</td>`).join("") + "</tr>").join("");
}
function drillLink(p) { return `<a href="#" class="drill" data-p="${esc(p)}">${esc(p)}</a>`; }
function num(x, d) { return x === null || x === undefined ? "" : Number(x).toFixed(d); }
function rankedRow(r) {
  return [drillLink(r.pattern), esc(r.direction), esc(r.timeframe), r.horizon, r.n + (r.too_few ? " (few)" : ""), pct(r.hit_rate),
    `${pct(r.ci_low)} – ${pct(r.ci_high)}`, pct(r.base_hit_rate), num(r.lift, 2), pct(r.mean_ret)];
}
function regimeRow(r) {
  return [drillLink(r.pattern), r.horizon, r.trend ?? "n/a", r.n, pct(r.hit_rate), `${pct(r.ci_low)} – ${pct(r.ci_high)}`, pct(r.mean_ret)];
}
function reliability(points) {
  const svg = document.getElementById("reliability"), S = 340, P = 10;
  let out = `<rect x="${P}" y="${P}" width="${S}" height="${S}" fill="none" stroke="#253040"/><line x1="${P}" y1="${P + S}" x2="${P + S}" y2="${P}" stroke="#7b8794" stroke-dasharray="4"/>`;
  for (const p of points) {
    const x = P + S * p.score, y = P + S * (1 - p.hit_rate), r = 2 + Math.min(10, Math.sqrt(p.n));
    out += `<circle cx="${x}" cy="${y}" r="${r}" fill="#26a69a88"><title>score ${p.score.toFixed(2)} hit ${pct(p.hit_rate)} n ${p.n}</title></circle>`;
  }
  svg.innerHTML = out;
}
async function drill(pattern) {
  const q = Console.query(form); q.set("pattern", pattern); q.set("kind", "pattern"); q.set("limit", "200");
  const doc = await (await fetch("/api/outcomes?" + q)).json();
  document.getElementById("drill-title").textContent = `Occurrences of ${pattern}`;
  table("drill", ["time", "series", "direction", "horizon", "return", "hit"], (doc.outcomes || []).map(o => {
    const href = "/chart?" + new URLSearchParams({ exchange: o.exchange, symbol: o.symbol, timeframe: o.timeframe, pattern, at: o.open_time });
    return [`<a href="${href}">${isoMs(o.open_time)}</a>`, esc(`${o.exchange} ${o.symbol} ${o.timeframe}`), o.direction, o.horizon, pct(o.ret), o.hit ? "hit" : "miss"];
  }));
}
async function apply() {
  const q = Console.query(form);
  history.replaceState(null, "", "?" + q);
  document.getElementById("export").href = "/export/stats.csv?" + q;
  document.getElementById("export-outcomes").href = "/export/outcomes.csv?" + q;
  const r = await fetch("/api/patterns?" + q);
  const doc = await r.json();
  document.getElementById("status").textContent = r.ok ? "" : doc.error;
  if (!r.ok) return;
  table("ranked", ["pattern", "dir", "tf", "h", "n", "hit rate", "95 % interval", "baseline", "lift", "mean return"], doc.rows.map(rankedRow));
  table("regime", ["pattern", "h", "trend", "n", "hit rate", "95 % interval", "mean return"], doc.regime.map(regimeRow));
  table("cooc", ["pattern", "with", "bars"], doc.cooccurrence.map(c => [esc(c.a), esc(c.b), c.n]));
  reliability(doc.reliability);
  for (const a of document.querySelectorAll("a.drill")) a.onclick = ev => { ev.preventDefault(); drill(a.dataset.p); };
  Object.assign(window.patternsState, { rows: doc.rows.length, loaded: true });
}
form.onsubmit = ev => { ev.preventDefault(); apply(); };
Console.init("patterns").then(() => { Console.fillForm(form, new URLSearchParams(location.search)); apply(); });
