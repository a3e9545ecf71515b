// Admin: the stats (jobs by queue and status, storage, workers), every user's subjects (filter by user id,
// paged with the cursor) and the jobs by status and kind.

import { ApiError, listAll, request } from "./api.js";
import { field, formatBytes, formatTime, h, isAbort, shortId } from "./dom.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "canceled"];
const KINDS = ["training", "generation", "edit"];

function describe(error) {
  return error instanceof ApiError ? error.describe() : error.message;
}

/** numeric: the columns (by index) whose cells are numbers, aligned right. */
function table(caption, headers, rows, numeric = []) {
  return h("div", { class: "table-wrap", role: "region", "aria-label": caption, tabindex: "0" },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((text, i) => h("th", { scope: "col", class: numeric[i] ? "num" : null },
        text)))),
      h("tbody", {}, rows.length ? rows
        : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "Nothing here.")))));
}

/** A list paged with next_cursor: `load(params)` with Previous/Next buttons that keep the cursors seen. */
function pager(label, render, signal) {
  const out = h("div", { "aria-live": "polite" });
  const previous = h("button", { type: "button", class: "secondary", disabled: true }, "Previous page");
  const next = h("button", { type: "button", class: "secondary", disabled: true }, "Next page");
  const where = h("span", { class: "muted" });
  const el = h("div", { class: "paged" }, out,
    h("nav", { class: "pager", "aria-label": `${label} pages` }, previous, where, next));
  let cursors = [null];
  let base = "";
  let nextCursor = null;

  async function show() {
    const cursor = cursors[cursors.length - 1];
    const query = new URLSearchParams(base);
    query.set("limit", "20");
    if (cursor) query.set("cursor", cursor);
    previous.disabled = next.disabled = true;
    try {
      const page = await request(`${render.path}?${query}`, { signal });
      out.replaceChildren(await render.body(page.data));
      nextCursor = page.next_cursor;
      where.textContent = `Page ${cursors.length}`;
      previous.disabled = cursors.length < 2;
      next.disabled = !nextCursor;
    } catch (exc) {
      if (!isAbort(exc)) out.replaceChildren(h("p", { class: "error", role: "alert" }, `Could not load: ${describe(exc)}`));
    }
  }

  previous.addEventListener("click", () => {
    cursors.pop();
    show();
  });
  next.addEventListener("click", () => {
    cursors.push(nextCursor);
    show();
  });
  return {
    el,
    load(params) {
      base = params;
      cursors = [null];
      return show();
    },
  };
}

function statsSection(signal) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const refresh = h("button", { type: "button", class: "secondary" }, "Refresh");
  async function load() {
    refresh.disabled = true;
    try {
      const stats = await request("/v1/admin/stats", { signal });
      const queues = Object.keys(stats.jobs).sort();
      const storage = Object.entries(stats.storage_bytes);
      body.replaceChildren(
        table("Jobs by queue and status", ["Queue", ...STATUSES],
          queues.map((q) => h("tr", {}, h("th", { scope: "row" }, q),
            STATUSES.map((s) => h("td", { class: "num" }, String(stats.jobs[q][s] ?? 0))))),
          [false, ...STATUSES.map(() => true)]),
        table("Storage", ["What", "Bytes"],
          storage.map(([name, bytes]) => h("tr", {}, h("th", { scope: "row" }, name),
            h("td", { class: "num", title: `${bytes} bytes` }, formatBytes(bytes)))), [false, true]),
        table("Workers", ["Worker", "Last seen"],
          stats.workers.map((w) => h("tr", {}, h("td", { class: "mono" }, w.worker_id), h("td", {}, formatTime(w.last_seen_at))))));
    } catch (exc) {
      if (!isAbort(exc)) body.replaceChildren(h("p", { class: "error", role: "alert" }, `Could not load the stats: ${describe(exc)}`));
    } finally {
      refresh.disabled = false;
    }
  }
  refresh.addEventListener("click", load);
  load();
  return h("section", { class: "card", id: "admin-stats", "aria-labelledby": "stats-title" },
    h("div", { class: "section-head" }, h("h2", { id: "stats-title" }, "Stats"), refresh), body);
}

