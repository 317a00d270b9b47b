// airhook's "Webhooks" page: sources, subscriptions, recorded events, deliveries, activity.
//
// Plain ES module, no framework, no build: this file is what the wheel ships. Every call goes
// to the management API next to the page (../api/v1/ from this file), with the UI's session
// cookie (same origin). Text from the API is set with textContent, never parsed as HTML.
// A secret reaches the DOM only in the one-time reveal box, which is emptied when it closes.
//
// Why one file of ~1,700 lines: with no build step, every extra module is another request and
// another file to keep in the wheel's package data; the file is sectioned (API, state, rendering
// helpers, the four tabs, dialogs) and tests/e2e/test_page.py drives all of it. Splitting it
// along those sections into ES modules is the next step if it grows.

const API = new URL("../api/v1/", import.meta.url);
// <[api] base_url path>/airhook/manage/api/v1/ -> <[api] base_url path>/
const AIRFLOW = new URL("../../../../", API);
const REFRESH_MS = 5000;
const PAGE_SIZE = 50;

const state = {
  me: { user: "", can_write: false },
  catalog: null,
  catalogError: null,
  tab: "sources",
  sources: [],
  subscriptions: [],
  events: { filters: {}, offset: 0, selected: new Set(), open: null },
  deliveries: { filters: {}, offset: 0, selected: new Set(), open: null },
  shown: new Map(), // what each region last rendered (JSON), so a refresh re-renders on change only
  loggingIn: false,
};

// --- DOM -----------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "testid") el.dataset.testid = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "value") el.value = value;
    else if (key === "checked" || key === "disabled" || key === "selected") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

function $(selector, root = document) {
  return root.querySelector(selector);
}

// A write control: rendered only for users who may write (GET /whoami -> can_write).
function writeButton(label, attrs = {}) {
  if (!state.me.can_write) return null;
  return h("button", { type: "button", "data-write": true, ...attrs }, label);
}

function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const text = date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  return h("time", { datetime: iso, title: iso }, text);
}

function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}`, testid: "state" }, text);
}

function code(text) {
  return h("code", {}, text);
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function absolute(url) {
  if (!url) return "";
  try {
    return new URL(url, window.location.origin).href;
  } catch {
    return String(url);
  }
}

function list(values) {
  return values && values.length ? values.join(", ") : "";
}

function splitList(text) {
  return String(text || "")
    .split(/[\s,]+/)
    .map((item) => item.trim())
    .filter(Boolean);
}

// --- API -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail, what) {
    super(`${what}: HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.what = what;
  }
}

async function api(method, path, { body, query } = {}) {
  const url = new URL(path, API);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body ?? {});
  }
  const what = `${method} ${url.pathname}`;
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(0, `the API server could not be reached (${error.message})`, what);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  let parsed = false;
  try {
    data = text ? JSON.parse(text) : null;
    parsed = true;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) toLogin();
    let detail = data && data.detail !== undefined ? data.detail : null;
    if (!parsed) {
      // Not the API's JSON (a proxy's or a plain server's page): its text, briefly.
      const plain = new DOMParser().parseFromString(text, "text/html").body?.textContent || "";
      detail = `${response.statusText || "error"}: the answer is not the API's JSON (${
        response.headers.get("Content-Type") || "no type"
      }). ${plain.replace(/\s+/g, " ").trim().slice(0, 200)}`;
      if (response.status === 404) detail += " Is airhook's management API installed on this API server?";
    }
    throw new ApiError(response.status, detail ?? response.statusText, what);
  }
  if (!parsed) throw new ApiError(response.status, "the answer is not JSON", what);
  return data;
}

function toLogin() {
  if (state.loggingIn) return;
  state.loggingIn = true;
  try {
    const top = window.top;
    const login = new URL("api/v2/auth/login", AIRFLOW);
    login.searchParams.set("next", top.location.href);
    top.location.assign(login.href);
  } catch {
    window.location.assign(new URL("api/v2/auth/login", AIRFLOW).href);
  }
}

function detailText(detail) {
  if (detail === null || detail === undefined) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        if (!item || typeof item !== "object") return String(item);
        const where = (item.loc || []).filter((part) => part !== "body").join(".");
        const message = item.msg ?? json(item);
        return where ? `${where}: ${message}` : message;
      })
      .join("\n");
  }
  return json(detail);
}

function errorBox(error, title) {
  const status = error instanceof ApiError ? error.status : null;
  const heading = title || "Something went wrong";
  const detail = error instanceof ApiError ? detailText(error.detail) : String(error?.message || error);
  return h(
    "div",
    { class: "error", role: "alert", testid: "error", dataset: { status: status ?? "" } },
    h("strong", {}, heading),
    status !== null
      ? h("span", { class: "muted" }, status ? ` (HTTP ${status}, ${error.what})` : ` (${error.what})`)
      : null,
    detail ? h("pre", { class: "detail", testid: "error-detail" }, detail) : null,
    status === 401 ? h("p", {}, "Your Airflow session has ended: opening the login page…") : null,
    status === 403
      ? h("p", {}, "Your Airflow role may not do this (op or admin may change webhooks).")
      : null,
  );
}

function showError(slot, error, title) {
  clear(slot).append(errorBox(error, title));
}

let noticeTimer = null;
function notice(text) {
  const el = $("#notice");
  if (!el) return;
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    el.hidden = true;
  }, 8000);
}

// --- dialogs -------------------------------------------------------------------------------

function openDialog({ title, testid, body, wide = false, onClose }) {
  const dialog = h("dialog", { class: wide ? "wide" : "", testid, "aria-label": title });
  const content = h("div", { class: "dialog-body" });
  const close = () => dialog.close();
  dialog.append(
    h(
      "header",
      {},
      h("h2", {}, title),
      h("button", { type: "button", class: "icon", "aria-label": "Close", testid: "dialog-close", onclick: close }, "×"),
    ),
    content,
  );
  dialog.addEventListener("close", () => {
    if (onClose) onClose();
    // Empties every field (a revealed secret included) before the dialog leaves the DOM.
    for (const input of dialog.querySelectorAll("input, textarea")) input.value = "";
    dialog.remove();
    scheduleRefresh();
  });
  document.body.append(dialog);
  append(content, [body]);
  dialog.showModal();
  return { dialog, content, close };
}

// Asks before doing `action`; errors stay in the dialog, success closes it.
function confirmAction({ title, text, okLabel, danger = true, action }) {
  const slot = h("div", { class: "slot" });
  const ok = h("button", { type: "submit", class: danger ? "danger" : "primary", testid: "confirm-ok" }, okLabel);
  const form = h(
    "form",
    { method: "dialog" },
    h("p", {}, text),
    slot,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", testid: "confirm-cancel", onclick: () => view.close() }, "Cancel"),
      ok,
    ),
  );
  const view = openDialog({ title, testid: "confirm", body: form });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    ok.disabled = true;
    clear(slot);
    try {
      await action();
      view.close();
    } catch (error) {
      showError(slot, error, `${okLabel} failed`);
      ok.disabled = false;
    }
  });
}

function copyButton(input, testid) {
  return h(
    "button",
    {
      type: "button",
      testid,
      onclick: async (event) => {
        const button = event.currentTarget;
        try {
          await navigator.clipboard.writeText(input.value);
        } catch {
          input.select();
          document.execCommand("copy");
        }
        button.textContent = "Copied";
        setTimeout(() => {
          button.textContent = "Copy";
        }, 2000);
      },
    },
    "Copy",
  );
}

function copyField(label, value, testid) {
  const input = h("input", { type: "text", readonly: true, value, testid, spellcheck: "false", autocomplete: "off" });
  return h(
    "label",
    { class: "field" },
    h("span", {}, label),
    h("span", { class: "copy" }, input, copyButton(input, `${testid}-copy`)),
  );
}

