// The Models page: every version with its state and why, signature, gate, the workers that serve it;
// the admin calls as buttons, each shown only to an identity whose roles allow it (GET /v1/whoami).
//
// Progressive delivery (canary, shadow, promote, abort, the A/B report) is offered only where this
// server has those endpoints (found with OPTIONS), and delivery data is shown only where the listing
// carries it: nothing here is invented when the server does not provide it.

import {ApiError, call, hasEndpoint} from "./api.js";
import {clear, el, render, text} from "./dom.js";

// Keys of GET /v1/models this page lays out itself; any others (routing, rollout ...) are shown as given.
const KNOWN_LISTING = new Set(["pipeline", "repository", "repository_error", "scanned_at", "desired", "pin",
  "pin_error", "workers", "versions", "ignored", "gate_defaults", "watcher", "registry"]);
const KNOWN_VERSION = new Set(["version", "state", "reason", "on_disk", "workers", "gate", "verdict", "manifest"]);
const DELIVERY = {canary: "/canary", promote: "/promote", abort: "/abort", report: "/report"};
const POLL_MS = 2000;

let ctx;
let timer = null;
let delivery = null; // which delivery endpoints the server has, found once
let drawn = null; // what the table shows, to redraw only on change

export function init(context) {
  ctx = context;
  document.getElementById("models-refresh").addEventListener("click", refresh);
  document.getElementById("models-unpin").addEventListener("click", () =>
    act("DELETE", "/v1/models/pin", "unpin"));
  document.getElementById("models-rollback").addEventListener("click", () =>
    act("POST", "/v1/models/rollback", "roll back"));
}

export function shown() {
  refresh();
  if (timer === null) timer = setInterval(refresh, POLL_MS);
}

export function hidden() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

export function identityChanged() {
  if (timer !== null) refresh();
}

async function findDelivery() {
  if (delivery !== null) return delivery;
  const found = {};
  for (const [name, suffix] of Object.entries(DELIVERY)) {
    found[name] = await hasEndpoint(`/v1/models/0.0.0${suffix}`);
  }
  delivery = found;
  return delivery;
}

async function act(method, path, what, body) {
  try {
    const {data} = await call(method, path, body === undefined ? {} : {body});
    ctx.status(data && data.message ? data.message : `${what}: done`, "ok");
  } catch (error) {
    ctx.status(`${what} refused: ${error.message}`, "error");
  }
  refresh();
}

async function refresh() {
  let listing;
  try {
    listing = (await call("GET", "/v1/models")).data;
  } catch (error) {
    ctx.status(`cannot list models: ${error.message}`, "error");
    return;
  }
  const features = await findDelivery();
  for (const button of document.querySelectorAll("#page-models .toolbar .mutating")) {
    button.hidden = !ctx.may(button.dataset.permission);
  }
  overview(listing);
  // Redrawn only when something changed, so a share being typed in is not wiped by the next poll.
  const shape = JSON.stringify([listing.versions, listing.workers.map((w) => [w.slot, w.pid, w.serving, w.loading,
    w.draining]), listing.pin, listing.desired, ctx.session.identity, Object.entries(listing)
    .filter(([key]) => !KNOWN_LISTING.has(key))]);
  if (shape === drawn) return;
  drawn = shape;
  routing(listing);
  versions(listing, features);
  workers(listing.workers || []);
}

function overview(listing) {
  const box = clear(document.getElementById("models-overview"));
  const pin = listing.pin;
  box.append(el("div", {},
    el("p", {}, "desired: ", el("strong", {id: "models-desired"}, listing.desired ?? "none"),
      "; pin: ", el("strong", {id: "models-pin"}, pin ? pin.version : "none"),
      pin && !pin.effective ? ` (not honoured: ${pin.reason})` : "",
      pin && pin.actor ? ` by ${pin.actor} (${pin.action})` : "",
      `; scanned ${listing.scanned_at}`),
    listing.repository_error ? el("p", {className: "error"}, `repository: ${listing.repository_error}`) : null,
    listing.pin_error ? el("p", {className: "error"}, `pin file: ${listing.pin_error}`) : null,
    listing.registry ? el("p", {}, "registry sync: ", render(listing.registry)) : null,
    listing.ignored && listing.ignored.length
      ? el("p", {}, "ignored: ", listing.ignored.map((i) => `${i.name} (${i.reason})`).join("; ")) : null));
}

function routing(listing) {
  const box = clear(document.getElementById("models-routing"));
  const extra = Object.entries(listing).filter(([key]) => !KNOWN_LISTING.has(key));
  if (!extra.length) return;
  box.append(el("h3", {}, "Delivery"), ...extra.map(([key, value]) => el("div", {className: "delivery", dataset:
    {key}}, el("h4", {}, key), render(value))));
}

function signatureCell(verdict) {
  const sig = verdict && verdict.signature;
  if (!sig) return "not checked yet";
  if (!sig.signed) return "unsigned";
  if (sig.verified) return `verified: ${sig.key_name || sig.key_id}`;
  return `${sig.problem}: ${sig.reason}`;
}

