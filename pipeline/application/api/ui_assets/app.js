// Tocsin's web UI: plain ES modules, no build step. Views are routed by the URL hash, as
// Alertmanager's UI is (`#/alerts?receiver=...&filter=...`), so its links land here.
// Every URL is relative: the page's <base href> is the API's root path (route prefix).
import {
  formatDuration, formatMatcher, formatMatchers, labelMatchers, parseDuration, parseMatcher, splitMatchers,
} from "./matchers.js";

const POLL_MS = 5000;
const GROUPS_PER_PAGE = 50;
const ALERTS_PER_GROUP = 10;
const store = window.sessionStorage;
const $ = (sel, root = document) => root.querySelector(sel);
const view = $("#view");
const dialog = $("#dialog");

// ------------------------------------------------------------------ helpers

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);

function ago(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!t || t < 0) return "";
  const s = Math.round((now - t) / 1000);
  if (s < 0) return `in ${formatDuration(-s * 1000)}`;
  return s < 5 ? "just now" : `${formatDuration(Math.floor(s / 60) * 60000 || s * 1000)} ago`;
}

const when = (iso) => (iso && !iso.startsWith("0001") ? new Date(iso).toLocaleString() : "");
const labelText = (labels) => formatMatchers(labelMatchers(labels || {}));

function levelOf(x) {
  const v = x?.level ?? x?.status?.level ?? x?.escalation?.level ?? x?.escalationLevel;
  return v === undefined || v === null || v === "" ? null : v;
}

function notice(msg) {
  const n = $("#notice");
  n.textContent = msg || "";
  n.hidden = !msg;
}

// ------------------------------------------------------------------ session and API

const session = {
  get token() { return store.getItem("tocsin.token") || ""; },
  get org() { return store.getItem("tocsin.org") || ""; },
  get user() { return store.getItem("tocsin.user") || ""; },
  set(key, value) { if (value) store.setItem(`tocsin.${key}`, value); else store.removeItem(`tocsin.${key}`); },
  orgs() { try { return JSON.parse(store.getItem("tocsin.orgs") || "[]"); } catch { return []; } },
  remember(org) {
    if (!org) return;
    const orgs = [...new Set([org, ...this.orgs()])].slice(0, 20);
    store.setItem("tocsin.orgs", JSON.stringify(orgs));
  },
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, { method = "GET", body, params, org = true } = {}) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (org && session.org) headers["X-Scope-OrgID"] = session.org;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const qs = params ? `?${params}` : "";
  const res = await fetch(path + qs, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) {
    let msg = text;
    try { const doc = JSON.parse(text); msg = doc.error || doc.message || text; } catch { /* plain text */ }
    if (res.status === 401 && !location.hash.startsWith("#/signin")) {
      location.hash = `#/signin?next=${encodeURIComponent(location.hash)}&reason=${encodeURIComponent(msg)}`;
    }
    throw new ApiError(res.status, `${method} ${path}: ${res.status} ${msg}`.trim());
  }
  return text ? JSON.parse(text) : null;
}

// a read that ends after the user navigated away must not paint over the new view
const stale = (hash) => hash !== location.hash;

const optional = (p, fallback) => p.catch((e) => (e.status === 404 || e.status === 400 ? fallback : Promise.reject(e)));

// ------------------------------------------------------------------ routing

function route() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?", 2);
  return { path: path || "alerts", params: new URLSearchParams(query) };
}

const views = {};
let current = null; // {name, refresh()}
let renderedHash = null;

async function show() {
  const { path, params } = route();
  const name = path.split("/")[0];
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  $("#signin-link").textContent = session.token ? "Sign out" : "Sign in";
  const v = views[name] || views.alerts;
  const sameView = renderedHash === location.hash;
  renderedHash = location.hash;
  if (!sameView) notice("");
  current = { name, refresh: () => v(params, path, true) };
  try {
    await v(params, path, false);
  } catch (e) {
    if (e.status !== 401) notice(e.message);
  }
}

window.addEventListener("hashchange", show);

// live updates: the current view refreshes itself unless the user is in a dialog or a form.
// Polling, not server-sent events: a read answers from the API's kept state (only what was
// committed since is read), and a refresh waits at least 10 times as long as the last one
// took, so a slow API (tens of thousands of alerts, a loaded host) is asked less often.
async function poll() {
  let took = 0;
  if (!document.hidden && !dialog.open && current && current.refresh
      && !document.activeElement?.closest("form[data-nopoll]")) {
    const t0 = performance.now();
    try { await current.refresh(); } catch (e) { if (e.status !== 401) notice(e.message); }
    took = performance.now() - t0;
  }
  setTimeout(poll, Math.max(POLL_MS, 10 * took));
}
setTimeout(poll, POLL_MS);

function live(text) { $("#live").textContent = text; }

