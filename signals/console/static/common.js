// Shared by every console page: the navigation bar, the logged-in user, logout (with the
// session's CSRF token), small helpers. No framework: the pages are small.
"use strict";
const PAGES = ["overview", "signals", "chart", "patterns", "export"];
const Console = {
  me: null,
  async init(here) {
    const r = await fetch("/api/me");
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); return; }
    this.me = await r.json();
    const nav = document.createElement("nav");
    nav.innerHTML = PAGES.map(p => `<a href="/${p}" id="nav-${p}" class="${p === here ? "here" : ""}">${p[0].toUpperCase() + p.slice(1)}</a>`).join("")
      + (this.me.role === "admin" ? `<a href="/admin" id="nav-admin" class="${here === "admin" ? "here" : ""}">Admin</a>` : "")
      + `<span class="who" id="who">${esc(this.me.user)} (${esc(this.me.role)})</span><button id="logout">Log out</button>`;
    document.body.prepend(nav);
    document.getElementById("logout").onclick = () => this.logout();
  },
  async logout() {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": this.me.csrf || "" }, redirect: "manual" });
    location.href = "/login";
  },
  wsUrl(path) { return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path; },
  query(form) {
    const q = new URLSearchParams();
    for (const el of form.querySelectorAll("input,select")) if (el.name && el.value !== "") q.set(el.name, el.value);
    return q;
  },
  fillForm(form, q) { for (const el of form.querySelectorAll("input,select")) if (el.name && q.has(el.name)) el.value = q.get(el.name); },
};
function esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }
function pct(x) { return x === null || x === undefined ? "" : (100 * x).toFixed(2) + "%"; }
function isoMs(ms) { return new Date(ms).toISOString().replace(".000Z", "Z"); }
