// The console's only way to the server: the public HTTP API, same origin, bearer auth.
// Errors come back as ApiError, which `plainWords` turns into a sentence for people.

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.retryAfter = retryAfter;
  }
  get key() { return this.body.errorKey || ""; }
}

export async function call(path, { method = "GET", body, token, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, { message: "network" });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text.slice(0, 200) }; }
  }
  if (!response.ok) {
    const retry = Number(response.headers.get("Retry-After"));
    throw new ApiError(response.status, data, Number.isFinite(retry) && retry > 0 ? retry : null);
  }
  return data;
}

function inSeconds(seconds) {
  const at = new Date(Date.now() + seconds * 1000);
  return `${seconds} second${seconds === 1 ? "" : "s"} (at ${at.toLocaleTimeString()})`;
}

/** One sentence that says what went wrong and what to do, from an API error. */
export function plainWords(error) {
  if (!(error instanceof ApiError)) return `Something went wrong in the page: ${error.message || error}`;
  const b = error.body;
  switch (error.status) {
    case 0:
      return "The server cannot be reached. Check that unlockd is running, then try again.";
    case 401:
      if (b.errorKey === "INVALID_ADMIN_TOKEN") return "The operator token was not accepted. Check it and sign in again.";
      return "The API key was not accepted: it is unknown, revoked or mistyped. Sign in again with a valid key.";
    case 402: {
      const need = b.requiredCredits ?? "more";
      const have = b.availableCredits ?? 0;
      return `Not enough credits: this unlock costs ${need} credits and the account has ${have} available. Nothing was charged. Select fewer people or ask your operator for credits.`;
    }
    case 403:
      if (b.errorKey === "ADMIN_TOKEN_REQUIRED") return "That is a customer API key. The operator console needs the operator token (--admin-token), not an API key.";
      if (b.errorKey === "ACCOUNT_DISABLED") return "This account is disabled. Contact the operator.";
      return b.message || "Not allowed.";
    case 404:
      if (b.errorKey === "ADMIN_API_DISABLED") return b.message;
      return b.message || "Not found.";
    case 409: {
      const ids = b.taskIds || [];
      if (b.errorKey === "UNLOCK_IN_PROGRESS") {
        return `These people are already being unlocked by task ${ids.join(", ") || "(unknown)"}. Nothing new was started or charged; watch that task in Recent tasks.`;
      }
      return b.message || "Conflict.";
    }
    case 429:
      return `Too many requests. Try again in ${inSeconds(error.retryAfter || 1)}.`;
    case 503:
      return `The server is busy or its database is unavailable; nothing was changed. Try again in ${inSeconds(error.retryAfter || 2)}.`;
    default:
      return b.message ? `${b.message} (HTTP ${error.status})` : `The server answered HTTP ${error.status}.`;
  }
}

/** An element with text (never HTML) and attributes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

export function showError(message) {
  $("error-text").textContent = message;
  $("error").classList.remove("info");
  $("error").hidden = false;
}

export function showInfo(message) {
  showError(message);
  $("error").classList.add("info");
}

export function hideError() { $("error").hidden = true; }

export function credits(n) { return Number(n || 0).toLocaleString("en-US"); }

/** CSV text of rows (arrays of cells), quoting as RFC 4180 and defusing spreadsheet formulas. */
export function csv(rows) {
  const cell = (value) => {
    let text = value === null || value === undefined ? "" : String(value);
    if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return rows.map((row) => row.map(cell).join(",")).join("\r\n") + "\r\n";
}

export async function copyText(text, fallbackArea) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Clipboard access needs a secure context; show the text to copy by hand instead.
    if (fallbackArea) {
      fallbackArea.value = text;
      fallbackArea.hidden = false;
      fallbackArea.select();
    }
    return false;
  }
}
