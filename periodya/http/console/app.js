// Periodya ops console: a small single-page app over the public HTTP API (/api/admin/**).
// Authenticated by the HttpOnly session cookie set at /ops/session; every state-changing call echoes the
// CSRF token (cookie periodya_csrf) in X-CSRF-Token. Text from the API is only ever set as textContent.
"use strict";

const REFRESH_MS = 5000;
const state = { me: null, timer: null, gen: 0 };

// ---- the runbook (shared/runbook.md, sections 2 and 3), as the console shows it ----------------------
const CHECKS = [
  { field: "payoutOutboxPending", expect: "fluctuates with volume; must not climb continuously",
    bad: (h) => h.payoutOutboxPending > 0 && h.maxOutboxAgeMinutes > h.thresholds.sendingStuckMinutes,
    step: "Pending work is older than the SENDING threshold: run the outbox job now (Jobs) and check the scheduler runs it." },
  { field: "maxOutboxAgeMinutes", expect: (h) => `≤ ${h.thresholds.sendingStuckMinutes} min (SENDING threshold)`,
    bad: (h) => h.maxOutboxAgeMinutes > h.thresholds.sendingStuckMinutes,
    step: "See payoutOutboxPending and payoutOutboxSendingStuck." },
  { field: "payoutOutboxSendingStuck", expect: "0", bad: (h) => h.payoutOutboxSendingStuck > 0,
    step: "Outbox stuck SENDING: run Stuck Repair (self-heals); if it persists, Rerun outbox for each payout below." },
  { field: "providerPayoutSentStuck10m", expect: "0", bad: (h) => h.providerPayoutSentStuck10m > 0,
    step: "SENT stuck without webhook: run Reconcile pull (self-heals); if it persists, Force reconcile each payout below." },
  { field: "integrityAlertsCriticalOpen", expect: "0", bad: (h) => h.integrityAlertsCriticalOpen > 0,
    step: "Open Incidents: FINALIZE_MISSING → Force finalize, then ack and resolve; LEDGER_UNBALANCED → do not repair, escalate." },
];

const PLAYBOOKS = {
  FINALIZE_MISSING: { title: "FINALIZE_MISSING: paid at the provider, ledger not finalized",
    steps: ["Health names the impacted providerPayoutIds.", "Force finalize each one (asks the provider now).",
            "Acknowledge and resolve the alert with a note."], action: "force-finalize" },
  OUTBOX_STUCK: { title: "Outbox stuck SENDING: crashed between sending and the provider's answer",
    steps: ["Usually self-healed by the Stuck Repair job (Jobs → repair).",
            "If it persists, Rerun outbox for the payout (same idempotency key: the provider replays, never pays twice).",
            "The sentinel resolves the alert once the payout moves on."], action: "rerun-outbox" },
  SENT_STUCK: { title: "SENT stuck without webhook: the provider never delivered it, or its signature failed",
    steps: ["Self-heals via the Reconcile pull job (Jobs → reconcile-pull).", "Force reconcile the payout if needed."],
    action: "force-reconcile" },
  LEDGER_UNBALANCED: { title: "LEDGER_UNBALANCED: double-entry integrity breached",
    steps: ["Isolate the exact ledger group (details below).", "Verify all references. DO NOT attempt automated repair.",
            "Notify Senior Engineering directly; resolve only after they have."], action: null },
};
const DEFAULT_PLAYBOOK = { title: "", steps: ["Follow the alert's remedy; acknowledge while working, resolve when done."],
  action: null };

const ACTIONS = {
  "rerun-outbox": { label: "Rerun outbox", reason: false, effect: "Requeues the outbox task; it is sent again with the same idempotency key (the provider replays, never pays twice)." },
  "force-reconcile": { label: "Force reconcile", reason: false, effect: "Asks the provider for the payout's state now and applies it." },
  "force-finalize": { label: "Force finalize", reason: false, effect: "Asks the provider now; if it paid, finalizes the ledger (money leaves the platform's cash)." },
  "quarantine": { label: "Quarantine", reason: true, effect: "Stops the payout: status QUARANTINED, its outbox task fails indefinitely." },
  "cancel": { label: "Cancel", reason: true, effect: "Cancels a quarantined payout and returns the funds to the payee (refused unless the provider definitely holds none)." },
};

