// A new subject from 3 to 5 photos: dragged onto the page or chosen with the file picker, previewed, and checked
// here as the API will check them (type from the bytes, size, shorter side, pixels, count) before anything is
// sent; what the API still refuses comes back as problem+json `errors` (`files[i]`) shown beside each file.

import { ApiError, config, request } from "./api.js";
import { announce, field, formatBytes, h, isAbort } from "./dom.js";

const SIGNATURES = [
  { type: "image/jpeg", name: "JPEG", test: (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff },
  { type: "image/png", name: "PNG",
    test: (b) => [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((v, i) => b[i] === v) },
  { type: "image/webp", name: "WebP",
    test: (b) => String.fromCharCode(...b.slice(0, 4)) === "RIFF" && String.fromCharCode(...b.slice(8, 12)) === "WEBP" },
];

/** What the file's first bytes say it is (the API ignores the declared type and the name too). */
export async function sniffType(file) {
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  return SIGNATURES.find((s) => s.test(head)) || null;
}

/** The problems the API would find with this file, as sentences (none: it will be accepted). */
export async function checkPhoto(file, limits) {
  const problems = [];
  const info = { width: null, height: null };
  if (file.size > limits.max_photo_bytes) {
    problems.push(`${formatBytes(file.size)} is over the ${formatBytes(limits.max_photo_bytes)} limit`);
  }
  const kind = await sniffType(file);
  if (!kind) {
    problems.push("not a JPEG, PNG or WebP image");
    return { problems, info };
  }
  info.format = kind.name;
  try {
    const bitmap = await createImageBitmap(file);
    info.width = bitmap.width;
    info.height = bitmap.height;
    bitmap.close();
  } catch {
    problems.push(`this ${kind.name} cannot be read (corrupt or truncated)`);
    return { problems, info };
  }
  if (info.width * info.height > limits.max_photo_pixels) {
    problems.push(`${info.width}×${info.height} is over ${Math.floor(limits.max_photo_pixels / 1e6)} megapixels`);
  }
  const side = Math.min(info.width, info.height);
  if (side < limits.min_photo_side) {
    problems.push(`${info.width}×${info.height}: the shorter side is ${side} px, at least ${limits.min_photo_side} px needed`);
  }
  return { problems, info };
}

function countProblem(count, limits) {
  if (count < limits.min_photos) return `Add ${limits.min_photos - count} more (${limits.min_photos} to ${limits.max_photos} photos).`;
  if (count > limits.max_photos) return `Remove ${count - limits.max_photos} (${limits.min_photos} to ${limits.max_photos} photos).`;
  return null;
}

export function newSubjectView({ signal, heading }) {
  const name = field("Name", h("input", { name: "name", required: true, maxlength: 100, autocomplete: "off" }),
    "For you: e.g. “Rex”.");
  const classWord = field("Class word", h("input", { name: "class_word", required: true, maxlength: 50,
    autocomplete: "off", placeholder: "dog" }), "What the subject is, in one or two lowercase words: dog, teddy bear, cross.");
  const token = field("Token (optional)", h("input", { name: "token", maxlength: 32, autocomplete: "off",
    pattern: "[a-z][a-z0-9]{1,31}" }), "The word that names the subject in prompts. Leave empty for a rare word picked for you.");
  const picker = h("input", { type: "file", id: "photo-input", name: "files", multiple: true,
    accept: "image/jpeg,image/png,image/webp", class: "file-input" });
  const dropHint = h("p", { class: "drop-hint", id: "drop-hint" }, "Drag 3 to 5 photos here, or ");
  const drop = h("div", { class: "drop-zone", id: "drop-zone" },
    dropHint,
    picker, // visually hidden but focusable: its label is the button, and shows its focus
    h("label", { for: "photo-input", class: "button secondary file-button" }, "Choose photos"),
    h("p", { class: "hint", id: "limits-hint" }, "JPEG, PNG or WebP."));
  const files = h("ul", { class: "file-list", "aria-label": "Selected photos" });
  const count = h("p", { class: "count", id: "photo-count", "aria-live": "polite" }, "No photos yet.");
  const formError = h("div", { class: "error", role: "alert", id: "form-error" });
  const submit = h("button", { type: "submit", disabled: true }, "Create subject");
  const form = h("form", { class: "card", method: "post", novalidate: true, "aria-describedby": "photo-count" },
    name, classWord, token,
    h("fieldset", {}, h("legend", {}, "Photos"), drop, count, files),
    formError, h("div", { class: "actions" }, submit));
  const view = h("section", { class: "page" }, heading("New subject"),
    h("p", { class: "muted" }, "Upload 3 to 5 photos of one subject, from a few angles, then train it."), form);

  let limits = null;
  const entries = []; // {file, url, item, problems, checked, serverError}

  config().then((c) => {
    limits = c;
    picker.setAttribute("aria-describedby", "drop-hint limits-hint photo-count");
    view.querySelector("#limits-hint").textContent =
      `JPEG, PNG or WebP; each at most ${formatBytes(c.max_photo_bytes)}, its shorter side at least ${c.min_photo_side} px; `
      + `${c.min_photos} to ${c.max_photos} photos.`;
    for (const entry of entries) runChecks(entry);
  }).catch((error) => {
    formError.textContent = `Could not read the service's limits: ${error.message}`;
  });

  function refresh() {
    const n = entries.length;
    const bad = entries.filter((e) => e.problems.length || e.serverError).length;
    const pending = entries.some((e) => !e.checked);
    const problem = limits ? countProblem(n, limits) : null;
    let text = n ? `${n} ${n === 1 ? "photo" : "photos"} selected.` : "No photos yet.";
    if (problem) text += ` ${problem}`;
    if (bad) text += ` ${bad} ${bad === 1 ? "photo has" : "photos have"} a problem.`;
    count.textContent = text;
    count.classList.toggle("error", Boolean(n && (problem || bad)));
    submit.disabled = !limits || pending || Boolean(problem) || bad > 0;
  }

  async function runChecks(entry) {
    if (!limits) return;
    const { problems, info } = await checkPhoto(entry.file, limits);
    entry.problems = problems;
    entry.checked = true;
    entry.item.querySelector(".file-dims").textContent =
      info.width ? `${info.format}, ${info.width}×${info.height}, ${formatBytes(entry.file.size)}` : formatBytes(entry.file.size);
    const preview = entry.item.querySelector(".preview");
    if (info.width) preview.replaceChildren(h("img", { src: entry.url, alt: `Preview of ${entry.file.name}` }));
    else preview.replaceChildren(h("span", {}, "No preview"));
    showProblems(entry);
    refresh();
  }

  function showProblems(entry) {
    const list = entry.item.querySelector(".file-problems");
    list.replaceChildren(
      ...entry.problems.map((p) => h("li", {}, p)),
      ...(entry.serverError ? [h("li", { class: "server" }, `Refused by the service: ${entry.serverError}`)] : []));
    const ok = !entry.problems.length && !entry.serverError;
    entry.item.classList.toggle("bad", !ok);
    entry.item.dataset.check = entry.checked ? (ok ? "ok" : "bad") : "pending";
    entry.item.querySelector(".file-ok").textContent = entry.checked && ok ? "Ready to upload" : "";
  }

  function remove(entry) {
    const index = entries.indexOf(entry);
    if (index < 0) return;
    entries.splice(index, 1);
    URL.revokeObjectURL(entry.url);
    entry.item.remove();
    for (const other of entries) {
      other.serverError = null; // the files' indices changed: the API's verdicts no longer match them
      showProblems(other);
    }
    announce(`Removed ${entry.file.name}`);
    refresh();
    (files.querySelector("button") || picker).focus();
  }

  function add(fileList) {
    for (const file of fileList) {
      const url = URL.createObjectURL(file);
      const problemsId = `problems-${Math.random().toString(36).slice(2)}`;
      const entry = { file, url, problems: [], checked: false, serverError: null };
      entry.item = h("li", { class: "file", "data-check": "pending", "data-name": file.name },
        h("div", { class: "preview" }),
        h("div", { class: "file-info" },
          h("p", { class: "file-name" }, file.name),
          h("p", { class: "file-dims muted" }, formatBytes(file.size)),
          h("p", { class: "file-ok" }),
          h("ul", { class: "file-problems", id: problemsId, "aria-live": "polite" })),
        h("button", { type: "button", class: "secondary small", "aria-label": `Remove ${file.name}`,
          "aria-describedby": problemsId, onclick: () => remove(entry) }, "Remove"));
      entries.push(entry);
      files.append(entry.item);
      runChecks(entry);
    }
    for (const other of entries) {
      if (!other.serverError) continue;
      other.serverError = null;
      showProblems(other);
    }
    refresh();
  }

  picker.addEventListener("change", () => {
    add([...picker.files]);
    picker.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("dragging"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    add([...(event.dataTransfer?.files || [])]);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.replaceChildren();
    for (const f of [name, classWord, token]) f.error.textContent = "";
    if (!name.control.value.trim()) name.error.textContent = "Give the subject a name.";
    if (!classWord.control.value.trim()) classWord.error.textContent = "Say what the subject is (a class word).";
    if (!name.control.value.trim() || !classWord.control.value.trim()) {
      (name.control.value.trim() ? classWord.control : name.control).focus();
      return;
    }
    const body = new FormData();
    body.append("name", name.control.value.trim());
    body.append("class_word", classWord.control.value.trim());
    if (token.control.value.trim()) body.append("token", token.control.value.trim());
    for (const entry of entries) body.append("files", entry.file, entry.file.name);
    submit.disabled = true;
    submit.textContent = "Uploading…";
    try {
      const subject = await request("/v1/subjects", { method: "POST", form: body, signal });
      announce(`Created ${subject.name} with ${subject.photo_count} photos`);
      location.hash = `#/subjects/${subject.id}`;
    } catch (error) {
      if (isAbort(error)) return;
      showServerErrors(error);
      submit.textContent = "Create subject";
      refresh();
    }
  });

  function showServerErrors(error) {
    if (!(error instanceof ApiError)) {
      formError.textContent = `The upload failed: ${error.message}`;
      return;
    }
    const general = [];
    for (const item of error.errors) {
      const match = /^files\[(\d+)\]$/.exec(item.field || "");
      const target = { name, class_word: classWord, token }[item.field];
      if (match && entries[Number(match[1])]) {
        const entry = entries[Number(match[1])];
        const prefix = `${entry.file.name}: `;
        entry.serverError = item.detail.startsWith(prefix) ? item.detail.slice(prefix.length) : item.detail;
        showProblems(entry);
      } else if (target) {
        target.error.textContent = item.detail;
      } else {
        general.push(`${item.field}: ${item.detail}`);
      }
    }
    formError.replaceChildren(h("p", {}, error.describe()), ...general.map((g) => h("p", {}, g)));
  }

  return view;
}
