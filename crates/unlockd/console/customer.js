// Customer console: sign in with an API key, find an event's people, precheck, unlock,
// watch the task, export what was unlocked. Everything goes through the public API.
import { $, ApiError, call, copyText, credits, csv, el, hideError, plainWords, showError, showInfo } from "/console/api.js";

const KEY_SLOT = "unlockd.apiKey";
const TASKS_SLOT = "unlockd.tasks";
const PEOPLE_PAGE_SIZE = 20;
const EVENT_PAGE_SIZE = 10;
const MAX_PER_TASK = 100;
const TERMINAL = new Set(["completed", "failed"]);
const REASONS = {
  EMAIL_NOT_FOUND: "No email exists for this person (not charged)",
  PHONE_NOT_FOUND: "No phone exists for this person (not charged)",
  PROVIDER_ERROR: "The contact source kept failing (not charged)",
  PERSONNEL_REMOVED: "This person was removed from the catalog (not charged)",
  TASK_FAILED: "The task was aborted (not charged)",
};

const state = {
  token: sessionStorage.getItem(KEY_SLOT),
  event: null,
  eventQuery: "",
  eventPage: 1,
  peoplePage: 1,
  people: [],
  names: new Map(),
  selected: new Set(),
  precheck: null,
  task: null,
  watchId: 0,
  eventsSeq: 0,
  peopleSeq: 0,
};

const kind = () => document.querySelector("input[name=kind]:checked").value;
const api = (path, options = {}) => call(path, { ...options, token: state.token });

async function guarded(action) {
  try {
    hideError();
    await action();
  } catch (error) {
    if (error.name === "AbortError") return;
    showError(plainWords(error));
    if (error instanceof ApiError && error.status === 401) signOut(false);
  }
}

// ---- sign in ----------------------------------------------------------------

function showSignedIn(signedIn) {
  $("sign-in-panel").hidden = signedIn;
  $("workspace").hidden = !signedIn;
  $("whoami").hidden = !signedIn;
}

async function signIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  await guarded(async () => {
    const balance = await call("/external/credits/balance", { token: key });
    state.token = key;
    sessionStorage.setItem(KEY_SLOT, key);
    $("api-key").value = "";
    showSignedIn(true);
    renderBalance(balance);
    await Promise.all([searchEvents(), loadRecent()]);
    $("event-search").focus();
  });
}

function signOut(clearMessage = true) {
  state.token = null;
  state.watchId += 1;
  sessionStorage.removeItem(KEY_SLOT);
  showSignedIn(false);
  if (clearMessage) hideError();
  $("api-key").focus();
}

// ---- balance ----------------------------------------------------------------

function renderBalance(b) {
  const rows = [
    ["Subscription", b.subscriptionBalance],
    ["Add-on", b.addonBalance],
    ["Gift", b.giftBalance],
    ["Held by running tasks", b.heldCredits],
    ["Available", b.availableCredits ?? b.totalBalance],
  ];
  $("balance").replaceChildren(...rows.flatMap(([label, value]) => [
    el("dt", { text: label }),
    el("dd", { id: label === "Available" ? "balance-available" : undefined, text: credits(value) }),
  ]));
  $("balance-summary").textContent = `${credits(b.availableCredits ?? b.totalBalance)} credits available`;
}

async function refreshBalance() {
  renderBalance(await api("/external/credits/balance"));
}

// ---- events -----------------------------------------------------------------

