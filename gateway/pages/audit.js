// The auditor dashboard: the read-only audit API (`/v1/audit`) in a browser, with an auditor's
// API key (scope audit:read). Every listing, verification and lookup made here is an API call,
// so each one lands in the access log like any other auditor's call.
"use strict";

(() => {
  const { el, api, download, errorText, flag, unflag, ApiError, tabStore } = CGW;
  const KEY = "cgw.audit.key";
  const app = document.getElementById("app");
  const status = document.getElementById("status");
  CGW.keepFocusClearOf(status);
  let key = tabStore.get(KEY);

  // Each listing: its route, the array in its answer, the filters it takes and the columns shown.
  const LISTINGS = {
    events: {
      title: "Consent events", path: "/v1/audit/consent-events", items: "events",
      filters: ["subject_ref", "user_id", "purpose", "from", "to"],
      columns: ["seq", "at", "subject_ref", "purpose", "action", "notice_version", "actor", "source", "hash"],
    },
    decisions: {
      title: "Decisions", path: "/v1/audit/decisions", items: "decisions",
      filters: ["push_id", "campaign_id", "subject_ref", "outcome", "reason", "from", "to"],
      columns: ["push_id", "created_at", "subject_ref", "topic", "campaign_id", "outcome", "status", "reasons", "policy_version", "final_reasons", "final_policy_version"],
    },
    complaints: {
      title: "Complaints", path: "/v1/audit/complaints", items: "complaints",
      filters: ["status", "reason", "campaign_id", "from", "to"],
      // The audit rows' own names (gateway/schemas/audit.py ComplaintRead), not the complaint
      // desk's: an auditor sees whether there is a comment or a resolution, never its text.
      columns: ["complaint_id", "created_at", "subject_ref", "reason", "status", "flagged", "push_id", "topic", "campaign_id", "variant", "actions", "has_comment", "acknowledged_at", "resolved_at", "has_resolution"],
    },
    access: {
      title: "Access log", path: "/v1/audit/access-log", items: "entries", filters: [],
      columns: ["id", "at", "key_id", "route", "filters", "result_count"],
    },
    // Who changed keys, the policy or campaigns: what an auditor reads beside the decisions it
    // changed (a policy version, a campaign paused by its complaint rate).
    admin: {
      title: "Admin log", path: "/v1/audit/admin-log", items: "entries", filters: [],
      columns: ["id", "at", "actor", "action", "target", "detail"],
    },
  };
  const TABS = [["ledger", "Ledger"], ["events", "Consent events"], ["decisions", "Decisions"],
    ["complaints", "Complaints"], ["subject", "Subject"], ["access", "Access log"], ["admin", "Admin log"]];

  function say(message, kind = "ok") {
    status.replaceChildren(el("p", { class: kind, role: kind === "error" ? "alert" : "status", text: message }));
  }

  // A key refused (401), or one that may not read the audit routes (403: no `audit:read`, or an
  // admin key), signs out: kept, it showed the same refusal on every tab and after a reload.
  function fail(error) {
    if (error instanceof ApiError && error.status === 401) return signOut("The API key was refused.");
    if (error instanceof ApiError && error.status === 403) {
      return signOut("This API key may not read the audit routes: an auditor's key holds the scope audit:read.");
    }
    say(errorText(error), "error");
  }

  const call = (path) => api(key, "GET", path);

  function cell(value) {
    if (value === null || value === undefined) return "";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  // In a region of its own that scrolls sideways, reachable from the keyboard: on a narrow
  // screen a wide table made the whole page scroll.
  function table(columns, rows, label) {
    return el("div", { class: "scroll", role: "region", "aria-label": label, tabindex: "0" },
      el("table", {},
        el("thead", {}, el("tr", {}, ...columns.map((column) => el("th", { scope: "col", text: column })))),
        el("tbody", {}, ...rows.map((row) => el("tr", {}, ...columns.map((column) => el("td", { text: cell(row[column]) })))))));
  }

  // How the time fields are written, said beside each (a placeholder goes once typing starts).
  const TIMES = "RFC 3339, e.g. 2026-11-01T00:00:00Z";
  const timeHint = (id) => el("p", { class: "hint", id, text: `Times: ${TIMES}.` });

  // Enter in a field does what the button beside it does.
  const onEnter = (action) => (event) => event.key === "Enter" && action();

  // The focus goes to the key field: the button pressed, or the view, is gone with the page.
  function signOut(message) {
    tabStore.remove(KEY);
    key = null;
    renderSignIn();
    if (message) say(message, "error");
    else say("Signed out.");
    document.getElementById("api-key").focus();
  }

  function renderSignIn() {
    document.getElementById("controls").replaceChildren();
    const input = el("input", { id: "api-key", type: "password", autocomplete: "off", "aria-label": "Auditor API key" });
    const go = () => {
      if (!input.value.trim()) {  // said, not a button that does nothing
        say("Paste an auditor's API key (scope audit:read).", "error");
        return flag(status, app, input);
      }
      key = input.value.trim();
      tabStore.set(KEY, key);
      status.replaceChildren();
      renderTab("ledger");
      document.getElementById("tab-ledger").focus();  // not left on the sign-in form, gone
    };
    input.addEventListener("keydown", (event) => event.key === "Enter" && go());
    app.replaceChildren(el("section", { id: "sign-in" },
      el("h2", { text: "Sign in" }),
      el("p", { class: "hint", text: "An API key with scope audit:read. It is kept in this tab only." }),
      el("div", { class: "row" }, el("label", { for: "api-key", text: "API key" }), input, el("button", { onclick: go }, "Continue"))));
  }

  // The views are a set of buttons, the current one marked `aria-current`; the one pressed keeps
  // the focus across the rebuild, so a keyboard user is not sent back to the top of the page.
  function renderTab(name) {
    const refocus = document.activeElement && document.activeElement.id === `tab-${name}`;
    document.getElementById("controls").replaceChildren(
      el("button", { class: "secondary", onclick: () => signOut() }, "Sign out"));
    const tabs = el("nav", { class: "tabs", "aria-label": "Views" }, ...TABS.map(([id, label]) =>
      el("button", { id: `tab-${id}`, class: "secondary", "aria-current": id === name ? "page" : null, onclick: () => renderTab(id) }, label)));
    const view = el("div", { id: "view" });
    app.replaceChildren(tabs, view);
    if (refocus) document.getElementById(`tab-${name}`).focus();
    status.replaceChildren();
    if (name === "ledger") ledger(view);
    else if (name === "subject") subject(view);
    else listing(view, LISTINGS[name]);
  }

  // Why a ledger does not match its latest signed checkpoint (storage/ledger.py CheckpointProblem).
  const CHECKPOINT_PROBLEMS = {
    ledger_shorter: "the ledger holds fewer events than the checkpoint signed",
    root_differs: "the events the checkpoint signed no longer hash to its root",
    bad_signature: "the checkpoint's signature does not hold",
    unknown_key: "the checkpoint is signed by a key this gateway does not list (a key rotated in elsewhere, or a retired key missing from the key store)",
    ledger_missing: "the ledger table is missing or unreadable",
    checkpoints_missing: "the checkpoints table is missing or unreadable",
  };

  // The chain's own verdict first (the first event whose hash does not hold), then the
  // checkpoint's: a ledger that fails only against its checkpoint has an intact chain, and
  // "chain broken" sent an auditor looking for an event that is not there.
  function verdict(answer) {
    const badges = [];
    const badge = (good, text) => el("span", { class: `badge ${good ? "good" : "bad"}`, text });
    if (answer.first_invalid_seq !== null && answer.first_invalid_seq !== undefined) {
      badges.push(badge(false, `chain broken at seq ${answer.first_invalid_seq}`));
    }
    if (answer.checkpoint_problem) badges.push(badge(false, `checkpoint problem: ${answer.checkpoint_problem}`));
    // The consent state pushes are decided on, held to the ledger's latest consent events.
    if (answer.consents_unbacked === null) badges.push(badge(false, "consent state not checked"));
    else if (answer.consents_unbacked) {
      badges.push(badge(false, `${answer.consents_unbacked} consent state(s) the ledger does not back`));
    }
    if (!badges.length) badges.push(answer.ok ? badge(true, "chain intact") : badge(false, "verification failed"));
    const problem = Object.hasOwn(CHECKPOINT_PROBLEMS, answer.checkpoint_problem ?? "") ? CHECKPOINT_PROBLEMS[answer.checkpoint_problem] : null;
    return el("p", {}, ...badges.flatMap((b, n) => (n ? [" ", b] : [b])),
      problem ? el("span", { class: "hint", text: ` ${problem}` }) : null);
  }

  async function ledger(view) {
    const result = el("div", { id: "verify-result" });
    const verify = async () => {
      result.replaceChildren(el("p", { text: "Verifying…" }));
      try {
        const answer = await call("/v1/audit/ledger/verify");
        if (!view.isConnected) return;  // another view chosen meanwhile: its status is not this
        const shown = verdict(answer);
        result.replaceChildren(shown, table(Object.keys(answer), [answer], "Verification"));
        say(shown.textContent, answer.ok ? "ok" : "error");  // read out: the table is not
      } catch (error) {
        if (!view.isConnected) return;
        result.replaceChildren();  // not "Verifying…" beside the error for good
        fail(error);
      }
    };
    const checkpoint = el("div", { id: "checkpoint" });
    const exportEvents = async () => {
      try {
        const query = new URLSearchParams();
        for (const name of ["from", "to"]) {
          const value = document.getElementById(`export-${name}`).value.trim();
          if (value) query.set(name, value);
        }
        // The bare compact JWS, as `consent-gateway audit export` writes it, which is what
        // `consent-gateway audit verify --export` reads; not the API's {"jws": ...} answer.
        status.replaceChildren();  // an earlier refusal is not this download's
        const answer = await call(`/v1/audit/export?${query}`);
        download("audit-export.jws", `${answer.jws}\n`, "application/jose");
        say("Downloaded audit-export.jws.");
        unflag(view);
      } catch (error) {
        fail(error);
        const named = error instanceof ApiError && ["from", "to"].includes(error.field);
        if (named && view.isConnected) flag(status, view, document.getElementById(`export-${error.field}`));
      }
    };
    view.append(
      el("section", {}, el("h2", { text: "Hash chain" }),
        el("p", { class: "hint", text: "Recomputes every event's hash from the stored ciphertexts." }),
        el("button", { id: "verify", onclick: verify }, "Verify the ledger"), result),
      el("section", {}, el("h2", { text: "Latest signed checkpoint" }), checkpoint),
      el("section", {}, el("h2", { text: "Signed export" }),
        el("p", { class: "hint", text: "Events in a time range (RFC 3339), signed as a JWS verifiable with /.well-known/jwks.json: consent-gateway audit verify --export audit-export.jws --jwks jwks.json" }),
        el("div", { class: "row" },
          el("label", { for: "export-from", text: "from" }), el("input", { id: "export-from", placeholder: "2026-11-01T00:00:00Z", "aria-describedby": "export-times-hint" }),
          el("label", { for: "export-to", text: "to" }), el("input", { id: "export-to", placeholder: "2026-12-01T00:00:00Z", "aria-describedby": "export-times-hint" }),
          el("button", { id: "export", class: "secondary", onclick: exportEvents }, "Download")),
        timeHint("export-times-hint")));
    try {
      const answer = await call("/v1/audit/ledger/checkpoint");
      checkpoint.replaceChildren(table(["tree_size", "root_hash", "at"], [answer], "Signed checkpoint"));
    } catch (error) {
      if (view.isConnected) fail(error);
    }
  }

  // A filter the route takes from a fixed set (a purpose, an outcome, a reason code) is chosen from
  // that set, which the server writes into the page from the route itself; the others are typed.
  const CHOICES = JSON.parse(document.documentElement.dataset.filterChoices);
  function control(path, name, search) {
    const values = (CHOICES[path] || {})[name];
    if (!values) return el("input", { id: `filter-${name}`, name, autocomplete: "off", onkeydown: onEnter(search) });
    return el("select", { id: `filter-${name}`, name, onkeydown: onEnter(search) },
      el("option", { value: "", text: "any" }), values.map((value) => el("option", { value, text: value })));
  }

  function listing(view, spec) {
    const search = () => fetchPage(true);
    const inputs = Object.fromEntries(spec.filters.map((name) => [name, control(spec.path, name, search)]));
    const timed = ["from", "to"].filter((name) => inputs[name]);
    for (const name of timed) inputs[name].setAttribute("aria-describedby", "times-hint");
    const rows = [];
    // Focusable from script: where the focus goes when More, pressed, is hidden by the last page.
    const body = el("div", { id: "results", tabindex: "-1" });
    const more = el("button", { id: "more", class: "secondary", hidden: true }, "More");
    let cursor = null;
    let searched = "";  // the filters of the search the rows shown answer, which More goes on with
    let latest = 0;
    // Only the newest request's answer is shown: a second click on More, or a Search while a page
    // is loading, would otherwise add a page twice or mix two searches. More asks for the next
    // page of the search shown, whatever the filters hold now: built from them, it asked another
    // search for the rows after the last one's cursor, and rows of neither were added or skipped.
    // Nor is an answer shown once another view is chosen: its "100 shown" or its refusal took
    // the status line (and the screen reader) of the view chosen since.
    const fetchPage = async (fresh) => {
      let filters = searched;
      if (fresh) {
        const typed = new URLSearchParams();
        for (const [name, input] of Object.entries(inputs)) if (input.value.trim()) typed.set(name, input.value.trim());
        filters = typed.toString();
      }
      const query = new URLSearchParams(filters);
      if (!fresh && cursor) query.set("cursor", cursor);
      const mine = ++latest;
      // Disabled while it loads, More loses the focus to the page: it is given back after.
      const refocus = !fresh && document.activeElement === more;
      more.disabled = true;
      status.replaceChildren();  // an earlier refusal is not this request's
      if (fresh) unflag(view);
      try {
        const answer = await call(`${spec.path}?${query}`);
        if (mine !== latest || !view.isConnected) return;
        if (fresh) {
          rows.length = 0;
          searched = filters;
        }
        rows.push(...answer[spec.items]);
        cursor = answer.next_cursor;
        more.hidden = !cursor;
        body.replaceChildren(rows.length ? table(spec.columns, rows, spec.title) : el("p", { class: "hint", text: "Nothing found." }));
        say(rows.length ? `${rows.length} shown${cursor ? ", more to load" : ""}.` : "Nothing found.");
      } catch (error) {
        if (mine !== latest || !view.isConnected) return;
        if (fresh) {  // a refused search shows nothing, not the last one's rows and cursor
          rows.length = 0;
          cursor = null;
          more.hidden = true;
          body.replaceChildren();
        }
        fail(error);
        const named = error instanceof ApiError && error.field && inputs[error.field];
        if (named && fresh && view.isConnected) flag(status, view, named);
      } finally {
        if (mine === latest) {
          more.disabled = false;
          if (refocus && view.isConnected) (more.hidden ? body : more).focus();
        }
      }
    };
    more.addEventListener("click", () => fetchPage(false));
    view.append(el("section", {}, el("h2", { text: spec.title }),
      spec.filters.length ? el("div", { class: "row" }, ...spec.filters.flatMap((name) => [el("label", { for: `filter-${name}`, text: name }), inputs[name]]),
        el("button", { id: "search", onclick: search }, "Search")) : null,
      timed.length ? timeHint("times-hint") : null,
      body, more));
    fetchPage(true);
  }

  function subject(view) {
    const ref = el("input", { id: "subject-ref", autocomplete: "off", onkeydown: onEnter(() => look()) });
    const at = el("input", {
      id: "subject-at", placeholder: "2026-11-23T10:00:00Z", autocomplete: "off", "aria-describedby": "subject-at-hint",
      onkeydown: onEnter(() => look()),
    });
    const result = el("div", { id: "subject-result" });
    // Only the newest lookup's answer is shown, as in `listing`: a slow answer for the subject
    // looked up first replaced the next one's, under the next one's subject_ref.
    let latest = 0;
    const look = async () => {
      if (!/^sub_[a-z2-7]{52}$/.test(ref.value.trim())) {
        say("subject_ref: a subject_ref (sub_…) is required", "error");
        return flag(status, view, ref);
      }
      unflag(view);
      const query = at.value.trim() ? `?${new URLSearchParams({ at: at.value.trim() })}` : "";
      const mine = ++latest;
      status.replaceChildren();
      try {
        const answer = await call(`/v1/audit/subjects/${encodeURIComponent(ref.value.trim())}${query}`);
        if (mine !== latest || !view.isConnected) return;
        const { history = [], ...state } = answer;
        // An erased subject's answer reads wrong without its rule: `erased_at` a moment still to
        // come, and a consent neither given nor withdrawn.
        const erased = state.status === "erased"
          ? el("p", { class: "hint", id: "subject-erased", text: "Erased. Only the day of the erasure is kept: erased_at is the UTC midnight after it. A consent shown granted: null is unknown, not withdrawn: the history before the erasure cannot be read." })
          : null;
        result.replaceChildren(
          table(Object.keys(state), [state], "The subject's state"),
          erased,
          el("h3", { text: "Consent history" }),
          history.length ? table(LISTINGS.events.columns, history, "Consent history") : el("p", { class: "hint", text: "No consent events." }));
        // Said, as listings say their count: a lookup that succeeded was silent to a screen reader.
        say(`${state.status === "erased" ? "Erased subject" : "Subject"}: ${history.length} consent events.`);
      } catch (error) {
        if (mine !== latest || !view.isConnected) return;
        result.replaceChildren();  // not the last lookup's answer beside this one's refusal
        fail(error);
        if (error instanceof ApiError && error.field === "at" && view.isConnected) flag(status, view, at);
      }
    };
    view.append(el("section", {}, el("h2", { text: "A subject's consents, now or at a moment" }),
      el("div", { class: "row" }, el("label", { for: "subject-ref", text: "subject_ref" }), ref,
        el("label", { for: "subject-at", text: "at" }), at, el("button", { id: "look-up", onclick: look }, "Look up")),
      el("p", { class: "hint", id: "subject-at-hint", text: `at, if given: the moment to read the consents at (${TIMES}).` }),
      result));
  }

  if (key) renderTab("ledger");
  else renderSignIn();
})();
