// One subject: its photos, training (live progress, ETA, cancel), checkpoint downloads (shifts, LoRA at a rank),
// generation (alone or combined with another subject's checkpoint) with a gallery, and deletion.

import { ApiError, config, idempotencyKey, latestCheckpoint, listAll, request, toError, trainingsBySubject } from "./api.js";
import { announce, checkbox, field, formatBytes, formatTime, h, isAbort, saveAs, sleep } from "./dom.js";
import { follow, progressView, TERMINAL } from "./events.js";

function describe(error) {
  return error instanceof ApiError ? error.describe() : error.message;
}

/** Show a 422's per-field errors beside the fields; what matches no field goes to `fallback`. */
function showFieldErrors(error, fields, fallback) {
  for (const f of Object.values(fields)) f.error.textContent = "";
  const rest = [];
  for (const item of error instanceof ApiError ? error.errors : []) {
    const name = String(item.field || "").split(".")[0];
    if (fields[name]) fields[name].error.textContent = item.detail;
    else rest.push(`${item.field}: ${item.detail}`);
  }
  fallback.textContent = [describe(error), ...rest].join(" ");
}

function numberOrNull(input) {
  const text = input.value.trim();
  return text === "" ? null : Number(text);
}

export function subjectView(id, { signal, heading }) {
  const view = h("section", { class: "page" }, h("p", { class: "muted", "aria-live": "polite" }, "Loading the subject…"));

  (async () => {
    try {
      const [subject, photos, bySubject, limits, all] = await Promise.all([
        request(`/v1/subjects/${encodeURIComponent(id)}`, { signal }),
        request(`/v1/subjects/${encodeURIComponent(id)}/photos?limit=20`, { signal }),
        trainingsBySubject(signal),
        config(),
        listAll("/v1/subjects", { signal, maxPages: 3 }),
      ]);
      const others = all.filter((s) => s.id !== subject.id)
        .map((s) => ({ subject: s, training: latestCheckpoint(bySubject.get(s.id)) }))
        .filter((o) => o.training);
      build({ subject, photos: photos.data, trainings: bySubject.get(subject.id) || [], limits, others, signal });
    } catch (error) {
      if (isAbort(error)) return;
      view.replaceChildren(heading("Subject"), h("p", { class: "error", role: "alert" },
        error instanceof ApiError && error.status === 404 ? "No such subject (it may have been deleted)."
          : `Could not load the subject: ${describe(error)}`),
      h("p", {}, h("a", { href: "#/subjects" }, "Back to your subjects")));
    }
  })();

  function build(ctx) {
    const { subject } = ctx;
    const checkpoint = checkpointSection(ctx);
    const generate = generateSection(ctx);
    const training = trainingSection(ctx, (job) => {
      checkpoint.set(job.checkpoint_id);
      generate.setCheckpoint(job.checkpoint_id);
    });
    const photos = h("ul", { class: "photo-strip", "aria-label": "Photos" },
      ctx.photos.map((p, i) => h("li", {}, h("img", {
        src: p.url, alt: `Photo ${i + 1} of ${subject.name}`, width: p.width, height: p.height, loading: "lazy",
      }))));
    view.replaceChildren(
      h("p", { class: "crumbs" }, h("a", { href: "#/subjects" }, "← Subjects")),
      h("div", { class: "page-head" }, heading(subject.name)),
      h("p", { class: "muted subject-meta" },
        "Prompts name it ", h("code", {}, `${subject.token} ${subject.class_word}`),
        ` · ${subject.photo_count} ${subject.photo_count === 1 ? "photo" : "photos"} · created ${formatTime(subject.created_at)}`),
      photos,
      training.el,
      checkpoint.el,
      generate.el,
      deleteSection(ctx));
    const current = latestCheckpoint(ctx.trainings);
    if (current) {
      checkpoint.set(current.checkpoint_id);
      generate.setCheckpoint(current.checkpoint_id);
    }
    generate.loadHistory(ctx.trainings.filter((t) => t.checkpoint_id).map((t) => t.checkpoint_id));
  }

  return view;
}