// The one place a secret is put into the DOM. Emptied when the dialog closes (openDialog).
function revealSecret(content, { heading, receiverUrl, secret, steps, note }) {
  clear(content);
  const box = h(
    "div",
    { class: "reveal", testid: "reveal" },
    h("p", { class: "ok" }, heading),
    receiverUrl ? copyField("Receiver URL", absolute(receiverUrl), "reveal-url") : null,
    secret
      ? [
          copyField("Secret", secret, "reveal-secret"),
          h("p", { class: "warn" }, "Shown once: copy it now. airhook keeps it encrypted and never shows it again."),
        ]
      : null,
    note ? h("p", {}, note) : null,
    steps && steps.length
      ? [h("h3", {}, "Set it up on the platform"), h("ol", { testid: "setup-steps" }, steps.map((s) => h("li", {}, s)))]
      : null,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "primary", testid: "reveal-close", onclick: () => content.closest("dialog").close() }, "Done"),
    ),
  );
  content.append(box);
}

// --- forms ---------------------------------------------------------------------------------

function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", {}, label), control, hint ? h("small", { class: "muted" }, hint) : null);
}

function textInput(name, value = "", attrs = {}) {
  return h("input", { type: "text", name, value: value ?? "", autocomplete: "off", spellcheck: "false", ...attrs });
}

function select(name, options, value, attrs = {}) {
  return h(
    "select",
    { name, ...attrs },
    options.map(([optionValue, label]) => h("option", { value: optionValue, selected: optionValue === value }, label)),
  );
}

function checkbox(name, checked, label, attrs = {}) {
  return h("label", { class: "check" }, h("input", { type: "checkbox", name, checked, ...attrs }), " ", label);
}

// Events grouped by their catalog group, with `*` choices: everything, or a whole group.
function eventsPicker(events, chosen = ["*"], { extra = false } = {}) {
  const picked = new Set(chosen);
  const boxes = [];
  const box = (value, label, hint) => {
    const input = h("input", { type: "checkbox", value, checked: picked.has(value) });
    boxes.push(input);
    input.addEventListener("change", sync);
    return h("label", { class: "check" }, input, " ", code(label), hint ? h("small", { class: "muted" }, ` ${hint}`) : null);
  };
  const groups = new Map();
  for (const event of events) {
    const group = event.group || event.name.split(".")[0];
    if (!groups.has(group)) groups.set(group, []);
    if (!groups.get(group).some((e) => e.name === event.name)) groups.get(group).push(event);
  }
  const known = new Set(["*"]);
  const all = box("*", "*", "every event");
  const sets = [];
  for (const [group, members] of [...groups.entries()].sort()) {
    const wildcard = `${group}.*`;
    const hasWildcard = members.length > 1 && members.every((e) => e.name.startsWith(`${group}.`));
    if (hasWildcard) known.add(wildcard);
    const memberBoxes = members.map((e) => {
      known.add(e.name);
      return box(e.name, e.name, e.kind && e.kind !== e.name ? `→ ${e.kind}` : "");
    });
    sets.push(
      h(
        "fieldset",
        { class: "group", dataset: { group } },
        h("legend", {}, hasWildcard ? box(wildcard, wildcard, "") : code(group)),
        memberBoxes,
      ),
    );
  }
  const others = chosen.filter((pattern) => !known.has(pattern));
  const more = extra || others.length ? textInput("more_events", others.join(", "), { placeholder: "other patterns, e.g. order.*", testid: "more-events" }) : null;
  function sync() {
    const everything = boxes[0].checked;
    for (const input of boxes.slice(1)) {
      const groupWildcard = input.value.endsWith(".*");
      const group = input.closest("fieldset")?.dataset.group;
      const groupOn = !groupWildcard && boxes.some((b) => b.value === `${group}.*` && b.checked);
      input.disabled = everything || groupOn;
    }
  }
  sync();
  const element = h("div", { class: "events-picker", testid: "events-picker" }, h("div", { class: "all" }, all), h("div", { class: "groups" }, sets), more);
  return {
    element,
    value() {
      const values = boxes.filter((b) => b.checked && !b.disabled).map((b) => b.value);
      if (more) values.push(...splitList(more.value));
      return values;
    },
  };
}

function catalogPlatforms() {
  return state.catalog?.platforms || [];
}

function platformOf(profile) {
  return catalogPlatforms().find((p) => p.profile === profile);
}

function allCatalogEvents() {
  return catalogPlatforms().flatMap((p) => p.events.map((e) => ({ ...e, platform: p.profile })));
}

async function ensureCatalog() {
  if (state.catalog) return state.catalog;
  state.catalog = await api("GET", "catalog");
  return state.catalog;
}

function parseJsonField(text, what) {
  if (!text.trim()) return {};
  try {
    const value = JSON.parse(text);
    if (value && typeof value === "object" && !Array.isArray(value)) return value;
  } catch {
    // fall through
  }
  throw new ApiError("", `${what} must be a JSON object`, "form");
}

function formError(slot, error, title) {
  showError(slot, error, title);
  slot.scrollIntoView({ block: "nearest" });
}

// A wide dialog that needs the event catalog: "Loading the catalog…" until it is there. Null
// when the catalog cannot be loaded (the dialog shows why).
async function catalogDialog({ title, testid }) {
  const view = openDialog({ title, testid, wide: true, body: h("p", { class: "muted" }, "Loading the catalog…") });
  try {
    await ensureCatalog();
  } catch (error) {
    clear(view.content).append(errorBox(error, "The event catalog could not be loaded"));
    return null;
  }
  return view;
}

function formActions(view, submit) {
  return h("div", { class: "actions" }, h("button", { type: "button", onclick: () => view.close() }, "Cancel"), submit);
}

// Runs `save` when the form is submitted, its button disabled meanwhile; on an error the button
// is enabled again and the error shown in `slot` as `failed`.
function onSubmit(form, submit, slot, failed, save) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(slot);
    submit.disabled = true;
    try {
      await save();
    } catch (error) {
      formError(slot, error, failed);
      submit.disabled = false;
    }
  });
}

// A test send: pick a catalog event, send it (`send` answers what to show), see the result.
async function testDialog(name, { intro, sendLabel, eventControl, send }) {
  const view = await catalogDialog({ title: `Test ${name}`, testid: "test" });
  if (!view) return;
  const slot = h("div", { class: "slot" });
  const result = h("div", { testid: "test-result-slot" });
  const eventSelect = eventControl();
  const button = h("button", { type: "submit", class: "primary", testid: "test-send" }, sendLabel);
  const form = h("form", { class: "form" }, h("p", { class: "muted" }, intro), field("Event", eventSelect), h("div", { class: "actions" }, button), slot, result);
  clear(view.content).append(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(slot);
    clear(result);
    button.disabled = true;
    try {
      result.append(await send(eventSelect.value));
    } catch (error) {
      showError(slot, error, "The test was not sent");
    } finally {
      button.disabled = false;
    }
  });
}

// --- sources and subscriptions: named, listed whole, each with its row of actions ----------

function loading() {
  return h("p", { class: "muted", testid: "loading" }, "Loading…");
}

// A tab's heading: what it is, what it shows, and its buttons.
function toolbar(title, text, ...buttons) {
  return h("div", { class: "toolbar" }, h("div", {}, h("h2", {}, title), h("p", { class: "muted" }, text)), buttons);
}

function namedPanel(kind, title, text, add) {
  return h(
    "section",
    { class: "panel", testid: `${kind}-panel` },
    toolbar(title, text, add),
    h("div", { id: `${kind}-error`, class: "slot" }),
    h("div", { id: `${kind}-list` }, loading()),
  );
}

async function loadNamed(kind, render) {
  const panel = $(`#${kind}-list`);
  try {
    const page = await api("GET", kind, { query: { limit: 500 } });
    state[kind] = page.items;
    setCount(kind, page.total);
    renderIfChanged(kind, page, () => render(page));
  } catch (error) {
    state.shown.delete(kind);
    if (panel) showError(panel, error, `The ${kind} could not be loaded`);
  }
}

function renderNamed(kind, page, { empty, headers, row }) {
  const panel = $(`#${kind}-list`);
  if (!panel) return;
  clear(panel);
  if (!page.items.length) {
    panel.append(h("p", { class: "empty", testid: "empty" }, `No ${kind} yet. `, state.me.can_write ? empty : ""));
    return;
  }
  panel.append(
    h(
      "table",
      { class: "list", testid: `${kind}-table` },
      h("thead", {}, h("tr", {}, headers.map((c) => h("th", {}, c)))),
      h("tbody", {}, page.items.map(row)),
    ),
  );
}