/** Replace the view's HTML, keeping focus on the element with the same data-key. */
function paint(html) {
  const key = document.activeElement?.dataset?.key;
  view.innerHTML = html;
  if (key) view.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

// ------------------------------------------------------------------ alerts

const alertsState = { page: 0, expanded: new Set(), data: null, totals: { groups: 0, alerts: 0 }, acks: [],
  keys: new Map(), sig: "",
  escSig: "", escByGroup: new Map(), escByAlert: new Map() };

function alertParams(params) {
  const q = new URLSearchParams();
  for (const m of splitMatchers(params.get("filter") || "")) q.append("filter", m);
  if (params.get("receiver")) q.set("receiver", params.get("receiver"));
  for (const f of ["silenced", "inhibited", "muted", "active"]) if (params.has(f)) q.set(f, params.get(f));
  return q;
}

function stateOf(a, acked) {
  const st = a.status || {};
  const out = [];
  if (st.state === "unprocessed") out.push("unprocessed");
  if (st.silencedBy?.length) out.push("silenced");
  if (st.inhibitedBy?.length) out.push("inhibited");
  if (st.mutedBy?.length) out.push("muted");
  if (acked) out.push("acknowledged");
  if (!out.length || (out.length === 1 && acked)) out.unshift("firing");
  return out;
}

const badge = (s) => `<span class="state st-${esc(s)}">${esc(s)}</span>`;

function ackFor(kind, target) {
  return alertsState.acks.find((k) => k.active !== false && k.kind === kind && k.target === target);
}

async function groupKeysFor(groups) {
  const missing = groups.filter((g) => !g.groupKey && !alertsState.keys.has(g.id));
  if (!missing.length) return;
  let answers;
  try {
    answers = await api("api/tocsin/ui/groupkeys", { method: "POST", body: missing.map((g) => g.alerts[0].labels) });
  } catch (e) {
    if (e.status === 404) return; // an API without the UI's helper: groups cannot be acknowledged as groups
    throw e;
  }
  missing.forEach((g, i) => {
    const suffix = `:${labelText(g.labels)}`;
    const hits = (answers[i] || []).filter((r) => r.receiver === g.receiver);
    const hit = hits.find((r) => r.groupKey.endsWith(suffix)) || hits[0];
    if (hit) alertsState.keys.set(g.id, hit.groupKey);
  });
}

const keyOf = (g) => g.groupKey || alertsState.keys.get(g.id) || "";

views.alerts = async (params, _path, polling) => {
  const t0 = performance.now();
  const hash = location.hash;
  const q = alertParams(params);
  if (!polling) {
    alertsState.page = Number(params.get("page") || 0);
    paintAlertsShell(params);
  }
  // one page of Alertmanager's groups for this query, in this order, and the totals: the whole
  // answer for 10,000 groups is 4 MB to show 50 of them
  q.set("page", alertsState.page);
  q.set("perPage", GROUPS_PER_PAGE);
  const [answer, acks] = await Promise.all([
    api("api/tocsin/ui/groups", { params: q }),
    optional(api("api/tocsin/acks"), []),
  ]);
  if (stale(hash)) return;
  const pages = Math.max(1, Math.ceil(answer.totalGroups / GROUPS_PER_PAGE));
  if (alertsState.page >= pages) { // fewer groups than when the page was chosen: the last page
    alertsState.page = pages - 1;
    return views.alerts(params, _path, true);
  }
  const t1 = performance.now();
  const sig = JSON.stringify([answer, acks]);
  if (polling && sig === alertsState.sig) {
    await loadEscalations(hash);
    live(`updated ${new Date().toLocaleTimeString()}`);
    return;
  }
  alertsState.sig = sig;
  alertsState.acks = acks || [];
  alertsState.totals = { groups: answer.totalGroups, alerts: answer.totalAlerts };
  alertsState.data = answer.groups // in the server's order: by receiver, then by label set
    .map((g) => ({ ...g, receiver: g.receiver?.name ?? g.receiver, id: `${g.receiver?.name}|${labelText(g.labels)}` }));
  for (const g of alertsState.data) g.alerts.sort((a, b) => (a.startsAt < b.startsAt ? 1 : -1));
  await groupKeysFor(alertsState.data);
  if (stale(hash)) return;
  renderAlerts();
  const t2 = performance.now();
  // measured by the browser tests (first render of 10,000 alerts)
  performance.mark("tocsin:alerts-rendered", { detail: { fetch: t1 - t0, render: t2 - t1 } });
  window.tocsinTimings = { fetch: t1 - t0, render: t2 - t1 };
  live(`updated ${new Date().toLocaleTimeString()}`);
  // escalation levels after the first paint: their read scans every group's filter state again
  // and would hold the groups' answer back (the levels are painted when they come)
  if (polling) await loadEscalations(hash);
  else loadEscalations(hash).catch((e) => { if (e.status !== 401) notice(e.message); });
};

async function loadEscalations(hash) {
  const escalations = await optional(api("api/tocsin/escalations"), []); // an API without escalation: no levels
  const sig = JSON.stringify(escalations);
  if (stale(hash) || sig === alertsState.escSig) return;
  alertsState.escSig = sig;
  alertsState.escByGroup = new Map((escalations || []).map((e) => [e.groupKey, e]));
  alertsState.escByAlert = new Map((escalations || []).flatMap((e) => (e.fingerprints || []).map((f) => [f, e])));
  renderAlerts();
}

function paintAlertsShell(params) {
  const check = (name, label) => {
    const on = params.get(name) !== "false";
    return `<label><input type="checkbox" name="${name}" ${on ? "checked" : ""}> ${label}</label>`;
  };
  view.innerHTML = `
  <h1>Alerts</h1>
  <form class="filterbar" id="alert-filter" role="search" aria-label="Filter alerts">
    <span class="grow"><label for="filter">Filter</label>
      <input class="grow" id="filter" name="filter" value="${esc(params.get("filter") || "")}"
        placeholder='{alertname="HighLatency", severity=~"page|critical"}' aria-describedby="filter-hint"></span>
    <span><label for="receiver-filter">Receiver</label>
      <input id="receiver-filter" name="receiver" value="${esc(params.get("receiver") || "")}" size="14"></span>
    ${check("silenced", "Silenced")} ${check("inhibited", "Inhibited")} ${check("muted", "Muted")}
    <button type="submit" class="primary">Apply</button>
    <button type="button" data-action="clear-filter">Clear</button>
  </form>
  <p class="hint" id="filter-hint">Alertmanager's matcher syntax; the filter is kept in the URL, so it can be shared.</p>
  <div id="alerts-body"><p class="muted">Loading…</p></div>`;
}

function renderAlerts() {
  const body = $("#alerts-body");
  if (!body) return;
  const shown = alertsState.data || []; // the page's groups
  const { groups: count, alerts: total } = alertsState.totals;
  const pages = Math.max(1, Math.ceil(count / GROUPS_PER_PAGE));
  let html = `<p class="meta" id="alerts-summary">${total} alert${total === 1 ? "" : "s"} in ${count}
    group${count === 1 ? "" : "s"}</p>`;
  if (!count) html += `<p class="muted">No alerts match.</p>`;
  let receiver = null;
  for (const g of shown) {
    if (g.receiver !== receiver) {
      receiver = g.receiver;
      html += `<h2 class="receiver">Receiver ${esc(receiver)}</h2>`;
    }
    html += groupHtml(g);
  }
  if (pages > 1) {
    html += `<nav class="pager" aria-label="Pages of groups">
      <button data-action="page" data-page="${alertsState.page - 1}" data-key="prev" ${alertsState.page ? "" : "disabled"}>Previous</button>
      <span>Page ${alertsState.page + 1} of ${pages}</span>
      <button data-action="page" data-page="${alertsState.page + 1}" data-key="next" ${alertsState.page + 1 < pages ? "" : "disabled"}>Next</button></nav>`;
  }
  const key = document.activeElement?.dataset?.key;
  body.innerHTML = html;
  if (key) body.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

function groupHtml(g) {
  const gk = keyOf(g);
  const gack = gk ? ackFor("group", gk) : null;
  const expanded = alertsState.expanded.has(g.id);
  const alerts = expanded ? g.alerts : g.alerts.slice(0, ALERTS_PER_GROUP);
  const escal = gk ? alertsState.escByGroup.get(gk) : null;
  const level = levelOf(g) ?? levelOf(escal) ?? g.alerts.map(levelOf).filter((l) => l !== null).sort().pop() ?? null;
  const labels = Object.entries(g.labels || {}).sort();
  const gid = esc(g.id);
  return `<section class="group" aria-label="Group ${esc(labelText(g.labels))} of receiver ${esc(g.receiver)}"
      data-group="${gid}">
    <div class="ghead">
      <h3>${labels.length ? labels.map(([k, v]) => `<span class="chip">${esc(k)}="${esc(v)}"</span>`).join("") : `<span class="muted">(all alerts)</span>`}</h3>
      <span class="meta">${g.alerts.length} alert${g.alerts.length === 1 ? "" : "s"}</span>
      ${level !== null ? `<span class="level" title="escalation level">level ${esc(level)}</span>` : ""}
      ${escal ? `<span class="meta">${escal.policy ? `policy ${esc(escal.policy)} · ` : ""}step ${esc(escal.stepsDone)}/${esc(escal.steps)}${escal.paused ? " · paused" : ""}${escal.nextStepAt ? ` · next ${esc(ago(escal.nextStepAt))}` : ""}</span>` : ""}
      ${gack ? `${badge("acknowledged")} <span class="meta">by ${esc(gack.by || "?")}${gack.comment ? `: ${esc(gack.comment)}` : ""}</span>` : ""}
      <span class="actions">
        ${gk ? (gack
    ? `<button data-action="unack-group" data-group="${gid}" data-key="unack-${gid}">Unacknowledge group</button>`
    : `<button data-action="ack-group" data-group="${gid}" data-key="ack-${gid}">Acknowledge group</button>`) : ""}
        ${gk ? `<a href="#/history?groupKey=${encodeURIComponent(gk)}">Group history</a>` : ""}
        <a href="#/silences/new?filter=${encodeURIComponent(labelText(g.labels))}">Silence group</a>
      </span>
    </div>
    <ul class="alerts">${alerts.map((a) => alertHtml(a, gack)).join("")}</ul>
    ${g.alerts.length > ALERTS_PER_GROUP ? `<div class="pager"><button data-action="expand" data-group="${gid}" data-key="exp-${gid}"
      aria-expanded="${expanded}">${expanded ? "Show fewer" : `Show all ${g.alerts.length}`}</button></div>` : ""}
  </section>`;
}

function alertHtml(a, gack) {
  const ack = ackFor("alert", a.fingerprint) || null;
  const states = stateOf(a, ack || gack);
  const level = levelOf(a) ?? levelOf(alertsState.escByAlert.get(a.fingerprint));
  const ann = Object.entries(a.annotations || {});
  const fp = esc(a.fingerprint);
  return `<li data-fingerprint="${fp}" aria-label="Alert ${esc(a.labels?.alertname || a.fingerprint)}">
    <div class="labels">${states.map(badge).join("")}
      ${level !== null ? `<span class="level" title="escalation level">L${esc(level)}</span>` : ""}
      ${Object.entries(a.labels || {}).sort().map(([k, v]) => `<button class="chip" data-action="add-filter"
        data-matcher="${esc(formatMatcher({ name: k, value: v, isRegex: false, isEqual: true }))}"
        title="Filter on this label">${esc(k)}="${esc(v)}"</button>`).join("")}</div>
    <div class="actions">
      <span class="meta" title="${esc(when(a.startsAt))}">since ${esc(ago(a.startsAt))}</span>
      ${ack ? `<button data-action="unack-alert" data-fp="${fp}" data-key="unack-${fp}">Unacknowledge</button>`
    : `<button data-action="ack-alert" data-fp="${fp}" data-key="ack-${fp}">Acknowledge</button>`}
      <a href="#/silences/new?filter=${encodeURIComponent(labelText(a.labels))}">Silence</a>
      <a href="#/history?fingerprint=${encodeURIComponent(a.fingerprint)}">History</a>
      ${a.generatorURL && /^https?:/.test(a.generatorURL) ? `<a href="${esc(a.generatorURL)}" rel="noopener noreferrer" target="_blank">Source</a>` : ""}
    </div>
    ${ann.length || ack ? `<dl class="annotations">${ann.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}
      ${ack ? `<dt>acknowledged</dt><dd>by ${esc(ack.by || "?")}${ack.comment ? `: ${esc(ack.comment)}` : ""}</dd>` : ""}</dl>` : ""}
    ${a.status?.silencedBy?.length ? `<div class="meta">silenced by ${a.status.silencedBy.map((id) => `<a href="#/silences/edit?id=${encodeURIComponent(id)}">${esc(id.slice(0, 8))}</a>`).join(", ")}</div>` : ""}
  </li>`;
}

function filterHash(form) {
  const q = new URLSearchParams();
  const f = form.filter.value.trim();
  if (f) q.set("filter", f.startsWith("{") ? f : `{${f}}`);
  if (form.receiver.value.trim()) q.set("receiver", form.receiver.value.trim());
  for (const name of ["silenced", "inhibited", "muted"]) if (!form[name].checked) q.set(name, "false");
  return `#/alerts${q.toString() ? `?${q}` : ""}`;
}

// ------------------------------------------------------------------ acknowledgements

function ackDialog(title, target, remove) {
  dialog.innerHTML = `<form method="dialog" class="stack" id="ack-form" data-nopoll>
    <h2 id="dialog-title">${esc(title)}</h2>
    <div class="field"><label for="ack-by">Your name</label>
      <input id="ack-by" name="by" value="${esc(session.user)}" required autocomplete="username"></div>
    <div class="field"><label for="ack-comment">Comment</label>
      <textarea id="ack-comment" name="comment" rows="3" placeholder="${remove ? "Why" : "Looking into it"}"></textarea></div>
    ${remove ? "" : `<div class="field"><label for="ack-for">Expires after (optional, e.g. 2h)</label>
      <input id="ack-for" name="for" placeholder="until resolved"></div>`}
    <p class="error" id="ack-error" role="alert"></p>
    <div class="row"><button type="submit" class="primary" value="ok">${remove ? "Unacknowledge" : "Acknowledge"}</button>
      <button type="button" data-action="close-dialog">Cancel</button></div></form>`;
  dialog.showModal();
  $("#ack-comment", dialog).focus();
  $("#ack-form", dialog).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const doc = { ...target, by: form.by.value.trim(), comment: form.comment.value.trim() };
    if (remove) doc.remove = true;
    const dur = form.for?.value.trim();
    if (dur) {
      const ms = parseDuration(dur);
      if (Number.isNaN(ms)) { $("#ack-error", dialog).textContent = `"${dur}" is not a duration like 30m or 2h`; return; }
      doc.expiresAt = new Date(Date.now() + ms).toISOString();
    }
    try {
      await api("api/tocsin/acks", { method: "POST", body: doc });
    } catch (e) { $("#ack-error", dialog).textContent = e.message; return; }
    session.set("user", doc.by);
    dialog.close();
    live(remove ? "unacknowledged" : "acknowledged");
    // the filter applies the command asynchronously: look again shortly
    for (const ms of [300, 1000, 2500]) setTimeout(() => current?.refresh?.().catch(() => {}), ms);
  });
}

