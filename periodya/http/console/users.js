// Periodya ops console: the Users page (GET /api/admin/users; POST /api/admin/users/{id}/..., /api/admin/login-throttle/unlock).
// Loaded after app.js, whose helpers (el, api, tag, when, ago, toast, confirmAction, canAct, render) it uses.
// Every change asks for a reason in a confirmation naming the user; viewers see the list and no buttons.
"use strict";

const USER_ACTIONS = {
  disable: { label: "Disable", danger: true, effect: "Every session of theirs ends at once and they cannot sign in until re-enabled." },
  enable: { label: "Enable", effect: "They can sign in again (their old sessions stay ended)." },
  "make-viewer": { label: "Make viewer", path: "role", role: "ops_viewer", danger: true,
    effect: "Their role becomes ops_viewer (read-only) from their next request." },
  "make-admin": { label: "Make admin", path: "role", role: "platform_admin",
    effect: "Their role becomes platform_admin (every ops action) from their next request." },
  "reset-password": { label: "Reset password", danger: true,
    effect: "A one-time password is generated and shown once here; every session of theirs ends." },
};

function userFacts(u) {
  return [["email", u.email], ["user id", u.userId], ["roles", u.roles.join(", ") || "—"],
    ["state", u.disabled ? "DISABLED" : "active"], ["last login", u.lastLoginAt || "never"],
    ["live sessions", String(u.liveSessions)]];
}

async function userAction(action, u, after) {
  const spec = USER_ACTIONS[action];
  const answer = await confirmAction({
    title: `${spec.label}: admin user ${u.email}?`,
    text: `${spec.label} admin user ${u.email}. ${spec.effect}`,
    facts: userFacts(u), reason: true, okLabel: spec.label,
  });
  if (!answer) return;
  const body = { reason: answer.reason };
  if (spec.role) body.role = spec.role;
  try {
    const out = await api("POST", `/api/admin/users/${encodeURIComponent(u.userId)}/${spec.path || action}`, body);
    const now = out.user;
    toast(out.changed ? `${spec.label}: ${now.email} is ${now.disabled ? "DISABLED" : "active"} (${now.roles.join(", ")}); `
      + `${out.sessionsRevoked} session(s) ended` : `${now.email}: nothing to change`);
    if (out.generatedPassword) state.oneTime = { email: now.email, password: out.generatedPassword };
  } catch (e) { toast(`${spec.label} refused: ${e.message}`, true); }
  await after();
}

function userButtons(u, after) {
  if (!canAct()) return [];
  const admin = u.roles.includes("platform_admin");
  const self = u.email === state.me.email;  // the API refuses disabling or demoting oneself (409): no button
  const names = [...(self ? [] : [u.disabled ? "enable" : "disable", admin ? "make-viewer" : "make-admin"]),
    "reset-password"];
  return names.map((name) => el("button", { class: `small ${USER_ACTIONS[name].danger ? "danger" : ""}`, type: "button",
    "data-user-action": name, onclick: () => userAction(name, u, after) }, USER_ACTIONS[name].label));
}

function unlockForm(after) {
  const form = el("form", { class: "filters panel", id: "unlock-form" },
    el("h3", {}, "Unlock a login throttle"),
    el("label", {}, "Email", el("input", { name: "email", type: "email", size: 26 })),
    el("label", {}, "and/or client address", el("input", { name: "address", size: 20, placeholder: "203.0.113.7" })),
    el("button", { type: "submit" }, "Unlock…"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const email = String(data.get("email") || "").trim(), address = String(data.get("address") || "").trim();
    if (!email && !address) { toast("Give an email, an address, or both.", true); return; }
    const what = [email, address].filter(Boolean).join(" from ");
    const answer = await confirmAction({
      title: `Unlock the login throttle of ${what}?`,
      text: `Clears the failed sign-ins of ${what}, so sign-in is allowed again at once.`,
      facts: [["email", email || "any"], ["address", address || "any"]], reason: true, okLabel: "Unlock",
    });
    if (!answer) return;
    const body = { reason: answer.reason };
    if (email) body.email = email;
    if (address) body.address = address;
    try {
      const out = await api("POST", "/api/admin/login-throttle/unlock", body);
      toast(`Unlocked ${what}: cleared ${out.cleared} failed sign-in(s)`);
    } catch (e) { toast(`Unlock refused: ${e.message}`, true); }
    await after();
  });
  return form;
}

async function pageUsers(main) {
  const { users } = await api("GET", "/api/admin/users");
  const refresh = render;
  const rows = users.map((u) => el("tr", { "data-user": u.email, class: u.disabled ? "bad" : "" },
    el("td", { class: "mono" }, u.email),
    el("td", {}, u.roles.map((r) => tag(r, r === "platform_admin" ? "" : "warn"))),
    el("td", {}, u.disabled ? tag("DISABLED", "bad") : tag("active", "ok")),
    el("td", {}, when(u.lastLoginAt)), el("td", {}, u.lastSeenAt ? ago(u.lastSeenAt) : "never"),
    el("td", { class: "num" }, u.liveSessions), el("td", {}, when(u.createdAt)),
    el("td", {}, el("div", { class: "actions" }, userButtons(u, refresh)))));
  const oneTime = state.oneTime;
  state.oneTime = null;  // shown once: gone on the next render
  main.replaceChildren(...[
    el("h1", {}, "Users"),
    oneTime ? el("div", { class: "banner warn", id: "one-time-password" },
      `One-time password for ${oneTime.email} (shown only now; hand it over securely): `,
      el("code", { id: "one-time-value" }, oneTime.password)) : null,
    table(["email", "roles", "state", "last login", "last seen", { label: "sessions", num: true }, "created", "actions"],
      rows, { id: "users" }),
    canAct() ? unlockForm(refresh) : null,
    el("p", { class: "muted" }, "An admin cannot disable or demote themselves or the last active platform_admin; "
      + "every change is recorded in the log with you as the actor and your reason."),
  ].filter(Boolean));  // replaceChildren would show a null as the text "null"
}