// Deletes the source or subscription (`one`) called `name` of `kind`, once confirmed.
function deleteButton(kind, one, name, text, reload) {
  return writeButton("Delete", {
    testid: `${one}-delete`,
    class: "danger",
    onclick: () =>
      confirmAction({
        title: `Delete ${one} ${name}?`,
        text,
        okLabel: "Delete",
        action: async () => {
          await api("DELETE", `${kind}/${encodeURIComponent(name)}`);
          notice(`${one[0].toUpperCase()}${one.slice(1)} ${name} deleted.`);
          await reload();
        },
      }),
  });
}

// --- sources -------------------------------------------------------------------------------

async function sourceForm(existing) {
  const slot = h("div", { class: "slot", testid: "form-error" });
  const view = await catalogDialog({ title: existing ? `Edit source ${existing.name}` : "Add a webhook source", testid: "source-form" });
  if (!view) return;
  const platforms = catalogPlatforms();
  const profile = existing?.profile || platforms[0]?.profile || "";
  const name = existing ? null : textInput("name", "", { required: true, testid: "source-name", placeholder: "e.g. rkt-sales" });
  const platform = existing
    ? null
    : select("profile", platforms.map((p) => [p.profile, p.title]), profile, { testid: "source-platform" });
  const eventsSlot = h("div", {});
  const stepsSlot = h("div", {});
  let picker = null;
  const showPlatform = (chosen) => {
    const info = platformOf(chosen);
    picker = eventsPicker(info ? info.events : [], existing?.events || ["*"], { extra: !info });
    clear(eventsSlot).append(picker.element);
    clear(stepsSlot);
    if (!existing && info?.setup_steps?.length) {
      stepsSlot.append(
        h("details", {}, h("summary", {}, `How to set it up in ${info.title}`), h("ol", {}, info.setup_steps.map((s) => h("li", {}, s)))),
      );
    }
  };
  showPlatform(profile);
  platform?.addEventListener("change", () => showPlatform(platform.value));
  const schemes = state.catalog.schemes || [];
  const scheme = existing
    ? null
    : select("scheme", [["", "the platform's own"], ...schemes.map((s) => [s, s])], "", { testid: "source-scheme" });
  const allowIps = textInput("allow_ips", list(existing?.allow_ips), { placeholder: "any address" });
  const chatbots = textInput("chatbot_ids", list(existing?.chatbot_ids), { placeholder: "any chatbot" });
  const maxBody = h("input", { type: "number", name: "max_body_bytes", min: 1, value: existing?.max_body_bytes ?? "" });
  const options = h("textarea", { name: "scheme_options", rows: 3, spellcheck: "false" }, existing ? json(existing.scheme_options || {}) : "");
  const active = h("input", { type: "checkbox", name: "active", checked: existing ? existing.active : true, testid: "source-active" });
  // Typed by the user (a platform that generates its own secret); emptied when the dialog closes.
  const ownSecret = existing ? null : h("input", { type: "password", name: "secret", autocomplete: "new-password", testid: "source-secret" });
  const ownSecondary = existing ? null : h("input", { type: "password", name: "secondary_secret", autocomplete: "new-password" });
  const submit = h("button", { type: "submit", class: "primary", testid: "source-submit" }, existing ? "Save" : "Create");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    name ? field("Name", name, "lower-case letters, digits, '-' and '_'; it becomes the receiver URL's last part") : null,
    platform ? field("Platform", platform) : field("Platform", h("span", {}, code(existing.profile))),
    h("div", { class: "field" }, h("span", {}, "Events"), eventsSlot),
    stepsSlot,
    ownSecret
      ? field("The platform's secret (optional)", ownSecret, "empty: airhook generates one and shows it once; paste the platform's own when it generates it (RKT, CCAI Platform)")
      : null,
    h(
      "details",
      { class: "advanced" },
      h("summary", {}, "More settings"),
      scheme ? field("Signing scheme", scheme) : null,
      ownSecondary ? field("The platform's secondary secret", ownSecondary, "CCAI Platform signs with two") : null,
      field("Allowed IP addresses", allowIps, "comma-separated addresses or networks"),
      field("Chatbot IDs", chatbots, "comma-separated; RKT's chatbotId"),
      field("Largest body (bytes)", maxBody, "empty: [airhook] default"),
      field("Scheme options (JSON)", options, 'e.g. {"header": "X-Signature"} for hmac'),
    ),
    h("label", { class: "check" }, active, " Active (accept deliveries)"),
    slot,
    formActions(view, submit),
  );
  clear(view.content).append(form);
  onSubmit(form, submit, slot, existing ? "The source was not saved" : "The source was not created", async () => {
    const body = {
      events: picker.value(),
      allow_ips: splitList(allowIps.value),
      chatbot_ids: splitList(chatbots.value),
      active: active.checked,
      scheme_options: parseJsonField(options.value, "Scheme options"),
    };
    if (maxBody.value) body.max_body_bytes = Number(maxBody.value);
    if (existing) {
      if (!maxBody.value) delete body.max_body_bytes;
      await api("PATCH", `sources/${encodeURIComponent(existing.name)}`, { body });
      view.close();
      notice(`Source ${existing.name} saved.`);
    } else {
      body.name = name.value.trim();
      body.profile = platform.value;
      if (scheme.value) body.scheme = scheme.value;
      if (ownSecret.value) body.secret = ownSecret.value;
      if (ownSecondary.value) body.secondary_secret = ownSecondary.value;
      const created = await api("POST", "sources", { body });
      ownSecret.value = "";
      ownSecondary.value = "";
      revealSecret(view.content, {
        heading: created.secret
          ? `Source ${created.source.name} created. Paste the URL and the secret into ${platformOf(body.profile)?.title || body.profile}.`
          : `Source ${created.source.name} created with the platform's secret. Paste the URL into ${platformOf(body.profile)?.title || body.profile}.`,
        receiverUrl: created.setup?.receiver_url || created.source.receiver_url,
        secret: created.secret,
        steps: created.setup?.steps,
      });
    }
    await loadSources();
  });
}

function secretsDialog(kind, item) {
  const path = `${kind === "source" ? "sources" : "subscriptions"}/${encodeURIComponent(item.name)}/secrets`;
  const slot = h("div", { class: "slot" });
  const run = (action, label, extra = {}) => async () => {
    clear(slot);
    try {
      const answer = await api("POST", path, { body: { action, ...extra } });
      const updated = answer.source || answer.subscription;
      if (answer.secret) {
        revealSecret(view.content, {
          heading: `${label}: done. The new secret for ${item.name}:`,
          receiverUrl: kind === "source" ? updated?.receiver_url : null,
          secret: answer.secret,
          note:
            kind === "source"
              ? "Both the primary and the secondary secret verify deliveries until you drop one."
              : "Deliveries are signed with both secrets until you drop one.",
        });
      } else {
        view.close();
        notice(`${label}: done for ${item.name}.`);
      }
      await reloadCurrent();
    } catch (error) {
      showError(slot, error, `${label} failed`);
    }
  };
  const second = item.has_secondary_secret;
  const actions = [
    ["generate-secondary", "Generate a secondary secret", "Add a second secret to hand over to the other side first.", !second],
    ["rotate", "Rotate", "The secondary becomes the primary; the old primary stays as the secondary until you drop it.", second],
    ["regenerate", "Regenerate", "A new primary; the old one stays as the secondary during the changeover.", true],
    ["drop-secondary", "Drop the secondary", "Only the primary verifies or signs from now on.", second],
  ];
  const body = h(
    "div",
    {},
    h("p", {}, "Secondary secret: ", h("strong", { testid: "has-secondary" }, second ? "yes" : "no")),
    h(
      "div",
      { class: "secret-actions" },
      actions.map(([action, label, hint, enabled]) =>
        h(
          "div",
          { class: "secret-action" },
          h("button", { type: "button", "data-write": true, testid: `secret-${action}`, disabled: !enabled, onclick: run(action, label) }, label),
          h("small", { class: "muted" }, hint),
        ),
      ),
    ),
    kind === "source" ? platformSecondary() : null,
    slot,
  );
  function platformSecondary() {
    const input = h("input", { type: "password", autocomplete: "new-password", required: true, "aria-label": "the platform's new secret" });
    const form = h(
      "form",
      { class: "secret-action" },
      h("button", { type: "submit", "data-write": true, testid: "secret-set-secondary" }, "Set the platform's secondary"),
      h("span", {}, input, h("small", { class: "muted" }, "when the platform generates secrets (CCAI Platform): paste its new one, then rotate")),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const secret = input.value;
      input.value = "";
      run("set-secondary", "Set the platform's secret as secondary", { secret })();
    });
    return form;
  }
  const view = openDialog({ title: `Secrets of ${item.name}`, testid: "secrets", body });
}