// ---- helpers ------------------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const $ = (id) => document.getElementById(id);
const EXPONENTS = { JPY: 0, KRW: 0, VND: 0, CLP: 0, ISK: 0, UGX: 0, XAF: 0, XOF: 0, BHD: 3, KWD: 3, OMR: 3, JOD: 3, TND: 3 };
function money(amount, currency) {
  if (amount === null || amount === undefined) return "—";
  const places = EXPONENTS[currency] ?? 2;
  const sign = amount < 0 ? "-" : "";
  const abs = Math.abs(amount);
  if (places === 0) return `${sign}${abs} ${currency}`;
  const s = String(abs).padStart(places + 1, "0");
  return `${sign}${s.slice(0, -places)}.${s.slice(-places)} ${currency}`;
}
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)}s ago`;
  if (s < 5400) return `${Math.round(s / 60)}m ago`;
  if (s < 172800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}
function when(iso) { return iso ? el("span", { class: "nowrap", title: iso }, iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "Z")) : "—"; }
function tag(text, kind) { return el("span", { class: `tag ${kind || ""}` }, text); }
function statusTag(s) {
  const kind = { FINALIZED: "ok", CANCELLED: "", QUARANTINED: "bad", FAILED: "bad", SENDING: "warn", SENT: "warn" }[s];
  return tag(s || "—", kind);
}
function table(headers, rows, opts = {}) {
  return el("div", { class: "table-wrap" }, el("table", { id: opts.id },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : "" }, h.label ?? h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: headers.length, class: "muted" },
      opts.empty || "none")))));
}
function csrf() {
  const m = document.cookie.split("; ").find((c) => c.startsWith("periodya_csrf="));
  return m ? decodeURIComponent(m.slice("periodya_csrf=".length)) : "";
}
class ApiError extends Error {
  constructor(status, body) {
    super(body && body.detail ? `${status} ${body.code || ""}: ${body.detail}` : `HTTP ${status}`);
    this.status = status; this.body = body;
  }
}
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (r.status === 401) { showLogin("Your session ended: sign in again."); throw new ApiError(401, data); }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}
function toast(text, bad) {
  const t = $("toast");
  t.textContent = text; t.className = bad ? "bad" : ""; t.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 9000 : 4000);
}
const canAct = () => !!(state.me && state.me.platformAdmin);

// ---- confirmation dialog --------------------------------------------------------------------------------
function confirmAction({ title, text, facts, reason, okLabel }) {
  const dlg = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  const dl = $("confirm-facts"); dl.replaceChildren();
  for (const [k, v] of facts) dl.append(el("dt", {}, k), el("dd", {}, v ?? "—"));
  $("confirm-reason-label").hidden = !reason;
  $("confirm-reason-label").firstChild.textContent = reason === "note" ? "Note (optional) " : "Reason (required) ";
  $("confirm-reason").value = "";
  $("confirm-error").textContent = "";
  $("confirm-ok").textContent = okLabel || "Confirm";
  dlg.showModal();
  return new Promise((resolve) => {
    const done = (value) => { cleanup(); dlg.close(); resolve(value); };
    const onSubmit = (ev) => {
      ev.preventDefault();
      const value = $("confirm-reason").value.trim();
      if (reason === true && !value) { $("confirm-error").textContent = "A reason is required."; return; }
      done({ reason: value });
    };
    const onBack = () => done(null);
    const onCancel = (ev) => { ev.preventDefault(); done(null); };
    const cleanup = () => {
      $("confirm-form").removeEventListener("submit", onSubmit);
      $("confirm-cancel").removeEventListener("click", onBack);
      dlg.removeEventListener("cancel", onCancel);
    };
    $("confirm-form").addEventListener("submit", onSubmit);
    $("confirm-cancel").addEventListener("click", onBack);
    dlg.addEventListener("cancel", onCancel);
  });
}

async function payoutAction(action, id, after) {
  const spec = ACTIONS[action];
  let p;
  try { p = (await api("GET", `/api/admin/payouts/${encodeURIComponent(id)}`)).payout; }
  catch (e) { toast(`Cannot read payout ${id}: ${e.message}`, true); return; }
  const answer = await confirmAction({
    title: `${spec.label} payout ${p.payoutId}?`,
    text: `${spec.label} payout ${p.payoutId} of ${money(p.amount, p.currency)} to ${p.payeeId}. ${spec.effect}`,
    facts: [["payout", p.payoutId], ["provider id", p.providerPayoutId], ["payee", p.payeeId],
            ["amount", money(p.amount, p.currency)], ["status", p.status], ["outbox", p.outbox && p.outbox.status]],
    reason: spec.reason, okLabel: spec.label,
  });
  if (!answer) return;
  try {
    const body = spec.reason ? { reason: answer.reason } : undefined;
    const out = await api("POST", `/api/admin/ops/payouts/${encodeURIComponent(p.payoutId)}/${action}`, body);
    toast(`${spec.label}: payout ${out.payoutId} is now ${out.status}`);
  } catch (e) { toast(`${spec.label} refused: ${e.message}`, true); }
  if (after) await after();
}

function actionButton(action, id, after, extra) {
  if (!canAct()) return null;
  return el("button", { class: `small ${action === "quarantine" || action === "cancel" ? "danger" : ""}`,
    type: "button", "data-action": action, "data-payout": id,
    onclick: () => payoutAction(action, id, after) }, extra || ACTIONS[action].label);
}

// ---- pages ----------------------------------------------------------------------------------------------
async function pageHealth(main) {
  const [h, jobs] = await Promise.all([api("GET", "/api/admin/ops/health"), api("GET", "/api/admin/jobs")]);
  const rows = CHECKS.map((c) => {
    const bad = c.bad(h);
    return el("tr", { class: bad ? "bad" : "ok", "data-field": c.field, "data-state": bad ? "red" : "green" },
      el("td", { class: "mono" }, c.field), el("td", { class: "num mono" }, String(h[c.field])),
      el("td", {}, typeof c.expect === "function" ? c.expect(h) : c.expect),
      el("td", {}, el("span", { class: `state ${bad ? "bad" : "ok"}` }, bad ? "ATTENTION" : "OK")),
      el("td", { class: "muted" }, bad ? c.step : ""));
  });
  const anyBad = CHECKS.some((c) => c.bad(h));
  const kind = h.status === "critical" || anyBad ? "bad" : h.status !== "ok" ? "warn" : "ok";
  const refresh = render;
  const named = [
    ...(h.sendingStuck || []).map((s) => el("tr", {}, el("td", {}, tag("SENDING", "warn")),
      el("td", { class: "mono" }, s.payoutId), el("td", { class: "mono" }, s.providerPayoutId || "—"), el("td", {}, when(s.since)),
      el("td", {}, el("div", { class: "actions" }, actionButton("rerun-outbox", s.payoutId, refresh))))),
    ...(h.sentStuck || []).map((s) => el("tr", {}, el("td", {}, tag("SENT", "warn")),
      el("td", { class: "mono" }, s.payoutId), el("td", { class: "mono" }, s.providerPayoutId || "—"), el("td", {}, when(s.since)),
      el("td", {}, el("div", { class: "actions" }, actionButton("force-reconcile", s.providerPayoutId || s.payoutId, refresh))))),
    ...(h.finalizeMissing || []).map((s) => el("tr", {}, el("td", {}, tag("FINALIZE_MISSING", "bad")),
      el("td", { class: "mono" }, s.payoutId), el("td", { class: "mono" }, s.providerPayoutId || "—"), el("td", {}, when(s.since)),
      el("td", {}, el("div", { class: "actions" }, actionButton("force-finalize", s.providerPayoutId || s.payoutId, refresh))))),
  ];
  const jobRows = jobs.jobs.map((j) => el("tr", { class: j.overdue ? "bad" : "" },
    el("td", { class: "mono" }, j.job + (j.mode ? `:${j.mode}` : "")), el("td", { class: "mono" }, j.cron),
    el("td", {}, when(j.lastRunAt), " ", el("span", { class: "muted" }, j.lastRunAt ? `(${ago(j.lastRunAt)})` : "")),
    el("td", {}, j.ok === null || j.ok === undefined ? "—" : j.ok ? tag("ok", "ok") : tag("failed", "bad")),
    el("td", { class: "num" }, j.processed ?? "—"),
    el("td", {}, j.overdue ? tag("OVERDUE", "bad") : tag("on time", "ok"))));
  main.replaceChildren(
    el("div", { class: "row" }, el("h1", {}, "Health pulse"), el("span", { class: "spacer" }),
      el("span", { class: "muted", id: "checked-at" }, `checked ${h.checkedAt} · refreshes every ${REFRESH_MS / 1000}s`)),
    el("div", { class: `banner ${kind}`, id: "health-banner", "data-status": h.status },
      `status: ${h.status}`, anyBad ? " — a runbook check needs attention" : " — every runbook check as expected",
      ` · open alerts ${h.alertsOpen ?? "?"} · webhooks pending ${h.webhooksPending ?? "?"}`),
    table(["runbook field", { label: "value", num: true }, "expected", "state", "runbook step"], rows, { id: "checks" }),
    el("h2", {}, "Payouts health names"),
    table(["symptom", "payout", "provider id", "since", "action"], named,
      { id: "named", empty: "none: nothing stuck, nothing unfinalized" }),
    el("h2", {}, "Jobs ", jobs.overdue ? tag(`${jobs.overdue} overdue`, "bad") : tag("none overdue", "ok")),
    table(["job", "cron", "last run", "result", { label: "processed", num: true }, "overdue"], jobRows, { id: "health-jobs" }),
  );
}

function details(obj) {
  if (!obj || typeof obj !== "object") return obj ? String(obj) : "";
  return el("div", { class: "kv" }, Object.entries(obj).map(([k, v]) => el("span", {}, el("span", { class: "muted" }, `${k} `),
    el("code", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)))));
}

function playbookFor(code) { return PLAYBOOKS[code] || { ...DEFAULT_PLAYBOOK, title: code }; }

async function alertAction(kind, alert, after) {
  const answer = await confirmAction({
    title: `${kind === "ack" ? "Acknowledge" : "Resolve"} alert ${alert.code}?`,
    text: `${kind === "ack" ? "Acknowledge" : "Resolve"} ${alert.severity} alert ${alert.alertId} on ${alert.subject}.`,
    facts: [["alert", alert.alertId], ["code", alert.code], ["subject", alert.subject], ["raised", alert.raisedAt]],
    reason: "note", okLabel: kind === "ack" ? "Acknowledge" : "Resolve",
  });
  if (!answer) return;
  try {
    const out = await api("POST", `/api/admin/ops/alerts/${encodeURIComponent(alert.alertId)}/${kind}`,
      answer.reason ? { note: answer.reason } : {});
    toast(`alert ${out.alertId} is now ${out.status}`);
  } catch (e) { toast(`refused: ${e.message}`, true); }
  await after();
}

async function pageIncidents(main) {
  const { alerts } = await api("GET", "/api/admin/ops/alerts");
  const open = alerts.filter((a) => a.status !== "RESOLVED");
  const resolved = alerts.filter((a) => a.status === "RESOLVED").slice(0, 20);
  const groups = new Map();
  for (const a of open) { if (!groups.has(a.code)) groups.set(a.code, []); groups.get(a.code).push(a); }
  const refresh = render;
  const sections = [...groups.entries()].map(([code, list]) => {
    const pb = playbookFor(code);
    const rows = list.flatMap((a) => {
      const payout = a.details && (a.details.providerPayoutId || a.details.payoutId) || (a.subject && a.subject.startsWith("pay") ? a.subject : null);
      return [el("tr", { "data-alert": a.alertId },
        el("td", { class: "mono" }, a.alertId), el("td", {}, tag(a.severity, /crit/i.test(a.severity) ? "bad" : "warn")),
        el("td", {}, tag(a.status, a.status === "OPEN" ? "bad" : "warn"),
          a.ackedBy ? el("div", { class: "muted small" }, `by ${a.ackedBy}`) : null),
        el("td", { class: "mono" }, a.subject), el("td", {}, when(a.raisedAt)),
        el("td", {}, el("div", { class: "actions" },
          pb.action && payout ? actionButton(pb.action, payout, refresh) : null,
          canAct() && a.status === "OPEN" ? el("button", { class: "small ghost", type: "button", "data-alert-action": "ack",
            onclick: () => alertAction("ack", a, refresh) }, "Ack") : null,
          canAct() ? el("button", { class: "small", type: "button", "data-alert-action": "resolve",
            onclick: () => alertAction("resolve", a, refresh) }, "Resolve") : null))),
        el("tr", { class: "sub" }, el("td", { colspan: 6 },
          el("div", { class: "muted" }, a.remedy || ""), details(a.details),
          a.note ? el("div", {}, el("b", {}, "note: "), a.note) : null))];
    });
    return el("section", { class: "panel", "data-code": code },
      el("div", { class: "row" }, el("h2", {}, code), tag(`${list.length} open`, "bad")),
      el("div", { class: "playbook" }, el("h3", {}, pb.title), el("ol", {}, pb.steps.map((s) => el("li", {}, s)))),
      table(["alert", "severity", "status", "subject", "raised", "actions"], rows));
  });
  main.replaceChildren(
    el("h1", {}, "Incidents"),
    open.length ? el("div", { class: "banner bad" }, `${open.length} open alert(s) in ${groups.size} incident(s)`)
      : el("div", { class: "banner ok", id: "no-incidents" }, "No open alerts."),
    ...sections,
    el("h2", {}, "Recently resolved"),
    table(["alert", "code", "subject", "resolved", "by", "note"], resolved.map((a) => el("tr", {},
      el("td", { class: "mono" }, a.alertId), el("td", { class: "mono" }, a.code), el("td", { class: "mono" }, a.subject),
      el("td", {}, when(a.resolvedAt)), el("td", {}, a.resolvedBy || "—"), el("td", {}, a.note || ""))), { id: "resolved" }),
  );
}

function payoutRows(list) {
  return list.map((p) => el("tr", { class: "link", "data-payout": p.payoutId,
    onclick: () => { location.hash = `#/payouts/${encodeURIComponent(p.payoutId)}`; } },
    el("td", { class: "mono" }, p.payoutId), el("td", { class: "mono" }, p.payeeId),
    el("td", { class: "num mono" }, money(p.amount, p.currency)), el("td", {}, statusTag(p.status)),
    el("td", {}, p.outbox ? p.outbox.status : "—"), el("td", { class: "mono" }, p.providerPayoutId || "—"),
    el("td", {}, p.statusChangedAt ? ago(p.statusChangedAt) : "—"), el("td", {}, when(p.createdAt))));
}
const PAYOUT_HEAD = ["payout", "payee", { label: "amount", num: true }, "status", "outbox", "provider id", "in status", "created"];
const STATUSES = ["", "REQUESTED", "SENDING", "SENT", "FINALIZED", "FAILED", "QUARANTINED", "CANCELLED"];