// ------------------------------------------------------------------ silences

const silState = { tab: "active" };

views.silences = async (params, path, polling) => {
  if (path.startsWith("silences/new") || path.startsWith("silences/edit")) {
    if (!polling) await silenceEditor(params);
    return;
  }
  const q = new URLSearchParams();
  for (const m of splitMatchers(params.get("filter") || "")) q.append("filter", m);
  const hash = location.hash;
  const silences = await api("api/v2/silences", { params: q });
  if (stale(hash)) return;
  if (params.get("state")) silState.tab = params.get("state");
  const by = { active: [], pending: [], expired: [] };
  for (const s of silences) (by[s.status?.state] || by.expired).push(s);
  by.expired.sort((a, b) => (a.endsAt < b.endsAt ? 1 : -1));
  by.active.sort((a, b) => (a.endsAt < b.endsAt ? -1 : 1));
  const list = by[silState.tab] || [];
  const html = `<h1>Silences</h1>
    <form class="filterbar" id="silence-filter" role="search" aria-label="Filter silences">
      <span class="grow"><label for="silence-filter-input">Filter</label>
        <input class="grow" id="silence-filter-input" name="filter" value="${esc(params.get("filter") || "")}"
          placeholder='{alertname="HighLatency"}'></span>
      <button type="submit">Apply</button>
      <a href="#/silences/new" class="button">New silence</a>
    </form>
    <div class="tabs" role="tablist" aria-label="Silence states">
      ${["active", "pending", "expired"].map((t) => `<button role="tab" data-action="sil-tab" data-tab="${t}" data-key="tab-${t}"
        aria-selected="${t === silState.tab}">${t[0].toUpperCase() + t.slice(1)} (${by[t].length})</button>`).join("")}
    </div>
    <div role="tabpanel" id="silence-list">${list.length ? list.map(silenceHtml).join("") : `<p class="muted">No ${silState.tab} silences.</p>`}</div>`;
  if (!polling || !view.contains(document.activeElement) || document.activeElement === view) paint(html);
  else if ($("#silence-list")) paint(html);
  live(`updated ${new Date().toLocaleTimeString()}`);
};