function sourceTest(source) {
  return testDialog(source.name, {
    intro: "A catalog sample, signed with this source's own secret, is posted to its receiver URL: it is recorded and starts the DAGs scheduled on it.",
    sendLabel: "Send a signed sample",
    eventControl: () => {
      const events = (platformOf(source.profile)?.events || []).map((e) => [e.name, e.name]);
      return events.length ? select("event", events, events[0][0], { testid: "test-event" }) : textInput("event", "", { testid: "test-event" });
    },
    send: async (event) => {
      const answer = await api("POST", `sources/${encodeURIComponent(source.name)}/test`, { body: { event } });
      loadSources();
      return h(
        "div",
        { class: "result", testid: "test-result" },
        h("p", {}, "Receiver answered ", badge(String(answer.status), answer.status < 300 ? "ok" : "failed"), answer.event_id ? [" · event ", code(answer.event_id)] : null),
        h("p", {}, "DAGs scheduled on it: ", answer.dags?.length ? answer.dags.map((d) => code(d)) : h("span", { class: "muted" }, "none")),
        h("pre", { class: "payload" }, json(answer.answer)),
      );
    },
  });
}

function loadSources() {
  return loadNamed("sources", renderSources);
}

function renderSources(page) {
  renderNamed("sources", page, {
    empty: "Add one to receive a platform's webhooks.",
    headers: ["Name", "Platform", "Events", "State", "Received", ""],
    row: (s) =>
      h(
        "tr",
        { testid: "source-row", dataset: { name: s.name } },
        h("td", { "data-label": "Name" }, h("strong", {}, s.name), h("div", { class: "url" }, h("small", { class: "muted", testid: "receiver-url" }, absolute(s.receiver_url)))),
        h("td", { "data-label": "Platform" }, code(s.profile), s.scheme !== s.profile ? h("small", { class: "muted" }, ` signed ${s.scheme}`) : null),
        h("td", { "data-label": "Events" }, h("span", { class: "events" }, list(s.events) || "*")),
        h("td", { "data-label": "State" }, s.active ? badge("active") : badge("disabled"), s.has_secondary_secret ? h("small", { class: "muted" }, " 2 secrets") : null),
        h("td", { "data-label": "Received" }, h("span", { testid: "received" }, String(s.events_received ?? 0)), " ", h("small", { class: "muted" }, s.last_received_at ? ["last ", time(s.last_received_at)] : "")),
        h(
          "td",
          { class: "row-actions" },
          h("button", { type: "button", testid: "source-events", onclick: () => showOnly("events", { source: s.name }) }, "Events"),
          writeButton("Edit", { testid: "source-edit", onclick: () => sourceForm(s) }),
          writeButton("Test", { testid: "source-test", onclick: () => sourceTest(s) }),
          writeButton("Secrets", { testid: "source-secrets", onclick: () => secretsDialog("source", s) }),
          writeButton(s.active ? "Disable" : "Enable", {
            testid: "source-toggle",
            onclick: () => toggle("sources", s.name, !s.active),
          }),
          deleteButton("sources", "source", s.name, `Deliveries to ${absolute(s.receiver_url)} will be refused. Its recorded events stay.`, loadSources),
        ),
      ),
  });
}

async function toggle(collection, name, active) {
  const slot = $(`#${collection}-error`);
  clear(slot);
  try {
    await api("PATCH", `${collection}/${encodeURIComponent(name)}`, { body: { active } });
    notice(`${name} ${active ? "enabled" : "disabled"}.`);
  } catch (error) {
    showError(slot, error, `${name} was not ${active ? "enabled" : "disabled"}`);
  }
  await reloadCurrent();
}

// --- subscriptions -------------------------------------------------------------------------

async function subscriptionForm(existing) {
  const slot = h("div", { class: "slot", testid: "form-error" });
  const view = await catalogDialog({
    title: existing ? `Edit subscription ${existing.name}` : "Add a webhook subscription",
    testid: "subscription-form",
  });
  if (!view) return;
  const name = existing ? null : textInput("name", "", { required: true, testid: "subscription-name", placeholder: "e.g. crm" });
  const url = h("input", {
    type: "url",
    name: "url",
    testid: "subscription-url",
    autocomplete: "off",
    placeholder: existing ? `${existing.url} (unchanged if empty)` : "https://example.com/hooks/airflow",
  });
  const picker = eventsPicker(allCatalogEvents(), existing?.events || ["*"], { extra: true });
  const schemes = state.catalog.schemes || ["standard"];
  const scheme = select("scheme", [...schemes.map((s) => [s, s]), ["none", "none (unsigned)"]], existing?.scheme || "standard", { testid: "subscription-scheme" });
  const method = select("method", ["POST", "PUT", "PATCH"].map((m) => [m, m]), existing?.method || "POST");
  const timeout = h("input", { type: "number", name: "timeout", min: 0.1, step: "any", value: existing?.timeout ?? "" });
  const headers = h("textarea", {
    name: "headers",
    rows: 2,
    spellcheck: "false",
    placeholder: existing?.header_names?.length ? `${existing.header_names.join(", ")} (unchanged if empty)` : "Name: value, one a line",
  });
  const template = h("textarea", { name: "body_template", rows: 4, spellcheck: "false", testid: "subscription-template", placeholder: "empty: the event payload as it is" }, existing?.body_template || "");
  const shipped = state.catalog.templates || [];
  const templatePick = shipped.length
    ? h(
        "div",
        { class: "chips" },
        "Shipped: ",
        shipped.map((t) => h("button", { type: "button", class: "chip", onclick: () => (template.value = typeof t === "string" ? t : t.name) }, typeof t === "string" ? t : t.name)),
      )
    : null;
  const retry = textInput("retry_schedule", existing?.retry_schedule ? existing.retry_schedule.join(", ") : "", { placeholder: "default, e.g. 0, 5, 60, 300" });
  const chatbots = textInput("chatbot_ids", list(existing?.chatbot_ids), { placeholder: "any chatbot" });
  const active = h("input", { type: "checkbox", name: "active", checked: existing ? existing.state !== "disabled" && existing.active : true, testid: "subscription-active" });
  const submit = h("button", { type: "submit", class: "primary", testid: "subscription-submit" }, existing ? "Save" : "Create");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    name ? field("Name", name, "lower-case letters, digits, '-' and '_'") : null,
    field("URL", url, "the endpoint airhook POSTs matching events to (http:// or https://)"),
    h("div", { class: "field" }, h("span", {}, "Events"), picker.element),
    field("Signing scheme", scheme, "how the receiver verifies it came from here; a secret is generated"),
    field("Body template", template, "a shipped template's name (e.g. slack.json.j2) or inline Jinja"),
    templatePick,
    h(
      "details",
      { class: "advanced" },
      h("summary", {}, "More settings"),
      field("Method", method),
      field("Timeout (seconds)", timeout, "empty: [airhook] outbound_timeout_seconds"),
      field("Extra headers", headers, "not for secrets you would not put in the database (they are stored encrypted)"),
      field("Retry schedule (seconds)", retry, "the delay before each attempt"),
      field("Chatbot IDs", chatbots),
    ),
    h("label", { class: "check" }, active, " Active (deliver events)"),
    slot,
    formActions(view, submit),
  );
  clear(view.content).append(form);
  onSubmit(form, submit, slot, existing ? "The subscription was not saved" : "The subscription was not created", async () => {
    let body = {
      events: picker.value(),
      scheme: scheme.value === "none" ? null : scheme.value,
      method: method.value,
      body_template: template.value.trim() || null,
      chatbot_ids: splitList(chatbots.value),
      active: active.checked,
    };
    if (timeout.value) body.timeout = Number(timeout.value);
    else if (existing?.timeout !== null && existing?.timeout !== undefined) body.timeout = null;
    if (retry.value.trim()) body.retry_schedule = splitList(retry.value).map(Number);
    if (existing) {
      // Only what changed: an unchanged scheme must not look like a new one.
      const before = { ...existing, scheme: existing.scheme === "none" ? null : existing.scheme, active: existing.state !== "disabled" && existing.active };
      body = Object.fromEntries(Object.entries(body).filter(([key, value]) => JSON.stringify(value) !== JSON.stringify(before[key] ?? null)));
    }
    if (url.value.trim()) body.url = url.value.trim();
    if (headers.value.trim()) {
      body.headers = {};
      for (const line of headers.value.split("\n")) {
        if (!line.trim()) continue;
        const at = line.indexOf(":");
        if (at < 1) throw new ApiError("", `a header line needs "Name: value", not ${JSON.stringify(line)}`, "form");
        body.headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
    }
    if (existing) {
      await api("PATCH", `subscriptions/${encodeURIComponent(existing.name)}`, { body });
      view.close();
      notice(`Subscription ${existing.name} saved.`);
    } else {
      body.name = name.value.trim();
      const created = await api("POST", "subscriptions", { body });
      if (created.secret) {
        revealSecret(view.content, {
          heading: `Subscription ${created.subscription.name} created. Give the receiver this secret to verify the ${created.subscription.scheme} signatures.`,
          secret: created.secret,
        });
      } else {
        view.close();
        notice(`Subscription ${created.subscription.name} created.`);
      }
    }
    await loadSubscriptions();
  });
}