async function pagePayouts(main, params) {
  const q = new URLSearchParams();
  for (const k of ["status", "payeeId", "providerPayoutId", "olderThanMinutes"]) if (params.get(k)) q.set(k, params.get(k));
  if (params.get("cursor")) q.set("cursor", params.get("cursor"));
  const [sending, sent, page] = await Promise.all([
    api("GET", "/api/admin/payouts?stuck=sending&limit=100"), api("GET", "/api/admin/payouts?stuck=sent&limit=100"),
    api("GET", `/api/admin/payouts?${q}`)]);
  const field = (name, label, attrs) => el("label", {}, label, el("input", { name, value: params.get(name) || "", ...attrs }));
  const form = el("form", { class: "filters panel", id: "payout-filters" },
    el("label", {}, "Open payout by id", el("input", { name: "open", placeholder: "pay_… or po_…", size: 26 })),
    el("label", {}, "Status", el("select", { name: "status" }, STATUSES.map((s) =>
      el("option", { value: s, selected: (params.get("status") || "") === s }, s || "any")))),
    field("payeeId", "Payee", { size: 16 }), field("providerPayoutId", "Provider id", { size: 22 }),
    field("olderThanMinutes", "In status ≥ min", { size: 6, inputmode: "decimal" }),
    el("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const open = String(data.get("open") || "").trim();
    if (open) { location.hash = `#/payouts/${encodeURIComponent(open)}`; return; }
    const next = new URLSearchParams();
    for (const [k, v] of data.entries()) if (k !== "open" && String(v).trim()) next.set(k, String(v).trim());
    location.hash = `#/payouts?${next}`;
  });
  const nodes = [el("h1", {}, "Payouts"), form,
    el("h2", {}, "Stuck SENDING ", tag(String(sending.payouts.length), sending.payouts.length ? "bad" : "ok"),
      el("span", { class: "muted" }, " outbox task SENDING past the repair threshold")),
    table(PAYOUT_HEAD, payoutRows(sending.payouts), { id: "stuck-sending" }),
    el("h2", {}, "Stuck SENT ", tag(String(sent.payouts.length), sent.payouts.length ? "bad" : "ok"),
      el("span", { class: "muted" }, " sent to the provider, no outcome past the reconcile threshold")),
    table(PAYOUT_HEAD, payoutRows(sent.payouts), { id: "stuck-sent" }),
    el("h2", {}, q.toString() ? "Search results" : "Newest"),
    table(PAYOUT_HEAD, payoutRows(page.payouts), { id: "payout-list" })];
  if (page.nextCursor) {
    const next = new URLSearchParams(params); next.set("cursor", page.nextCursor);
    nodes.push(el("a", { href: `#/payouts?${next}` }, "Next page →"));
  }
  main.replaceChildren(...nodes);
}

