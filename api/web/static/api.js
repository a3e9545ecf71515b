// The REST API (see /docs): fetch with the key in the Authorization header, problem+json errors as ApiError.
// The key lives in this module and in sessionStorage (this tab only, gone when it closes), never in a URL or
// local storage.

const STORAGE_KEY = "svdiff.apiKey";
let apiKey = null;
let unauthorized = () => {};

export function loadKey() {
  try {
    apiKey = sessionStorage.getItem(STORAGE_KEY);
  } catch {
    apiKey = null;
  }
  return apiKey;
}

export function setKey(key) {
  apiKey = key;
  try {
    if (key) sessionStorage.setItem(STORAGE_KEY, key);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage refused (private mode): the key stays in memory only
  }
}

export function hasKey() {
  return Boolean(apiKey);
}

/** Called when the API answers 401 to a signed-in request (the key was revoked, or is wrong). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.retryAfter = retryAfter;
  }

  /** The problem's per-field errors: [{field, detail}]. */
  get errors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }

  describe() {
    const { title, detail } = this.problem;
    if (title && detail) return `${title}: ${detail}`;
    return detail || title || this.message;
  }
}

export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

async function toError(response) {
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    problem = { title: response.statusText || `HTTP ${response.status}` };
  }
  const retry = Number.parseFloat(response.headers.get("Retry-After") || "");
  return new ApiError(response.status, problem, Number.isFinite(retry) ? retry : null);
}

/**
 * request(path, {method, json, form, headers, signal, raw, key})
 * - json: a body sent as application/json; form: a FormData sent as multipart.
 * - raw: return the Response as it is (no status check), e.g. for streams and downloads.
 * - key: authenticate with this key instead of the signed-in one (signing in).
 */
export async function request(path, options = {}) {
  const { method = "GET", json, form, signal, raw = false } = options;
  const key = options.key ?? apiKey;
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (key) headers.Authorization = `Bearer ${key}`;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets the multipart boundary
  }
  const response = await fetch(path, { method, headers, body, signal, cache: "no-store", credentials: "omit" });
  if (response.status === 401 && !options.key) unauthorized();
  if (raw) return response;
  if (!response.ok) throw await toError(response);
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response;
}

export { toError };

/** Every page of a list, up to `maxPages` (newest first). */
export async function listAll(path, { signal, maxPages = 5, limit = 100 } = {}) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page += 1) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    const answer = await request(`${path}?${query}`, { signal });
    items.push(...answer.data);
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  return items;
}

/** Trainings of the signed-in user, by subject id (newest first). */
export async function trainingsBySubject(signal) {
  const trainings = await listAll("/v1/trainings", { signal });
  const bySubject = new Map();
  for (const training of trainings) {
    for (const id of training.subject_ids) {
      if (!bySubject.has(id)) bySubject.set(id, []);
      bySubject.get(id).push(training);
    }
  }
  return bySubject;
}

/** The newest succeeded training with a checkpoint among `trainings`, or null. */
export function latestCheckpoint(trainings) {
  return (trainings || []).find((t) => t.status === "succeeded" && t.checkpoint_id) || null;
}

let configPromise = null;
/** The service's upload limits and training bounds (public: no key needed). */
export function config() {
  if (!configPromise) {
    configPromise = fetch("/web/config.json", { cache: "no-store", credentials: "omit" }).then((r) => {
      if (!r.ok) throw new Error(`config: HTTP ${r.status}`);
      return r.json();
    });
    configPromise.catch(() => { configPromise = null; });
  }
  return configPromise;
}