function subscriptionTest(subscription) {
  return testDialog(subscription.name, {
    intro: "A catalog sample of the event is rendered, signed and sent to the subscription's URL now, once, without retries.",
    sendLabel: "Send now",
    eventControl: () => {
      const events = allCatalogEvents().map((e) => [`${e.platform}:${e.name}`, `${e.name} (${platformOf(e.platform)?.title || e.platform})`]);
      return select("event", events, events[0]?.[0], { testid: "test-event" });
    },
    send: async (value) => {
      const [platform, ...rest] = value.split(":");
      const attempt = await api("POST", `subscriptions/${encodeURIComponent(subscription.name)}/test`, {
        body: { event: rest.join(":"), platform },
      });
      return attemptResult(attempt);
    },
  });
}

function attemptResult(attempt) {
  return h(
    "div",
    { class: "result", testid: "test-result" },
    h(
      "p",
      {},
      badge(attempt.outcome || "?", outcomeKind(attempt.outcome)),
      " ",
      attempt.status_code ? ["HTTP ", h("strong", { testid: "test-status" }, String(attempt.status_code))] : null,
      attempt.latency_ms !== undefined && attempt.latency_ms !== null ? ` in ${Math.round(attempt.latency_ms)} ms` : null,
    ),
    attempt.error ? h("pre", { class: "detail" }, attempt.error) : null,
    attempt.response_excerpt ? [h("h3", {}, "Response"), h("pre", { class: "payload", testid: "test-response" }, attempt.response_excerpt)] : null,
  );
}

function outcomeKind(outcome) {
  if (outcome === "delivered") return "ok";
  if (outcome === "retry") return "pending";
  return "failed";
}

function loadSubscriptions() {
  return loadNamed("subscriptions", renderSubscriptions);
}

function subscriptionState(s) {
  const failures = s.consecutive_failures
    ? h("small", { class: "muted", testid: "failures" }, ` ${s.consecutive_failures} failure${s.consecutive_failures === 1 ? "" : "s"} in a row`)
    : null;
  if (s.state === "disabled") {
    return [badge("disabled"), failures, s.disabled_reason ? h("div", {}, h("small", { class: "muted" }, s.disabled_reason, " ", time(s.disabled_at))) : null];
  }
  return [badge(s.state || (s.active ? "active" : "inactive")), failures];
}

function renderSubscriptions(page) {
  renderNamed("subscriptions", page, {
    empty: "Add one to send events out.",
    headers: ["Name", "Events", "Signing", "State", "Deliveries", ""],
    row: (s) => {
      const d = s.deliveries || {};
      const active = s.state === "active";
      return h(
        "tr",
        { testid: "subscription-row", dataset: { name: s.name } },
        h("td", { "data-label": "Name" }, h("strong", {}, s.name), h("div", {}, h("small", { class: "muted" }, `${s.method || "POST"} ${s.url}`))),
        h("td", { "data-label": "Events" }, h("span", { class: "events" }, list(s.events))),
        h("td", { "data-label": "Signing" }, code(s.scheme), s.has_secondary_secret ? h("small", { class: "muted" }, " 2 secrets") : null, s.body_template ? h("div", {}, h("small", { class: "muted" }, "templated")) : null),
        h("td", { "data-label": "State" }, subscriptionState(s)),
        h(
          "td",
          { "data-label": "Deliveries" },
          h(
            "button",
            { type: "button", class: "link", testid: "subscription-deliveries", onclick: () => showOnly("deliveries", { subscription: s.name }) },
            h("span", { class: "ok-text" }, `${d.delivered ?? 0} delivered`),
            d.pending ? ` · ${d.pending} pending` : "",
            d.failed ? h("span", { class: "fail-text" }, ` · ${d.failed} failed`) : "",
            d.dead ? h("span", { class: "fail-text" }, ` · ${d.dead} dead`) : "",
          ),
        ),
        h(
          "td",
          { class: "row-actions" },
          writeButton("Edit", { testid: "subscription-edit", onclick: () => subscriptionForm(s) }),
          writeButton("Test", { testid: "subscription-test", onclick: () => subscriptionTest(s) }),
          writeButton("Secrets", { testid: "subscription-secrets", onclick: () => secretsDialog("subscription", s) }),
          writeButton(active ? "Disable" : "Enable", { testid: "subscription-toggle", onclick: () => toggle("subscriptions", s.name, !active) }),
          deleteButton("subscriptions", "subscription", s.name, "Its pending deliveries are not sent. This cannot be undone.", loadSubscriptions),
        ),
      );
    },
  });
}

// --- events and deliveries: filtered, paged, selectable lists with a detail pane ------------

// What differs between the two: the name of one item (its row's and detail's testid) and how
// its list and its detail are drawn.
const PAGED = {
  events: { one: "event", render: renderEvents, renderDetail: renderEventDetail },
  deliveries: { one: "delivery", render: renderDeliveries, renderDetail: renderDeliveryDetail },
};

function pager(kind, page) {
  const slice = state[kind];
  const from = page.total ? page.offset + 1 : 0;
  const to = page.offset + page.items.length;
  return h(
    "div",
    { class: "pager" },
    h("span", { class: "muted", testid: `${kind}-total` }, `${from}–${to} of ${page.total}`),
    h("button", { type: "button", disabled: page.offset <= 0, onclick: () => { slice.offset = Math.max(0, page.offset - PAGE_SIZE); loadPaged(kind); } }, "‹ Newer"),
    h("button", { type: "button", disabled: to >= page.total, onclick: () => { slice.offset = page.offset + PAGE_SIZE; loadPaged(kind); } }, "Older ›"),
  );
}

function selectBox(kind, id) {
  if (!state.me.can_write) return null;
  const selected = state[kind].selected;
  return h(
    "td",
    { class: "pick" },
    h("input", {
      type: "checkbox",
      "aria-label": "select",
      testid: "pick",
      checked: selected.has(id),
      onclick: (event) => event.stopPropagation(),
      onchange: (event) => {
        if (event.target.checked) selected.add(id);
        else selected.delete(id);
        updateBulk(kind);
      },
    }),
  );
}

function updateBulk(kind) {
  const button = $(`#${kind}-bulk`);
  if (!button) return;
  const n = state[kind].selected.size;
  button.disabled = n === 0;
  button.textContent = kind === "events" ? `Re-dispatch selected (${n})` : `Replay selected (${n})`;
}

