// The Models page: every version with its state and why, signature, gate, the workers that serve it;
// the running canary (its shares, the workers that hold it, the judge's reading) and a version's A/B
// report; the admin calls as buttons, each shown only to an identity whose roles allow it (GET
// /v1/whoami): pin, unpin, roll back, and canary, shadow, promote and abort.

import {ApiError, call} from "./api.js";
import {clear, el, render, text} from "./dom.js";

// Keys of GET /v1/models this page lays out itself; any others are shown as given.
const KNOWN_LISTING = new Set(["pipeline", "repository", "repository_error", "scanned_at", "desired", "pin",
  "pin_error", "workers", "versions", "ignored", "gate_defaults", "watcher", "registry", "rollout",
  "rollout_error"]);
const KNOWN_VERSION = new Set(["version", "state", "reason", "on_disk", "workers", "gate", "verdict", "manifest"]);
const POLL_MS = 2000;

let ctx;
let timer = null;
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
  for (const button of document.querySelectorAll("#page-models .toolbar .mutating")) {
    button.hidden = !ctx.may(button.dataset.permission);
  }
  overview(listing);
  // Redrawn only when something changed, so a share being typed in is not wiped by the next poll.
  const shape = JSON.stringify([listing.versions, listing.workers.map((w) => [w.slot, w.pid, w.serving, w.canary,
    w.loading, w.draining]), listing.pin, listing.desired, listing.rollout, listing.rollout_error,
  ctx.session.identity, Object.entries(listing).filter(([key]) => !KNOWN_LISTING.has(key))]);
  if (listing.rollout && ctx.may("reports.read")) judge(listing.rollout.candidate);
  if (shape === drawn) return;
  drawn = shape;
  routing(listing);
  versions(listing);
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
  const rollout = listing.rollout;
  if (rollout) {
    const shares = [`${rollout.percent}% of clients`];
    if (rollout.shadow_percent) shares.push(`${rollout.shadow_percent}% of the other requests in shadow`);
    const baking = rollout.phase === "bake";
    box.append(el("div", {className: "rollout", id: "models-rollout", dataset: {phase: rollout.phase}},
      el("h3", {}, baking ? "Bake" : "Canary"),
      el("p", {}, el("strong", {id: "rollout-candidate"}, rollout.candidate),
        baking ? ` is promoted: every client reads with it until ${rollout.bake_until}, while `
          : ` takes ${shares.join(" and ")} beside `,
        el("strong", {}, rollout.stable), baking ? " stays loaded (Roll back returns to it at once)" : "",
        `; started by ${rollout.actor} at ${rollout.started_at}; `,
        `held by worker(s) ${rollout.workers.length ? rollout.workers.join(", ") : "none yet"}`),
      el("p", {id: "rollout-judge", className: "judge"}, ctx.may("reports.read") ? "judge: reading ..." : "")));
  }
  if (listing.rollout_error) box.append(el("p", {className: "error"}, `rollout file: ${listing.rollout_error}`));
  const extra = Object.entries(listing).filter(([key]) => !KNOWN_LISTING.has(key));
  if (extra.length) {
    box.append(...extra.map(([key, value]) => el("div", {className: "delivery", dataset: {key}},
      el("h4", {}, key), render(value))));
  }
}