function silenceHtml(s) {
  const id = esc(s.id);
  return `<article class="card" data-silence="${id}" aria-label="Silence ${id}">
    <div class="row">${badge(s.status?.state)}
      ${s.matchers.map((m) => `<span class="chip">${esc(formatMatcher(m))}</span>`).join("")}
      <span class="actions">
        <a href="#/alerts?filter=${encodeURIComponent(formatMatchers(s.matchers))}">Show alerts</a>
        <a href="#/silences/edit?id=${encodeURIComponent(s.id)}">Edit</a>
        ${s.status?.state !== "expired" ? `<button class="danger" data-action="expire" data-id="${id}" data-key="expire-${id}">Expire</button>` : ""}
      </span></div>
    <div class="meta">${esc(s.createdBy)}: ${esc(s.comment)} · ${esc(when(s.startsAt))} → ${esc(when(s.endsAt))}
      (${s.status?.state === "expired" ? `ended ${esc(ago(s.endsAt))}` : `ends ${esc(ago(s.endsAt))}`}) · <code>${id}</code></div>
  </article>`;
}

async function silenceEditor(params) {
  const id = params.get("id");
  let s = null;
  const hash = location.hash;
  if (id) s = await api(`api/v2/silence/${encodeURIComponent(id)}`);
  if (stale(hash)) return;
  const now = new Date();
  const matchers = s ? formatMatchers(s.matchers) : params.get("filter") || "";
  const starts = s && s.status?.state === "pending" ? s.startsAt : now.toISOString();
  const dur = s ? formatDuration(Date.parse(s.endsAt) - Math.max(Date.parse(starts), now.getTime())) : "2h";
  view.innerHTML = `<h1>${s ? "Edit silence" : "New silence"}</h1>
  <form class="stack" id="silence-form" data-nopoll data-id="${esc(s?.id || "")}">
    <div class="field"><label for="sil-matchers">Matchers</label>
      <textarea id="sil-matchers" name="matchers" rows="3" required aria-describedby="sil-matchers-hint">${esc(matchers)}</textarea>
      <span class="hint" id="sil-matchers-hint">{name="value", name=~"regex", name!="value"} or one matcher per line</span></div>
    <div class="row">
      <div class="field"><label for="sil-start">Starts at (RFC 3339)</label>
        <input id="sil-start" name="startsAt" value="${esc(starts)}" size="26"></div>
      <div class="field"><label for="sil-duration">Duration</label>
        <input id="sil-duration" name="duration" value="${esc(dur)}" size="8" aria-describedby="sil-end"></div>
      <span class="hint" id="sil-end"></span>
    </div>
    <div class="field"><label for="sil-by">Created by</label>
      <input id="sil-by" name="createdBy" value="${esc(s?.createdBy || session.user)}" required></div>
    <div class="field"><label for="sil-comment">Comment</label>
      <textarea id="sil-comment" name="comment" rows="2" required>${esc(s?.comment || "")}</textarea></div>
    <p class="error" id="sil-error" role="alert"></p>
    <div class="row">
      <button type="button" data-action="preview">Preview matching alerts</button>
      <button type="submit" class="primary">${s ? "Update silence" : "Create silence"}</button>
      <a href="#/silences">Cancel</a></div>
    <section id="sil-preview" class="preview" aria-live="polite" aria-label="Alerts this silence matches"></section>
  </form>`;
  updateEnd();
  $("#sil-matchers").focus();
}