function filterForm(kind, controls) {
  const slice = state[kind];
  const reload = () => loadPaged(kind);
  const form = h("form", { class: "filters", testid: `${kind}-filters` }, controls, h("button", { type: "submit" }, "Apply"), h("button", { type: "reset" }, "Reset"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    slice.filters = {};
    for (const [key, value] of data.entries()) {
      if (!value) continue;
      slice.filters[key] = key === "since" || key === "until" ? new Date(value).toISOString() : value;
    }
    slice.offset = 0;
    reload();
  });
  form.addEventListener("reset", () => {
    slice.filters = {};
    slice.offset = 0;
    setTimeout(reload);
  });
  return form;
}

function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// The sources or subscriptions to filter by; the chosen one stays when it is gone.
function nameOptions(kind, chosen, any) {
  const options = [["", any], ...state[kind].map((s) => [s.name, s.name])];
  if (chosen && !state[kind].some((s) => s.name === chosen)) options.push([chosen, chosen]);
  return options;
}

function timeFilters(f) {
  return [
    field("Since", h("input", { type: "datetime-local", name: "since", value: localInput(f.since) })),
    field("Until", h("input", { type: "datetime-local", name: "until", value: localInput(f.until) })),
  ];
}

function pagedPanel(kind, { title, text, buttons, controls }) {
  return h(
    "section",
    { class: "panel", testid: `${kind}-panel` },
    toolbar(title, text, buttons),
    filterForm(kind, controls),
    h("div", { id: `${kind}-error`, class: "slot" }),
    h("div", { class: "split" }, h("div", { id: `${kind}-list`, class: "list-pane" }, loading()), h("aside", { id: `${kind}-detail`, class: "detail-pane", hidden: !state[kind].open })),
  );
}

async function loadPaged(kind) {
  const panel = $(`#${kind}-list`);
  if (!panel) return;
  const slice = state[kind];
  try {
    const page = await api("GET", kind, { query: { ...slice.filters, limit: PAGE_SIZE, offset: slice.offset } });
    renderIfChanged(kind, page, () => PAGED[kind].render(page));
  } catch (error) {
    state.shown.delete(kind);
    showError(panel, error, `The ${kind} could not be loaded`);
  }
  if (slice.open) await loadDetail(kind, slice.open);
}

// The list's table; `empty` leads the text shown when there is nothing (yet, or that matches).
function renderPaged(kind, page, { empty, headers, row }) {
  const panel = $(`#${kind}-list`);
  clear(panel);
  if (!page.items.length) {
    panel.append(h("p", { class: "empty", testid: "empty" }, empty, Object.keys(state[kind].filters).length ? " that match the filters." : " yet."));
    return;
  }
  panel.append(
    h(
      "table",
      { class: "list clickable", testid: `${kind}-table` },
      h("thead", {}, h("tr", {}, state.me.can_write ? h("th", {}) : null, headers.map((c) => h("th", {}, c)))),
      h("tbody", {}, page.items.map(row)),
    ),
    pager(kind, page),
  );
  updateBulk(kind);
}

// One row: its checkbox (for those who may write), then `cells`; a click or Enter opens it.
function pagedRow(kind, id, dataset, ...cells) {
  const open = () => openDetail(kind, id);
  return h(
    "tr",
    {
      testid: `${PAGED[kind].one}-row`,
      class: state[kind].open === id ? "open" : "",
      dataset: { id, ...dataset },
      tabindex: 0,
      onclick: open,
      onkeydown: (k) => k.key === "Enter" && open(),
    },
    selectBox(kind, id),
    cells,
  );
}

function openDetail(kind, id) {
  const { one } = PAGED[kind];
  state[kind].open = id;
  state.shown.delete(`${one}-detail`);
  for (const row of document.querySelectorAll(`[data-testid=${one}-row]`)) row.classList.toggle("open", row.dataset.id === id);
  const pane = $(`#${kind}-detail`);
  pane.hidden = false;
  clear(pane).append(loading());
  loadDetail(kind, id);
}

async function loadDetail(kind, id) {
  const { one, renderDetail } = PAGED[kind];
  const pane = $(`#${kind}-detail`);
  if (!pane) return;
  try {
    const detail = await api("GET", `${kind}/${encodeURIComponent(id)}`);
    if (state[kind].open !== id) return;
    renderIfChanged(`${one}-detail`, detail, () => renderDetail(detail));
  } catch (error) {
    state.shown.delete(`${one}-detail`);
    clear(pane).append(closeDetail(kind), errorBox(error, `The ${one} could not be loaded`));
  }
}

function closeDetail(kind) {
  return h(
    "button",
    {
      type: "button",
      class: "icon close",
      "aria-label": "Close",
      onclick: () => {
        state[kind].open = null;
        const pane = $(`#${kind}-detail`);
        clear(pane).hidden = true;
        for (const row of document.querySelectorAll(".open")) row.classList.remove("open");
      },
    },
    "×",
  );
}

// The detail pane of `item`: its close button, then `children`.
function showDetail(kind, item, ...children) {
  const pane = $(`#${kind}-detail`);
  pane.hidden = false;
  clear(pane).append(h("div", { testid: `${PAGED[kind].one}-detail`, dataset: { id: item.id } }, closeDetail(kind), children));
}

// Re-dispatch or replay: POST `body` to `path`, say what `done` makes of the answer, reload.
async function bulkAction(kind, path, body, done, failed) {
  const slot = $(`#${kind}-error`);
  clear(slot);
  try {
    const answer = await api("POST", path, { body });
    state[kind].selected.clear();
    notice(done(answer));
  } catch (error) {
    showError(slot, error, failed);
  }
  state.shown.delete(kind);
  state.shown.delete(`${PAGED[kind].one}-detail`);
  await loadPaged(kind);
}

// The events of a source, or the deliveries of a subscription: the tab, filtered.
function showOnly(kind, filters) {
  Object.assign(state[kind], { filters, offset: 0, open: null });
  go(kind);
}

// --- events ----------------------------------------------------------------------------------

function eventsPanel() {
  const f = state.events.filters;
  return pagedPanel("events", {
    title: "Recorded events",
    text: "What the sources received, and the DAG runs each event started.",
    buttons: writeButton("Re-dispatch selected (0)", { id: "events-bulk", testid: "events-redispatch", disabled: true, onclick: () => redispatch([...state.events.selected]) }),
    controls: [
      field("Source", select("source", nameOptions("sources", f.source, "any source"), f.source || "", { testid: "filter-source" })),
      field("Event", textInput("event", f.event || "", { placeholder: "e.g. lead.* " })),
      field("Kind", textInput("kind", f.kind || "", { placeholder: "any" })),
      field("Dispatched", select("dispatched", [["", "any"], ["true", "yes"], ["false", "not yet"]], f.dispatched || "")),
      timeFilters(f),
    ],
  });
}

function renderEvents(page) {
  renderPaged("events", page, {
    empty: "No events recorded",
    headers: ["Received", "Source", "Event", "Dispatched"],
    row: (ev) =>
      pagedRow(
        "events",
        ev.id,
        { source: ev.source, event: ev.event },
        h("td", { "data-label": "Received" }, time(ev.received_at)),
        h("td", { "data-label": "Source" }, ev.source),
        h("td", { "data-label": "Event" }, code(ev.event), ev.kind && ev.kind !== ev.event ? h("small", { class: "muted" }, ` ${ev.kind}`) : null),
        h("td", { "data-label": "Dispatched" }, ev.dispatched_at ? badge("dispatched", "ok") : badge("pending"), ev.redispatches ? h("small", { class: "muted", testid: "redispatches" }, ` +${ev.redispatches} re-dispatch${ev.redispatches === 1 ? "" : "es"}`) : null),
      ),
  });
}

function runLink(run) {
  const href = new URL(`dags/${encodeURIComponent(run.dag_id)}/runs/${encodeURIComponent(run.run_id)}`, AIRFLOW).href;
  return h("a", { href, target: "_top" }, run.run_id);
}