// The judge's reading of the running canary, refreshed with the listing.
async function judge(candidate) {
  let data;
  try {
    data = (await call("GET", `/v1/models/${encodeURIComponent(candidate)}/report`)).data;
  } catch (error) {
    data = null;
  }
  const line = document.getElementById("rollout-judge");
  if (!line) return;
  line.textContent = data ? `judge: ${data.judgement.decision} - ${data.judgement.rule}` : "judge: no reading";
  line.dataset.decision = data ? data.judgement.decision : "";
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

function versions(listing) {
  const body = clear(document.querySelector("#models-table tbody"));
  for (const entry of listing.versions) {
    const v = entry.version;
    const extra = Object.fromEntries(Object.entries(entry).filter(([key]) => !KNOWN_VERSION.has(key)));
    const buttons = [el("button", {type: "button", className: "detail-button",
      onclick: () => detail(v)}, "Details")];
    if (ctx.may("models.activate") && entry.state !== "rejected") {
      buttons.push(el("button", {type: "button", className: "mutating pin-button", dataset: {version: v},
        onclick: () => act("POST", `/v1/models/${encodeURIComponent(v)}/activate`, `pin ${v}`)}, "Pin"));
    }
    if (ctx.may("promotion.request") && entry.state !== "rejected") {
      buttons.push(el("button", {type: "button", className: "mutating", onclick: () =>
        act("POST", `/v1/models/${encodeURIComponent(v)}/request-promotion`, `request promotion of ${v}`)},
      "Request promotion"));
    }
    buttons.push(...deliveryButtons(entry, listing.rollout));
    body.append(el("tr", {className: `state-${entry.state}`, dataset: {version: v}},
      el("td", {className: "version"}, v),
      el("td", {className: "state"}, entry.state),
      el("td", {className: "reason"}, entry.reason || (entry.verdict ? entry.verdict.reason : "") || ""),
      el("td", {}, signatureCell(entry.verdict)),
      el("td", {}, gateCell(entry.gate)),
      el("td", {className: "slots"}, workersCell(entry.workers)),
      el("td", {className: "delivery"}, deliveryCell(v, listing.rollout), Object.keys(extra).length ? render(extra) : ""),
      el("td", {className: "actions"}, buttons)));
  }
}

function deliveryCell(v, rollout) {
  if (!rollout || rollout.candidate !== v) return rollout && rollout.stable === v ? "stable" : "-";
  const shadow = rollout.shadow_percent ? `, shadow ${rollout.shadow_percent}%` : "";
  return `canary ${rollout.percent}%${shadow}`;
}

// Canary and shadow shares for a version that may enter a canary (or is the one in canary); promote
// and abort for the candidate of the running canary.
function deliveryButtons(entry, rollout) {
  const v = entry.version;
  const path = `/v1/models/${encodeURIComponent(v)}`;
  const candidate = rollout && rollout.candidate === v;
  const buttons = [];
  const eligible = entry.state !== "rejected" && entry.state !== "serving" && (!rollout || candidate);
  if (eligible && ctx.may("canary.start")) {
    const percent = el("input", {type: "number", min: 0, max: 100, value: candidate ? rollout.percent || 10 : 10,
      size: 3, className: "percent", "aria-label": `share of traffic for ${v}`});
    buttons.push(percent,
      el("button", {type: "button", className: "mutating", onclick: () =>
        act("POST", `${path}/canary`, `canary ${v}`, {percent: Number(percent.value)})}, "Canary %"),
      el("button", {type: "button", className: "mutating", onclick: () =>
        act("POST", `${path}/canary`, `shadow ${v}`, {shadow_percent: Number(percent.value)})}, "Shadow %"));
  }
  if (candidate && ctx.may("promotion.approve")) {
    buttons.push(el("button", {type: "button", className: "mutating", onclick: () =>
      act("POST", `${path}/promote`, `promote ${v}`)}, "Promote"));
  }
  if (candidate && ctx.may("canary.abort")) {
    buttons.push(el("button", {type: "button", className: "mutating", onclick: () =>
      act("POST", `${path}/abort`, `abort ${v}`, {reason: "aborted from the console"})}, "Abort"));
  }
  return buttons;
}

async function detail(v) {
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
  if (ctx.may("reports.read")) sections.push(await report(v));
  clear(box).append(...sections);
}

async function report(v) {
  const section = el("div", {className: "report"}, el("h4", {}, "A/B report"));
  try {
    const {data} = await call("GET", `/v1/models/${encodeURIComponent(v)}/report`);
    section.append(reportTables(data));
  } catch (error) {
    section.append(el("p", {}, error instanceof ApiError && error.status === 404
      ? `no report for ${v}` : `report: ${text(error.message)}`));
  }
  return section;
}

function number(value, percent) {
  if (value === null || value === undefined) return "-";
  return percent ? `${value >= 0 ? "+" : ""}${(value * 100).toFixed(1)}%` : Number(value).toPrecision(4);
}

function reportTables(report) {
  const judgement = report.judgement;
  const arm = (name, v) => el("tr", {}, el("th", {}, name), el("td", {}, v.version), el("td", {}, v.digest || "-"),
    el("td", {}, `${v.signed_by || "-"} (${v.signature || "-"})`),
    el("td", {}, v.gate ? number(v.gate.cer) : "-"), el("td", {}, String(report.samples[name] ?? "-")));
  const rows = judgement.overall.map((m) => {
    const rate = m.metric.endsWith("_rate");
    const interval = m.interval ? `${number(m.interval[0], !rate)} .. ${number(m.interval[1], !rate)}` : "-";
    const verdict = m.passed === null ? "insufficient" : m.passed ? "pass" : "FAIL";
    return el("tr", {className: `metric-${verdict}`, dataset: {metric: m.metric}},
      el("td", {}, m.metric), el("td", {}, number(m.stable)), el("td", {}, number(m.candidate)),
      el("td", {}, number(m.change, !rate)), el("td", {}, interval), el("td", {}, number(m.p_value)),
      el("td", {}, m.test), el("td", {className: "verdict"}, verdict));
  });
  return el("div", {},
    el("p", {className: "decision"}, el("strong", {}, report.decision), report.decided_by ? ` by ${report.decided_by}` : "",
      report.decided_at ? ` at ${report.decided_at}` : "", `: ${judgement.rule}`),
    el("table", {className: "grid arms"},
      el("thead", {}, el("tr", {}, ["", "version", "digest", "signed by", "golden-set CER", "samples"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, arm("stable", report.stable), arm("canary", report.candidate))),
    el("table", {className: "grid metrics"},
      el("thead", {}, el("tr", {}, ["metric", "stable", "candidate", "change", "95% interval", "p-value", "test",
        "pass"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)));
}

function workers(list) {
  const body = clear(document.querySelector("#workers-table tbody"));
  for (const worker of list) {
    body.append(el("tr", {},
      el("td", {}, worker.slot), el("td", {}, worker.pid), el("td", {}, worker.serving ?? "-"),
      el("td", {}, worker.canary ?? "-"), el("td", {}, worker.loading ?? "-"), el("td", {}, (worker.draining || []).join(", ") || "-")));
  }
}