async function searchEvents(event) {
  if (event) {
    event.preventDefault();
    state.eventQuery = $("event-search").value.trim();
    state.eventPage = 1;
  }
  const q = state.eventQuery;
  const params = new URLSearchParams({ page: state.eventPage, pageSize: EVENT_PAGE_SIZE });
  if (q) params.set("keyword", q);
  const lookups = [api(`/external/events/list?${params}`)];
  // An exact id (or public event id) finds its event even when its name does not match.
  if (q && state.eventPage === 1 && q.length <= 100 && !/\s/.test(q)) {
    lookups.push(api(`/external/events/${encodeURIComponent(q)}`).catch((error) => {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }));
  }
  const seq = ++state.eventsSeq;
  const [page, exact] = await Promise.all(lookups);
  // A slower, older search must not overwrite a newer one.
  if (seq !== state.eventsSeq) return;
  const items = page.items.slice();
  if (exact && exact.event && !items.some((e) => e.id === exact.event.id)) items.unshift(exact.event);
  $("event-results").replaceChildren(...(items.length ? items.map(eventRow) : [el("li", { class: "muted", text: "No event matches." })]));
  pager($("event-pager"), page, (p) => { state.eventPage = p; guarded(searchEvents); });
}

function eventRow(e) {
  const when = [e.dateStart, e.dateEnd].filter(Boolean).join(" – ");
  const where = [e.city, e.country].filter(Boolean).join(", ");
  return el("li", {},
    el("button", { type: "button", class: "link", dataset: { eventId: e.eventId }, onclick: () => guarded(() => openEvent(e)) }, e.name || e.eventId),
    el("span", { class: "mono muted", text: `#${e.eventId}` }),
    el("span", { class: "muted", text: [when, where].filter(Boolean).join(" · ") }),
    e.personnelCount != null ? el("span", { class: "muted num", text: `${e.personnelCount} people` }) : null,
  );
}

async function openEvent(e) {
  if (!state.event || state.event.id !== e.id) {
    state.selected.clear();
    updateSelection();
  }
  state.event = e;
  state.peoplePage = 1;
  $("people-panel").hidden = false;
  $("event-heading").textContent = `${e.name || ""} (#${e.eventId})`;
  await loadPeople();
  $("people-title").scrollIntoView({ block: "start" });
  $("f-search").focus();
}

// ---- people -----------------------------------------------------------------

async function loadPeople() {
  const params = new URLSearchParams({ event_id: state.event.eventId, page: state.peoplePage, pageSize: PEOPLE_PAGE_SIZE });
  for (const [field, id] of [["search_query", "f-search"], ["department", "f-department"], ["level", "f-level"], ["exhibitor_id", "f-exhibitor"], ["sourceType", "f-source"]]) {
    const value = $(id).value.trim();
    if (value) params.set(field, value);
  }
  const seq = ++state.peopleSeq;
  const page = await api(`/external/personnel/list?${params}`);
  if (seq !== state.peopleSeq) return;
  state.people = page.items;
  for (const p of page.items) state.names.set(p.id, p);
  $("people-body").replaceChildren(...(page.items.length ? page.items.map(personRow)
    : [el("tr", {}, el("td", { colspan: 6, class: "muted", text: "Nobody matches these filters." }))]));
  pager($("people-pager"), page, (p) => { state.peoplePage = p; guarded(loadPeople); });
  syncSelectPage();
}

function contactCell(value, status) {
  if (value) return el("td", { class: "mono", title: value, text: value });
  const label = status || "locked";
  return el("td", { class: `s-${label} muted`, text: label });
}

function personRow(p) {
  const box = el("input", {
    type: "checkbox", dataset: { personnelId: p.id }, "aria-label": `Select ${p.fullName || p.id}`,
    onchange: (event) => { toggle(p.id, event.target.checked); },
  });
  box.checked = state.selected.has(p.id);
  return el("tr", { dataset: { personnelId: p.id } },
    el("td", { class: "c-sel" }, box),
    el("td", { title: p.fullName || "" }, p.fullName || p.id),
    el("td", { class: "c-hide", title: p.title || "" }, p.title || ""),
    el("td", { class: "c-hide", title: p.companyName || "" }, p.companyName || ""),
    contactCell(p.email, p.contactUnlockStatus),
    el("td", { class: "c-hide mono", text: p.phone || (p.phoneUnlockStatus || "locked") }),
  );
}