function silenceDoc(form) {
  const matchers = splitMatchers(form.matchers.value).map(parseMatcher);
  if (!matchers.length) throw new Error("give at least one matcher");
  const starts = Date.parse(form.startsAt.value.trim() || new Date().toISOString());
  if (Number.isNaN(starts)) throw new Error("Starts at is not a time (write 2026-01-02T03:04:05Z)");
  const ms = parseDuration(form.duration.value);
  if (Number.isNaN(ms) || ms <= 0) throw new Error("Duration is not a duration like 30m, 2h or 1d");
  const doc = {
    matchers, startsAt: new Date(starts).toISOString(), endsAt: new Date(Math.max(starts, Date.now()) + ms).toISOString(),
    createdBy: form.createdBy.value.trim(), comment: form.comment.value.trim(),
  };
  if (form.dataset.id) doc.id = form.dataset.id;
  return doc;
}

function updateEnd() {
  const form = $("#silence-form");
  if (!form) return;
  const ms = parseDuration(form.duration.value);
  const starts = Date.parse(form.startsAt.value) || Date.now();
  $("#sil-end").textContent = Number.isNaN(ms) ? "" : `ends ${new Date(Math.max(starts, Date.now()) + ms).toLocaleString()}`;
}

async function previewSilence() {
  const form = $("#silence-form");
  const out = $("#sil-preview");
  let doc;
  try { doc = silenceDoc(form); } catch (e) { $("#sil-error").textContent = e.message; return; }
  $("#sil-error").textContent = "";
  const q = new URLSearchParams();
  for (const m of doc.matchers) q.append("filter", formatMatcher(m));
  const alerts = await api("api/v2/alerts", { params: q });
  out.innerHTML = `<h2>${alerts.length} alert${alerts.length === 1 ? "" : "s"} would be silenced</h2>
    <ul>${alerts.slice(0, 50).map((a) => `<li><code>${esc(labelText(a.labels))}</code></li>`).join("")}</ul>
    ${alerts.length > 50 ? `<p class="muted">and ${alerts.length - 50} more</p>` : ""}`;
}

