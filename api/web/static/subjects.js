// The subjects grid: a cover photo, the photo count and the latest training's state for each subject.

import { ApiError, request, trainingsBySubject } from "./api.js";
import { h, isAbort } from "./dom.js";

const STATE_TEXT = {
  queued: "Training queued",
  running: "Training",
  succeeded: "Trained",
  failed: "Training failed",
  canceled: "Training canceled",
};

export function trainingState(training) {
  if (!training) return { key: "untrained", text: "Not trained" };
  let text = STATE_TEXT[training.status] || training.status;
  if (training.status === "running" && training.progress?.total) {
    text += ` ${Math.floor((100 * training.progress.step) / training.progress.total)}%`;
  }
  return { key: training.status, text };
}

function card(subject, trainings) {
  const state = trainingState(trainings?.[0]);
  const cover = h("div", { class: "cover" }, h("span", { class: "cover-empty" }, "No photo"));
  const item = h("li", { class: "subject-card", "data-subject-id": subject.id },
    h("a", { href: `#/subjects/${subject.id}`, class: "card-link" },
      cover,
      h("span", { class: "card-body" },
        h("span", { class: "card-title" }, subject.name),
        h("span", { class: "card-meta" }, `${subject.token} ${subject.class_word}`),
        h("span", { class: "card-meta photo-count" },
          `${subject.photo_count} ${subject.photo_count === 1 ? "photo" : "photos"}`),
        h("span", { class: `badge state-${state.key}` }, state.text))));
  return { item, cover };
}

async function loadCover(subject, cover, signal) {
  if (!subject.photo_count) return;
  try {
    const photos = await request(`/v1/subjects/${subject.id}/photos?limit=1`, { signal });
    const photo = photos.data[0];
    if (!photo) return;
    cover.replaceChildren(h("img", { src: photo.url, alt: "", loading: "lazy", width: photo.width, height: photo.height }));
  } catch (error) {
    if (!isAbort(error)) cover.replaceChildren(h("span", { class: "cover-empty" }, "Photo unavailable"));
  }
}

export function subjectsView({ signal, heading }) {
  const list = h("ul", { class: "grid", "aria-label": "Your subjects" });
  const status = h("p", { class: "muted", "aria-live": "polite" }, "Loading your subjects…");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more subjects");
  const view = h("section", { class: "page" },
    h("div", { class: "page-head" }, heading("Subjects"),
      h("a", { href: "#/new", class: "button" }, "New subject")),
    status, list, more);
  let cursor = null;
  let trainings = new Map();

  async function load() {
    more.disabled = true;
    try {
      const query = new URLSearchParams({ limit: "24" });
      if (cursor) query.set("cursor", cursor);
      const [page, bySubject] = await Promise.all([
        request(`/v1/subjects?${query}`, { signal }),
        cursor ? Promise.resolve(trainings) : trainingsBySubject(signal),
      ]);
      trainings = bySubject;
      for (const subject of page.data) {
        const { item, cover } = card(subject, trainings.get(subject.id));
        list.append(item);
        loadCover(subject, cover, signal);
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
      const count = list.children.length;
      status.textContent = count ? `${count} ${count === 1 ? "subject" : "subjects"}${cursor ? " so far" : ""}.`
        : "No subjects yet. Create one from 3 to 5 photos with “New subject”.";
    } catch (error) {
      if (isAbort(error)) return;
      status.textContent = `Could not load your subjects: ${error instanceof ApiError ? error.describe() : error.message}`;
      status.className = "error";
    } finally {
      more.disabled = false;
    }
  }

  more.addEventListener("click", load);
  load();
  return view;
}