function toggle(id, on) {
  if (on) state.selected.add(id); else state.selected.delete(id);
  updateSelection();
  syncSelectPage();
}

function syncSelectPage() {
  const all = state.people.length > 0 && state.people.every((p) => state.selected.has(p.id));
  $("select-page").checked = all;
}

function selectPage(event) {
  for (const p of state.people) {
    if (event.target.checked) state.selected.add(p.id); else state.selected.delete(p.id);
  }
  for (const box of $("people-body").querySelectorAll("input[type=checkbox]")) box.checked = event.target.checked;
  updateSelection();
}

function updateSelection() {
  $("selected-count").textContent = String(state.selected.size);
  $("precheck-btn").disabled = state.selected.size === 0 || !state.event;
  // Any change of selection makes the last precheck stale.
  state.precheck = null;
  $("precheck").hidden = true;
}

// ---- precheck and unlock ----------------------------------------------------

async function precheck() {
  const ids = [...state.selected];
  if (ids.length > MAX_PER_TASK) {
    showError(`One unlock takes at most ${MAX_PER_TASK} people; ${ids.length} are selected. Clear some and try again.`);
    return;
  }
  const actionType = kind() === "phone" ? "unlock_contact_phones" : "unlock_contact_emails";
  const answer = await api("/external/actions/precheck", {
    method: "POST",
    body: { action_type: actionType, params: { event_id: state.event.eventId, personnel_ids: ids } },
  });
  const d = answer.detail || {};
  const counts = d.counts || {};
  const chargeable = (d.chargeable_personnel_ids || []).length;
  const missing = (counts.missing || 0) + (counts.unlinked || 0) + (counts.invalid || 0);
  const available = d.balance ? d.balance.available : 0;
  const cost = d.cost ?? answer.credits ?? 0;
  $("pc-locked").textContent = String(chargeable);
  $("pc-unlocked").textContent = String(counts.already_unlocked || 0);
  $("pc-inflight").textContent = String(counts.unlocking || 0);
  $("pc-missing").textContent = String(missing);
  $("pc-cost").textContent = `${credits(cost)} credits`;
  $("pc-available").textContent = credits(available);
  $("pc-after").textContent = credits(available - cost);
  const noun = kind() === "phone" ? "phone" : "email";
  const notes = {
    ok: `Unlocking charges ${credits(d.unit_price)} credits per ${noun} delivered; people with nothing on file are not charged.`,
    already_unlocked: `Every selected ${noun} is already unlocked or has nothing to unlock: nothing to charge.`,
    no_contacts_available: "Nothing to charge for this selection.",
    unlock_in_progress: `These people are being unlocked right now by task ${(d.task_ids || []).join(", ")}.`,
    insufficient_balance: `Not enough credits: this needs ${credits(cost)} and ${credits(available)} are available.`,
    not_found: "None of the selected people were found at this event.",
  };
  $("pc-note").textContent = notes[answer.reason_code] || answer.reason_code;
  const unlock = $("unlock-btn");
  unlock.disabled = !(answer.allowed && answer.should_charge);
  unlock.textContent = unlock.disabled ? "Nothing to unlock" : `Unlock ${chargeable} ${noun}${chargeable === 1 ? "" : "s"} for ${credits(cost)} credits`;
  state.precheck = { ids, kind: kind(), cost };
  $("precheck").hidden = false;
  unlock.focus();
}