// ------------------------------------------------------------------ history

views.history = async (params, _path, polling) => {
  const fp = params.get("fingerprint");
  const gk = params.get("groupKey");
  if (!fp && !gk) { paint(`<h1>History</h1><p class="muted">Open an alert's or a group's history from the alerts view.</p>`); return; }
  const q = new URLSearchParams(fp ? { fingerprint: fp } : { groupKey: gk });
  const hash = location.hash;
  // the escalation API's timeline when there is one (fired, notified at which level, escalated,
  // acknowledged, silenced, resolved); else the alert's changes and the acknowledgements
  const [timeline, changes, attempts, acks] = await Promise.all([
    optional(api("api/tocsin/timeline", { params: q }), null),
    optional(api("api/tocsin/history", { params: q }), null),
    optional(api("api/tocsin/attempts", { params: new URLSearchParams([...q, ["limit", "1000"]]) }), []),
    optional(api("api/tocsin/acks"), []),
  ]);
  if (stale(hash)) return;
  const events = [];
  let labels = null;
  const lvl = (x) => (levelOf(x) ? ` · level ${levelOf(x)}` : "");
  if (timeline) {
    for (const e of timeline) {
      labels = e.labels || labels;
      const name = e.labels?.alertname;
      let text = e.event, detail = "";
      if (e.receiver) {
        text = `${e.event} ${e.receiver}${e.integration ? ` (${e.integration})` : ""}`;
        detail = `${e.status || ""}${lvl(e)}${e.policy ? ` · policy ${e.policy}` : ""}`;
      } else if (e.event === "acknowledged" || e.event === "unacknowledged") {
        text = `${e.event} by ${e.by || "?"}`;
        detail = e.comment || "";
      } else if (e.event === "silenced") {
        text = `silenced by ${e.by || "?"} until ${when(e.until)}`;
        detail = `${e.comment || ""} · silence ${e.silenceID || ""}`;
      } else if (gk && name) {
        text = `${e.event} ${name}`;
      }
      events.push({ at: e.at, cls: `ev-${e.event === "acknowledged" ? "ack" : e.receiver ? "notify" : e.event}`, text, detail });
    }
  } else {
    for (const c of changes || []) {
      labels = c.alert?.labels || labels;
      const name = c.alert?.labels?.alertname;
      events.push({ at: c.at, cls: `ev-${c.change}`, text: `${c.change}${gk && name ? ` ${name}` : ""}`,
        detail: `${c.cause?.kind || ""}${c.cause?.id ? ` ${c.cause.id}` : ""}${lvl(c) || lvl(c.cause)}` });
    }
    for (const k of acks || []) {
      if ((fp && k.kind === "alert" && k.target === fp) || (gk && k.kind === "group" && k.target === gk)) {
        events.push({ at: k.at, cls: "ev-ack", text: `acknowledged by ${k.by || "?"}${k.active === false ? " (no longer active)" : ""}`,
          detail: k.comment || "" });
      }
    }
  }
  // deliveries: every attempt without a timeline, only the failed ones (with their errors) beside it
  for (const a of attempts || []) {
    const failed = a.status !== "sent" && a.status !== "ok" && a.status !== "success";
    if (timeline && !failed) continue;
    events.push({ at: a.at, cls: failed ? "ev-failed" : "ev-notify",
      text: `${timeline ? "delivery to" : "notified"} ${a.receiver}${a.integration ? ` (${a.integration})` : ""}: ${a.status}`,
      detail: `attempt ${a.attempt}${lvl(a)}${a.statusCode ? ` · HTTP ${a.statusCode}` : ""}${a.error ? ` · ${a.error}` : ""}${a.reason ? ` · ${a.reason}` : ""}` });
  }
  events.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  const html = `<h1>History of ${fp ? "alert" : "group"}</h1>
    <p><code>${esc(fp || gk)}</code>${labels && fp ? ` <code>${esc(labelText(labels))}</code>` : ""}</p>
    ${!timeline && changes === null && gk ? `<p class="muted">This API keeps no state-change history per group; deliveries and acknowledgements follow.</p>` : ""}
    ${events.length ? `<ol class="timeline" aria-label="Timeline, oldest first">${events.map((e) => `<li class="${esc(e.cls)}">
      <time datetime="${esc(e.at)}">${esc(when(e.at))}</time><strong>${esc(e.text)}</strong>
      ${e.detail ? `<div class="meta">${esc(e.detail)}</div>` : ""}</li>`).join("")}</ol>` : `<p class="muted">Nothing recorded yet.</p>`}
    <p><a href="#/alerts">Back to alerts</a></p>`;
  paint(html);
  if (!polling) view.focus({ preventScroll: true });
  live(`updated ${new Date().toLocaleTimeString()}`);
};

// ------------------------------------------------------------------ status

