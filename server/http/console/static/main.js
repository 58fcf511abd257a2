// The console's shell: the three pages (by the URL's fragment), the credential field, who the
// credential proves (GET /v1/whoami) and the status line.

import {call, onCredentialChange, setCredential} from "./api.js";
import * as audit from "./audit.js";
import * as models from "./models.js";
import * as read from "./read.js";

const PAGES = {read, models, audit};
export const session = {identity: null};

export function status(message, kind = "info") {
  const line = document.getElementById("status");
  line.textContent = message;
  line.className = `status ${kind}`;
}

export function may(permission) {
  return Boolean(session.identity && session.identity.permissions.includes(permission));
}

async function whoami() {
  const shown = document.getElementById("identity");
  try {
    const {data} = await call("GET", "/v1/whoami");
    session.identity = data;
    shown.textContent = `${data.actor} (${data.roles.join(", ") || "no roles"})`;
  } catch (error) {
    session.identity = null;
    shown.textContent = "not signed in";
    status(`credential refused: ${error.message}`, "error");
  }
  for (const page of Object.values(PAGES)) page.identityChanged();
}

function show() {
  const name = (location.hash || "#read").slice(1);
  const current = PAGES[name] ? name : "read";
  for (const page of Object.keys(PAGES)) {
    document.getElementById(`page-${page}`).hidden = page !== current;
    document.getElementById(`nav-${page}`).classList.toggle("current", page === current);
  }
  for (const [page, module] of Object.entries(PAGES)) {
    if (page === current) module.shown();
    else module.hidden();
  }
}

function start() {
  const form = document.getElementById("credential-form");
  const input = document.getElementById("credential");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setCredential(input.value);
    input.value = "";
  });
  document.getElementById("credential-forget").addEventListener("click", () => {
    input.value = "";
    setCredential("");
  });
  onCredentialChange(whoami);
  for (const page of Object.values(PAGES)) page.init({status, may, session});
  window.addEventListener("hashchange", show);
  show();
  whoami();
}

start();
