// Operator console over the operator API (/admin/api/...), signed in with the operator
// token. Off (with instructions) when the server has no token configured.
import { $, ApiError, call, copyText, credits, el, hideError, plainWords, showError, showInfo } from "/console/api.js";

const TOKEN_SLOT = "unlockd.adminToken";
const state = { token: sessionStorage.getItem(TOKEN_SLOT), account: null, accounts: [] };
const api = (path, options = {}) => call(`/admin/api${path}`, { ...options, token: state.token });

function show(view) {
  $("off-panel").hidden = view !== "off";
  $("sign-in-panel").hidden = view !== "sign-in";
  $("workspace").hidden = view !== "workspace";
  $("whoami").hidden = view !== "workspace";
}

async function guarded(action) {
  try {
    hideError();
    await action();
  } catch (error) {
    if (error instanceof ApiError && error.key === "ADMIN_API_DISABLED") {
      show("off");
      return;
    }
    showError(plainWords(error));
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      state.token = null;
      sessionStorage.removeItem(TOKEN_SLOT);
      show("sign-in");
    }
  }
}

async function start() {
  // Without a token the status answer says whether the operator API is on at all.
  try {
    await call("/admin/api/status", { token: state.token || undefined });
  } catch (error) {
    if (error instanceof ApiError && error.key === "ADMIN_API_DISABLED") return show("off");
    if (state.token) {
      state.token = null;
      sessionStorage.removeItem(TOKEN_SLOT);
      if (error instanceof ApiError && error.status !== 401) showError(plainWords(error));
    }
    show("sign-in");
    $("admin-token").focus();
    return;
  }
  show("workspace");
  await guarded(refreshAll);
}

async function signIn(event) {
  event.preventDefault();
  const token = $("admin-token").value.trim();
  await guarded(async () => {
    await call("/admin/api/status", { token });
    state.token = token;
    sessionStorage.setItem(TOKEN_SLOT, token);
    $("admin-token").value = "";
    show("workspace");
    await refreshAll();
    $("new-name").focus();
  });
}

async function refreshAll() {
  await Promise.all([loadAccounts(), loadQueue()]);
}

async function loadAccounts() {
  const list = await api("/accounts");
  state.accounts = list.items;
  $("accounts-body").replaceChildren(...(list.items.length ? list.items.map((a) => el("tr", { dataset: { accountId: a.accountId } },
    el("td", { title: a.accountId }, a.name),
    el("td", { class: "num", text: credits(a.balance.availableCredits) }),
    el("td", { class: "num c-hide", text: credits(a.balance.heldCredits) }),
    el("td", { class: "num c-hide", text: String(a.activeKeys) }),
    el("td", {}, el("button", { type: "button", class: "quiet", "aria-label": `Manage ${a.name}`, onclick: () => guarded(() => openAccount(a.accountId)) }, "Manage")),
  )) : [el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No accounts yet." }))]));
}

async function loadQueue() {
  const q = await api("/queue");
  $("queue").replaceChildren(
    el("dt", { text: "Tasks pending or processing" }), el("dd", { text: String(q.liveTasks) }),
    el("dt", { text: "Items not yet settled" }), el("dd", { text: String(q.unsettledItems) }),
    el("dt", { text: "Credits held" }), el("dd", { text: credits(q.creditsHeld) }),
    el("dt", { text: "Tasks pending" }), el("dd", { id: "queue-pending", text: String(q.tasks.pending) }),
    el("dt", { text: "Tasks processing" }), el("dd", { text: String(q.tasks.processing) }),
    el("dt", { text: "Tasks failed (kept)" }), el("dd", { id: "queue-failed", text: String(q.tasks.failed) }),
    el("dt", { text: "Tasks completed (kept)" }), el("dd", { text: String(q.tasks.completed) }),
  );
}

async function openAccount(accountId) {
  const account = state.accounts.find((a) => a.accountId === accountId);
  state.account = accountId;
  $("account-panel").hidden = false;
  $("account-title").textContent = account ? `Account: ${account.name}` : "Account";
  $("account-id").textContent = accountId;
  await loadKeys();
  $("grant-amount").focus();
}

async function loadKeys() {
  const list = await api(`/accounts/${encodeURIComponent(state.account)}/keys`);
  $("keys").replaceChildren(...(list.items.length ? list.items.map((k) => el("li", {},
    el("span", { class: "mono", text: `${k.prefix}_${k.keyId}_…` }),
    el("span", { class: "muted", text: k.revokedAt ? `revoked ${new Date(k.revokedAt).toLocaleString()}` : `created ${new Date(k.createdAt).toLocaleString()}` }),
    k.revokedAt ? null : el("button", { type: "button", class: "quiet", onclick: () => guarded(() => revoke(k.keyId)) }, "Revoke"),
  )) : [el("li", { class: "muted", text: "No keys." })]));
}

function showSecret(key) {
  $("new-key").textContent = key;
  $("secret-panel").hidden = false;
  $("copy-key").focus();
}

async function createAccount(event) {
  event.preventDefault();
  const name = $("new-name").value.trim();
  const creditsText = $("new-credits").value.trim();
  const body = { name };
  if (creditsText) body.credits = Number(creditsText);
  const created = await api("/accounts", { method: "POST", body });
  $("new-name").value = "";
  $("new-credits").value = "0";
  await loadAccounts();
  await openAccount(created.accountId);
  showSecret(created.apiKey);
}

async function grant(event) {
  event.preventDefault();
  const body = { amount: Number($("grant-amount").value), bucket: $("grant-bucket").value };
  const day = $("grant-expires").value;
  if (day) body.expires_at = `${day}T00:00:00Z`;
  const result = await api(`/accounts/${encodeURIComponent(state.account)}/grants`, { method: "POST", body });
  $("grant-amount").value = "";
  await loadAccounts();
  showInfo(`Granted ${credits(body.amount)} ${body.bucket} credits. Available now: ${credits(result.balance.availableCredits)}.`);
}

async function createKey() {
  const created = await api(`/accounts/${encodeURIComponent(state.account)}/keys`, { method: "POST" });
  await Promise.all([loadKeys(), loadAccounts()]);
  showSecret(created.apiKey);
}

async function revoke(keyId) {
  await api(`/keys/${encodeURIComponent(keyId)}`, { method: "DELETE" });
  await Promise.all([loadKeys(), loadAccounts()]);
  showInfo(`Key ${keyId} is revoked.`);
}

async function verify() {
  $("ledger-result").textContent = "Checking…";
  const result = await api("/ledger/verify");
  $("ledger-result").textContent = result.ok ? "Ledger OK: every billing invariant holds." : `${result.violations.length} violation(s):`;
  $("ledger-result").className = result.ok ? "s-completed" : "s-failed";
  $("violations").replaceChildren(...result.violations.map((v) => el("li", { class: "mono", text: v })));
}

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => {
  state.token = null;
  sessionStorage.removeItem(TOKEN_SLOT);
  hideError();
  show("sign-in");
});
$("error-close").addEventListener("click", hideError);
$("create-form").addEventListener("submit", (e) => guarded(() => createAccount(e)));
$("grant-form").addEventListener("submit", (e) => guarded(() => grant(e)));
$("create-key").addEventListener("click", () => guarded(createKey));
$("copy-key").addEventListener("click", async () => {
  if (await copyText($("new-key").textContent)) showInfo("The key is on the clipboard.");
});
$("hide-key").addEventListener("click", () => {
  $("secret-panel").hidden = true;
  $("new-key").textContent = "";
});
$("verify").addEventListener("click", () => guarded(verify));
$("refresh").addEventListener("click", () => guarded(refreshAll));

start();