function renderEventDetail(ev) {
  const runs = (ev.asset_events || []).flatMap((a) => a.dag_runs || []);
  showDetail(
    "events",
    ev,
    h("h3", {}, code(ev.event), " from ", ev.source),
    h(
      "dl",
      { class: "meta" },
      h("dt", {}, "Id"), h("dd", {}, code(ev.id)),
      h("dt", {}, "Received"), h("dd", {}, time(ev.received_at)),
      h("dt", {}, "Dispatched"), h("dd", {}, time(ev.dispatched_at), ev.dispatch_attempts > 1 ? ` after ${ev.dispatch_attempts} attempts` : ""),
      h("dt", {}, "Re-dispatched"), h("dd", { testid: "detail-redispatches" }, String(ev.redispatches ?? 0), ev.redispatches === 1 ? " time" : " times"),
      ev.kind ? [h("dt", {}, "Kind"), h("dd", {}, code(ev.kind))] : null,
    ),
    writeButton("Re-dispatch", { testid: "event-redispatch", class: "primary", onclick: () => redispatch([ev.id]) }),
    h("h4", {}, `DAG runs started (${runs.length})`),
    (ev.asset_events || []).length
      ? h(
          "ul",
          { class: "runs", testid: "event-asset-events" },
          ev.asset_events.map((a) =>
            h(
              "li",
              {},
              h("div", {}, h("small", { class: "muted" }, code(a.asset), " ", time(a.timestamp))),
              (a.dag_runs || []).length
                ? h(
                    "ul",
                    {},
                    a.dag_runs.map((r) =>
                      h("li", { testid: "event-run", dataset: { dag: r.dag_id, run: r.run_id, state: r.state || "" } }, badge(r.state || "queued", r.state || "pending"), " ", code(r.dag_id), " ", runLink(r)),
                    ),
                  )
                : h("div", { class: "muted" }, "no run yet (none scheduled on this asset, or its DAG is paused)"),
            ),
          ),
        )
      : h("p", { class: "muted" }, ev.dispatched_at ? "No asset event found." : "Not dispatched yet."),
    h("h4", {}, "Payload"),
    h("pre", { class: "payload", testid: "event-payload" }, json(ev.payload)),
  );
}

function redispatch(ids) {
  return bulkAction("events", "events/redispatch", { ids }, (answer) => `${answer.redispatched} event${answer.redispatched === 1 ? "" : "s"} re-dispatched.`, "Re-dispatch failed");
}

// --- deliveries ------------------------------------------------------------------------------

function deliveriesPanel() {
  const f = state.deliveries.filters;
  const statuses = ["", "pending", "sending", "delivered", "failed", "dead", "paused"].map((s) => [s, s || "any status"]);
  return pagedPanel("deliveries", {
    title: "Deliveries",
    text: "Every event sent to a subscription, with each attempt.",
    buttons: h(
      "div",
      { class: "buttons" },
      writeButton("Replay failed", {
        testid: "deliveries-replay-dead",
        disabled: !f.subscription,
        title: f.subscription
          ? `Send ${f.subscription}'s failed and dead deliveries again (within the time filter)`
          : "Choose a subscription in the filter first",
        onclick: () => replay({ subscription: f.subscription, dead_only: true, since: f.since, until: f.until }),
      }),
      writeButton("Replay selected (0)", { id: "deliveries-bulk", testid: "deliveries-replay", disabled: true, onclick: () => replay({ ids: [...state.deliveries.selected] }) }),
    ),
    controls: [
      field("Subscription", select("subscription", nameOptions("subscriptions", f.subscription, "any subscription"), f.subscription || "", { testid: "filter-subscription" })),
      field("Status", select("status", statuses, f.status || "")),
      timeFilters(f),
    ],
  });
}

function statusKind(status) {
  return { delivered: "ok", failed: "failed", dead: "failed", pending: "pending", sending: "pending", paused: "disabled" }[status] || status;
}

function renderDeliveries(page) {
  renderPaged("deliveries", page, {
    empty: "No deliveries",
    headers: ["Created", "Subscription", "Event", "Status", "Attempts", "Last error"],
    row: (d) =>
      pagedRow(
        "deliveries",
        d.id,
        { subscription: d.subscription, status: d.status },
        h("td", { "data-label": "Created" }, time(d.created_at)),
        h("td", { "data-label": "Subscription" }, d.subscription),
        h("td", { "data-label": "Event" }, code(d.event)),
        h("td", { "data-label": "Status" }, badge(d.status, statusKind(d.status)), d.last_status_code ? h("small", { class: "muted" }, ` HTTP ${d.last_status_code}`) : null),
        h("td", { "data-label": "Attempts" }, h("span", { testid: "attempts" }, String(d.attempts ?? 0)), d.next_attempt_at && d.status !== "delivered" ? h("small", { class: "muted" }, " next ", time(d.next_attempt_at)) : null),
        h("td", { "data-label": "Last error", class: "clip" }, d.last_error ? h("small", { title: d.last_error }, d.last_error) : ""),
      ),
  });
}