function trainingSection(ctx, onCheckpoint) {
  const { subject, limits, signal } = ctx;
  const progress = progressView("Training");
  const none = h("p", { class: "muted" }, "Not trained yet.");
  const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel training");
  const cancelError = h("p", { class: "error", role: "alert" });
  const steps = field("Steps", h("input", {
    type: "number", name: "steps", min: 1, max: limits.max_training_steps, value: limits.default_training_steps,
    inputmode: "numeric", required: true,
  }), `1 to ${limits.max_training_steps}: more steps learn the subject more closely and take longer.`);
  const rate = field("Learning rate (optional)", h("input", {
    type: "number", name: "learning_rate", min: 0, max: 1, step: "any", placeholder: String(limits.default_learning_rate),
  }), "Leave empty for the service's default.");
  const prior = checkbox("Prior preservation (keeps other members of the class as they were)", "prior_preservation", true);
  const textEncoder = checkbox("Train the text encoder too", "train_text_encoder", true);
  const error = h("p", { class: "error", role: "alert" });
  const start = h("button", { type: "submit" }, "Start training");
  const options = h("fieldset", {}, h("legend", {}, "Training options"), steps, rate, prior, textEncoder);
  const form = h("form", { method: "post", class: "train-form" }, options, error, h("div", { class: "actions" }, start));
  const el = h("section", { class: "card", id: "training", "aria-labelledby": "training-title" },
    h("h2", { id: "training-title" }, "Training"), none, progress.el, h("div", { class: "actions" }, cancel), cancelError,
    form);
  progress.el.hidden = true;
  let current = null;

  function show(job) {
    current = job;
    none.hidden = true;
    progress.el.hidden = false;
    progress.update(job);
    const active = !TERMINAL.has(job.status);
    cancel.hidden = !active;
    start.disabled = active;
    options.disabled = active;
  }

  async function watch(job) {
    show(job);
    if (TERMINAL.has(job.status)) return;
    try {
      const final = await follow(`/v1/trainings/${job.id}`, show, { signal, onSource: progress.setSource });
      if (!final) return;
      if (final.status === "succeeded") {
        announce(`Training of ${subject.name} finished`);
        onCheckpoint(final);
      } else {
        announce(`Training of ${subject.name} ${final.status}`);
      }
    } catch (exc) {
      if (!isAbort(exc)) error.textContent = `Lost track of the training: ${describe(exc)}`;
    }
  }

  cancel.addEventListener("click", async () => {
    if (!current) return;
    cancel.disabled = true;
    cancelError.textContent = "";
    try {
      show(await request(`/v1/trainings/${current.id}/cancel`, { method: "POST", signal }));
      announce("Canceling the training");
    } catch (exc) {
      if (!isAbort(exc)) cancelError.textContent = `Could not cancel: ${describe(exc)}`;
    } finally {
      cancel.disabled = false;
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = {
      subject_ids: [subject.id],
      steps: numberOrNull(steps.control),
      prior_preservation: prior.querySelector("input").checked,
      train_text_encoder: textEncoder.querySelector("input").checked,
    };
    const lr = numberOrNull(rate.control);
    if (lr !== null) body.learning_rate = lr;
    if (body.steps === null) delete body.steps;
    start.disabled = true;
    try {
      const job = await request("/v1/trainings", {
        method: "POST", json: body, signal, headers: { "Idempotency-Key": idempotencyKey() },
      });
      announce("Training started");
      watch(job);
    } catch (exc) {
      if (isAbort(exc)) return;
      showFieldErrors(exc, { steps, learning_rate: rate }, error);
      start.disabled = false;
    }
  });

  if (ctx.trainings[0]) watch(ctx.trainings[0]);
  return { el };
}

function checkpointSection({ signal, limits }) {
  const body = h("div", {}, h("p", { class: "muted" }, "A checkpoint appears here once a training succeeds."));
  const el = h("section", { class: "card", id: "checkpoint", "aria-labelledby": "checkpoint-title" },
    h("h2", { id: "checkpoint-title" }, "Checkpoint"), body);

  async function set(checkpointId) {
    let checkpoint;
    try {
      checkpoint = await request(`/v1/checkpoints/${checkpointId}`, { signal });
    } catch (exc) {
      if (!isAbort(exc)) body.replaceChildren(h("p", { class: "error" }, `Could not load the checkpoint: ${describe(exc)}`));
      return;
    }
    const rank = h("select", { id: "lora-rank", name: "rank" },
      limits.lora_ranks.map((r) => h("option", { value: r, selected: r === 16 }, String(r))));
    const status = h("p", { class: "muted", "aria-live": "polite", id: "lora-status" });
    const lora = h("button", { type: "button", class: "secondary" }, "Download LoRA");
    lora.addEventListener("click", () => downloadLora(checkpoint.id, Number(rank.value), lora, status, signal));
    body.replaceChildren(
      h("dl", { class: "facts" },
        h("dt", {}, "Size"), h("dd", {}, formatBytes(checkpoint.size_bytes)),
        h("dt", {}, "Base model"), h("dd", {}, checkpoint.base_model.split("/").slice(-2).join("/")),
        h("dt", {}, "Created"), h("dd", {}, formatTime(checkpoint.created_at)),
        h("dt", {}, "SHA-256"), h("dd", { class: "mono" }, `${checkpoint.sha256.slice(0, 16)}…`)),
      h("div", { class: "downloads" },
        h("a", { class: "button", href: checkpoint.download_url, download: `${checkpoint.id}.safetensors`,
          id: "download-shifts" }, "Download shifts (.safetensors)"),
        h("div", { class: "lora" }, h("label", { for: "lora-rank" }, "LoRA rank"), rank, lora)),
      status);
  }

  return { el, set };
}

async function downloadLora(checkpointId, rank, button, status, signal) {
  button.disabled = true;
  const deadline = Date.now() + 10 * 60 * 1000;
  try {
    for (;;) {
      const response = await request(`/v1/checkpoints/${checkpointId}/file?format=lora&rank=${rank}`, {
        raw: true, signal, headers: { Accept: "application/octet-stream, application/problem+json" },
      });
      if (response.status === 202) {
        const wait = Math.max(1, Number.parseFloat(response.headers.get("Retry-After") || "5") || 5);
        if (Date.now() + wait * 1000 > deadline) throw new Error("the export is taking too long; try again later");
        status.textContent = `Preparing the rank-${rank} LoRA export; asking again in ${wait} s…`;
        await sleep(wait * 1000, signal);
        continue;
      }
      if (!response.ok) throw await toError(response);
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      saveAs(url, `${checkpointId}-lora-r${rank}.safetensors`);
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      status.textContent = `Downloaded the rank-${rank} LoRA (${formatBytes(blob.size)}).`;
      return;
    }
  } catch (exc) {
    if (!isAbort(exc)) status.textContent = `The LoRA download failed: ${describe(exc)}`;
  } finally {
    button.disabled = false;
  }
}

function generateSection({ subject, others, signal }) {
  const base = `a photo of ${subject.token} ${subject.class_word}`;
  const prompt = field("Prompt", h("textarea", { name: "prompt", rows: 2, required: true, maxlength: 2000 }),
    `Name the subject as “${subject.token} ${subject.class_word}”; add a scene, e.g. “on the beach”.`);
  prompt.control.value = base;
  let edited = false;
  prompt.control.addEventListener("input", () => { edited = true; });
  const combine = field("Combine with", h("select", { name: "combine" },
    h("option", { value: "" }, "No other subject"),
    others.map((o) => h("option", { value: o.subject.id }, `${o.subject.name} (${o.subject.token} ${o.subject.class_word})`))),
  others.length ? "Both checkpoints in one generation; name both subjects in the prompt."
    : "Train another subject to combine two in one image.");
  combine.control.addEventListener("change", () => {
    if (edited) return;
    const other = others.find((o) => o.subject.id === combine.control.value);
    prompt.control.value = other
      ? `a photo of ${subject.token} ${subject.class_word} and ${other.subject.token} ${other.subject.class_word}` : base;
  });
  const count = field("Number of images", h("select", { name: "num_images" },
    [1, 2, 3, 4].map((n) => h("option", { value: n }, String(n)))));
  const seed = field("Seed (optional)", h("input", { type: "number", name: "seed", min: 0, max: 4294967295, step: 1,
    placeholder: "random", inputmode: "numeric" }), "The same seed and settings give the same images.");
  const guidance = field("Guidance (optional)", h("input", { type: "number", name: "guidance_scale", min: 0, max: 30,
    step: "any", placeholder: "default" }), "How closely to follow the prompt (0 to 30).");
  const steps = field("Sampling steps (optional)", h("input", { type: "number", name: "steps", min: 1, max: 150,
    step: 1, placeholder: "default", inputmode: "numeric" }));
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit" }, "Generate");
  const options = h("fieldset", { class: "columns" }, h("legend", {}, "Options"), count, seed, guidance, steps);
  const note = h("p", { class: "muted" }, "Generation needs a trained checkpoint.");
  const form = h("form", { method: "post", class: "generate-form" }, prompt, combine, options, error,
    h("div", { class: "actions" }, submit));
  const progress = progressView("Generation");
  progress.el.hidden = true;
  const gallery = h("ul", { class: "gallery", "aria-label": "Generated images", id: "gallery" });
  const el = h("section", { class: "card", id: "generate", "aria-labelledby": "generate-title" },
    h("h2", { id: "generate-title" }, "Generate"), note, form, progress.el, gallery);
  let checkpointId = null;
  form.hidden = true;

  function addImages(job, first = true) {
    const items = job.images.map((image, i) => h("li", {},
      h("figure", {},
        h("img", { src: image.url, width: image.width, height: image.height, loading: "lazy",
          alt: `${job.params?.prompt || "Generated image"} (image ${i + 1} of ${job.images.length}, seed ${image.seed})` }),
        h("figcaption", {}, `seed ${image.seed} · `,
          h("a", { href: image.url, download: `${job.id}-${i}.${image.format || "png"}` }, "Download",
            h("span", { class: "visually-hidden" }, ` image ${i + 1} of ${job.images.length}`))))));
    if (first) gallery.prepend(...items);
    else gallery.append(...items);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const checkpoints = [{ id: checkpointId }];
    const other = others.find((o) => o.subject.id === combine.control.value);
    if (other) checkpoints.push({ id: other.training.checkpoint_id });
    const body = { prompt: prompt.control.value.trim(), checkpoints, num_images: Number(count.control.value) };
    for (const [name, f] of [["seed", seed], ["guidance_scale", guidance], ["steps", steps]]) {
      const value = numberOrNull(f.control);
      if (value !== null) body[name] = value;
    }
    submit.disabled = true;
    try {
      const job = await request("/v1/generations", {
        method: "POST", json: body, signal, headers: { "Idempotency-Key": idempotencyKey() },
      });
      progress.el.hidden = false;
      progress.update(job);
      announce("Generation started");
      const final = await follow(`/v1/generations/${job.id}`, progress.update, { signal, onSource: progress.setSource });
      if (final?.status === "succeeded") {
        addImages(final);
        announce(`${final.images.length} ${final.images.length === 1 ? "image" : "images"} ready`);
      }
    } catch (exc) {
      if (isAbort(exc)) return;
      showFieldErrors(exc, { prompt, seed, guidance_scale: guidance, steps, num_images: count }, error);
    } finally {
      submit.disabled = false;
    }
  });

  function setCheckpoint(id) {
    checkpointId = id;
    form.hidden = false;
    note.hidden = true;
  }

  async function loadHistory(checkpointIds) {
    if (!checkpointIds.length) return;
    const mine = new Set(checkpointIds);
    try {
      const page = await request("/v1/generations?limit=50", { signal });
      for (const job of page.data) {
        const used = (job.params?.checkpoints || []).map((c) => c.id);
        if (job.status === "succeeded" && used.some((c) => mine.has(c))) addImages(job, false);
      }
    } catch (exc) {
      if (!isAbort(exc)) error.textContent = `Could not load earlier images: ${describe(exc)}`;
    }
  }

  return { el, setCheckpoint, loadHistory };
}

