// Admin: the live configuration (/api/admin/config…): the current version and its document,
// the history with a rollback per version, the diff of two versions, a change form, profiles;
// then accounts and sessions. Every change sends the version the page shows
// (expected_version): if someone changed it meanwhile the server answers 409 and nothing is
// written; errors are shown next to the form that caused them.
"use strict";
window.adminState = { loaded: false, version: null, history: [], diff: null, doc: null, errors: {} };
const $ = id => document.getElementById(id);
function fromMs(ms) { return ms ? isoMs(ms) : "the start"; }
function setError(where, text) { $(where + "-error").textContent = text || ""; window.adminState.errors[where] = text || ""; }
async function getJson(path) {
  const r = await fetch(path);
  const doc = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  return [r.ok, doc];
}
async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": Console.me.csrf || "" },
    body: JSON.stringify(body),
  });
  const doc = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  return [r.ok, doc];
}
function showCurrent(cur) {
  $("cfg-version").textContent = "v" + cur.version;
  $("cfg-fingerprint").textContent = cur.fingerprint;
  $("cfg-effective").textContent = fromMs(cur.effective_from);
  $("cfg-next").textContent = fromMs(cur.next_effective_from);
  $("cfg-meta").textContent = cur.version ? `by ${cur.who} at ${cur.at}${cur.comment ? " — " + cur.comment : ""}` : cur.comment;
}
async function showDocument(version) {
  const [ok, doc] = await getJson("/api/admin/config" + (version ? "?version=" + version : ""));
  if (!ok) { setError("history", doc.error); return; }
  $("doc-title").textContent = `Document of version ${doc.version} (${doc.fingerprint})`;
  $("doc").textContent = JSON.stringify(doc.doc, null, 2);
  window.adminState.doc = doc.version;
}
function showHistory(versions, current) {
  const rows = versions.slice().reverse().map(v => `<tr id="v-${v.version}"><td><a href="#" class="view" data-v="${v.version}">v${v.version}</a></td>`
    + `<td>${esc(v.fingerprint)}</td><td>${esc(fromMs(v.effective_from))}</td><td>${esc(v.who)}</td><td>${esc(v.at)}</td><td>${esc(v.comment)}</td>`
    + `<td>${v.version === current ? "current" : `<button class="rollback" data-v="${v.version}">Roll back to v${v.version}</button>`}</td></tr>`);
  $("history").innerHTML = "<tr><th>version</th><th>fingerprint</th><th>effective from</th><th>who</th><th>at</th><th>comment</th><th></th></tr>" + rows.join("");
  for (const a of document.querySelectorAll("a.view")) a.onclick = ev => { ev.preventDefault(); showDocument(Number(a.dataset.v)); };
  for (const b of document.querySelectorAll("button.rollback")) b.onclick = () => rollback(Number(b.dataset.v));
  const options = versions.map(v => `<option value="${v.version}">v${v.version}</option>`).join("");
  $("diff-a").innerHTML = options; $("diff-b").innerHTML = options;
  if (versions.length) { $("diff-b").value = String(current); $("diff-a").value = String(Math.max(1, current - 1)); }
}
async function showDiff() {
  const a = $("diff-a").value, b = $("diff-b").value;
  if (!a || !b) { $("diff").innerHTML = ""; window.adminState.diff = null; return; }
  const [ok, doc] = await getJson(`/api/admin/config/diff?a=${a}&b=${b}`);
  setError("diff", ok ? "" : doc.error);
  if (!ok) return;
  $("diff").innerHTML = `<tr><th>key</th><th>v${doc.a}</th><th>v${doc.b}</th></tr>`
    + (doc.changes.length ? doc.changes.map(c => `<tr class="change"><td>${esc(c.key)}</td><td class="bad">${esc(JSON.stringify(c.old))}</td><td class="ok">${esc(JSON.stringify(c.new))}</td></tr>`).join("")
      : `<tr><td colspan="3">${esc(doc.lines[0])}</td></tr>`);
  window.adminState.diff = doc;
}
async function showProfiles() {
  const [ok, doc] = await getJson("/api/admin/config/profiles");
  if (!ok) { setError("profile", doc.error); return; }
  $("profiles").innerHTML = doc.profiles.map(n => `<button type="button" class="profile-load" data-name="${esc(n)}">Load ${esc(n)}</button>`).join(" ");
  for (const b of document.querySelectorAll("button.profile-load")) b.onclick = () => loadProfile(b.dataset.name);
}
async function load() {
  const [ok, cur] = await getJson("/api/admin/config");
  if (!ok) { setError("change", cur.error); return; }
  const [hok, hist] = await getJson("/api/admin/config/history");
  if (!hok) { setError("history", hist.error); return; }
  showCurrent(cur);
  $("doc-title").textContent = `Document of version ${cur.version} (${cur.fingerprint})`;
  $("doc").textContent = JSON.stringify(cur.doc, null, 2);
  showHistory(hist.versions, hist.current);
  Object.assign(window.adminState, { version: cur.version, fingerprint: cur.fingerprint, history: hist.versions, doc: cur.version });
  await showDiff();
  await showProfiles();
  window.adminState.loaded = true;
}
async function change(ev) {
  ev.preventDefault();
  const body = { set: $("change-set").value, comment: $("change-comment").value, effective_from: $("change-effective").value.trim(), expected_version: window.adminState.version };
  const [ok, doc] = await post("/api/admin/config", body);
  setError("change", ok ? "" : doc.error);
  if (ok) { $("change-set").value = ""; $("change-comment").value = ""; $("change-effective").value = ""; }
  if (ok || doc.reason === "conflict") await load();  // a conflict: show what is current now
}
async function rollback(version) {
  if (!confirm(`Write a new version with version ${version}'s document?`)) return;
  const [ok, doc] = await post("/api/admin/config/rollback", { version, expected_version: window.adminState.version });
  setError("history", ok ? "" : doc.error);
  if (ok || doc.reason === "conflict") await load();
}
async function saveProfile(ev) {
  ev.preventDefault();
  const [ok, doc] = await post("/api/admin/config/profiles", { action: "save", name: $("profile-name").value });
  setError("profile", ok ? "" : doc.error);
  if (ok) await showProfiles();
}
async function loadProfile(name) {
  if (!confirm(`Write a new version with profile ${name}'s document?`)) return;
  const [ok, doc] = await post("/api/admin/config/profiles", { action: "load", name, expected_version: window.adminState.version });
  setError("profile", ok ? "" : doc.error);
  if (ok || doc.reason === "conflict") await load();
}
$("change").onsubmit = change;
$("diff-form").onsubmit = ev => { ev.preventDefault(); showDiff(); };
$("profile-form").onsubmit = saveProfile;
Console.init("admin").then(async () => {
  await load();
  const [, sessions] = await getJson("/api/admin/sessions");
  $("admin").textContent = JSON.stringify(sessions, null, 2);
});