function subjectsSection(signal) {
  const users = h("datalist", { id: "admin-users" });
  const userId = field("Owner's user id", h("input", { name: "user_id", list: "admin-users", autocomplete: "off",
    spellcheck: "false", placeholder: "any user" }));
  const apply = h("button", { type: "submit" }, "Filter");
  const reset = h("button", { type: "button", class: "secondary" }, "Show all");
  const form = h("form", { method: "get", class: "filters", "aria-label": "Filter subjects" }, userId, users,
    h("div", { class: "actions" }, apply, reset));
  const list = pager("Subjects", {
    path: "/v1/admin/subjects",
    body: (rows) => table("Every user's subjects", ["Subject", "Owner", "Photos", "Checkpoints", "Checkpoint bytes",
      "Last trained", "Created"], rows.map((s) => h("tr", { "data-subject-id": s.id },
      h("th", { scope: "row" }, s.name, h("br"), h("span", { class: "muted" }, `${s.token} ${s.class_word}`)),
      h("td", {}, s.owner.name, h("br"), h("span", { class: "muted mono", title: s.owner.id }, shortId(s.owner.id))),
      h("td", { class: "num" }, String(s.photo_count)),
      h("td", { class: "num" }, String(s.checkpoint_count)),
      h("td", { class: "num", title: `${s.checkpoint_bytes} bytes` }, formatBytes(s.checkpoint_bytes)),
      h("td", {}, formatTime(s.last_trained_at)),
      h("td", {}, formatTime(s.created_at)))), [false, false, true, true, true]),
  }, signal);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = userId.control.value.trim();
    list.load(id ? new URLSearchParams({ user_id: id }).toString() : "");
  });
  reset.addEventListener("click", () => {
    userId.control.value = "";
    list.load("");
  });
  listAll("/v1/users", { signal, maxPages: 2 }).then((all) => {
    users.replaceChildren(...all.map((u) => h("option", { value: u.id }, `${u.name} (${u.role})`)));
  }).catch(() => {});
  list.load("");
  return h("section", { class: "card", id: "admin-subjects", "aria-labelledby": "admin-subjects-title" },
    h("h2", { id: "admin-subjects-title" }, "Subjects"), form, list.el);
}

function jobsSection(signal) {
  const status = field("Status", h("select", { name: "status" }, h("option", { value: "" }, "Any"),
    STATUSES.map((s) => h("option", { value: s }, s))));
  const kind = field("Kind (queue)", h("select", { name: "kind" }, h("option", { value: "" }, "Any"),
    KINDS.map((k) => h("option", { value: k }, `${k} (${k === "training" ? "training" : "inference"} queue)`))));
  const form = h("form", { method: "get", class: "filters", "aria-label": "Filter jobs" }, status, kind,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Filter")));
  const list = pager("Jobs", {
    path: "/v1/admin/jobs",
    body: (rows) => table("Jobs", ["Job", "Kind", "Status", "User", "Progress", "Attempts", "Worker", "Created"],
      rows.map((j) => h("tr", { "data-job-id": j.id },
        h("th", { scope: "row", class: "mono", title: j.id }, shortId(j.id)),
        h("td", {}, j.kind),
        h("td", {}, h("span", { class: `badge state-${j.status}` }, j.status)),
        h("td", { class: "mono", title: j.user_id }, shortId(j.user_id)),
        h("td", { class: "num" }, `${j.progress.step}/${j.progress.total}`),
        h("td", { class: "num" }, String(j.attempts)),
        h("td", { class: "mono" }, j.worker_id || "-"),
        h("td", {}, formatTime(j.created_at)))), [false, false, false, false, true, true]),
  }, signal);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (status.control.value) query.set("status", status.control.value);
    if (kind.control.value) query.set("kind", kind.control.value);
    list.load(query.toString());
  });
  list.load("");
  return h("section", { class: "card", id: "admin-jobs", "aria-labelledby": "admin-jobs-title" },
    h("h2", { id: "admin-jobs-title" }, "Jobs"), form, list.el);
}

export function adminView({ signal, heading }) {
  return h("section", { class: "page" }, heading("Admin"), statsSection(signal), subjectsSection(signal),
    jobsSection(signal));
}
