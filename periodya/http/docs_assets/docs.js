// Renders the operations of /openapi.json. Self-contained: no external scripts, styles or fonts.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function resolve(spec, schema, depth) {
  // Inline #/components/schemas refs (a few levels) so a reader sees the whole shape.
  if (depth > 6 || schema === null || typeof schema !== "object") return schema;
  if (Array.isArray(schema)) return schema.map((s) => resolve(spec, s, depth + 1));
  if (typeof schema.$ref === "string") {
    const name = schema.$ref.split("/").pop();
    return resolve(spec, spec.components.schemas[name], depth + 1);
  }
  const out = {};
  for (const [k, v] of Object.entries(schema)) out[k] = resolve(spec, v, depth + 1);
  return out;
}

function table(headers, rows) {
  return el("table", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h))),
    ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c)))));
}

function operation(spec, method, path, op) {
  const schemes = (op.security || []).map((s) => Object.keys(s).join(" + ")).join(" or ");
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", {}, op.description));
  if (op.parameters && op.parameters.length) {
    body.append(el("h4", {}, "Parameters"), table(["name", "in", "required", "schema"], op.parameters.map((p) =>
      [el("code", {}, p.name), p.in, p.required ? "yes" : "no", JSON.stringify(p.schema)])));
  }
  if (op.requestBody) {
    const [media, content] = Object.entries(op.requestBody.content)[0];
    body.append(el("h4", {}, `Request body (${media}${op.requestBody.required ? ", required" : ""})`),
      el("p", {}, op.requestBody.description || ""),
      el("pre", {}, JSON.stringify(resolve(spec, content.schema, 0), null, 2)));
  }
  body.append(el("h4", {}, "Responses"));
  for (const [status, resp] of Object.entries(op.responses)) {
    const content = resp.content ? Object.entries(resp.content)[0] : null;
    const box = el("details", {}, el("summary", {}, `${status} ${content ? content[0] : "no content"}: `,
      resp.description));
    if (content) box.append(el("pre", {}, JSON.stringify(resolve(spec, content[1].schema, 0), null, 2)));
    body.append(box);
  }
  return el("details", { class: "op", id: op.operationId },
    el("summary", {}, el("span", { class: `method ${method}` }, method.toUpperCase()),
      el("span", { class: "path" }, path), op.summary,
      el("span", { class: "lock" }, schemes ? `  [${schemes}]` : "")), body);
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
  document.getElementById("description").textContent = spec.info.description || "";
  const byTag = new Map((spec.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(spec, method, path, op));
    }
  }
  const main = document.getElementById("operations");
  const toc = document.getElementById("toc");
  main.replaceChildren();
  for (const [tag, ops] of byTag) {
    toc.append(el("a", { href: `#tag-${tag}` }, tag));
    main.append(el("h2", { id: `tag-${tag}` }, tag), ...ops);
  }
  const schemes = Object.entries(spec.components.securitySchemes || {});
  main.append(el("h2", {}, "security schemes"),
    table(["name", "type", "description"], schemes.map(([n, s]) => [n, `${s.type} ${s.scheme || ""}`, s.description])));
}

main().catch((err) => {
  document.getElementById("operations").textContent = `Could not load /openapi.json: ${err}`;
});
