// Following a job: its live events stream (GET <job>/events, text/event-stream) read with fetch() and a
// ReadableStream, because EventSource cannot send the Authorization header. Where the stream is not available
// (404/405, a 429 over the open-stream cap) or fails, the job is polled every 2 s instead.

import { request } from "./api.js";
import { formatDuration, h, isAbort, sleep } from "./dom.js";

export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const POLL_MS = 2000;
const RECONNECTS = 3;

/**
 * follow("/v1/trainings/<id>", onJob, {signal, onSource}) resolves with the job in its terminal state (or null if
 * aborted); onJob(job) sees every state on the way; onSource("events" | "polling") says where they come from.
 */
export async function follow(path, onJob, { signal, onSource = () => {} } = {}) {
  const state = { lastId: null };
  try {
    for (let attempt = 0; attempt < RECONNECTS; attempt += 1) {
      const outcome = await streamOnce(path, onJob, signal, state, onSource);
      if (outcome.job) return outcome.job;
      if (outcome.fallback) break;
      // The stream ended before the terminal state (a dropped connection): resume from the last event.
    }
    onSource("polling");
    return await poll(path, onJob, signal);
  } catch (error) {
    if (isAbort(error)) return null;
    throw error;
  }
}

async function streamOnce(path, onJob, signal, state, onSource) {
  const headers = { Accept: "text/event-stream" };
  if (state.lastId) headers["Last-Event-ID"] = state.lastId;
  let response;
  try {
    response = await request(`${path}/events`, { raw: true, signal, headers });
  } catch (error) {
    if (isAbort(error)) throw error;
    return { fallback: true }; // the network failed: polling will tell
  }
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok || !type.startsWith("text/event-stream") || !response.body) {
    response.body?.cancel().catch(() => {});
    return { fallback: true };
  }
  onSource("events");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "message", data: [], id: null };
  let seen = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (event.data.length && event.type === "job") {
            if (event.id !== null) state.lastId = event.id;
            const job = JSON.parse(event.data.join("\n"));
            seen = true;
            onJob(job);
            if (TERMINAL.has(job.status)) return { job };
          }
          event = { type: "message", data: [], id: null };
          continue;
        }
        if (line.startsWith(":")) continue; // a heartbeat
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "data") event.data.push(text);
        else if (name === "event") event.type = text;
        else if (name === "id") event.id = text;
      }
    }
  } catch (error) {
    if (isAbort(error)) throw error;
    return seen ? { ended: true } : { fallback: true };
  } finally {
    reader.cancel().catch(() => {});
  }
  return seen ? { ended: true } : { fallback: true };
}

async function poll(path, onJob, signal) {
  let failures = 0;
  for (;;) {
    let job = null;
    try {
      job = await request(path, { signal });
      failures = 0;
    } catch (error) {
      if (isAbort(error) || (error.status && error.status < 500 && error.status !== 429)) throw error;
      failures += 1; // a network error or a 5xx/429: keep trying, a little slower
    }
    if (job) {
      onJob(job);
      if (TERMINAL.has(job.status)) return job;
    }
    await sleep(POLL_MS * Math.min(1 + failures, 5), signal);
  }
}

const STATUS_TEXT = {
  queued: "Queued",
  running: "Running",
  succeeded: "Done",
  failed: "Failed",
  canceled: "Canceled",
};

/** A job's progress: a <progress> bar, a status line (a polite live region) and an error line (an alert). */
export function progressView(label) {
  const labelId = `progress-${Math.random().toString(36).slice(2)}`;
  const bar = h("progress", { max: 1, value: 0, "aria-labelledby": labelId });
  const status = h("p", { class: "job-status", id: labelId }, `${label}: -`);
  const detail = h("p", { class: "job-detail", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const el = h("div", { class: "job", "data-status": "none" }, status, bar, detail, error);
  let source = null;

  function update(job) {
    const { step, total } = job.progress || { step: 0, total: 0 };
    el.dataset.status = job.status;
    el.dataset.step = String(step);
    status.textContent = `${label}: ${STATUS_TEXT[job.status] || job.status}`;
    if (job.status === "running" && !step) {
      bar.removeAttribute("value"); // indeterminate while it prepares
    } else {
      bar.max = Math.max(total || 1, 1);
      bar.value = job.status === "succeeded" ? bar.max : Math.min(step, bar.max);
    }
    const parts = [];
    if (job.status === "queued") {
      const ahead = job.queue_position;
      if (ahead === null || ahead === undefined) parts.push("waiting for a worker");
      else parts.push(ahead === 0 ? "next in the queue" : `${ahead} ${ahead === 1 ? "job" : "jobs"} ahead in the queue`);
    } else if (job.status === "running") {
      parts.push(step ? `step ${step} of ${total}` : "preparing");
      const eta = formatDuration(job.eta_seconds);
      if (eta) parts.push(`about ${eta} left`);
    } else if (total) {
      parts.push(`${step} of ${total} steps`);
    }
    if (source && !TERMINAL.has(job.status)) parts.push(source === "events" ? "live" : "updated every 2 s");
    detail.textContent = parts.join(" · ");
    if (job.status === "failed" && job.error) {
      error.hidden = false;
      error.textContent = `${job.error.type}: ${job.error.detail}`;
    } else {
      error.hidden = true;
      error.textContent = "";
    }
  }

  function setSource(name) {
    source = name;
    el.dataset.source = name;
  }

  return { el, update, setSource };
}
