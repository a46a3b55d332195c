// Chart: candlesticks + volume from /api/bars (TradingView lightweight-charts), pattern
// markers and signal arrows from /api/markers. Panning left loads the page before (the
// API pages by time with `to`); new closed bars are fetched every 2 s (from the newest shown),
// and the markers of the last LATE_BARS bars again: a signal (scored after its bar is stored),
// a late pattern row and the outcomes of its horizons arrive after the bar itself.
// window.chartState exposes what is drawn (candles, markers) for the browser tests.
"use strict";
const LC = window.LightweightCharts;
const form = document.getElementById("filters");
const tip = document.getElementById("tooltip");
window.chartState = { candles: 0, patternMarkers: 0, signalMarkers: 0, markers: 0, ready: false, loads: 0, pages: [] };
let chart, candles, volume, markerApi, series = null;
let bars = [], patterns = new Map(), signals = new Map(), olderTo = null, loadingOlder = false;
const sec = ms => Math.floor(ms / 1000);

function params(extra, of = series) {
  const q = new URLSearchParams({ exchange: of.exchange, symbol: of.symbol, timeframe: of.timeframe });
  for (const [k, v] of Object.entries(extra)) if (v !== null && v !== undefined) q.set(k, v);
  return q;
}
function outcomeColour(s) {
  const reached = Object.keys(s.outcomes || {}).map(Number).sort((a, b) => a - b);
  if (!reached.length) return "#9e9e9e";
  return s.outcomes[String(reached[0])].hit ? "#26a69a" : "#ef5350";
}
function redraw() {
  const n = bars.length, cs = new Array(n), vs = new Array(n);
  for (let i = 0; i < n; i++) {  // one pass for both series (10,000 bars: no map() twice)
    const b = bars[i], time = sec(b[0]);
    cs[i] = { time, open: b[1], high: b[2], low: b[3], close: b[4] };
    vs[i] = { time, value: b[5], color: b[4] >= b[1] ? "#26a69a55" : "#ef535055" };
  }
  candles.setData(cs);
  volume.setData(vs);
  const first = bars.length ? bars[0][0] : Infinity;
  const only = series.pattern;
  const marks = [];
  let np = 0, ns = 0;
  for (const [t, fired] of patterns) {
    if (t < first) continue;
    const names = Object.keys(fired).filter(p => !only || p === only);
    if (!names.length) continue;
    np++;
    marks.push({ time: sec(t), position: "aboveBar", shape: "circle", color: "#f0b429", size: 0.6, id: "p" + t });
  }
  for (const [t, list] of signals) {
    if (t < first) continue;
    for (const s of list) {
      ns++;
      marks.push(s.direction === "long"
        ? { time: sec(t), position: "belowBar", shape: "arrowUp", color: outcomeColour(s), id: s.id }
        : { time: sec(t), position: "aboveBar", shape: "arrowDown", color: outcomeColour(s), id: s.id });
    }
  }
  marks.sort((a, b) => a.time - b.time);
  markerApi.setMarkers(marks);
  Object.assign(window.chartState, { candles: bars.length, patternMarkers: np, signalMarkers: ns, markers: marks.length });
}
// Adds a page of markers to the maps; with `compare`, says whether any was new or changed
// (a poll redraws only then).
function addMarkers(doc, compare = false) {
  const same = (a, b) => compare && a !== undefined && JSON.stringify(a) === JSON.stringify(b);
  let changed = false;
  for (const [t, fired] of doc.patterns) {
    if (!same(patterns.get(t), fired)) changed = true;
    patterns.set(t, fired);
  }
  for (const s of doc.signals) {
    const list = signals.get(s.open_time_ms) || [];
    const i = list.findIndex(x => x.id === s.id);
    if (!same(i >= 0 ? list[i] : undefined, s)) changed = true;
    if (i >= 0) list[i] = s; else list.push(s);
    signals.set(s.open_time_ms, list);
  }
  return changed;
}
async function getJson(url) {
  const r = await fetch(url);
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || r.statusText);
  return doc;
}
function fetchPage(of, to) {
  // Both at once: the newest `limit` pattern bars and signals before `to` cover at least the
  // range of the newest `limit` bars (markers sit on bars); the extra ones wait in the maps
  // for the older page that shows them.
  const limit = of.limit;
  return Promise.all([
    getJson("/api/bars?" + params({ limit, to }, of)),
    getJson("/api/markers?" + params({ limit, to }, of)),
  ]);
}
const seriesKey = of => [of.exchange, of.symbol, of.timeframe, of.limit].join("|");
// When the URL names the series (a link from the Signals page, a reload), its newest page is
// asked for as this script runs, while the login check (/api/me) and the chart's set-up go on.
let prefetched = null;
{
  const q = new URLSearchParams(location.search);
  if (q.get("exchange") && q.get("symbol") && q.get("timeframe")) {
    const of = { exchange: q.get("exchange"), symbol: q.get("symbol"), timeframe: q.get("timeframe"), limit: Number(q.get("limit") || 2000) };
    prefetched = { key: seriesKey(of), page: fetchPage(of, null) };
    prefetched.page.catch(() => {});  // reported when show() awaits it
  }
}
async function load(to) {
  let page;
  if (to === null && prefetched && prefetched.key === seriesKey(series)) page = prefetched.page;
  else page = fetchPage(series, to);
  prefetched = null;
  const [b, m] = await page;
  if (!b.bars.length) return 0;
  const end = b.bars[b.bars.length - 1][0] + 1;
  addMarkers(m);
  bars = b.bars.concat(bars.filter(x => x[0] >= end));
  olderTo = b.next_to;
  window.chartState.loads++;
  window.chartState.pages.push(b.bars.length);
  return b.bars.length;
}
async function loadOlder() {
  if (loadingOlder || olderTo === null) return;
  loadingOlder = true;
  try {
    const range = chart.timeScale().getVisibleLogicalRange();
    const added = await load(olderTo);
    redraw();
    if (range) chart.timeScale().setVisibleLogicalRange({ from: range.from + added, to: range.to + added });
  } finally { loadingOlder = false; }
}
// Markers are fetched again for this many of the newest bars at every poll: more than the
// default outcome horizons (OUTCOME_HORIZONS 1,5,10,20 bars), so arrows recolour as they pass.
const LATE_BARS = 64;
async function poll() {
  if (!bars.length) return;
  const from = bars[bars.length - 1][0];
  const markersFrom = bars[Math.max(0, bars.length - LATE_BARS)][0];
  const [b, m] = await Promise.all([
    getJson("/api/bars?" + params({ from, limit: 10000 })),
    getJson("/api/markers?" + params({ from: markersFrom, limit: 10000 })),
  ]);
  const known = new Set(bars.map(x => x[0]));
  let changed = false;
  for (const x of b.bars) if (!known.has(x[0])) { bars.push(x); changed = true; }
  if (addMarkers(m, true) || changed) redraw();
}
function hover(param) {
  if (!param.time || !param.point) { tip.style.display = "none"; return; }
  const ms = param.time * 1000;
  const fired = patterns.get(ms), sigs = signals.get(ms) || [];
  if (!fired && !sigs.length) { tip.style.display = "none"; return; }
  let text = isoMs(ms) + "\n";
  if (fired) text += Object.entries(fired).map(([p, v]) => `${p} ${v}`).join("\n") + "\n";
  for (const s of sigs) {
    text += `signal ${s.direction} score ${Number(s.score).toFixed(3)}\n`;
    text += Object.entries(s.features || {}).map(([k, v]) => `  ${k} ${v}`).join("\n") + "\n";
    text += Object.entries(s.outcomes || {}).map(([h, o]) => `  r${h} ${pct(o.ret)} ${o.hit ? "hit" : "miss"}`).join("\n");
  }
  tip.textContent = text;
  const box = document.getElementById("chart").getBoundingClientRect();
  tip.style.left = (box.left + window.scrollX + param.point.x + 15) + "px";
  tip.style.top = (box.top + window.scrollY + param.point.y + 15) + "px";
  tip.style.display = "block";
}
async function show() {
  const q = Console.query(form);
  history.replaceState(null, "", "?" + q + (new URLSearchParams(location.search).get("at") ? "&at=" + new URLSearchParams(location.search).get("at") : ""));
  series = { exchange: q.get("exchange"), symbol: q.get("symbol"), timeframe: q.get("timeframe"), limit: Number(q.get("limit") || 2000), pattern: q.get("pattern") };
  if (!series.exchange || !series.symbol || !series.timeframe) return;
  bars = []; patterns = new Map(); signals = new Map(); olderTo = null;
  window.chartState.ready = false;
  const t0 = performance.now();
  try { await load(null); } catch (e) { document.getElementById("status").textContent = e.message; return; }
  redraw();
  const at = new URLSearchParams(location.search).get("at");
  if (at) {
    const i = bars.findIndex(b => b[0] >= Number(at));
    if (i >= 0) chart.timeScale().setVisibleLogicalRange({ from: i - 60, to: i + 60 });
  } else chart.timeScale().fitContent();
  requestAnimationFrame(() => { window.chartState.ready = true; window.chartState.drawMs = performance.now() - t0; });
  document.getElementById("status").textContent = `${bars.length} bars`;
}
function setup() {
  chart = LC.createChart(document.getElementById("chart"), {
    autoSize: true, layout: { background: { color: "#0f1419" }, textColor: "#d8dee9" },
    grid: { vertLines: { color: "#1b2330" }, horzLines: { color: "#1b2330" } },
    timeScale: { timeVisible: true, secondsVisible: true },
  });
  candles = chart.addSeries(LC.CandlestickSeries, { upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a", wickDownColor: "#ef5350", borderVisible: false });
  volume = chart.addSeries(LC.HistogramSeries, { priceScaleId: "", priceFormat: { type: "volume" } });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  markerApi = LC.createSeriesMarkers(candles, []);
  // For the browser tests: pan programmatically, read back what the series were given.
  window.consoleChart = chart;
  window.consoleSeries = { candles, markers: markerApi };
  chart.subscribeCrosshairMove(hover);
  chart.timeScale().subscribeVisibleLogicalRangeChange(r => { if (r && r.from < 20) loadOlder(); });
  setInterval(() => poll().catch(() => {}), 2000);
}
form.onsubmit = ev => { ev.preventDefault(); show(); };
async function start() {
  setup();
  const q = new URLSearchParams(location.search);
  if (!q.get("exchange")) {  // no series asked for: the first one that has signals
    const first = (await getJson("/api/series")).series[0];
    if (first) for (const k of ["exchange", "symbol", "timeframe"]) q.set(k, first[k]);
  }
  Console.fillForm(form, q);
  show();
}
Console.init("chart").then(start);
