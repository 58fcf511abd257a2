// The Audit page: GET /v1/audit (role auditor), newest first, filtered, a page at a time.

import {call} from "./api.js";
import {clear, el} from "./dom.js";

let ctx;
let cursor = null;

export function init(context) {
  ctx = context;
  document.getElementById("audit-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    load(false);
  });
  document.getElementById("audit-older").addEventListener("click", () => load(true));
}

export function shown() {
  load(false);
}

export function hidden() {}

export function identityChanged() {
  if (!document.getElementById("page-audit").hidden) load(false);
}

async function load(older) {
  const body = document.querySelector("#audit-table tbody");
  const query = {limit: document.getElementById("audit-limit").value || "50"};
  for (const name of ["action", "actor", "version"]) {
    const value = document.getElementById(`audit-${name}`).value.trim();
    if (value) query[name] = value;
  }
  if (older && cursor) query.cursor = cursor;
  if (!older) clear(body);
  const more = document.getElementById("audit-older");
  try {
    const {data} = await call("GET", "/v1/audit", {query});
    for (const record of data.records) {
      body.append(el("tr", {className: `result-${record.result}`},
        el("td", {}, record.seq ?? ""), el("td", {}, record.time ?? ""), el("td", {}, record.actor ?? ""),
        el("td", {}, (record.roles || []).join(", ")), el("td", {}, record.action ?? ""),
        el("td", {}, record.version ?? ""), el("td", {}, record.result ?? ""), el("td", {}, record.reason ?? "")));
    }
    cursor = data.next_cursor;
    more.hidden = !cursor;
    ctx.status(`${data.records.length} audit record(s)`, "ok");
  } catch (error) {
    more.hidden = true;
    ctx.status(error.status === 401 || error.status === 403
      ? `the audit trail needs the auditor role: ${error.message}` : `audit: ${error.message}`, "error");
  }
}
