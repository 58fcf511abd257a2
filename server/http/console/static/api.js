// Calls to the server's HTTP API with the credential the user typed in. The credential lives in this
// module's variable only: never in a cookie, localStorage, sessionStorage or the URL, so a reload
// forgets it.

let credential = "";
const listeners = [];

export function setCredential(value) {
  credential = value.trim();
  for (const listener of listeners) listener();
}

export function hasCredential() {
  return credential !== "";
}

export function onCredentialChange(listener) {
  listeners.push(listener);
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${status} ${body.error}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.code = body ? body.error : undefined;
    this.body = body;
  }
}

// fetch() with the Authorization header; JSON in and out; an error answer becomes an ApiError.
export async function call(method, path, {body, contentType, query} = {}) {
  const headers = {};
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (contentType) headers["Content-Type"] = contentType;
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof ArrayBuffer)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const url = query && Object.keys(query).length ? `${path}?${new URLSearchParams(query)}` : path;
  const response = await fetch(url, {method, headers, body: payload, credentials: "omit", cache: "no-store"});
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("application/json")) data = await response.json();
  if (!response.ok) throw new ApiError(response.status, data);
  return {data, headers: response.headers, status: response.status};
}
