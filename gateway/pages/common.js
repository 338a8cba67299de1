// Shared by the preference center and the audit dashboard: one way to call the API, one way to
// build the page. Text reaches the page only through textContent and attributes, never parsed as
// HTML: push titles, complaint comments and campaign names come from outside, and the page's
// Content-Security-Policy allows no inline script besides.
"use strict";

const CGW = (() => {
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "text") node.textContent = String(value);
      else if (name === "value") node.value = String(value);
      else if (name === "checked" || name === "disabled") node[name] = Boolean(value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, detail, field) {
      super(detail);
      this.detail = detail;
      this.status = status;
      this.field = field;
    }
  }

  // fetch refused: the network gone, or the gateway unreachable. A class of its own, since the
  // TypeError fetch throws is also what a bug of the page's own throws.
  class NetworkError extends Error {}

  // The credential travels in the Authorization header only: never in a URL (logs, history,
  // Referer) and never as a cookie, so no other site can make the browser use it.
  async function api(credential, method, path, body) {
    const headers = { Authorization: `Bearer ${credential}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new NetworkError(String(error && error.message ? error.message : error));
    }
    if (response.status === 204) return null;
    const payload = await response.json().catch(() => null);
    if (!response.ok) {
      const extra = payload && Array.isArray(payload.extra) ? payload.extra[0] : null;
      const detail = (payload && payload.detail) || response.statusText;
      throw new ApiError(response.status, detail, extra ? extra.key : null);
    }
    return payload;
  }

  // `data` is saved as pretty JSON, or as it is when it is already text (of the type given).
  function download(filename, data, type = "application/json") {
    const text = typeof data === "string" ? data : JSON.stringify(data, null, 2);
    const blob = new Blob([text], { type });
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function errorText(error) {
    if (error instanceof NetworkError) return "The gateway could not be reached: the network, or the service, is down. Try again later.";
    if (error instanceof ApiError) {
      // Named once: most details begin with their field already ("from: ... (from)" said it twice).
      const named = !error.field || error.detail.startsWith(`${error.field}:`);
      return named ? error.detail : `${error.detail} (${error.field})`;
    }
    return String(error && error.message ? error.message : error);
  }

  // This tab's sessionStorage, or this page's memory where there is none: a browser blocking
  // storage for the site throws on it, and an Android WebView without DOM storage (its default)
  // has it null. Thrown on sign-in, it stopped the page with the token left in the address bar.
  const memory = new Map();
  const tabStore = {
    get(key) {
      try { return sessionStorage.getItem(key); } catch { return memory.get(key) ?? null; }
    },
    set(key, value) {
      try { sessionStorage.setItem(key, value); } catch { memory.set(key, value); }
    },
    remove(key) {
      memory.delete(key);
      try { sessionStorage.removeItem(key); } catch { /* nothing was kept there */ }
    },
  };

  // The status bar stays at the top of the window (sticky) so a message is seen wherever the
  // person is; the page scrolls a control that takes the focus clear of it, not under it.
  function keepFocusClearOf(bar) {
    const clear = () => { document.documentElement.style.scrollPaddingTop = `${bar.offsetHeight}px`; };
    new ResizeObserver(clear).observe(bar);
  }

  // A refusal that names a field: the field marked invalid and described by the status message
  // that says why, so a screen reader reads it with the field, which takes the focus. Every
  // field under `root` marked before is unmarked first: one refused earlier is not left marked,
  // nor described by this refusal.
  function flag(status, root, input) {
    unflag(root);
    const said = status.querySelector("p");
    if (said) said.id = "status-message";
    input.setAttribute("aria-invalid", "true");
    if (said) input.setAttribute("aria-describedby", [input.getAttribute("aria-describedby"), said.id].filter(Boolean).join(" "));
    input.focus();
  }

  function unflag(root) {
    for (const input of root.querySelectorAll("[aria-invalid], [aria-describedby~='status-message']")) {
      input.removeAttribute("aria-invalid");
      const others = (input.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== "status-message");
      if (others.length) input.setAttribute("aria-describedby", others.join(" "));
      else input.removeAttribute("aria-describedby");
    }
  }

  return { el, api, ApiError, NetworkError, download, errorText, flag, unflag, tabStore, keepFocusClearOf };
})();