function treeHtml(r) {
  return `<li><span class="node"><span class="chip">${esc(r.matchers || "default route")}</span>
    → <strong>${esc(r.receiver)}</strong>
    <span class="meta">group by [${esc((r.groupBy || []).join(", "))}] · wait ${esc(formatDuration(r.groupWait * 1000))}
    · interval ${esc(formatDuration(r.groupInterval * 1000))} · repeat ${esc(formatDuration(r.repeatInterval * 1000))}
    ${r.continue ? "· continue" : ""}${r.muteTimeIntervals?.length ? ` · muted: ${esc(r.muteTimeIntervals.join(", "))}` : ""}</span></span>
    ${r.routes?.length ? `<ul>${r.routes.map(treeHtml).join("")}</ul>` : ""}</li>`;
}

views.status = async (_params, _path, polling) => {
  if (polling) return;
  const hash = location.hash;
  const [status, tree, receivers, metrics] = await Promise.all([
    api("api/v2/status"),
    optional(api("api/tocsin/ui/routes"), null),
    api("api/v2/receivers"),
    fetch("metrics").then((r) => (r.ok ? r.text() : "")).catch(() => ""),
  ]);
  if (stale(hash)) return;
  const integrations = new Map((tree?.receivers || []).map((r) => [r.name, r.integrations]));
  // each stage's replicas and partitions, consumer lag, dead letters, last reload (Prometheus text)
  const wanted = /^(tocsin_stage_(partitions_owned|consumer_lag|dead_letters)|tocsin_(notifier|source)_dead_letters|[a-z_]*(config_last_reload|config_hash)[a-z_]*)({[^}]*})? (\S+)$/;
  const pipeline = metrics.split("\n").map((l) => wanted.exec(l)).filter(Boolean).slice(0, 500);
  paint(`<h1>Status</h1>
    <table><tbody>
      <tr><th scope="row">Version</th><td>${esc(status.versionInfo?.version)}</td></tr>
      <tr><th scope="row">Up since</th><td>${esc(when(status.uptime))} (${esc(ago(status.uptime))})</td></tr>
      <tr><th scope="row">Cluster</th><td>${esc(status.cluster?.name)}: ${esc(status.cluster?.status)}</td></tr>
      <tr><th scope="row">Organisation</th><td>${esc(tree?.org || session.org || "default")}</td></tr>
    </tbody></table>
    <h2>Route tree</h2>
    ${tree ? `<ul class="tree" aria-label="Route tree">${treeHtml(tree.route)}</ul>` : `<p class="muted">This API does not describe its route tree; see the configuration below.</p>`}
    <h2>Receivers</h2>
    <table><thead><tr><th scope="col">Receiver</th><th scope="col">Integrations</th></tr></thead><tbody>
      ${receivers.map((r) => `<tr><td>${esc(r.name)}</td><td>${(integrations.get(r.name) || []).map((i) => `${esc(i.kind)}${i.count > 1 ? ` ×${i.count}` : ""}`).join(", ") || `<span class="muted">none</span>`}</td></tr>`).join("")}
    </tbody></table>
    <h2>Pipeline</h2>
    ${pipeline.length ? `<table aria-label="Pipeline"><thead><tr><th scope="col">Metric</th><th scope="col">Labels</th><th scope="col">Value</th></tr></thead><tbody>
      ${pipeline.map((m) => `<tr><td>${esc(m[1])}</td><td><code>${esc(m[5] || "")}</code></td><td>${esc(m[6])}</td></tr>`).join("")}</tbody></table>` : `<p class="muted">No pipeline metrics in <a href="metrics">metrics</a>.</p>`}
    <h2>Configuration</h2>
    ${status.config?.original ? `<pre aria-label="Configuration (secrets hidden)">${esc(status.config.original)}</pre>` : `<p class="muted">Only administrators see the configuration.</p>`}`);
  live(`updated ${new Date().toLocaleTimeString()}`);
};

// ------------------------------------------------------------------ sign in

views.signin = async (params, _path, polling) => {
  if (polling) return;
  if (session.token && !params.get("reason")) { // the link reads "Sign out" when signed in
    session.set("token", "");
    notice("");
    me.info = null;
    fillOrgs();
  }
  paint(`<h1>Sign in</h1>
    ${params.get("reason") ? `<p class="error">${esc(params.get("reason"))}</p>` : ""}
    <form class="stack" id="signin-form" data-nopoll data-next="${esc(params.get("next") || "#/alerts")}">
      <div class="field"><label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required
          aria-describedby="token-hint"></div>
      <span class="hint" id="token-hint">Kept in this tab's session storage only; sent as a bearer token.</span>
      <div class="field"><label for="signin-org">Organisation (optional)</label>
        <input id="signin-org" name="org" value="${esc(session.org)}"></div>
      <div class="row"><button type="submit" class="primary">Sign in</button></div>
    </form>`);
  $("#token").focus();
  $("#signin-link").textContent = "Sign in";
};

// ------------------------------------------------------------------ events (delegated)

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (form.id === "alert-filter") {
    ev.preventDefault();
    alertsState.page = 0;
    location.hash = filterHash(form);
  } else if (form.id === "silence-filter") {
    ev.preventDefault();
    const f = form.filter.value.trim();
    location.hash = f ? `#/silences?filter=${encodeURIComponent(f)}` : "#/silences";
  } else if (form.id === "org-form") {
    ev.preventDefault();
    const org = form.org.value.trim();
    if (!mayName(org)) {
      notice(`${me.info.subject} may act for ${me.info.organisations.join(", ")}, not ${org}`);
      return;
    }
    session.set("org", org);
    session.remember(org);
    fillOrgs();
    alertsState.keys.clear();
    renderedHash = null;
    show();
  } else if (form.id === "signin-form") {
    ev.preventDefault();
    session.set("token", form.token.value.trim());
    session.set("org", form.org.value.trim());
    session.remember(form.org.value.trim());
    const next = form.dataset.next;
    loadIdentity().finally(() => {
      location.hash = next && next !== location.hash && !next.startsWith("#/signin") ? next : "#/alerts";
    });
  } else if (form.id === "silence-form") {
    ev.preventDefault();
    saveSilence(form);
  }
});