function gateCell(gate) {
  if (!gate) return "-";
  const parts = [`${gate.passed ? "passed" : "failed"}, CER ${gate.cer}`];
  if (gate.baseline_version) parts.push(`vs ${gate.baseline_version} ${gate.baseline_cer}`);
  if (gate.field_match !== null && gate.field_match !== undefined) parts.push(`fields ${gate.field_match}`);
  parts.push(`on ${gate.golden_set}`);
  return parts.join("; ");
}

function workersCell(slots) {
  const parts = [];
  for (const kind of ["serving", "loading", "draining"]) {
    if (slots[kind] && slots[kind].length) parts.push(`${kind} ${slots[kind].join(", ")}`);
  }
  return parts.join("; ") || "-";
}

function versions(listing, features) {
  const body = clear(document.querySelector("#models-table tbody"));
  for (const entry of listing.versions) {
    const v = entry.version;
    const extra = Object.fromEntries(Object.entries(entry).filter(([key]) => !KNOWN_VERSION.has(key)));
    const buttons = [el("button", {type: "button", className: "detail-button",
      onclick: () => detail(v, features)}, "Details")];
    if (ctx.may("models.activate") && entry.state !== "rejected") {
      buttons.push(el("button", {type: "button", className: "mutating pin-button", dataset: {version: v},
        onclick: () => act("POST", `/v1/models/${encodeURIComponent(v)}/activate`, `pin ${v}`)}, "Pin"));
    }
    if (ctx.may("promotion.request") && entry.state !== "rejected") {
      buttons.push(el("button", {type: "button", className: "mutating", onclick: () =>
        act("POST", `/v1/models/${encodeURIComponent(v)}/request-promotion`, `request promotion of ${v}`)},
      "Request promotion"));
    }
    if (entry.state !== "rejected") buttons.push(...deliveryButtons(v, features));
    body.append(el("tr", {className: `state-${entry.state}`, dataset: {version: v}},
      el("td", {className: "version"}, v),
      el("td", {className: "state"}, entry.state),
      el("td", {className: "reason"}, entry.reason || (entry.verdict ? entry.verdict.reason : "") || ""),
      el("td", {}, signatureCell(entry.verdict)),
      el("td", {}, gateCell(entry.gate)),
      el("td", {className: "slots"}, workersCell(entry.workers)),
      el("td", {className: "delivery"}, Object.keys(extra).length ? render(extra) : "-"),
      el("td", {className: "actions"}, buttons)));
  }
}

function deliveryButtons(v, features) {
  const path = `/v1/models/${encodeURIComponent(v)}`;
  const buttons = [];
  if ((features.canary) && ctx.may("canary.start")) {
    const percent = el("input", {type: "number", min: 0, max: 100, value: 10, size: 3, className: "percent",
      "aria-label": `share of traffic for ${v}`});
    buttons.push(percent,
      el("button", {type: "button", className: "mutating", onclick: () =>
        act("POST", `${path}/canary`, `canary ${v}`, {percent: Number(percent.value)})}, "Canary %"),
      el("button", {type: "button", className: "mutating", onclick: () =>
        act("POST", `${path}/canary`, `shadow ${v}`, {shadow_percent: Number(percent.value)})}, "Shadow %"));
  }
  if (features.promote && ctx.may("promotion.approve")) {
    buttons.push(el("button", {type: "button", className: "mutating", onclick: () =>
      act("POST", `${path}/promote`, `promote ${v}`)}, "Promote"));
  }
  if (features.abort && ctx.may("canary.abort")) {
    buttons.push(el("button", {type: "button", className: "mutating", onclick: () =>
      act("POST", `${path}/abort`, `abort ${v}`)}, "Abort"));
  }
  return buttons;
}

async function detail(v, features) {
  const box = document.getElementById("model-detail");
  let described;
  try {
    described = (await call("GET", `/v1/models/${encodeURIComponent(v)}`)).data;
  } catch (error) {
    ctx.status(`cannot describe ${v}: ${error.message}`, "error");
    return;
  }
  const sections = [el("h3", {}, `Version ${v}`),
    el("h4", {}, "signature (checked now)"), render(described.signature),
    el("h4", {}, "gate"), render(described.gate),
    el("h4", {}, "verdict"), render(described.verdict),
    el("h4", {}, "model card"), render(described.card),
    el("h4", {}, "promotion requests"), described.promotion_requests.length
      ? render(described.promotion_requests) : el("p", {}, "none")];
  if (features.report && ctx.may("reports.read")) sections.push(await report(v));
  clear(box).append(...sections);
}

async function report(v) {
  const section = el("div", {className: "report"}, el("h4", {}, "A/B report"));
  try {
    const {data} = await call("GET", `/v1/models/${encodeURIComponent(v)}/report`);
    section.append(render(data));
  } catch (error) {
    section.append(el("p", {}, error instanceof ApiError && error.status === 404
      ? `no report for ${v}` : `report: ${text(error.message)}`));
  }
  return section;
}

function workers(list) {
  const body = clear(document.querySelector("#workers-table tbody"));
  for (const worker of list) {
    body.append(el("tr", {},
      el("td", {}, worker.slot), el("td", {}, worker.pid), el("td", {}, worker.serving ?? "-"),
      el("td", {}, worker.loading ?? "-"), el("td", {}, (worker.draining || []).join(", ") || "-")));
  }
}