function renderDeliveryDetail(d) {
  const attempts = d.attempt_log || [];
  showDetail(
    "deliveries",
    d,
    h("h3", {}, code(d.event), " to ", d.subscription),
    h(
      "dl",
      { class: "meta" },
      h("dt", {}, "Id"), h("dd", {}, code(d.id)),
      h("dt", {}, "Status"), h("dd", {}, badge(d.status, statusKind(d.status))),
      h("dt", {}, "Created"), h("dd", {}, time(d.created_at)),
      h("dt", {}, "Next attempt"), h("dd", {}, d.status === "delivered" ? "—" : time(d.next_attempt_at)),
    ),
    writeButton("Replay", { testid: "delivery-replay", class: "primary", onclick: () => replay({ ids: [d.id] }) }),
    h("h4", {}, `Attempts (${attempts.length})`),
    attempts.length
      ? h(
          "table",
          { class: "list compact", testid: "attempts-table" },
          h("thead", {}, h("tr", {}, ["When", "Outcome", "HTTP", "Latency", "Error / response"].map((c) => h("th", {}, c)))),
          h(
            "tbody",
            {},
            attempts.map((a) =>
              h(
                "tr",
                { testid: "attempt-row", dataset: { outcome: a.outcome || "", status: a.status_code ?? "" } },
                h("td", { "data-label": "When" }, time(a.attempted_at)),
                h("td", { "data-label": "Outcome" }, badge(a.outcome || "?", outcomeKind(a.outcome))),
                h("td", { "data-label": "HTTP" }, a.status_code ?? "—"),
                h("td", { "data-label": "Latency", testid: "latency" }, a.latency_ms !== null && a.latency_ms !== undefined ? `${Math.round(a.latency_ms)} ms` : "—"),
                h("td", { "data-label": "Error / response" }, a.error ? h("div", { class: "fail-text" }, a.error) : null, a.response_excerpt ? h("pre", { class: "excerpt" }, a.response_excerpt) : null),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No attempt yet."),
  );
}

function replay(body) {
  return bulkAction(
    "deliveries",
    "deliveries/replay",
    body,
    (answer) => {
      const n = answer.replayed?.length ?? 0;
      const what = `${n} deliver${n === 1 ? "y" : "ies"}`;
      // Over 100, the API makes them due and the background sender sends them.
      return answer.background
        ? `${what} queued: the background sender sends them within seconds.`
        : `${what} sent again.`;
    },
    "Replay failed",
  );
}

// --- activity charts (inline SVG) ----------------------------------------------------------

function barChart(buckets, key, label, cls) {
  const width = 240;
  const height = 56;
  const values = buckets.map((b) => b[key] || 0);
  const max = Math.max(1, ...values);
  const total = values.reduce((a, b) => a + b, 0);
  const step = width / Math.max(1, values.length);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label}: ${total} in the last ${values.length} hours`);
  svg.classList.add("chart", cls);
  const base = document.createElementNS(svg.namespaceURI, "line");
  for (const [k, v] of Object.entries({ x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5 })) base.setAttribute(k, v);
  base.classList.add("axis");
  svg.append(base);
  values.forEach((value, i) => {
    const barHeight = value ? Math.max(2, (value / max) * (height - 4)) : 0;
    const rect = document.createElementNS(svg.namespaceURI, "rect");
    rect.setAttribute("x", (i * step + 1).toFixed(1));
    rect.setAttribute("width", Math.max(1, step - 2).toFixed(1));
    rect.setAttribute("y", (height - barHeight).toFixed(1));
    rect.setAttribute("height", barHeight.toFixed(1));
    const title = document.createElementNS(svg.namespaceURI, "title");
    const start = new Date(buckets[i].start);
    title.textContent = `${start.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}: ${value}`;
    rect.append(title);
    svg.append(rect);
  });
  const hours = (buckets.length * (state.bucketSeconds || 3600)) / 3600;
  return h(
    "figure",
    { class: "card", testid: `chart-${key}` },
    h("figcaption", {}, h("span", {}, label), h("strong", { testid: "chart-total" }, String(total))),
    svg,
    h("small", { class: "muted" }, `last ${Math.round(hours)} h, per ${Math.round((state.bucketSeconds || 3600) / 60)} min`),
  );
}

async function loadActivity() {
  const slot = $("#activity");
  if (!slot) return;
  try {
    const activity = await api("GET", "activity", { query: { hours: 24 } });
    state.bucketSeconds = activity.bucket_seconds;
    renderIfChanged("activity", activity, () => {
      const rejected = Object.entries(activity.rejected || {}).sort((a, b) => b[1] - a[1]);
      const rejectedTotal = rejected.reduce((a, [, n]) => a + n, 0);
      clear(slot).append(
        barChart(activity.buckets, "received", "Received", "received"),
        barChart(activity.buckets, "delivered", "Delivered", "delivered"),
        barChart(activity.buckets, "failed", "Failed", "failed"),
        h(
          "figure",
          { class: "card", testid: "chart-rejected" },
          h("figcaption", {}, h("span", {}, "Rejected"), h("strong", {}, String(rejectedTotal))),
          rejected.length
            ? h("ul", { class: "reasons" }, rejected.slice(0, 4).map(([reason, n]) => h("li", {}, h("span", {}, reason), h("span", {}, String(n)))))
            : h("p", { class: "muted" }, "none"),
          h("small", { class: "muted" }, "since this API server started"),
        ),
      );
    });
  } catch (error) {
    state.shown.delete("activity");
    showError(slot, error, "The activity could not be loaded");
  }
}

// --- shell, tabs, refresh ------------------------------------------------------------------

const TABS = [
  ["sources", "Sources"],
  ["subscriptions", "Subscriptions"],
  ["events", "Events"],
  ["deliveries", "Deliveries"],
];

function renderIfChanged(key, data, render) {
  const text = JSON.stringify(data);
  if (state.shown.get(key) === text) return;
  state.shown.set(key, text);
  render();
}

function setCount(tab, n) {
  const el = $(`[data-testid=tab-${tab}] .count`);
  if (el) el.textContent = n === undefined ? "" : String(n);
}

function shell() {
  const app = $("#app");
  clear(app).append(
    h(
      "header",
      { class: "bar" },
      h("h1", {}, "Webhooks"),
      h("span", { class: "muted", id: "whoami", testid: "whoami" }, ""),
      h("button", { type: "button", class: "refresh", testid: "refresh", title: "Refresh", onclick: () => refresh(true) }, "↻ Refresh"),
    ),
    h("div", { id: "global-error", class: "slot", testid: "global-error" }),
    h("div", { id: "notice", class: "notice", role: "status", testid: "notice", hidden: true }),
    h("section", { id: "activity", class: "activity", testid: "activity", "aria-label": "Last 24 hours" }, h("p", { class: "muted" }, "Loading the last 24 hours…")),
    h(
      "nav",
      { class: "tabs", role: "tablist" },
      TABS.map(([id, label]) =>
        h("button", { type: "button", role: "tab", testid: `tab-${id}`, "aria-selected": String(state.tab === id), onclick: () => go(id) }, label, " ", h("span", { class: "count" })),
      ),
    ),
    h("main", { id: "panel" }),
  );
}

function renderTab() {
  const panel = clear($("#panel"));
  for (const button of document.querySelectorAll("[role=tab]")) {
    button.setAttribute("aria-selected", String(button.dataset.testid === `tab-${state.tab}`));
  }
  for (const key of ["sources", "subscriptions", "events", "deliveries", "event-detail", "delivery-detail"]) state.shown.delete(key);
  if (state.tab === "sources") {
    panel.append(
      namedPanel(
        "sources",
        "Sources",
        "Platforms that send webhooks into Airflow: each has a receiver URL and a secret.",
        writeButton("+ Add webhook", { class: "primary", testid: "add-source", onclick: () => sourceForm(null) }),
      ),
    );
  } else if (state.tab === "subscriptions") {
    panel.append(
      namedPanel(
        "subscriptions",
        "Subscriptions",
        "Endpoints airhook sends events to, signed, with retries; disabled after repeated failures.",
        writeButton("+ Add webhook", { class: "primary", testid: "add-subscription", onclick: () => subscriptionForm(null) }),
      ),
    );
  } else if (state.tab === "events") {
    panel.append(eventsPanel());
  } else {
    panel.append(deliveriesPanel());
  }
}

function go(tab) {
  if (!TABS.some(([id]) => id === tab)) tab = "sources";
  state.tab = tab;
  if (window.location.hash !== `#${tab}`) history.replaceState(null, "", `#${tab}`);
  renderTab();
  reloadCurrent();
}

async function reloadCurrent() {
  const loads = {
    sources: [loadSources, loadSubscriptions],
    subscriptions: [loadSubscriptions, loadSources],
    events: [() => loadPaged("events"), loadSources],
    deliveries: [() => loadPaged("deliveries"), loadSubscriptions],
  }[state.tab];
  await Promise.all(loads.map((load) => load()));
}

let refreshTimer = null;
let ticks = 0;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh(false), REFRESH_MS);
}

async function refresh(force) {
  clearTimeout(refreshTimer);
  const busy = document.querySelector("dialog[open]") || document.activeElement?.closest?.("form.filters");
  if (force || (!busy && document.visibilityState === "visible" && !state.loggingIn)) {
    if (force) state.shown.clear();
    ticks += 1;
    await Promise.all([reloadCurrent(), force || ticks % 2 === 0 ? loadActivity() : null]);
  }
  scheduleRefresh();
}

// Airflow's UI (next-themes) puts "dark" or "light" on its <html>; follow it when it is readable.
function followHostTheme() {
  try {
    if (window.parent === window) return;
    const host = window.parent.document.documentElement;
    const apply = () => {
      const theme = host.classList.contains("dark") ? "dark" : host.classList.contains("light") ? "light" : "";
      if (theme) document.documentElement.dataset.theme = theme;
      else delete document.documentElement.dataset.theme;
    };
    apply();
    new MutationObserver(apply).observe(host, { attributes: true, attributeFilter: ["class"] });
  } catch {
    // another origin, or no access: prefers-color-scheme decides
  }
}

async function loadMe() {
  try {
    state.me = await api("GET", "whoami");
    $("#whoami").textContent = `${state.me.user} · ${state.me.can_write ? "can edit" : "read only"}`;
  } catch (error) {
    state.me = { user: "", can_write: false };
    showError($("#global-error"), error, "Who you are could not be checked: the page is read only");
  }
}

async function main() {
  followHostTheme();
  const tab = window.location.hash.slice(1);
  state.tab = TABS.some(([id]) => id === tab) ? tab : "sources";
  shell();
  await loadMe();
  renderTab();
  await Promise.all([reloadCurrent(), loadActivity(), ensureCatalog().catch((e) => (state.catalogError = e))]);
  document.documentElement.dataset.ready = "true";
  scheduleRefresh();
}

window.addEventListener("hashchange", () => {
  const tab = window.location.hash.slice(1);
  if (tab && tab !== state.tab) go(tab);
});
window.addEventListener("error", (event) => showUnexpected(event.error || event.message));
window.addEventListener("unhandledrejection", (event) => showUnexpected(event.reason));
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") refresh(false);
});

function showUnexpected(error) {
  const slot = $("#global-error") || $("#app");
  if (slot) slot.append(errorBox(error, "Unexpected error in the page"));
}

main().catch(showUnexpected);
