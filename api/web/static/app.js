// The app's shell: signing in and out, the hash routes (#/subjects, #/new, #/subjects/<id>, #/admin), and one
// AbortController per page, so leaving a page stops its streams and polls.

import { ApiError, hasKey, loadKey, onUnauthorized, request, setKey } from "./api.js";
import { announce, clear, field, h } from "./dom.js";
import { adminView } from "./admin.js";
import { newSubjectView } from "./photos.js";
import { subjectView } from "./subject.js";
import { subjectsView } from "./subjects.js";

const main = document.getElementById("main");
let me = null;
let page = null; // {controller}

function heading(text) {
  return h("h1", { tabindex: "-1" }, text);
}

function signInView(message) {
  const input = h("input", {
    type: "password", name: "api_key", autocomplete: "off", spellcheck: "false", required: true,
    placeholder: "svd_...",
  });
  const keyField = field("API key", input, "Your key is kept in this tab only, and forgotten when you sign out or close it.");
  const error = h("p", { class: "error", role: "alert", id: "sign-in-error" }, message || "");
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "card narrow", method: "post", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title", tabindex: "-1" }, "Sign in"),
    h("p", {}, "Sign in with an API key of this service. In development the key is printed when the service starts."),
    keyField, error, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      error.textContent = "Enter an API key.";
      input.focus();
      return;
    }
    submit.disabled = true;
    error.textContent = "";
    try {
      me = await request("/v1/me", { key });
      setKey(key);
      input.value = "";
      showAccount();
      announce(`Signed in as ${me.name}`);
      if (location.hash && location.hash !== "#/" && location.hash !== "#/sign-in") route();
      else location.hash = "#/subjects";
    } catch (exc) {
      error.textContent = exc instanceof ApiError && exc.status === 401
        ? "This key was not accepted." : `Could not sign in: ${exc instanceof ApiError ? exc.describe() : exc.message}`;
      submit.disabled = false;
      input.focus();
      input.select();
    }
  });
  return form;
}

function showAccount() {
  document.getElementById("nav").hidden = !me;
  document.getElementById("account").hidden = !me;
  document.getElementById("nav-admin").hidden = !(me && me.role === "admin");
  document.getElementById("who").textContent = me ? `${me.name} (${me.role})` : "";
}

function signOut(message) {
  setKey(null);
  me = null;
  showAccount();
  render(signInView(message));
  if (location.hash && location.hash !== "#/") history.replaceState(null, "", location.pathname);
  announce(message || "Signed out");
  main.querySelector("input")?.focus();
}

function render(view) {
  page?.controller.abort();
  page = null;
  clear(main);
  main.append(view);
}

function markCurrent(name) {
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.route === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function route() {
  if (!me) {
    render(signInView());
    return;
  }
  const path = (location.hash || "#/subjects").slice(1);
  const parts = path.split("/").filter(Boolean);
  page?.controller.abort();
  const controller = new AbortController();
  page = { controller };
  clear(main);
  const context = { signal: controller.signal, me, heading, main };
  let view;
  if (parts[0] === "subjects" && parts[1]) {
    markCurrent("subjects");
    view = subjectView(parts[1], context);
  } else if (parts[0] === "new") {
    markCurrent("new");
    view = newSubjectView(context);
  } else if (parts[0] === "admin") {
    markCurrent("admin");
    view = me.role === "admin" ? adminView(context) : h("p", { class: "error" }, "Only admins can see this page.");
  } else {
    markCurrent("subjects");
    view = subjectsView(context);
  }
  main.append(view);
  const title = main.querySelector("h1");
  if (title && document.activeElement !== title && !main.contains(document.activeElement)) title.focus();
}

async function boot() {
  document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
  document.getElementById("skip").addEventListener("click", () => main.focus());
  onUnauthorized(() => {
    if (me) signOut("Your key is no longer accepted: sign in again.");
  });
  window.addEventListener("hashchange", route);
  loadKey();
  if (hasKey()) {
    try {
      me = await request("/v1/me");
    } catch {
      setKey(null);
      me = null;
    }
  }
  showAccount();
  route();
}

boot();
