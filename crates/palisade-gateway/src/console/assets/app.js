// Palisade admin console. Plain JS, no libraries, no external assets.
//
// Invariant: data from the gateway (tenant names, audit reasons, tool
// arguments) is only ever written with textContent or as SVG text nodes,
// never as HTML: this file never assigns innerHTML or outerHTML, never
// calls insertAdjacentHTML or document.write (a red-team test checks the
// source for them).
"use strict";

let csrf = "";
let auditOffset = 0;

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function status(text, isError) {
  const s = $("status");
  s.textContent = text || "";
  s.className = isError ? "error" : "";
}

// Every call is same-origin with the session cookie; state-changing ones
// carry the CSRF token the login (or /admin/ui/session) returned.
async function api(path, options) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (opts.method && opts.method !== "GET") {
    opts.headers["x-csrf-token"] = csrf;
    opts.headers["content-type"] = "application/json";
  }
  const resp = await fetch(path, opts);
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (resp.status === 401) { showLogin(); }
  if (!resp.ok) {
    const msg = body && body.error ? body.error.code + ": " + body.error.message : "HTTP " + resp.status;
    throw new Error(msg);
  }
  return body;
}

function scalar(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// Renders any JSON value as nested tables, text only.
function renderValue(v) {
  if (Array.isArray(v)) {
    if (v.length === 0) return el("p", "(none)", "hint");
    if (v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
      const keys = [];
      v.forEach((x) => Object.keys(x).forEach((k) => { if (!keys.includes(k)) keys.push(k); }));
      const table = el("table");
      const head = el("tr");
      keys.forEach((k) => head.appendChild(el("th", k)));
      table.appendChild(el("thead")).appendChild(head);
      const body = table.appendChild(el("tbody"));
      v.forEach((x) => {
        const tr = el("tr");
        keys.forEach((k) => tr.appendChild(el("td", scalar(x[k]), "mono")));
        body.appendChild(tr);
      });
      return table;
    }
    return el("p", v.map(scalar).join(", "), "mono");
  }
  if (v && typeof v === "object") {
    const table = el("table");
    const body = table.appendChild(el("tbody"));
    Object.keys(v).forEach((k) => {
      const tr = el("tr");
      tr.appendChild(el("th", k));
      const td = el("td");
      const x = v[k];
      if (x && typeof x === "object") td.appendChild(renderValue(x));
      else td.textContent = scalar(x);
      tr.appendChild(td);
      body.appendChild(tr);
    });
    return table;
  }
  return el("p", scalar(v), "mono");
}

async function showJson(path, viewId) {
  const view = $(viewId);
  clear(view);
  view.appendChild(renderValue(await api(path)));
}

// ---- policy ---------------------------------------------------------------

async function loadPolicy() {
  const p = await api("/admin/policy");
  const rows = [["active", p.active.version, p.active.label]];
  if (p.shadow) rows.push(["shadow", p.shadow.version, p.shadow.label]);
  (p.history || []).slice().reverse().forEach((v, i) => rows.push(["previous " + (i + 1), v, ""]));
  const body = $("policy-versions").tBodies[0];
  clear(body);
  rows.forEach((r) => {
    const tr = el("tr");
    tr.appendChild(el("td", r[0]));
    tr.appendChild(el("td", r[1], "mono"));
    tr.appendChild(el("td", r[2]));
    body.appendChild(tr);
  });
  for (const id of ["diff-from", "diff-to"]) {
    const sel = $(id);
    clear(sel);
    rows.forEach((r) => {
      const o = el("option", r[0] + " " + r[1].slice(0, 19));
      o.value = r[1];
      sel.appendChild(o);
    });
  }
  // Default: the newest kept version (or the active) against the active (or the shadow).
  if (rows.length > 1) {
    $("diff-from").value = rows[p.shadow && !(p.history || []).length ? 0 : rows.length - 1][1];
    $("diff-to").value = rows[p.shadow && !(p.history || []).length ? 1 : 0][1];
  }
  $("rollback").disabled = !(p.history || []).length;
  await runDiff();
  await loadShadow();
}

// The shadow policy's disagreements with the active one (this replica).
async function loadShadow() {
  const r = await api("/admin/policy/shadow");
  const body = $("shadow-rows");
  clear(body);
  if (!r.configured_shadow) {
    $("shadow-summary").textContent = "No shadow policy is configured (policy.shadow_file).";
    return;
  }
  const changes = Object.keys(r.by_change || {}).map((k) => k + " " + r.by_change[k]).join(", ");
  const rate = r.evaluated ? ((100 * r.diverged) / r.evaluated).toFixed(1) : "0.0";
  $("shadow-summary").textContent = "Shadow " + scalar(r.shadow_version).slice(0, 19) + " disagreed on " +
    r.diverged + " of " + r.evaluated + " decisions (" + rate + "%)" + (changes ? ": " + changes : "") +
    ". Newest " + r.max_examples + " kept.";
  (r.recent || []).forEach((d) => {
    const tr = el("tr");
    tr.appendChild(el("td", new Date(d.ts_ms).toISOString()));
    tr.appendChild(el("td", d.tenant));
    tr.appendChild(el("td", d.model, "mono"));
    tr.appendChild(el("td", d.gate));
    tr.appendChild(el("td", d.active_action + " " + (d.active_reasons || []).join(", ")));
    tr.appendChild(el("td", d.shadow_action + " " + (d.shadow_reasons || []).join(", "), "shadow-action"));
    tr.appendChild(el("td", d.request_id, "mono"));
    body.appendChild(tr);
  });
}

async function runDiff() {
  const q = new URLSearchParams({ from: $("diff-from").value, to: $("diff-to").value });
  const d = await api("/admin/policy/diff?" + q);
  const list = $("policy-diff");
  clear(list);
  if (!d.changes.length) list.appendChild(el("li", "no changes"));
  d.changes.forEach((c, i) => list.appendChild(el("li", d.lines[i], c.kind)));
}

async function rollback() {
  if (!window.confirm("Roll back to the previous policy version on this replica?")) return;
  await api("/admin/policy/rollback", { method: "POST", body: "{}" });
  status("rolled back");
  await loadPolicy();
}

// ---- audit ----------------------------------------------------------------

async function loadAudit(more) {
  auditOffset = more ? auditOffset : 0;
  const q = new URLSearchParams({ limit: "50", offset: String(auditOffset) });
  const add = (k, id) => { const v = $(id).value.trim(); if (v) q.set(k, v); };
  add("gate", "audit-gate");
  add("tenant", "audit-tenant");
  add("reason", "audit-reason");
  add("policy_version", "audit-version");
  const r = await api("/admin/audit?" + q);
  const body = $("audit-rows");
  if (!more) clear(body);
  r.data.forEach((a) => {
    const tr = el("tr");
    tr.appendChild(el("td", new Date(a.ts_ms).toISOString()));
    tr.appendChild(el("td", a.tenant));
    tr.appendChild(el("td", a.gate, "gate"));
    tr.appendChild(el("td", a.action));
    tr.appendChild(el("td", (a.reasons || []).join(", ")));
    tr.appendChild(el("td", a.model));
    tr.appendChild(el("td", scalar(a.policy_version).slice(0, 19), "mono"));
    tr.appendChild(el("td", a.request_id, "mono"));
    body.appendChild(tr);
  });
  $("audit-more").hidden = r.next_offset === null || r.next_offset === undefined;
  if (!$("audit-more").hidden) auditOffset = r.next_offset;
}

// ---- usage ----------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  Object.keys(attrs).forEach((k) => e.setAttribute(k, String(attrs[k])));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// A horizontal bar chart, one bar per group, drawn as SVG nodes.
function drawChart(rows, metric) {
  const box = $("usage-chart");
  clear(box);
  const rowH = 22, labelW = 180, width = 720, barMax = width - labelW - 90;
  const max = Math.max(1e-9, ...rows.map((r) => Number(r[metric]) || 0));
  const chart = svg("svg", { width, height: Math.max(rowH, rows.length * rowH + 4), role: "img", id: "usage-svg" });
  chart.appendChild(svg("title", {}, "usage by " + $("usage-by").value + ": " + metric));
  rows.forEach((r, i) => {
    const v = Number(r[metric]) || 0;
    const y = i * rowH + 2;
    chart.appendChild(svg("text", { x: 0, y: y + 15 }, scalar(r.group).slice(0, 24)));
    chart.appendChild(svg("rect", { class: "bar", x: labelW, y, height: rowH - 6, width: Math.max(1, (v / max) * barMax) }));
    chart.appendChild(svg("text", { x: labelW + Math.max(1, (v / max) * barMax) + 4, y: y + 15 }, metric === "cost_usd" ? v.toFixed(4) : v));
  });
  box.appendChild(chart);
}

async function loadUsage() {
  const q = new URLSearchParams({ by: $("usage-by").value, days: $("usage-days").value || "30" });
  const r = await api("/admin/usage?" + q);
  const body = $("usage-table").tBodies[0];
  clear(body);
  r.data.forEach((u) => {
    const tr = el("tr");
    [u.group, u.requests, u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cost_usd.toFixed(6)]
      .forEach((v) => tr.appendChild(el("td", v)));
    body.appendChild(tr);
  });
  drawChart(r.data, $("usage-metric").value);
}

// ---- tool confirmations ---------------------------------------------------

async function loadTools() {
  const r = await api("/v1/tools/pending");
  const body = $("tools-rows");
  clear(body);
  if (!r.data.length) {
    const tr = el("tr");
    const td = el("td", "no held calls", "hint");
    td.colSpan = 6;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  r.data.forEach((p) => {
    const tr = el("tr");
    const fn = (p.tool_call && p.tool_call.function) || {};
    tr.appendChild(el("td", p.tenant));
    tr.appendChild(el("td", fn.name));
    tr.appendChild(el("td", scalar(fn.arguments), "mono args"));
    tr.appendChild(el("td", (p.reasons || []).join(", ")));
    tr.appendChild(el("td", p.request_id, "mono"));
    const td = el("td");
    const yes = el("button", "Approve", "approve");
    const no = el("button", "Deny", "deny danger");
    yes.type = no.type = "button";
    yes.addEventListener("click", () => decide(p.confirmation_id, true));
    no.addEventListener("click", () => decide(p.confirmation_id, false));
    td.appendChild(yes);
    td.appendChild(no);
    tr.appendChild(td);
    body.appendChild(tr);
  });
}

async function decide(id, approve) {
  const r = await api("/v1/tools/confirm", {
    method: "POST",
    body: JSON.stringify({ confirmation_id: id, approve }),
  });
  status((approve ? "approved: " : "denied: ") + scalar(r.status));
  await loadTools();
}

// ---- keys -----------------------------------------------------------------

function when(ms) {
  return ms === null || ms === undefined ? "never" : new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

function roles(k) {
  return ["admin", "approver", "executor"].filter((r) => k[r]).join(", ");
}

function showSecret(secret) {
  $("key-secret").textContent = secret;
  $("key-secret-box").hidden = false;
}

async function copySecret() {
  const text = $("key-secret").textContent;
  try {
    await navigator.clipboard.writeText(text);
    status("key copied");
  } catch (_) {
    // No clipboard permission: select it for a manual copy.
    const range = document.createRange();
    range.selectNodeContents($("key-secret"));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    status("select-and-copy: the key is highlighted");
  }
}

function hideSecret() {
  $("key-secret").textContent = "";
  $("key-secret-box").hidden = true;
}

function keyButton(label, cls, action) {
  const b = el("button", label, cls);
  b.type = "button";
  b.addEventListener("click", () => action().catch((e) => status(e.message, true)));
  return b;
}

async function loadKeys() {
  const r = await api("/admin/keys");
  const body = $("keys-rows");
  clear(body);
  (r.config_keys || []).forEach((k) => {
    const tr = el("tr");
    [["config", ""], [k.tenant, ""], [k.name, "key-name"], ["active", ""], [roles(k), ""], ["all", ""], ["never", ""], ["[limits.keys]", "hint"], ["", "mono"]]
      .forEach(([v, c]) => tr.appendChild(el("td", v, c)));
    tr.appendChild(el("td", "edit the config file", "hint"));
    body.appendChild(tr);
  });
  (r.keys || []).forEach((k) => {
    const tr = el("tr");
    tr.dataset.id = k.id;
    tr.appendChild(el("td", "runtime"));
    tr.appendChild(el("td", k.tenant));
    tr.appendChild(el("td", k.name, "key-name"));
    const overlap = k.previous_secret_valid_until_ms ? " (old secret until " + when(k.previous_secret_valid_until_ms) + ")" : "";
    tr.appendChild(el("td", k.status + overlap, "key-status"));
    tr.appendChild(el("td", roles(k)));
    tr.appendChild(el("td", k.models ? k.models.join(", ") : "all"));
    tr.appendChild(el("td", when(k.expires_at_ms)));
    tr.appendChild(el("td", budgetText(k), "key-budget"));
    tr.appendChild(el("td", k.id, "mono"));
    const td = el("td");
    if (k.status !== "revoked") {
      td.appendChild(keyButton("Rotate", "rotate", () => rotateKey(k)));
      td.appendChild(keyButton("Edit", "edit", () => editKey(k)));
      td.appendChild(keyButton("Revoke", "revoke danger", () => revokeKey(k)));
    }
    tr.appendChild(td);
    body.appendChild(tr);
  });
  $("keys-note").textContent = r.runtime_enabled
    ? "Runtime keys take effect on every replica within auth.runtime.refresh_ms."
    : "Runtime keys are off ([auth.runtime] enabled = true and ledger.url): only config keys are listed.";
  $("key-form").hidden = !r.runtime_enabled;
}

// A key's budget as one line: spend against each cap this period, then its
// rates ("$1.20 / $5.00 monthly · 600 rpm"); "none" when it has none.
function budgetText(k) {
  const b = k.budget || {};
  const s = k.spend || {};
  const parts = [];
  if (b.max_budget_usd !== null && b.max_budget_usd !== undefined) {
    parts.push("$" + Number(s.spent_usd || 0).toFixed(2) + " / $" + Number(b.max_budget_usd).toFixed(2));
  }
  if (b.max_tokens !== null && b.max_tokens !== undefined) {
    parts.push(Number(s.spent_tokens || 0) + " / " + b.max_tokens + " tokens");
  }
  if (parts.length) parts.push(b.budget_period || "monthly");
  const out = [parts.join(" ")].filter((p) => p);
  if (b.requests_per_minute) out.push(b.requests_per_minute + " rpm");
  if (b.tokens_per_minute) out.push(b.tokens_per_minute + " tpm");
  return out.length ? out.join(" · ") : "none";
}

// A number field for a budget: absent when empty; an error when it is not a
// finite number (JSON would turn NaN into null, which clears the budget).
function budgetNumber(text, what) {
  const t = String(text).trim();
  if (t === "") return undefined;
  const n = Number(t);
  if (!Number.isFinite(n)) throw new Error(what + " must be a number");
  return n;
}

function modelList(text) {
  const models = text.split(",").map((m) => m.trim()).filter((m) => m);
  return models.length ? models : null;
}

async function createKey(ev) {
  ev.preventDefault();
  const req = {
    tenant: $("key-tenant").value.trim(),
    name: $("key-name").value.trim(),
    models: modelList($("key-models").value),
    admin: $("key-admin").checked,
    approver: $("key-approver").checked,
  };
  const days = Number($("key-days").value);
  if (days > 0) req.expires_in_s = Math.round(days * 86400);
  const budget = {
    max_budget_usd: budgetNumber($("key-budget-usd").value, "the dollar budget"),
    max_tokens: budgetNumber($("key-budget-tokens").value, "the token budget"),
    requests_per_minute: budgetNumber($("key-rpm").value, "RPM"),
    tokens_per_minute: budgetNumber($("key-tpm").value, "TPM"),
  };
  Object.entries(budget).forEach(([f, v]) => { if (v !== undefined) req[f] = v; });
  if (budget.max_budget_usd !== undefined || budget.max_tokens !== undefined) {
    req.budget_period = $("key-period").value;
  }
  const r = await api("/admin/keys", { method: "POST", body: JSON.stringify(req) });
  $("key-form").reset();
  showSecret(r.key);
  status("created " + r.name + " (" + r.tenant + ")");
  await loadKeys();
}

async function rotateKey(k) {
  const overlap = window.prompt("Keep the old secret working for how many seconds? (0: none, at most 604800)", "3600");
  if (overlap === null) return;
  const r = await api("/admin/keys/" + encodeURIComponent(k.id) + "/rotate", {
    method: "POST",
    body: JSON.stringify({ overlap_s: Number(overlap) || 0 }),
  });
  showSecret(r.key);
  status("rotated " + r.name);
  await loadKeys();
}

async function revokeKey(k) {
  if (!window.confirm("Revoke the key " + k.name + " of " + k.tenant + "? It stops working on every replica.")) return;
  await api("/admin/keys/" + encodeURIComponent(k.id) + "/revoke", { method: "POST", body: "{}" });
  status("revoked " + k.name);
  await loadKeys();
}

async function editKey(k) {
  const models = window.prompt("Models this key may call (comma-separated; empty: all)", k.models ? k.models.join(", ") : "");
  if (models === null) return;
  const days = window.prompt("Expires in how many days? (empty: never)", "");
  if (days === null) return;
  const b = k.budget || {};
  const usd = window.prompt("Dollar budget per " + (b.budget_period || "monthly") + " period (empty: no cap; spend so far is kept)",
    b.max_budget_usd === null || b.max_budget_usd === undefined ? "" : String(b.max_budget_usd));
  if (usd === null) return;
  const tokens = window.prompt("Token budget per period (empty: no cap)",
    b.max_tokens === null || b.max_tokens === undefined ? "" : String(b.max_tokens));
  if (tokens === null) return;
  const req = { models: modelList(models) };
  if (Number(days) > 0) req.expires_in_s = Math.round(Number(days) * 86400);
  else req.expires_at_ms = null;
  const dollars = budgetNumber(usd, "the dollar budget");
  const count = budgetNumber(tokens, "the token budget");
  req.max_budget_usd = dollars === undefined ? null : dollars;
  req.max_tokens = count === undefined ? null : count;
  await api("/admin/keys/" + encodeURIComponent(k.id), { method: "PATCH", body: JSON.stringify(req) });
  status("updated " + k.name);
  await loadKeys();
}

// ---- routes ---------------------------------------------------------------

function deploymentText(d) {
  const s = d.state || {};
  return [d.backend, "weight " + d.weight, s.healthy ? "healthy" : "unhealthy", "breaker " + s.breaker,
    s.outstanding + " in flight", Number(s.ewma_ms || 0).toFixed(1) + " ms"].join(" · ");
}

async function loadRoutes() {
  const r = await api("/admin/routes");
  const body = $("routes-rows");
  clear(body);
  r.routes.forEach((route) => {
    const tr = el("tr");
    tr.appendChild(el("td", route.model, "mono route-model"));
    tr.appendChild(el("td", (route.aliases || []).join(", ")));
    tr.appendChild(el("td", route.upstream_model || "(as requested)", "mono"));
    const deps = el("td");
    route.deployments.forEach((d) => deps.appendChild(el("div", deploymentText(d), d.state && d.state.healthy ? "deployment" : "deployment error")));
    tr.appendChild(deps);
    tr.appendChild(el("td", route.max_attempts));
    const byClass = route.fallbacks.by_class || {};
    const chains = Object.keys(byClass).filter((c) => byClass[c].length).map((c) => c + ": " + byClass[c].join(" → "));
    if ((route.fallbacks.default || []).length) chains.unshift(route.fallbacks.default.join(" → "));
    tr.appendChild(el("td", chains.join("; ") || "none"));
    body.appendChild(tr);
  });
  const view = $("routes-backends");
  clear(view);
  view.appendChild(renderValue(r.backends));
}

// ---- navigation, login ----------------------------------------------------

const PAGES = {
  policy: loadPolicy,
  audit: () => loadAudit(false),
  usage: loadUsage,
  quotas: () => showJson("/admin/quotas", "quotas-view"),
  tools: loadTools,
  keys: loadKeys,
  routes: loadRoutes,
  limits: () => showJson("/admin/limits", "limits-view"),
  fleet: () => showJson("/admin/fleet", "fleet-view"),
  anomaly: () => showJson("/admin/anomaly", "anomaly-view"),
  hunt: () => showJson("/admin/hunt", "hunt-view"),
};

async function show(page) {
  if (page !== "keys") hideSecret();
  document.querySelectorAll(".page").forEach((s) => { s.hidden = s.id !== "page-" + page; });
  document.querySelectorAll("#nav button").forEach((b) => {
    if (b.dataset.page === page) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  });
  status("");
  try {
    await PAGES[page]();
    document.body.dataset.loaded = page;
  } catch (e) {
    status(e.message, true);
    document.body.dataset.loaded = page + ":error";
  }
}

function showLogin() {
  csrf = "";
  $("app").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("who").textContent = "";
}

function showApp(session) {
  csrf = session.csrf_token;
  $("who").textContent = session.key_name + " (" + session.tenant + ")";
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  show("policy");
}

async function login(ev) {
  ev.preventDefault();
  $("login-error").textContent = "";
  const resp = await fetch("/admin/ui/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ key: $("login-key").value }),
  });
  const body = await resp.json().catch(() => null);
  $("login-key").value = "";
  if (!resp.ok) {
    $("login-error").textContent = body && body.error ? body.error.message : "login failed";
    return;
  }
  showApp(body);
}

async function logout() {
  try { await api("/admin/ui/logout", { method: "POST", body: "{}" }); } catch (_) { /* shown below */ }
  showLogin();
  document.body.dataset.loaded = "logged-out";
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  document.querySelectorAll("#nav button").forEach((b) => b.addEventListener("click", () => show(b.dataset.page)));
  $("diff-run").addEventListener("click", () => runDiff().catch((e) => status(e.message, true)));
  $("rollback").addEventListener("click", () => rollback().catch((e) => status(e.message, true)));
  $("audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); show("audit"); });
  $("audit-more").addEventListener("click", () => loadAudit(true).catch((e) => status(e.message, true)));
  $("usage-run").addEventListener("click", () => show("usage"));
  $("key-form").addEventListener("submit", (ev) => createKey(ev).catch((e) => status(e.message, true)));
  $("key-copy").addEventListener("click", copySecret);
  $("key-secret-done").addEventListener("click", hideSecret);
  const resp = await fetch("/admin/ui/session", { credentials: "same-origin" });
  if (resp.ok) showApp(await resp.json());
  else showLogin();
  document.body.dataset.ready = "1";
});