function deleteSection({ subject, signal }) {
  const confirm = h("button", { type: "button", class: "danger" }, "Delete");
  const keep = h("button", { type: "button", class: "secondary", autofocus: true }, "Keep it");
  const dialogError = h("p", { class: "error", role: "alert" });
  const dialog = h("dialog", { "aria-labelledby": "delete-title", "aria-describedby": "delete-text" },
    h("h2", { id: "delete-title" }, `Delete ${subject.name}?`),
    h("p", { id: "delete-text" },
      "Its photos, the trainings made from it and their checkpoints are deleted for good. Images already generated stay."),
    dialogError, h("div", { class: "actions" }, keep, confirm));
  const open = h("button", { type: "button", class: "danger" }, "Delete subject…");
  open.addEventListener("click", () => dialog.showModal());
  keep.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    try {
      await request(`/v1/subjects/${subject.id}`, { method: "DELETE", signal });
      dialog.close();
      announce(`Deleted ${subject.name}`);
      location.hash = "#/subjects";
    } catch (exc) {
      if (!isAbort(exc)) dialogError.textContent = `Could not delete: ${describe(exc)}`;
    } finally {
      confirm.disabled = false;
    }
  });
  return h("section", { class: "card danger-zone", "aria-labelledby": "danger-title" },
    h("h2", { id: "danger-title" }, "Delete"),
    h("p", { class: "muted" }, "Deleting removes the photos, trainings and checkpoints of this subject."), open, dialog);
}
