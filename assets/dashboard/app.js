// factory-ca dashboard: plain JavaScript, no framework, no build step, nothing from elsewhere.
//
// Rules this file keeps:
// - Every value from the API goes into the page as text (textContent, createElement,
//   setAttribute of non-URL attributes); HTML is never built from strings, because thing
//   names and stations are chosen by whoever sends a CSR.
// - The token is sent once, in the body of POST /v1/session; the answer's HttpOnly cookie
//   holds a server-side session id, not the token. Neither is ever in the URL, in storage, or
//   in this script's variables.
// - All data comes from the JSON API of this origin, with the cookie.
"use strict";

(function () {
  const REFRESH_MS = 60 * 1000;
  const DAY_MS = 24 * 60 * 60 * 1000;
  const CHART_DAYS = 14;
  const RECENT_LIMIT = 20;
  const number = new Intl.NumberFormat("en-US");

  const $ = (id) => document.getElementById(id);
  let refreshTimer = null;
  let range = "week";
  let chartMode = "days"; // "days": the last 14 days; "today": today's hours (UTC)
  let query = "";
  let generation = 0; // a newer load makes the answers of an older one stale

  class SessionEnded extends Error {}

  // ---- API --------------------------------------------------------------------------------

  async function api(path, options) {
    const response = await fetch(path, Object.assign({
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "application/json" },
    }, options || {}));
    if (response.status === 401) {
      throw new SessionEnded("signed out");
    }
    if (!response.ok) {
      let detail = response.status + " " + response.statusText;
      try {
        const problem = await response.json();
        if (problem && problem.detail) detail = problem.detail + " (" + problem.code + ")";
      } catch (_) { /* not JSON */ }
      throw new Error(path.split("?")[0] + ": " + detail);
    }
    return response.status === 204 ? null : response.json();
  }

  function statsPath(params) {
    const search = new URLSearchParams(params);
    return "/v1/stats?" + search.toString();
  }

  // ---- Time ranges ------------------------------------------------------------------------

  function startOfUtcDay(date) {
    return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  }

  function rangeStart(name, now) {
    switch (name) {
      case "today": return startOfUtcDay(now);
      case "month": return new Date(now.getTime() - 30 * DAY_MS);
      case "all": return new Date(0);
      default: return new Date(now.getTime() - 7 * DAY_MS);
    }
  }

  function iso(date) {
    return date.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function shortTime(text) {
    // "2026-11-27T10:32:05.123456Z" -> "2026-11-27 10:32:05"
    return typeof text === "string" ? text.slice(0, 19).replace("T", " ") : "";
  }

  // ---- DOM helpers ------------------------------------------------------------------------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(n) {
    return typeof n === "number" ? number.format(n) : "\u2013";
  }

  function setText(id, value) {
    $(id).textContent = value;
  }

  function emptyRow(tbody, columns, message) {
    tbody.appendChild(el("tr", { class: "empty" }, [
      el("td", { colspan: String(columns), text: message }),
    ]));
  }

  function badge(text, kind) {
    return el("span", { class: "badge" + (kind ? " " + kind : ""), text: text });
  }

  // ---- Views ------------------------------------------------------------------------------

  function showSignIn(message) {
    stopRefresh();
    generation++;
    $("loading").hidden = true;
    $("dashboard").hidden = true;
    $("session-bar").hidden = true;
    $("signin").hidden = false;
    const error = $("signin-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("token").focus();
  }

  function showDashboard(session) {
    $("loading").hidden = true;
    $("signin").hidden = true;
    setText("session-name", session.name);
    $("session-bar").hidden = false;
    $("dashboard").hidden = false;
  }

  function renderTotals(prefix, stats) {
    const totals = stats.totals || {};
    setText("total-" + prefix + "-issued", fmt(totals.issued));
    setText("total-" + prefix + "-rejected", fmt(totals.rejected));
    setText("total-" + prefix + "-revoked", fmt(totals.revoked));
  }

  function niceStep(max) {
    // A step of 1, 2 or 5 x 10^n giving at most 5 intervals.
    const rough = Math.max(max, 1) / 5;
    const magnitude = Math.pow(10, Math.floor(Math.log10(rough)));
    for (const m of [1, 2, 5, 10]) {
      if (m * magnitude >= rough) return Math.max(1, m * magnitude);
    }
    return Math.max(1, 10 * magnitude);
  }

  let lastChart = null;

  function renderChart(stats) {
    lastChart = stats;
    const groups = Array.isArray(stats.groups) ? stats.groups : [];
    // Drawn at the container's own width, one SVG unit per CSS pixel, so that labels keep
    // their size on a phone instead of being scaled down with a fixed-width drawing.
    const measured = $("chart").clientWidth;
    const width = Math.max(280, Math.min(1200, measured || 720));
    const narrow = width < 480;
    const height = narrow ? 220 : 290;
    const left = narrow ? 44 : 64, right = 8, top = 16, bottom = narrow ? 44 : 50;
    const plotW = width - left - right, plotH = height - top - bottom;
    const max = groups.reduce((m, g) => Math.max(m, g.issued || 0, g.rejected || 0), 0);
    const step = niceStep(max);
    const yMax = Math.max(step, Math.ceil(max / step) * step);
    const y = (v) => top + plotH - (v / yMax) * plotH;

    const hourly = stats.group_by === "hour";
    const root = svg("svg", {
      viewBox: "0 0 " + width + " " + height,
      role: "img",
      "aria-label": "Certificates issued and requests rejected per " + (hourly ? "hour today" : "day"),
    });
    for (let v = 0; v <= yMax; v += step) {
      root.appendChild(svg("line", { class: "grid-line", x1: left, x2: width - right, y1: y(v), y2: y(v) }));
      root.appendChild(svg("text", { class: "tick", x: left - 8, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
    }
    root.appendChild(svg("line", { class: "axis", x1: left, x2: width - right, y1: y(0), y2: y(0) }));
    root.appendChild(svg("text", {
      class: "axis-label", x: 12, y: top + plotH / 2, "text-anchor": "middle",
      transform: "rotate(-90 12 " + (top + plotH / 2) + ")",
    }, "Count"));
    root.appendChild(svg("text", {
      class: "axis-label", x: left + plotW / 2, y: height - 6, "text-anchor": "middle",
    }, hourly ? "Hour (UTC)" : "Day (UTC)"));

    const slot = groups.length ? plotW / groups.length : plotW;
    const barW = Math.max(2, Math.min(18, slot * 0.32));
    groups.forEach((g, i) => {
      const center = left + slot * i + slot / 2;
      const issued = g.issued || 0, rejected = g.rejected || 0;
      const group = svg("g", {});
      group.appendChild(svg("title", {}, String(g.key) + ": " + fmt(issued) + " issued, " + fmt(rejected) + " rejected"));
      group.appendChild(svg("rect", {
        class: "bar-issued", x: center - barW - 1, y: y(issued), width: barW,
        height: Math.max(0, y(0) - y(issued)), rx: 2,
      }));
      group.appendChild(svg("rect", {
        class: "bar-rejected", x: center + 1, y: y(rejected), width: barW,
        height: Math.max(0, y(0) - y(rejected)), rx: 2,
      }));
      if (issued > 0) {
        group.appendChild(svg("text", { class: "value", x: center - barW / 2 - 1, y: y(issued) - 4, "text-anchor": "middle" }, fmt(issued)));
      }
      root.appendChild(group);
      // "2026-11-27" -> "11-27"; every label when they fit, else every other one.
      // A label needs about 36 px; keep every nth so that they never overlap.
      const every = Math.max(1, Math.ceil(36 / slot));
      if ((groups.length - 1 - i) % every === 0) {
        // "2026-11-27" -> "11-27"; "2026-11-27T10:00Z" -> "10h".
        const key = typeof g.key === "string" ? g.key : "";
        const label = hourly ? key.slice(11, 13) + "h" : key.slice(5, 10);
        root.appendChild(svg("text", { class: "tick", x: center, y: y(0) + 16, "text-anchor": "middle" }, label));
      }
    });
    $("chart").replaceChildren(root);
  }

  // Redraw the chart at its new width when the window is resized (a phone turned sideways).
  let resizeTimer = null;
  function redrawChart() {
    if (resizeTimer !== null) window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(() => {
      resizeTimer = null;
      if (lastChart && !$("dashboard").hidden) renderChart(lastChart);
    }, 150);
  }

  // What each refusal code of a signing request means, in a supervisor's words (the codes
  // and their exact meaning: docs/api.md, "Error codes").
  const REASONS = {
    invalid_country: "Country (C) is not an ISO 3166 country code",
    missing_country: "The certificate request has no country (C)",
    invalid_thing_name: "Thing name (CN) has characters AWS IoT does not allow, or is too long",
    missing_common_name: "The certificate request has no thing name (CN)",
    subject_attribute_not_allowed: "A subject field the policy does not allow",
    invalid_subject_attribute: "A subject field is empty, too long or of the wrong type",
    missing_subject_attribute: "A subject field the policy requires is missing",
    unsupported_key: "The device key type or size is not accepted",
    invalid_csr: "Not a valid certificate request (PKCS#10)",
    csr_signature_invalid: "The request's signature does not verify",
    thing_already_provisioned: "This thing already has an active certificate",
    idempotency_key_reused: "A retry key was reused for a different request",
    invalid_idempotency_key: "A malformed retry key (Idempotency-Key)",
    invalid_request: "A malformed request body",
    unsupported_media_type: "The request was not sent as JSON or PKCS#10",
    payload_too_large: "The request body is too large",
    rate_limited: "The station sent requests too fast",
    https_required: "Plain HTTP sent to the HTTPS port",
    unauthorized: "No token, or an unknown or revoked token",
    forbidden: "A token whose role may not sign (not a station)",
  };
  // Refused credentials (401/403) are not bad certificate requests: shown apart.
  const ACCESS_CODES = new Set(["unauthorized", "forbidden"]);

  function renderRejections(stats) {
    const tbody = $("rejections").tBodies[0];
    tbody.replaceChildren();
    const entries = Object.entries((stats.totals && stats.totals.rejected_by_code) || {})
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    if (!entries.length) {
      emptyRow(tbody, 3, "No rejected requests in this range.");
      return;
    }
    const max = entries[0][1] || 1;
    const sections = [
      ["Certificate requests refused", entries.filter(([code]) => !ACCESS_CODES.has(code))],
      ["Access refused (token missing, unknown or not a station)", entries.filter(([code]) => ACCESS_CODES.has(code))],
    ];
    for (const [title, rows] of sections) {
      if (!rows.length) continue;
      tbody.appendChild(el("tr", { class: "group" }, [
        el("th", { scope: "rowgroup", colspan: "3", text: title }),
      ]));
      for (const [code, count] of rows) {
        const fill = el("span");
        fill.style.width = Math.max(2, Math.round((count / max) * 100)) + "%";
        tbody.appendChild(el("tr", { "data-code": code }, [
          el("td", {}, [
            el("code", { text: code }),
            el("div", { class: "reason", text: REASONS[code] || "" }),
          ]),
          el("td", { class: "num", text: fmt(count) }),
          el("td", {}, [el("div", { class: "meter" }, [fill])]),
        ]));
      }
    }
  }

  function renderStations(stats) {
    const tbody = $("stations").tBodies[0];
    tbody.replaceChildren();
    const groups = Array.isArray(stats.groups) ? stats.groups : [];
    if (!groups.length) {
      emptyRow(tbody, 5, "No activity in this range.");
      return;
    }
    for (const g of groups) {
      // Station x code: which refusals this station had, most frequent first.
      const codes = Object.entries(g.rejected_by_code || {})
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
      const refused = el("td", { class: "codes" });
      codes.forEach(([code, count], i) => {
        if (i > 0) refused.appendChild(document.createTextNode(" "));
        refused.appendChild(el("span", { class: "code-count", title: REASONS[code] || code }, [
          el("code", { text: code }),
          document.createTextNode("\u00a0\u00d7" + fmt(count)),
        ]));
      });
      if (!codes.length) refused.textContent = "\u2013";
      tbody.appendChild(el("tr", {}, [
        el("td", { class: "thing", text: g.key === null ? "(none)" : String(g.key) }),
        el("td", { class: "num", text: fmt(g.issued) }),
        el("td", { class: "num", text: fmt(g.rejected) }),
        el("td", { class: "num", text: fmt(g.revoked) }),
        refused,
      ]));
    }
  }

  function fact(dl, term, value) {
    dl.appendChild(el("dt", { text: term }));
    dl.appendChild(el("dd", {}, [typeof value === "string" ? document.createTextNode(value) : value]));
  }

  function renderCa(ca) {
    const dl = $("ca");
    dl.replaceChildren();
    fact(dl, "Subject", ca.subject || "");
    fact(dl, "ID", el("code", { text: ca.id || "" }));
    fact(dl, "Key", ca.key_algorithm || "");
    const expired = ca.not_after && Date.parse(ca.not_after) < Date.now();
    fact(dl, "Valid until", el("span", {}, [
      document.createTextNode(shortTime(ca.not_after) + " "),
      expired ? badge("expired", "bad") : document.createTextNode(""),
    ]));
    dl.appendChild(el("div", { class: "section", text: "AWS IoT" }));
    const aws = ca.aws;
    if (!aws) {
      fact(dl, "State", badge("not registered", null));
      return;
    }
    fact(dl, "Status", badge(String(aws.status), aws.status === "ACTIVE" ? "ok" : "warn"));
    fact(dl, "Auto-registration", aws.auto_registration
      ? badge("on", "ok") : badge("off", "warn"));
    const template = aws.template_kind === "named"
      ? "named: " + (aws.template_name || "")
      : aws.template_kind === "inline" ? "inline" : "none";
    fact(dl, "JITP template", template);
    fact(dl, "Mode", aws.mode === "sni_only" ? "SNI only" : "default");
    fact(dl, "AWS certificate ID", el("code", {
      text: String(aws.aws_certificate_id || "").slice(0, 16) + "\u2026",
      title: String(aws.aws_certificate_id || ""),
    }));
    fact(dl, "Registered", shortTime(aws.registered_at));
  }

  // The issuing CA as AWS IoT has it now (GET /v1/ca/aws): drift named, or "in line". Never
  // fails the page: AWS being off or unreachable is shown in the panel.
  async function loadDrift(mine) {
    let node;
    try {
      const response = await fetch("/v1/ca/aws", {
        credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" },
      });
      const body = await response.json().catch(() => null);
      if (mine !== generation) return;
      if (response.ok && body) {
        if (!body.registered) {
          node = el("span", { "data-state": "unregistered", text: "not registered" });
        } else if (!body.drift.length) {
          node = el("span", { "data-state": "in-line" }, [
            badge("in line with AWS", "ok"),
            document.createTextNode(" checked " + shortTime(body.checked_at).slice(11) + " UTC"),
          ]);
        } else {
          node = el("div", { "data-state": "drift" }, body.drift.map((d) =>
            el("div", {}, [badge("drift", "warn"), document.createTextNode(" " + d)])));
        }
      } else if (body && body.code === "aws_not_configured") {
        node = el("span", { "data-state": "off", class: "muted", text: "AWS IoT integration is off (aws.enabled = false)" });
      } else {
        const why = body && body.detail ? body.detail : "HTTP " + response.status;
        node = el("span", { "data-state": "error" }, [badge("unknown", "warn"), document.createTextNode(" AWS IoT could not be asked: " + why)]);
      }
    } catch (_) {
      if (mine !== generation) return;
      node = el("span", { "data-state": "error", text: "AWS IoT could not be asked." });
    }
    node.id = "ca-drift";
    fact($("ca"), "Live in AWS", node);
  }

  // CA health (GET /v1/ca/health: the findings of GET /v1/admin/health, at most a minute
  // old). Never fails the page: a report that cannot be had is said in the panel.
  function renderHealth(report) {
    const tbody = $("health").tBodies[0];
    tbody.replaceChildren();
    const rows = [];
    for (const ca of Array.isArray(report.cas) ? report.cas : []) {
      for (const f of Array.isArray(ca.findings) ? ca.findings : []) rows.push([ca, f]);
    }
    // Critical first, then by CA.
    rows.sort((a, b) => (a[1].severity === b[1].severity ? 0 : a[1].severity === "critical" ? -1 : 1));
    for (const [ca, f] of rows) {
      const caId = String(ca.ca_id || "");
      tbody.appendChild(el("tr", { "data-code": String(f.code), "data-severity": String(f.severity) }, [
        el("td", {}, [badge(String(f.severity), f.severity === "critical" ? "bad" : "warn")]),
        el("td", { class: "nowrap" }, [el("code", { text: String(f.code) })]),
        el("td", { class: "nowrap", title: String(ca.subject || "") }, [el("code", { text: caId.slice(0, 12) + (caId.length > 12 ? "\u2026" : ""), title: caId })]),
        el("td", { class: "nowrap", text: f.target ? String(f.target) : "\u2013" }),
        el("td", { class: "finding", text: String(f.message || "") }),
        el("td", { class: "fix", text: String(f.fix || "") }),
      ]));
    }
    if (!rows.length) emptyRow(tbody, 6, "No findings: every CA is in order.");
    const summary = $("health-summary");
    summary.replaceChildren(
      report.critical ? badge(fmt(report.critical) + " critical", "bad") : document.createTextNode(""),
      document.createTextNode(report.critical && report.warning ? " " : ""),
      report.warning ? badge(fmt(report.warning) + (report.warning === 1 ? " warning" : " warnings"), "warn") : document.createTextNode(""),
      !report.critical && !report.warning ? badge("in order", "ok") : document.createTextNode(""),
    );
    setText("health-sub", "checked " + shortTime(report.checked_at) + " UTC");
    $("health-card").setAttribute("data-state", "ready");
  }

  async function loadHealth(mine) {
    let response;
    let body = null;
    try {
      response = await fetch("/v1/ca/health", {
        credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" },
      });
      body = await response.json().catch(() => null);
    } catch (_) {
      response = null;
    }
    if (mine !== generation) return;
    if (response && response.status === 401) throw new SessionEnded("signed out");
    if (response && response.ok && body) {
      renderHealth(body);
      return;
    }
    const tbody = $("health").tBodies[0];
    tbody.replaceChildren();
    const why = body && body.detail ? body.detail + " (" + body.code + ")"
      : response ? "HTTP " + response.status : "the service cannot be reached";
    emptyRow(tbody, 6, "The health checks could not be run: " + why);
    $("health-summary").replaceChildren(badge("unknown", "warn"));
    setText("health-sub", "");
    $("health-card").setAttribute("data-state", "error");
  }

  function statusBadge(status) {
    const kind = status === "active" ? "ok" : status === "revoked" ? "bad" : "warn";
    return badge(String(status), kind);
  }

  function renderCertificates(page, shownQuery) {
    const table = $("certificates");
    const tbody = table.tBodies[0];
    tbody.replaceChildren();
    const items = Array.isArray(page.items) ? page.items : [];
    for (const c of items) {
      const serial = String(c.serial || "");
      tbody.appendChild(el("tr", {}, [
        el("td", { class: "thing thing-col", text: String(c.thing_name), title: String(c.thing_name) }),
        el("td", { class: "status-col" }, [statusBadge(c.status)]),
        el("td", { class: "nowrap", text: c.aws_status ? String(c.aws_status) : "\u2013" }),
        el("td", { class: "nowrap", text: shortTime(c.issued_at) }),
        el("td", {}, [el("code", { text: serial.slice(0, 12) + "\u2026", title: serial })]),
        el("td", { text: String(c.station) }),
        el("td", { text: c.country ? String(c.country) : "\u2013" }),
        el("td", { class: "nowrap", text: String(c.key_algorithm) }),
      ]));
    }
    if (!items.length) {
      emptyRow(tbody, 8, shownQuery ? "No thing name starts with \u201c" + shownQuery + "\u201d." : "No certificates yet.");
    }
    setText("certificates-note", shownQuery
      ? "Thing names starting with \u201c" + shownQuery + "\u201d, newest first (at most " + RECENT_LIMIT + ")."
      : "The " + RECENT_LIMIT + " newest certificates.");
    // Lets tests (and people) see which search the table shows.
    table.setAttribute("data-query", shownQuery);
  }

  function showError(error) {
    const banner = $("error");
    if (error) {
      banner.textContent = "Some data could not be loaded: " + error.message;
      banner.hidden = false;
    } else {
      banner.hidden = true;
      banner.textContent = "";
    }
  }

  // ---- Loading ----------------------------------------------------------------------------

  async function loadCertificates(mine) {
    const shown = query;
    const params = new URLSearchParams({ sort: "desc", limit: String(RECENT_LIMIT) });
    if (shown) params.set("q", shown);
    const page = await api("/v1/certificates?" + params.toString());
    if (mine === generation) renderCertificates(page, shown);
  }

  async function loadChart(mine) {
    const now = new Date();
    const params = chartMode === "today"
      ? { from: iso(startOfUtcDay(now)), group_by: "hour" }
      : { from: iso(new Date(startOfUtcDay(now).getTime() - (CHART_DAYS - 1) * DAY_MS)), group_by: "day" };
    const stats = await api(statsPath(params));
    if (mine !== generation) return;
    setText("chart-sub", chartMode === "today" ? "per hour, today (UTC)" : "per day, last 14 days (UTC)");
    renderChart(stats);
    $("chart").setAttribute("data-mode", chartMode);
  }

  function selectChartMode(event) {
    const button = event.target.closest("button[data-mode]");
    if (!button) return;
    chartMode = button.getAttribute("data-mode");
    for (const b of $("chart-mode").querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(b === button));
    }
    partial(loadChart);
  }

  async function loadBreakdown(mine) {
    const now = new Date();
    const from = iso(rangeStart(range, now));
    const stats = await api(statsPath({ from: from, group_by: "station" }));
    if (mine !== generation) return;
    renderRejections(stats);
    renderStations(stats);
  }

  async function loadAll() {
    stopRefresh();
    const mine = ++generation;
    $("dashboard").setAttribute("data-state", "loading");
    const now = new Date();
    const tasks = [
      api(statsPath({ from: iso(startOfUtcDay(now)) })).then((s) => mine === generation && renderTotals("today", s)),
      api(statsPath({ from: iso(new Date(now.getTime() - 7 * DAY_MS)) })).then((s) => mine === generation && renderTotals("week", s)),
      api(statsPath({ from: "1970-01-01T00:00:00Z" })).then((s) => mine === generation && renderTotals("all", s)),
      loadChart(mine),
      api("/v1/ca").then((ca) => {
        if (mine !== generation) return;
        renderCa(ca);
        // Only a registered CA can drift; this also keeps a service without AWS from being
        // asked (it would answer 503 aws_not_configured).
        if (ca.aws) return loadDrift(mine);
      }),
      loadBreakdown(mine),
      loadCertificates(mine),
      loadHealth(mine),
    ];
    const results = await Promise.allSettled(tasks);
    if (mine !== generation) return;
    const failures = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    if (failures.some((e) => e instanceof SessionEnded)) {
      showSignIn("Your session has ended (signed out, expired or the token was revoked). Sign in again.");
      return;
    }
    showError(failures[0]);
    setText("updated", "Updated " + shortTime(iso(new Date())) + " UTC");
    $("dashboard").setAttribute("data-state", failures.length ? "error" : "ready");
    scheduleRefresh();
  }

  function scheduleRefresh() {
    stopRefresh();
    refreshTimer = window.setTimeout(() => {
      if (document.visibilityState === "visible") loadAll();
      else scheduleRefresh();
    }, REFRESH_MS);
  }

  function stopRefresh() {
    if (refreshTimer !== null) window.clearTimeout(refreshTimer);
    refreshTimer = null;
  }

  async function partial(load) {
    const mine = generation;
    try {
      await load(mine);
      showError(null);
    } catch (error) {
      if (error instanceof SessionEnded) showSignIn("Your session has ended. Sign in again.");
      else showError(error);
    }
  }

  // ---- Session ----------------------------------------------------------------------------

  async function start() {
    try {
      const session = await api("/v1/session");
      showDashboard(session);
      await loadAll();
    } catch (error) {
      if (error instanceof SessionEnded) showSignIn("");
      else showSignIn("The service cannot be reached: " + error.message);
    }
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("token");
    const button = $("signin-submit");
    const token = input.value.trim();
    // The token leaves the page now; the field does not keep it.
    input.value = "";
    button.disabled = true;
    try {
      const response = await fetch("/v1/session", {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify({ token: token }),
      });
      if (response.status === 204) {
        await start();
        return;
      }
      // The server's own reason (an admin token, a station token, unknown or revoked...),
      // with its code; a fixed sentence only when the answer is not a problem document.
      let reason = "";
      try {
        const problem = await response.json();
        if (problem && problem.detail) reason = sentence(problem.detail) + " (" + problem.code + ")";
      } catch (_) { /* not JSON */ }
      showSignIn(reason || "Sign-in failed (HTTP " + response.status + ").");
    } catch (_) {
      showSignIn("The service cannot be reached.");
    } finally {
      button.disabled = false;
    }
  }

  // "this is an admin token; ..." -> "This is an admin token; ...".
  function sentence(text) {
    const t = String(text);
    return t.charAt(0).toUpperCase() + t.slice(1);
  }

  async function signOut() {
    try {
      await fetch("/v1/session", { method: "DELETE", credentials: "same-origin" });
    } finally {
      showSignIn("Signed out.");
    }
  }

  function selectRange(event) {
    const button = event.target.closest("button[data-range]");
    if (!button) return;
    range = button.getAttribute("data-range");
    for (const b of $("range").querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(b === button));
    }
    partial(loadBreakdown);
  }

  function search(event) {
    event.preventDefault();
    query = $("search").value.trim();
    partial(loadCertificates);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", signOut);
    $("refresh").addEventListener("click", () => loadAll());
    $("range").addEventListener("click", selectRange);
    $("chart-mode").addEventListener("click", selectChartMode);
    $("search-form").addEventListener("submit", search);
    window.addEventListener("resize", redrawChart);
    start();
  });
})();