async function unlock() {
  if (!state.precheck) return;
  const { ids, kind: k } = state.precheck;
  const path = k === "phone" ? "/external/contacts/unlock-phone" : "/external/contacts/unlock";
  $("unlock-btn").disabled = true;
  let answer;
  try {
    answer = await api(path, { method: "POST", body: { event_id: state.event.eventId, personnel_ids: ids } });
  } catch (error) {
    // The precheck is stale now; show what the account looks like after the refusal.
    state.precheck = null;
    $("precheck").hidden = true;
    if (error instanceof ApiError && error.status === 409) {
      for (const taskId of error.body.taskIds || []) {
        if (!remembered().some((t) => t.taskId === taskId)) {
          remember({ taskId, kind: k, eventId: state.event.eventId, at: Date.now() });
        }
      }
    }
    if (error instanceof ApiError && (error.status === 402 || error.status === 409)) {
      await Promise.all([refreshBalance(), loadRecent()]).catch(() => {});
    }
    throw error;
  } finally {
    $("unlock-btn").disabled = false;
  }
  state.precheck = null;
  $("precheck").hidden = true;
  if (!answer.task_id) {
    showInfo("Nothing was charged: every selected contact is already unlocked or has nothing to unlock.");
    return;
  }
  remember({ taskId: answer.task_id, kind: k, eventId: state.event.eventId, count: ids.length, at: Date.now() });
  state.selected.clear();
  updateSelection();
  for (const box of $("people-body").querySelectorAll("input[type=checkbox]")) box.checked = false;
  syncSelectPage();
  await Promise.all([refreshBalance(), loadRecent()]);
  await watch(answer.task_id, k);
}

// ---- task progress ----------------------------------------------------------

function taskPath(taskId, k) {
  const base = k === "phone" ? "/external/contacts/unlock-phone-tasks/" : "/external/contacts/unlock-tasks/";
  return base + encodeURIComponent(taskId);
}

async function watch(taskId, k) {
  const id = ++state.watchId;
  state.task = { taskId, kind: k, items: [] };
  $("task-panel").hidden = false;
  $("task-id").textContent = taskId;
  $("task-items").replaceChildren();
  let view = await api(taskPath(taskId, k));
  renderTask(view);
  // Long poll: each answer comes when the task ends or the wait runs out.
  while (id === state.watchId && !TERMINAL.has(view.taskStatus)) {
    view = await api(`${taskPath(taskId, k)}?wait=2`);
    if (id !== state.watchId) return;
    renderTask(view);
  }
  if (id === state.watchId) {
    await Promise.all([refreshBalance(), state.event ? loadPeople() : null, loadRecent()]);
  }
}

function renderTask(view) {
  state.task.items = view.items;
  const k = state.task.kind;
  const total = view.items.length;
  const count = (s) => view.items.filter((i) => i.status === s).length;
  const unlocked = count("unlocked");
  const failed = count("failed");
  $("task-status").textContent = view.taskStatus;
  $("task-status").className = `badge s-${view.taskStatus}`;
  $("task-bar").style.width = `${total ? Math.round(((unlocked + failed) / total) * 100) : 0}%`;
  const charged = view.credits ? `; ${credits(view.credits.charged)} credits charged` : "";
  $("task-counts").textContent = `${unlocked + failed} of ${total} done: ${unlocked} unlocked, ${failed} failed${charged}`;
  const body = $("task-items");
  for (const item of view.items) {
    let row = body.querySelector(`tr[data-personnel-id="${CSS.escape(item.personnelId)}"]`);
    if (!row) {
      const person = state.names.get(item.personnelId);
      row = el("tr", { dataset: { personnelId: item.personnelId } },
        el("td", { title: item.personnelId }, person && person.fullName ? person.fullName : item.personnelId),
        el("td"), el("td", { class: "value" }));
      body.append(row);
    }
    const [, statusCell, valueCell] = row.children;
    statusCell.textContent = item.status;
    statusCell.className = `s-${item.status}`;
    const value = k === "phone" ? item.phone : item.email;
    valueCell.textContent = value || (item.errorCode ? REASONS[item.errorCode] || item.errorCode : "…");
    valueCell.title = valueCell.textContent;
    valueCell.className = value ? "value mono" : "value muted";
  }
}

function taskCsv() {
  const k = state.task ? state.task.kind : "email";
  const rows = [["personnel_id", "full_name", "company_name", k, "status", "error_code"]];
  for (const item of state.task ? state.task.items : []) {
    const person = state.names.get(item.personnelId) || {};
    rows.push([item.personnelId, person.fullName, person.companyName, k === "phone" ? item.phone : item.email, item.status, item.errorCode]);
  }
  return csv(rows);
}

