// The preference center: everything `/v1/me` offers, for a person, in English or Chinese.
// It holds nothing of its own: each view is read from the API with the person's token and each
// change is one API call, after which the view is read again, so the page never shows a state
// the gateway does not have.
"use strict";

(() => {
  const { el, api, ApiError, NetworkError, download, errorText, flag, unflag, tabStore } = CGW;
  const TOKEN_KEY = "cgw.preferences.token";
  const NOTICE_VERSION = document.documentElement.dataset.notice;
  const TOPIC_NEEDS = JSON.parse(document.documentElement.dataset.topicNeeds);
  const app = document.getElementById("app");
  const status = document.getElementById("status");
  CGW.keepFocusClearOf(status);
  let lang = firstLanguage();
  let token = takeToken();

  // Language tags are read as browsers give them: any case, and any `zh` (`zh`, `zh-cn`, `zh-Hans`)
  // is the Chinese the page has. `?lang=zh` was ignored, where only `zh-CN` exactly was taken.
  function firstLanguage() {
    const asked = new URLSearchParams(location.search).get("lang");
    // Every language the browser names, in its order: a Chinese second to another the page lacks.
    const named = navigator.languages?.length ? navigator.languages : [navigator.language || ""];
    return (asked && ours(asked)) || named.map(ours).find(Boolean) || "en";
  }

  function ours(tag) {
    const lower = tag.toLowerCase();
    if (lower === "zh" || lower.startsWith("zh-")) return "zh-CN";
    if (lower === "en" || lower.startsWith("en-")) return "en";
    return null;
  }

  // The wallet app opens /preferences#token=<JWT>: a fragment is never sent to a server, so the
  // token reaches no log. It leaves the address bar and this tab's history entry first, then
  // moves to this tab's sessionStorage (gone when the tab closes; `tabStore`).
  function takeToken() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const given = fragment.get("token");
    if (given) {
      history.replaceState(null, "", location.pathname + location.search);
      tabStore.set(TOKEN_KEY, given);
    }
    return tabStore.get(TOKEN_KEY);
  }

  function t(key, vars = {}) {
    const text = I18N[lang][key] ?? I18N.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
  }

  // In the person's saved zone, named: the one their quiet hours and caps count in. In the
  // browser's own, unnamed, a message delivered at 12:59 in Shanghai showed as 11:59 PM beside
  // "outside your quiet hours (21:00–08:00, Asia/Shanghai)". A zone this browser does not know
  // (its time-zone data older than the gateway's) falls back to the browser's, named too.
  let zone = null;

  // A date and a time to the minute in the person's saved zone, the zone named after them:
  // "Dec 7, 2026, 2:22 PM GMT+8", "2026年12月7日 14:22（GMT+8）". The locale's default put the
  // month first as a number in English ("12/7/2026") and the zone between date and time in
  // Chinese, with seconds nobody needs.
  function when(iso) {
    if (!iso) return "";
    const moment = new Date(iso);
    let format;
    try {
      format = formatsFor(zone ?? undefined);
    } catch {
      format = formatsFor(undefined);  // a zone this browser does not know: its own, named
    }
    const text = format.time.format(moment);
    const name = format.zone.formatToParts(moment).find((part) => part.type === "timeZoneName");
    if (!name) return text;
    return lang === "en" ? `${text} ${name.value}` : `${text}（${name.value}）`;
  }

  // Made once per language and zone, not twice per time shown: a view of 500 messages built a
  // thousand formatters at each render.
  const formats = new Map();
  function formatsFor(timeZone) {
    const key = `${lang}|${timeZone ?? ""}`;
    if (!formats.has(key)) {
      const month = lang === "en" ? "short" : "long";
      const hour = lang === "en" ? "numeric" : "2-digit";  // "2:22 PM"; "08:05", as Chinese times are written
      formats.set(key, {
        time: new Intl.DateTimeFormat(lang, { timeZone, year: "numeric", month, day: "numeric", hour, minute: "2-digit" }),
        zone: new Intl.DateTimeFormat(lang, { timeZone, timeZoneName: "short" }),
      });
    }
    return formats.get(key);
  }

  // `note`: a word after the message, as when a change was saved but the view not read again.
  function say(message, kind = "ok", note = null) {
    status.replaceChildren(el("p", { class: kind, role: kind === "error" ? "alert" : "status" },
      message, note ? " " : null, note ? el("span", { class: "note", text: note }) : null));
  }

  // Lists in the page's language: "A, B" and "A; B" in English, "A、B" and "A；B" in Chinese.
  const list = (items) => items.join(t("list_separator"));
  const clauses = (items) => items.join(t("clause_separator"));

  // The API's detail is English: shown in English only, and in Chinese a message of the page's
  // own stands in for it, naming the field where the page knows it. In English too where the
  // detail is the validator's own (a type, or a pattern spelled as a regular expression).
  const VALIDATOR_TEXT = /^Expected `|regex|^Object (contains unknown|missing required) field/;

  function problem(error) {
    const english = lang === "en";
    // The network gone: said as the service unreachable, not as the browser's "Failed to fetch".
    if (error instanceof NetworkError) return t("error_unavailable");
    if (!(error instanceof ApiError)) return english ? t("failed", { detail: errorText(error) }) : t("failed_plain");
    if (error.status === 503) return t("error_unavailable");
    if (error.status === 429) return t("error_too_many");
    if (error.status === 404) return t("error_gone");
    const field = error.field && error.field.split(".").find((part) => `field_${part}` in I18N.en);
    if (field && (!english || VALIDATOR_TEXT.test(error.detail || ""))) {
      return t("invalid_field", { field: t(`field_${field}`) });
    }
    if (error.status === 409) return english && error.detail ? t("error_conflict", { detail: error.detail }) : t("conflict_plain");
    return english ? t("failed", { detail: errorText(error) }) : t("failed_plain");
  }

  function fail(error) {
    if (error instanceof ApiError && error.status === 401) signOut("session_over", "error");
    else say(problem(error), "error");
  }

  const call = (method, path, body) => api(token, method, path, body);

  // One change at a time: a second click while one is saving would send it twice (two
  // complaints, say). After a success the view is read again. After a refusal too for a switch,
  // so it does not stay flipped; but a form (`keepOnRefusal`) keeps what was typed, so the
  // person can see and mend the value the refusal names. A switch (`control`) whose change was
  // not saved and whose view could not be read again is flipped back by hand: it was not sent
  // (busy), or the gateway did not take it. Busy for the token that began the change only: the
  // person before's change still in flight does not hold back the next person's.
  let busy = null;

  // A form's refusal marks the input it names (`fields`: the refusal's field, or a prefix of it,
  // to its input) as invalid and moves the focus there, so a screen reader user is taken to it.
  // `taken` runs once the gateway took the change, before the view is read again: a form that
  // was sent closes there, so that it cannot be sent twice even when that read fails. A change
  // taken whose view could not be read again is shown as taken, with a note saying so: shown as
  // "That did not work", it was made again (a second complaint, a consent switched back).
  // True when the change ended for the person who made it (no other signed in meanwhile).
  async function change(action, { message = null, keepOnRefusal = false, control = null, fields = {}, taken = null } = {}) {
    const asked = token;
    const flipBack = () => { if (control) control.checked = !control.checked; };
    if (busy === token) {
      flipBack();
      say(t("busy"), "error");
      return false;
    }
    busy = token;
    app.setAttribute("aria-busy", "true");
    const done = () => {
      if (busy !== asked) return;
      busy = null;
      app.removeAttribute("aria-busy");
    };
    let answer = null;
    let refused = null;
    let unread = null;  // the view's read after the change, failed
    try {
      answer = await action();
    } catch (error) {
      refused = error;
    }
    if (!samePerson(token, asked)) {  // another person signed in meanwhile: their view is not read again
      done();
      return false;
    }
    try {
      if (!refused && taken) taken();
      if (!(refused && keepOnRefusal)) await load();
      else flipBack();
    } catch (error) {
      unread = error;
      if (refused) flipBack();
    } finally {
      done();
    }
    if (!samePerson(token, asked)) return false;  // another person signed in meanwhile: not theirs
    if (refused) fail(refused);
    else if (unread instanceof ApiError && unread.status === 401) fail(unread);  // the session ended
    else say(typeof message === "function" ? message(answer) : message || t("saved"), "ok", unread ? t("not_refreshed") : null);
    if (refused && keepOnRefusal) markInvalid(fields, refused.field);
    return true;
  }

  // The token's subject, read without checking it (the gateway does): the wallet may open the page
  // again for the same person with a new token, whose work in flight is still theirs.
  function personOf(jwt) {
    try {
      return JSON.parse(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub ?? jwt;
    } catch {
      return jwt;
    }
  }

  function samePerson(a, b) {
    return a === b || (Boolean(a) && Boolean(b) && personOf(a) === personOf(b));
  }

  // The refusal said (`say`, before this) is the field's description too: a screen reader reads
  // it with the field the focus lands on, not only once in the status bar.
  function markInvalid(fields, field) {
    const parts = (field || "").split(".");
    for (let n = parts.length; n > 0; n -= 1) {
      const input = fields[parts.slice(0, n).join(".")];
      if (input && input.isConnected) return flag(status, app, input);
    }
    unflag(app);  // every field of the page, not only this form's
  }

  // `said` is a message's key, put in words once the language is the sign-in form's: said in the
  // leaving person's, it stood in English over a Chinese form.
  // The focus goes to the sign-in field: the button pressed, or the view, is gone with the page.
  function signOut(said, kind = "ok") {
    tabStore.remove(TOKEN_KEY);
    token = null;
    lang = firstLanguage();  // the person leaving chose theirs; the next one's comes with their view
    renderSignIn();
    say(t(said), kind);
    document.getElementById("token").focus();
  }

  // A load begun before another person signed in (a second link, the form) ends quietly, its
  // view and its errors alike: shown, the first person's view took the second's changes, and
  // the first token's 401 signed the second person out.
  async function load() {
    const asked = token;
    let views;
    try {
      views = await Promise.all([
        call("GET", "/v1/me/preferences"),
        call("GET", "/v1/me/devices"),
        call("GET", "/v1/me/notifications"),
        call("GET", "/v1/me/complaints"),
        call("GET", "/v1/me/consents/history"),
      ]);
    } catch (error) {
      if (token !== asked) return;
      throw error;
    }
    if (token !== asked) return;
    const [state, devices, notifications, complaints, history] = views;
    if (state.locale && Object.hasOwn(I18N, state.locale)) lang = state.locale;  // null until the person chooses: the browser's meanwhile
    zone = state.timezone;
    render({ state, devices, notifications, complaints, history });
  }

  function frame() {
    document.documentElement.lang = lang;
    document.title = t("title");
    document.getElementById("title").textContent = t("title");
    const picker = el(
      "select",
      { id: "language", "aria-label": t("language"), onchange: (event) => switchLanguage(event.target.value) },
      el("option", { value: "en", lang: "en", selected: lang === "en" }, "English"),
      el("option", { value: "zh-CN", lang: "zh-CN", selected: lang === "zh-CN" }, "简体中文"),
    );
    const controls = [el("label", {}, `${t("language")} `, picker)];
    if (token) controls.push(el("button", { class: "secondary", onclick: () => signOut("signed_out") }, t("sign_out")));
    document.getElementById("controls").replaceChildren(...controls);
  }

  // The language is the person's preference, so it is saved; until they choose one, the page
  // speaks the one asked for (`?lang=`) or the browser's.
  function switchLanguage(value) {
    if (token && busy === token) {
      // Turned away as `change` turns a change away, before the page takes the language: taken
      // first, the refusal came in the new language over a page in the old, and the page then
      // switched with nothing saved (a reload brought the old one back).
      document.getElementById("language").value = lang;
      say(t("busy"), "error");
      return;
    }
    lang = value;
    if (!token) return renderSignIn();
    change(() => call("PATCH", "/v1/me/preferences", { locale: value }));
  }

  function renderSignIn() {
    app.removeAttribute("aria-busy");  // a change of the person before may still be in flight
    frame();
    const input = el("input", { id: "token", type: "password", autocomplete: "off", "aria-label": t("token_label") });
    const go = () => {
      if (!input.value.trim()) {  // said, not a button that does nothing
        say(t("token_missing"), "error");
        return flag(status, app, input);
      }
      token = input.value.trim();
      tabStore.set(TOKEN_KEY, token);
      app.removeAttribute("aria-busy");  // a change of the person before may still be in flight
      status.replaceChildren();
      const asked = token;
      // A token pasted here and refused was never a session: said as the error it is, with the
      // focus back on the field, not as "your session has ended".
      load().catch((error) => {
        if (!(error instanceof ApiError && error.status === 401) || token !== asked) return fail(error);
        signOut("token_refused", "error");
        flag(status, app, document.getElementById("token"));
      });
    };
    input.addEventListener("keydown", (event) => event.key === "Enter" && go());
    app.replaceChildren(
      el("section", { id: "sign-in" },
        el("h2", { text: t("sign_in_title") }),
        el("p", { class: "hint", text: t("sign_in_hint") }),
        el("div", { class: "row" }, el("label", { for: "token", text: t("token_label") }), input,
          el("button", { onclick: go }, t("sign_in")))),
    );
  }

  // The view is rebuilt after each change; the control that had the focus gets it back, so a
  // keyboard user is not sent to the top of the page, and what was typed and not sent yet is
  // typed still (`drafts`).
  function render(data) {
    const first = !app.querySelector("#consents");  // after sign-in, "Loading…" or a retry
    const focused = document.activeElement;
    const again = focused && (focused.id ? `#${CSS.escape(focused.id)}` : focused.name ? `[name="${CSS.escape(focused.name)}"]` : null);
    const kept = drafts();
    openers = new Map();
    frame();
    app.replaceChildren(
      consents(data.state),
      topics(data.state),
      timing(data.state),
      location_(data.state),
      devicesView(data.devices),
      notificationsView(data.notifications, data.state),
      complaintsView(data.complaints),
      historyView(data.history),
      yourData(),
    );
    restore(kept);
    const target = again && document.querySelector(again);
    if (target) target.focus();
    else if (first) focusHeading("consents");  // not left on the sign-in button, gone with its form
  }

  // What was typed and not yet sent outlives a rebuild: an open report with its reason and text,
  // and the timing inputs changed and not saved. A switch saved meanwhile threw them away. A form
  // sent closes (a report) or takes what it sent as shown (timing) before the view is read
  // again, so it is not kept. Only the same person's: another's view starts from "Loading…".
  const TYPED = ["quiet-start", "quiet-end", "max-per-week", "timezone"];
  let openers = new Map();  // a report form's id: what opens it again

  function drafts() {
    const typed = TYPED.map((id) => document.getElementById(id))
      .filter((input) => input && input.value !== input.dataset.shown)
      .map((input) => [input.id, input.value]);
    const reports = [...app.querySelectorAll(".complaint-form")].map((form) => ({
      id: form.id, reason: form.querySelector("select").value, comment: form.querySelector("textarea").value,
    }));
    return { typed, reports };
  }

  function restore({ typed, reports }) {
    for (const [id, value] of typed) {
      const input = document.getElementById(id);
      if (input) input.value = value;
    }
    for (const report of reports) {
      const open = openers.get(report.id);
      if (!open) continue;  // its message is no longer listed
      const form = open(false);
      form.querySelector("select").value = report.reason;
      form.querySelector("textarea").value = report.comment;
    }
  }

  function focusHeading(id) {
    const heading = document.getElementById(`${id}-title`);
    if (!heading) return;  // signed out meanwhile (a 401): the sign-in form holds the page
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }

  function section(id, title, hint, ...body) {
    return el("section", { id, "aria-labelledby": `${id}-title` },
      el("h2", { id: `${id}-title`, text: title }), hint ? el("p", { class: "hint", text: hint }) : null, ...body);
  }

  // Each switch is named by its purpose alone and described by the notice text and the date:
  // named by all three, a screen reader read a paragraph for every switch as its name.
  function consents(state) {
    const rows = Object.entries(state.consents).map(([purpose, consent]) =>
      el("label", { class: "toggle" },
        el("input", {
          type: "checkbox", name: `consent-${purpose}`, checked: consent.granted,
          "aria-labelledby": `consent-${purpose}-name`,
          "aria-describedby": [`consent-${purpose}-text`, consent.updated_at ? `consent-${purpose}-since` : null].filter(Boolean).join(" "),
          onchange: (event) => change(
            () => call("PUT", `/v1/me/consents/${purpose}`, { granted: event.target.checked, notice_version: NOTICE_VERSION }),
            { message: (answer) => t("receipt", { id: answer.receipt.receipt_id }), control: event.target },
          ),
        }),
        el("span", {}, el("span", { id: `consent-${purpose}-name`, text: t(`purpose_${purpose}`) }),
          el("small", { id: `consent-${purpose}-text`, text: t(`purpose_${purpose}_text`) }),
          consent.updated_at ? el("small", { id: `consent-${purpose}-since`, class: "meta", text: t("since", { time: when(consent.updated_at) }) }) : null)));
    return section("consents", t("consents_title"), t("consents_hint"), ...rows);
  }

  // A topic is on only while the consents it needs are given (the API answers the topic as off
  // otherwise), so its switch is locked until then and says which consent is missing.
  function topics(state) {
    const paused = state.paused_until || {};
    const rows = Object.entries(state.topics).map(([topic, on]) => {
      const missing = (TOPIC_NEEDS[topic] || []).filter((purpose) => !state.consents[purpose].granted);
      return el("label", { class: "toggle" },
        el("input", {
          type: "checkbox", name: `topic-${topic}`, checked: on, disabled: topic === "transactional" || missing.length > 0,
          onchange: (event) => change(
            () => call("PATCH", "/v1/me/preferences", { topics: { [topic]: event.target.checked } }),
            { control: event.target },
          ),
        }),
        // "Always on" in the list of switches only: a message's topic line named it so too.
        el("span", {}, t(`topic_${topic}`), topic === "transactional" ? ` ${t("always_on")}` : null, missing.length
          ? el("small", { text: t("topic_needs", { purposes: list(missing.map((purpose) => t(`purpose_${purpose}`))) }) })
          : null,
        paused[topic] ? el("small", { class: "meta", text: t("topic_paused", { time: when(paused[topic]) }) }) : null));
    });
    return section("topics", t("topics_title"), t("topics_hint"), ...rows);
  }

  function timing(state) {
    const start = el("input", { type: "time", id: "quiet-start", value: state.quiet_hours.start });
    const end = el("input", { type: "time", id: "quiet-end", value: state.quiet_hours.end });
    // Up to the system cap, which the gateway checks (3 unless an admin changed it).
    const perWeek = el("input", { type: "number", id: "max-per-week", min: 0, value: state.frequency.max_per_week });
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    // The saved zone decides when quiet hours and a day's limit begin; one that is not this
    // device's (the gateway's default, UTC, for a person who never chose) is said, with a way to
    // take the device's.
    const device = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const differs = Boolean(device) && device !== state.timezone && (!zones.length || zones.includes(device));
    const timezone = el("input", {
      id: "timezone", list: "zones", value: state.timezone, autocomplete: "off",
      "aria-describedby": differs ? "zone-differs" : null,
    });
    const fields = { quiet_hours: start, "quiet_hours.end": end, frequency: perWeek, timezone };
    for (const input of Object.values(fields)) input.dataset.shown = input.value;  // typed since: a draft
    // Only what was changed is sent: the stored window sent again with a new zone would be
    // refused whole should the policy have changed its rules since it was saved.
    const save = () => {
      const cap = perWeek.value.trim();
      if (!/^\d{1,2}$/.test(cap)) {
        say(t("invalid_field", { field: t("field_max_per_week") }), "error");
        return markInvalid(fields, "frequency");
      }
      for (const [input, field] of [[start, "quiet_hours"], [end, "quiet_hours.end"]]) {
        if (!input.value) {  // an emptied box: said here, not sent to be refused
          say(t("invalid_field", { field: t("field_quiet_hours") }), "error");
          return markInvalid(fields, field);
        }
      }
      const changes = {};
      if (start.value !== state.quiet_hours.start || end.value !== state.quiet_hours.end) {
        changes.quiet_hours = { start: start.value, end: end.value };
      }
      if (Number(cap) !== state.frequency.max_per_week) changes.frequency = { max_per_week: Number(cap) };
      if (timezone.value.trim() !== state.timezone) changes.timezone = timezone.value.trim();
      // Sent, an empty change said "Saved." and counted against the person's hourly writes.
      if (!Object.keys(changes).length) return say(t("nothing_changed"));
      // Taken, what was sent is what is saved: the next save compares with it (the view's reload
      // may fail), and what was typed while it was on its way is still a draft.
      const sent = Object.values(fields).map((input) => [input, input.value]);
      const taken = () => {
        for (const [input, value] of sent) input.dataset.shown = value;
        if (changes.quiet_hours) state.quiet_hours = { ...changes.quiet_hours };
        if (changes.frequency) state.frequency = { ...state.frequency, ...changes.frequency };
        if (changes.timezone) state.timezone = changes.timezone;
      };
      return change(() => call("PATCH", "/v1/me/preferences", changes), { keepOnRefusal: true, fields, taken });
    };
    // The hint and its button go once saved: the focus goes to the zone the person just chose.
    const useDevice = async () => {
      timezone.value = device;
      await save();
      document.getElementById("timezone")?.focus();
    };
    return section("timing", t("timing_title"), null,
      // A group named by its caption: a screen reader says "quiet hours" before "from" and "to".
      el("div", { class: "row", role: "group", "aria-labelledby": "quiet-hours-label", "aria-describedby": "quiet-hours-hint" },
        el("span", { id: "quiet-hours-label", text: t("quiet_hours") }),
        el("label", { for: "quiet-start", text: t("quiet_from") }), start,
        el("label", { for: "quiet-end", text: t("quiet_to") }), end),
      el("p", { class: "hint", id: "quiet-hours-hint", text: t("quiet_hours_hint") }),
      el("div", { class: "row" }, el("label", { for: "max-per-week", text: t("max_per_week") }), perWeek),
      el("div", { class: "row" }, el("label", { for: "timezone", text: t("timezone") }), timezone,
        el("datalist", { id: "zones" }, ...zones.map((zone) => el("option", { value: zone })))),
      differs ? el("p", { class: "hint", id: "zone-differs" }, t("zone_differs", { saved: state.timezone, device }), " ",
        el("button", { class: "secondary", id: "use-device-zone", onclick: useDevice }, t("use_device_zone", { device }))) : null,
      el("button", { id: "save-timing", onclick: save }, t("save")));
  }

  function location_(state) {
    const allowed = state.consents.location && state.consents.location.granted;
    const share = () => {
      if (!navigator.geolocation) return say(t("location_unavailable"), "error");
      const asked = token;  // the position may come after another person signed in: not theirs
      navigator.geolocation.getCurrentPosition(
        (position) => samePerson(token, asked) && change(
          () => call("PUT", "/v1/me/location", { lat: position.coords.latitude, lon: position.coords.longitude }),
          { message: (answer) => t("location_saved", { geohash: answer.geohash }) },
        ),
        () => samePerson(token, asked) && say(t("location_unavailable"), "error"),
        { enableHighAccuracy: false, timeout: 10000 },
      );
    };
    return section("location", t("location_title"), t(allowed ? "location_hint" : "location_needs_consent"),
      el("button", { id: "share-location", disabled: !allowed, onclick: share }, t("location_share")));
  }

  function devicesView(devices) {
    // Each button is described by its device: a list of buttons all named "Remove" tells a
    // screen reader user nothing of which is which.
    const items = devices.map((device) =>
      el("li", {},
        // The kind of device in words, then the hint of its token that tells two of a kind apart.
        el("span", { id: `device-${device.device_id}` }, `${t(`platform_${device.platform}`)} `,
          el("span", { class: "mono", text: device.token_hint })), " ",
        el("span", { class: "badge", text: t(`device_status_${device.status}`) }), " ",
        el("span", { class: "meta", text: when(device.created_at) }), " ",
        el("button", {
          class: "secondary",
          "aria-describedby": `device-${device.device_id}`,
          onclick: async () => {
            const mine = await change(
              () => call("DELETE", `/v1/me/devices/${encodeURIComponent(device.device_id)}`),
              { message: t("device_removed") },
            );
            // Its button is gone with it: the focus goes to the list's heading, not the page's top.
            if (mine && document.activeElement === document.body) focusHeading("devices");
          },
        }, t("device_remove"))));
    return section("devices", t("devices_title"), items.length ? null : t("devices_none"), el("ul", { class: "items" }, ...items));
  }

  // The facts the policy rules give for letting a push through (policies/*.py), in words.
  const WHY = [
    [/^consent:(\w+)$/, (m) => t("why_consent", { purpose: t(`purpose_${m[1]}`) })],
    [/^topic:transactional \(contract\)$/, () => t("why_transactional")],
    [/^topic:(\w+) on$/, (m) => t("why_topic", { topic: t(`topic_${m[1]}`) })],
    [/^quiet hours: outside (\S+)-(\S+) (\S+)$/, (m) => t("why_quiet", { start: m[1], end: m[2], zone: m[3] })],
    [/^frequency: (\d+) of (\d+) this week$/, (m) => t("why_week", { n: m[1], cap: m[2] })],
    [/^frequency: (\d+) of (\d+) today$/, (m) => t("why_day", { n: m[1], cap: m[2] })],
    [/^location: inside the target area$/, () => t("why_location")],
    // As migration 0018 left the facts of pushes stored before, without the person's settings.
    [/^quiet hours: outside$/, () => t("why_quiet_kept")],
    [/^frequency: under the weekly cap$/, () => t("why_week_kept")],
    [/^frequency: under the daily cap$/, () => t("why_day_kept")],
  ];

  function why(fact) {
    for (const [pattern, words] of WHY) {
      const match = pattern.exec(fact);
      if (match) return words(match);
    }
    return fact;
  }

  // About one message (`pushId`), or, without one, about the messages in general ("I never
  // agreed to this" needs no message to point at, and a failed one is not listed). No reason is
  // chosen until the person chooses one: the first one, "too many messages", sent by default
  // lowered their weekly number to one. Sent, the form closes (`close`) at once, before the view
  // is read again, so that a read that fails does not leave it to be sent twice.
  function complaintForm(pushId, close, cancel) {
    const reasons = ["too_frequent", "irrelevant", "offensive", "no_consent", "privacy", "other"];
    const id = `complaint-${pushId || "general"}`;
    // What two reasons change besides being sent, said before it is sent, not only after.
    const effects = el("p", { class: "hint", id: `${id}-effects`, text: t("complaint_effects") });
    const reason = el("select", { id: `${id}-reason`, name: "reason", required: true, "aria-describedby": effects.id },
      el("option", { value: "" }, t("reason_choose")),
      ...reasons.map((code) => el("option", { value: code }, t(`reason_${code}`))));
    const comment = el("textarea", { id: `${id}-comment`, name: "comment", maxlength: 2000 });
    const about = pushId ? { push_id: pushId } : {};
    const fields = { reason, comment };
    const send = async () => {
      if (!reason.value) {
        say(t("invalid_field", { field: t("field_reason") }), "error");
        return markInvalid(fields, "reason");
      }
      const mine = await change(
        () => call("POST", "/v1/me/complaints", { ...about, reason: reason.value, ...(comment.value.trim() ? { comment: comment.value } : {}) }),
        {
          message: (answer) => [t("complaint_sent"), ...answer.actions_taken.map((action) => t(`action_${action}`))].join(" · "),
          keepOnRefusal: true,
          fields,
          taken: close,
        },
      );
      // Sent, the form is gone with its button: the focus goes to the complaints' heading.
      if (mine && document.activeElement === document.body) focusHeading("complaints");
    };
    // Closed unsent by its Cancel button or Escape, the focus back on the button that opened it.
    return el("div", { class: "complaint-form", id, onkeydown: (event) => event.key === "Escape" && cancel() },
      el("div", { class: "row" }, el("label", { for: reason.id, text: t("complaint_reason") }), reason),
      effects,
      el("label", { for: comment.id, text: t("complaint_comment") }), comment,
      el("div", { class: "row" },
        el("button", { class: "danger", onclick: send }, t("complaint_send")),
        el("button", { class: "secondary", onclick: cancel }, t("cancel"))));
  }

  // The button that opens a form gives way to it, and the focus goes to its first control
  // rather than to the top of the page. The form closed, the button is back in its place.
  function opensComplaint(label, holder, pushId) {
    const open = (focus) => {
      button.remove();
      const close = () => {
        form.remove();
        if (holder.isConnected) holder.before(button);
      };
      const form = complaintForm(pushId, close, () => {
        close();
        button.focus();
      });
      holder.replaceChildren(form);
      if (focus) form.querySelector("select").focus();
      return form;
    };
    const button = el("button", {
      class: "secondary",
      ...(pushId ? { "aria-describedby": `push-${pushId}-title` } : {}),
      onclick: () => open(true),
    }, label);
    openers.set(`complaint-${pushId || "general"}`, open);
    return button;
  }

  const WAITING = new Set(["queued", "deferred"]);

  // A waiting message's reasons are what let it through when it was accepted; it is judged again
  // before it is sent, so a topic switched off or a consent withdrawn since stops it there. Said
  // as such, rather than "allowed" for a consent the person has just taken back.
  function stopped(push, state) {
    const needs = TOPIC_NEEDS[push.topic] || [];
    return state.topics[push.topic] === false || needs.some((purpose) => !state.consents[purpose]?.granted);
  }

  // Not on its way yet (queued, or waiting for quiet hours to end): why it may go, not why it came.
  function reasons(push, state) {
    const waiting = WAITING.has(push.status);
    if (waiting && stopped(push, state)) return el("div", { class: "meta", text: t("why_stopped") });
    if (!push.why.length) return null;
    return el("div", { class: "meta", text: t(waiting ? "why_allowed" : "why", { why: clauses(push.why.map(why)) }) });
  }

  function notificationsView(notifications, state) {
    const items = notifications.map((push) => {
      const holder = el("div");
      return el("li", { "data-push-id": push.push_id },
        el("strong", { id: `push-${push.push_id}-title`, text: push.title ?? "" }),
        push.body ? el("div", { text: push.body }) : null,
        el("div", { class: "meta", text: [
          t(`topic_${push.topic}`), push.campaign_id ? t("campaign", { id: push.campaign_id }) : null, when(push.at),
          t(`status_${push.status}`),
        ].filter(Boolean).join(" · ") }),
        reasons(push, state),
        opensComplaint(t("complain"), holder, push.push_id),
        holder);
    });
    return section("notifications", t("notifications_title"), items.length ? null : t("notifications_none"),
      el("ul", { class: "items" }, ...items));
  }

  // Which message a report was about (its topic) and what was done about it (the resolution,
  // and when): with several reports, a person could tell neither.
  function complaintsView(complaints) {
    const items = complaints.map((complaint) =>
      el("li", {},
        el("strong", { text: t(`reason_${complaint.reason}`) }), " ",
        el("span", { class: "badge", text: t(`complaint_status_${complaint.status}`) }),
        el("div", { class: "meta", text: [complaint.topic ? t(`topic_${complaint.topic}`) : null, when(complaint.created_at)].filter(Boolean).join(" · ") }),
        complaint.comment ? el("div", { text: complaint.comment }) : null,
        complaint.resolution
          ? el("div", { class: "resolution" }, el("span", { class: "meta", text: `${t("complaint_answer", { time: when(complaint.resolved_at) })} ` }), complaint.resolution)
          : null));
    const holder = el("div");
    return section("complaints", t("complaints_title"), items.length ? null : t("complaints_none"),
      el("ul", { class: "items" }, ...items), opensComplaint(t("complain_general"), holder, null), holder);
  }

  function historyView(events) {
    const items = events.filter((event) => event.purpose).map((event) =>
      el("li", {},
        el("span", { text: [
          when(event.at), t(event.granted ? "given" : "withdrawn"), t(`purpose_${event.purpose}`),
          event.source.startsWith("complaint:") ? t("history_by_report") : null,
        ].filter(Boolean).join(" · ") }),
        event.notice_version ? el("span", { class: "meta mono", text: ` (${event.notice_version})` }) : null,
        // The receipt each change was given, to match with the signed one in the data download.
        event.receipt_id ? el("div", { class: "meta mono", text: t("history_receipt", { id: event.receipt_id }) }) : null));
    return section("history", t("history_title"), items.length ? null : t("history_none"), el("ul", { class: "items" }, ...items));
  }

  function yourData() {
    const confirm = el("input", {
      id: "erase-confirm", autocomplete: "off", "aria-label": t("erase_confirm_label"), "aria-describedby": "erase-hint",
    });
    const erase = el("button", { id: "erase", class: "danger", disabled: true }, t("erase"));
    confirm.addEventListener("input", () => { erase.disabled = confirm.value.trim() !== t("erase_word"); });
    // Each ends quietly if another person signed in meanwhile: the erasure's message and
    // sign-out, or a download of the person before's data, are not for them.
    erase.addEventListener("click", async () => {
      const asked = token;
      erase.disabled = true;  // one erasure in flight: a second click sent the DELETE again
      try {
        await call("DELETE", "/v1/me");
        if (!samePerson(token, asked)) return;
        tabStore.remove(TOKEN_KEY);
        token = null;
        frame();
        const done = el("section", { id: "erased", tabindex: "-1" }, el("p", { text: t("erased") }));
        app.replaceChildren(done);
        say(t("erased"));
        done.focus();  // the button pressed is gone with the page: the focus is not left on nothing
      } catch (error) {
        erase.disabled = confirm.value.trim() !== t("erase_word");
        if (samePerson(token, asked)) fail(error);
      }
    });
    const exportData = async () => {
      const asked = token;
      try {
        const data = await call("GET", "/v1/me/export");
        if (!samePerson(token, asked)) return;
        download("my-data.json", data);
        say(t("export_done"));
      } catch (error) {
        if (samePerson(token, asked)) fail(error);
      }
    };
    return section("data", t("data_title"), null,
      el("p", { class: "hint", text: t("export_hint") }),
      el("button", { id: "export", class: "secondary", onclick: exportData }, t("export")),
      el("p", { class: "hint", id: "erase-hint", text: t("erase_hint") }),
      el("div", { class: "row" }, confirm, erase));
  }

  function start() {
    app.removeAttribute("aria-busy");  // a change of the person before may still be in flight
    if (token) {
      frame();
      app.replaceChildren(el("p", { text: t("loading") }));
      load().catch(failedToLoad);
    } else {
      renderSignIn();
    }
  }

  // The first view not read (the service down, the network gone): the error said, and a way to
  // try again in place of "Loading…", which stayed for good under the error.
  function failedToLoad(error) {
    fail(error);
    if (!token || app.querySelector("#consents")) return;  // signed out (a token refused), or shown after all
    app.replaceChildren(el("button", { id: "retry", onclick: start }, t("try_again")));
    document.getElementById("retry").focus();
  }

  // Opened again from the wallet in a tab that shows the page already (another person signing
  // in, or the same one after their session ended), only the fragment changes: the page is not
  // loaded again, so the new token is taken here, or it would stay in the address bar while the
  // page went on acting with the one before.
  window.addEventListener("hashchange", () => {
    const before = token;
    token = takeToken();
    if (token !== before) {
      lang = firstLanguage();  // the person before chose theirs; this one's comes with their view
      status.replaceChildren();
      start();
    }
  });

  start();
})();