async function saveSilence(form) {
  let doc;
  try { doc = silenceDoc(form); } catch (e) { $("#sil-error").textContent = e.message; return; }
  try {
    const res = await api("api/v2/silences", { method: "POST", body: doc });
    session.set("user", doc.createdBy);
    live(`silence ${res.silenceID} saved`);
    location.hash = "#/silences";
  } catch (e) { $("#sil-error").textContent = e.message; }
}

document.addEventListener("input", (ev) => {
  if (ev.target.closest("#silence-form") && ["duration", "startsAt"].includes(ev.target.name)) updateEnd();
});

document.addEventListener("click", async (ev) => {
  const el = ev.target.closest("[data-action]");
  if (!el) return;
  const action = el.dataset.action;
  const group = () => alertsState.data.find((g) => g.id === el.dataset.group);
  try {
    if (action === "page") {
      alertsState.page = Number(el.dataset.page);
      await current.refresh(); // that page's groups
      $("#alerts-summary")?.focus?.();
    } else if (action === "expand") {
      const id = el.dataset.group;
      if (alertsState.expanded.has(id)) alertsState.expanded.delete(id); else alertsState.expanded.add(id);
      renderAlerts();
    } else if (action === "add-filter") {
      const f = $("#filter");
      const ms = splitMatchers(f.value);
      if (!ms.includes(el.dataset.matcher)) ms.push(el.dataset.matcher);
      f.value = `{${ms.join(", ")}}`;
      location.hash = filterHash($("#alert-filter"));
    } else if (action === "clear-filter") {
      location.hash = "#/alerts";
    } else if (action === "ack-group" || action === "unack-group") {
      const g = group();
      ackDialog(`${action === "ack-group" ? "Acknowledge" : "Unacknowledge"} group ${labelText(g.labels)}`,
        { groupKey: keyOf(g) }, action === "unack-group");
    } else if (action === "ack-alert" || action === "unack-alert") {
      ackDialog(`${action === "ack-alert" ? "Acknowledge" : "Unacknowledge"} alert ${el.dataset.fp}`,
        { fingerprint: el.dataset.fp }, action === "unack-alert");
    } else if (action === "close-dialog") {
      dialog.close();
    } else if (action === "sil-tab") {
      silState.tab = el.dataset.tab;
      await current.refresh();
    } else if (action === "expire") {
      if (!window.confirm(`Expire silence ${el.dataset.id}?`)) return;
      await api(`api/v2/silence/${encodeURIComponent(el.dataset.id)}`, { method: "DELETE" });
      live("silence expired");
      await current.refresh();
    } else if (action === "preview") {
      await previewSilence();
    }
  } catch (e) {
    if (e.status !== 401) notice(e.message);
  }
});

// the alerts view's keyboard shortcut: "/" focuses the filter
document.addEventListener("keydown", (ev) => {
  if (ev.key === "/" && !/INPUT|TEXTAREA/.test(document.activeElement?.tagName || "") && $("#filter")) {
    ev.preventDefault();
    $("#filter").focus();
  }
});

// a closed dialog leaves nothing behind (no second "Comment" field, no stale target)
dialog.addEventListener("close", () => { dialog.innerHTML = ""; });

// who the token is (api/tocsin/whoami): the organisations the switcher offers
const me = { info: null };

async function loadIdentity() {
  try {
    me.info = await api("api/tocsin/whoami", { org: false }); // asked without one: to learn which to name
  } catch (e) {
    me.info = null; // signed out (the views ask for a token), or an API without it: remembered names only
    if (e.status !== 401 && e.status !== 404) notice(e.message);
  }
  const info = me.info;
  // an identity of several organisations must name one: the first, until the user switches
  const switched = info && !info.allOrganisations && (!session.org || !mayName(session.org));
  if (switched) session.set("org", info.organisations[0]);
  fillOrgs();
  return switched;
}

function mayName(org) {
  const info = me.info;
  if (!info || info.allOrganisations || !org) return true;
  const names = org.split("|").map((o) => o.trim());
  return names.every((o) => info.organisations.includes(o)) && (names.length === 1 || info.allowUnion);
}

function fillOrgs() {
  const info = me.info;
  const offered = info ? [...info.organisations, ...(info.allOrganisations ? session.orgs() : [])] : session.orgs();
  $("#org").value = session.org;
  $("#org").placeholder = info?.allOrganisations === false ? "all yours" : "default";
  $("#org-list").innerHTML = [...new Set(offered)].map((o) => `<option value="${esc(o)}"></option>`).join("");
  // one organisation: nothing to switch to
  $("#org-form").hidden = !!info && !info.allOrganisations && info.organisations.length < 2;
  $("#whoami").textContent = info && info.method !== "none" ? `${info.subject} (${info.role})` : "";
}

// the view does not wait for who the token is, unless it must learn which organisation to name
if (session.token && !session.org) {
  loadIdentity().finally(show);
} else {
  show();
  loadIdentity().then((switched) => { if (switched) { renderedHash = null; show(); } });
}