function download() {
  const blob = new Blob([taskCsv()], { type: "text/csv" });
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: `unlockd-${state.task ? state.task.taskId : "contacts"}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- recent tasks -----------------------------------------------------------

function remembered() {
  try { return JSON.parse(sessionStorage.getItem(TASKS_SLOT)) || []; } catch { return []; }
}

function remember(task) {
  sessionStorage.setItem(TASKS_SLOT, JSON.stringify([task, ...remembered()].slice(0, 20)));
}

async function loadRecent() {
  let items;
  try {
    const page = await api("/external/contacts/unlock-tasks?page=1&pageSize=10");
    items = page.items.map((t) => ({ taskId: t.taskId, kind: "email", status: t.taskStatus, at: Date.parse(t.createdAt), count: (t.items || []).length || (t.summary && t.summary.total) }));
    $("recent-source").textContent = "The account's latest email tasks.";
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404 && error.key === "NOT_FOUND")) throw error;
    items = remembered();
    $("recent-source").textContent = "Tasks started in this browser tab (this server does not list tasks).";
  }
  $("recent").replaceChildren(...(items.length ? items.map((t) => el("li", {},
    el("button", { type: "button", class: "link mono", onclick: () => guarded(() => watch(t.taskId, t.kind)) }, t.taskId),
    el("span", { class: "muted", text: `${t.kind}${t.count ? ` · ${t.count} people` : ""}${t.at ? ` · ${new Date(t.at).toLocaleString()}` : ""}` }),
    t.status ? el("span", { class: `badge s-${t.status}`, text: t.status }) : null,
  )) : [el("li", { class: "muted", text: "No tasks yet." })]));
}

// ---- paging -----------------------------------------------------------------

function pager(node, page, go) {
  if (!page.totalPages || page.totalPages <= 1) {
    node.replaceChildren(el("span", { class: "muted num", text: `${page.total} found` }));
    return;
  }
  node.replaceChildren(
    el("button", { type: "button", disabled: page.page <= 1, onclick: () => go(page.page - 1) }, "Previous"),
    el("span", { class: "num", text: `Page ${page.page} of ${page.totalPages} (${page.total})` }),
    el("button", { type: "button", disabled: !page.hasMore, onclick: () => go(page.page + 1) }, "Next"),
  );
}

// ---- wiring -----------------------------------------------------------------

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => signOut());
$("error-close").addEventListener("click", hideError);
$("event-search-form").addEventListener("submit", (e) => guarded(() => searchEvents(e)));
$("people-filter").addEventListener("submit", (e) => { e.preventDefault(); state.peoplePage = 1; guarded(loadPeople); });
$("select-page").addEventListener("change", selectPage);
$("clear-selection").addEventListener("click", () => {
  state.selected.clear();
  for (const box of $("people-body").querySelectorAll("input[type=checkbox]")) box.checked = false;
  syncSelectPage();
  updateSelection();
});
for (const radio of document.querySelectorAll("input[name=kind]")) radio.addEventListener("change", updateSelection);
$("precheck-btn").addEventListener("click", () => guarded(precheck));
$("unlock-btn").addEventListener("click", () => guarded(unlock));
$("export-csv").addEventListener("click", download);
$("copy-csv").addEventListener("click", async () => {
  // The CSV is also shown, so it can be checked or copied by hand where the clipboard is off.
  const text = taskCsv();
  $("csv-text").value = text;
  $("csv-text").hidden = false;
  if (await copyText(text, $("csv-text"))) showInfo("The CSV is on the clipboard.");
});

if (state.token) {
  showSignedIn(true);
  guarded(async () => {
    await refreshBalance();
    await Promise.all([searchEvents(), loadRecent()]);
  });
} else {
  showSignedIn(false);
}