async function pagePayout(main, id) {
  const d = await api("GET", `/api/admin/payouts/${encodeURIComponent(id)}`);
  const p = d.payout, o = p.outbox || {};
  const refresh = render;
  const can = {
    "rerun-outbox": ["SENDING", "REQUESTED", "FAILED"].includes(p.status),
    "force-reconcile": !!p.providerPayoutId && !["FINALIZED", "CANCELLED"].includes(p.status),
    "force-finalize": !!p.providerPayoutId && !p.ledgerFinalized && p.status !== "CANCELLED",
    "quarantine": !["FINALIZED", "CANCELLED", "QUARANTINED"].includes(p.status),
    "cancel": p.status === "QUARANTINED",
  };
  const buttons = canAct() ? Object.keys(ACTIONS).filter((a) => can[a]).map((a) => actionButton(a, p.payoutId, refresh)) : [];
  const facts = [["payout", p.payoutId], ["provider id", p.providerPayoutId], ["payee", p.payeeId],
    ["amount", money(p.amount, p.currency)], ["destination", p.destination], ["status", p.status],
    ["status since", p.statusChangedAt], ["provider status", p.providerStatus], ["ledger finalized", String(p.ledgerFinalized)],
    ["funds returned", String(p.fundsReturned)], ["quarantine reason", p.quarantineReason], ["created", p.createdAt]];
  const outboxFacts = [["outbox status", o.status], ["attempts", o.attempts], ["last error", o.lastError],
    ["next attempt", o.nextAttemptAt], ["updated", o.updatedAt]];
  const dl = (pairs) => el("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "—")]));
  const timeline = d.timeline.map((e) => el("tr", {},
    el("td", { class: "num" }, e.position), el("td", { class: "num" }, e.version), el("td", { class: "mono" }, e.type),
    el("td", {}, when(e.recordedAt)), el("td", { class: "mono" }, e.actor || "—"), el("td", {}, e.reason || ""),
    el("td", { class: "mono muted" }, e.requestId || "")));
  const ledger = d.ledger.flatMap((g) => g.entries.map((e) => el("tr", {},
    el("td", { class: "mono" }, g.groupId), el("td", {}, g.kind), el("td", { class: "mono" }, e.account),
    el("td", { class: "num mono" }, e.debit ? money(e.debit, e.currency) : ""),
    el("td", { class: "num mono" }, e.credit ? money(e.credit, e.currency) : ""))));
  main.replaceChildren(
    el("div", { class: "row" }, el("a", { href: "#/payouts" }, "← Payouts")),
    el("div", { class: "row" }, el("h1", { id: "payout-title" }, `Payout ${p.payoutId}`), statusTag(p.status),
      el("span", { class: "mono" }, money(p.amount, p.currency)), el("span", { class: "spacer" }),
      el("div", { class: "actions", id: "payout-actions" }, buttons)),
    el("div", { class: "grid2" }, el("div", { class: "panel" }, el("h3", {}, "Payout"), dl(facts)),
      el("div", { class: "panel" }, el("h3", {}, "Outbox task and provider"), dl(outboxFacts),
        el("p", { class: "muted" }, "Full audit with the provider's events: ", el("code", {}, d.audit || "")))),
    el("h2", {}, "Timeline"),
    table(["pos", "v", "event", "recorded", "actor", "reason", "request id"], timeline, { id: "timeline" }),
    el("h2", {}, "Ledger"),
    table(["group", "kind", "account", { label: "debit", num: true }, { label: "credit", num: true }], ledger,
      { id: "ledger", empty: "no ledger entries" }),
  );
}

const JOBS = [["outbox", null], ["webhooks", null], ["reconcile-pull", null], ["repair", null],
  ["sentinel", "recent"], ["sentinel", "full"]];
const lastResults = [];

async function pageJobs(main) {
  const jobs = await api("GET", "/api/admin/jobs");
  const refresh = render;
  const run = async (job, mode) => {
    const qs = mode ? `?mode=${mode}` : "";
    try {
      const out = await api("POST", `/api/admin/ops/run/${job}${qs}`);
      lastResults.unshift({ job: job + (mode ? `:${mode}` : ""), at: new Date().toISOString(), out });
      toast(`${job}: processed ${out.processed ?? "?"}, failed ${out.failed ?? "?"}`, !!out.failed);
    } catch (e) { toast(`${job} refused: ${e.message}`, true); }
    await refresh();
  };
  const rows = jobs.jobs.map((j) => el("tr", { class: j.overdue ? "bad" : "", "data-job": j.job + (j.mode ? `:${j.mode}` : "") },
    el("td", { class: "mono" }, j.job + (j.mode ? `:${j.mode}` : "")), el("td", { class: "mono" }, j.cron),
    el("td", { class: "num" }, j.batch ?? "—"), el("td", {}, when(j.lastRunAt)), el("td", {}, j.trigger || "—"),
    el("td", {}, j.ok === null || j.ok === undefined ? "—" : j.ok ? tag("ok", "ok") : tag("failed", "bad")),
    el("td", { class: "num" }, j.processed ?? "—"), el("td", { class: "num" }, j.failed ?? "—"),
    el("td", { class: "num" }, j.durationMs ?? "—"), el("td", {}, j.overdue ? tag("OVERDUE", "bad") : tag("on time", "ok")),
    el("td", { class: "muted" }, j.error || "")));
  main.replaceChildren(
    el("h1", {}, "Jobs"),
    table(["job", "cron", { label: "batch", num: true }, "last run", "trigger", "result", { label: "processed", num: true },
      { label: "failed", num: true }, { label: "ms", num: true }, "overdue", "error"], rows, { id: "jobs" }),
    canAct() ? el("div", { class: "panel" }, el("h3", {}, "Run a job now"), el("div", { class: "actions" },
      JOBS.map(([job, mode]) => el("button", { type: "button", "data-run": job + (mode ? `:${mode}` : ""),
        onclick: () => run(job, mode) }, `Run ${job}${mode ? ` (${mode})` : ""}`)))) : null,
    el("h2", {}, "Results of runs from this page"),
    lastResults.length ? el("div", { id: "run-results" }, lastResults.slice(0, 5).map((r) => el("div", { class: "panel" },
      el("h3", {}, `${r.job} at ${r.at}`), el("pre", { class: "json" }, JSON.stringify(r.out, null, 2)))))
      : el("p", { class: "muted" }, "none yet"),
  );
}

// ---- shell: login, routing, refresh -------------------------------------------------------------------
function showLogin(message) {
  state.me = null; clearInterval(state.timer);
  $("top").hidden = true; $("main").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-email").focus();
}

function showApp() {
  $("login").hidden = true; $("top").hidden = false; $("main").hidden = false;
  $("who-email").textContent = state.me.email;
  $("who-role").textContent = state.me.platformAdmin ? "platform_admin" : "read-only";
  $("who-role").className = `tag ${state.me.platformAdmin ? "" : "warn"}`;
  route();
}

function parseHash() {
  const [path, query] = (location.hash.replace(/^#/, "") || "/health").split("?");
  const parts = path.split("/").filter(Boolean);
  return { page: parts[0] || "health", parts, params: new URLSearchParams(query || "") };
}

// Renders the current route into a detached view and shows it only if no navigation happened meanwhile,
// so a slow answer (or an action's refresh) never paints one page over another.
async function render() {
  if (!state.me) return;
  const gen = ++state.gen;
  const { page, parts, params } = parseHash();
  const view = document.createElement("div");
  try {
    if (page === "incidents") await pageIncidents(view);
    else if (page === "payouts" && parts[1]) await pagePayout(view, decodeURIComponent(parts[1]));
    else if (page === "payouts") await pagePayouts(view, params);
    else if (page === "jobs") await pageJobs(view);
    else if (page === "users") await pageUsers(view);  // users.js
    else await pageHealth(view);
    if (!canAct()) view.prepend(el("div", { class: "banner warn readonly", id: "readonly" },
      "Read-only account: actions are not available (the API refuses them without platform_admin)."));
  } catch (e) {
    if (e.status === 401) return;
    view.replaceChildren(el("div", { class: "banner bad", id: "page-error" }, `Could not load: ${e.message}`));
  }
  if (gen === state.gen && state.me) $("main").replaceChildren(...view.childNodes);
}

async function route() {
  if (!state.me) return;
  clearInterval(state.timer);
  const { page } = parseHash();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  await render();
  if (page === "health") state.timer = setInterval(() => { if (!document.querySelector("dialog[open]")) render(); }, REFRESH_MS);
}

async function start() {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    const r = await fetch("/ops/session", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ email: $("login-email").value, password: $("login-password").value }) });
    const data = await r.json().catch(() => null);
    if (!r.ok) { $("login-error").textContent = (data && data.detail) || `sign-in failed (HTTP ${r.status})`; return; }
    $("login-password").value = "";
    state.me = data; showApp();
  });
  $("logout").addEventListener("click", async () => {
    await fetch("/ops/session/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } });
    showLogin("Signed out.");
  });
  window.addEventListener("hashchange", route);
  const r = await fetch("/ops/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.ok) { state.me = await r.json(); showApp(); } else showLogin();
}

document.addEventListener("DOMContentLoaded", start);
