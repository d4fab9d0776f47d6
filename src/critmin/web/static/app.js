// critmin workspace dashboard: a thin face on the REST API under /api (docs at /docs).
// Vanilla JS, no build step, nothing loaded from outside this server (the CSP allows only 'self').
// Every text that comes from the API is put in the page with textContent (records come from other
// organisations); strings handed to Plotly, which renders a subset of HTML, go through pesc().
"use strict";

(() => {
  const state = {
    csrf: "",
    user: null,
    loaded: {},
    nodes: null,
    vulnerabilities: null,
    methods: null,
    worldIds: null,
    selectedScenarios: [],
    overrides: [],
    blocs: {},
    atlasBlocs: null,
    projects: [],
    editing: null,
    commentsFor: null,
    agencies: [],
  };

  // No "share chart" button (it would upload the data to Plotly's cloud) and no external server URL.
  const PLOT_CONFIG = {
    responsive: true, displaylogo: false, showSendToCloud: false, plotlyServerURL: "", showTips: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"],
  };
  const GEO_CONFIG = { ...PLOT_CONFIG, topojsonURL: "/assets/topojson/" };
  const FONT = { family: "Inter, system-ui, -apple-system, Segoe UI, sans-serif", size: 12, color: "#1b2430" };
  const COLORS = ["#1f5f99", "#d9822b", "#2e8b57", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#b7950b", "#2c3e50", "#e67e22",
    "#5dade2", "#a04000", "#58d68d", "#af7ac5", "#f1948a"];

  // ------------------------------------------------------------------------------------------- helpers
  const $ = (id) => document.getElementById(id);

  /** A DOM element; strings among ``children`` become text nodes (never parsed as HTML). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    const p = props || {};
    for (const [k, v] of Object.entries(p)) {
      if (v === undefined || v === null) continue;
      if (k === "className") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
      else if (k === "attrs") for (const [a, av] of Object.entries(v)) node.setAttribute(a, String(av));
      else node[k] = v;
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  /** Escape a string for Plotly labels, which understand a little HTML. */
  function pesc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const DASH = "\u2013";

  function usd(v) {
    if (!isNum(v)) return DASH;
    const a = Math.abs(v);
    const sign = v < 0 ? "-" : "";
    if (a >= 1e9) return `${sign}$${(a / 1e9).toFixed(2)} bn`;
    if (a >= 1e6) return `${sign}$${(a / 1e6).toFixed(1)} M`;
    if (a >= 1e3) return `${sign}$${(a / 1e3).toFixed(0)} k`;
    return `${sign}$${a.toFixed(0)}`;
  }

  function pct(v, d = 1) {
    return isNum(v) ? `${(v * 100).toFixed(d)} %` : DASH;
  }

  function num(v, d = 0) {
    return isNum(v) ? v.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: 0 }) : DASH;
  }

  function when(iso) {
    if (!iso) return DASH;
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function addMonths(ym, k) {
    const m = /^(\d{4})-(\d{2})$/.exec(ym || "");
    if (!m) return `month ${k + 1}`;
    const t = Number(m[1]) * 12 + Number(m[2]) - 1 + k;
    return `${Math.floor(t / 12)}-${String((t % 12) + 1).padStart(2, "0")}`;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /** Latest request wins: ``const current = latest("x")`` before a fetch, ``if (!current()) return`` after it,
   * so that a slow earlier answer never overwrites a newer one. */
  const SEQ = {};
  function latest(name) {
    const n = (SEQ[name] || 0) + 1;
    SEQ[name] = n;
    return () => SEQ[name] === n;
  }

  function td(value, className) {
    return el("td", { className }, value);
  }

  function emptyRow(tbody, cols, text) {
    tbody.append(el("tr", null, el("td", { className: "empty", colSpan: cols }, text)));
  }

  function showMsg(node, text, kind) {
    node.className = `msg${kind ? ` msg-${kind}` : ""}`;
    clear(node);
    if (text instanceof Node) node.append(text);
    else node.textContent = text;
    node.hidden = !text;
  }

  function showGlobal(text, kind) {
    showMsg($("global-message"), text, kind || "error");
  }

  function readCookie(name) {
    for (const part of document.cookie.split(";")) {
      const [k, ...v] = part.trim().split("=");
      if (k === name) return decodeURIComponent(v.join("="));
    }
    return "";
  }

  function queryString(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
    const s = q.toString();
    return s ? `?${s}` : "";
  }

  // ------------------------------------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, detail, problems) {
      super(detail);
      this.status = status;
      this.detail = detail;
      this.problems = problems || [];
    }
  }

  function errorText(err) {
    if (!(err instanceof ApiError)) return String((err && err.message) || err);
    const probs = (err.problems || []).map((p) => (p.field ? `${p.field}: ${p.message}` : p.message));
    return probs.length ? `${err.detail} (${probs.join("; ")})` : err.detail;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const opts = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body instanceof Blob) {
      headers["Content-Type"] = body.type || "application/octet-stream";
      opts.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    if (method !== "GET") headers["X-CSRF-Token"] = state.csrf || readCookie("critmin_csrf");
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, "the server cannot be reached", []);
    }
    if (resp.status === 204) return null;
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = { detail: text };
    }
    if (!resp.ok) {
      const err = new ApiError(resp.status, (data && data.detail) || resp.statusText || `HTTP ${resp.status}`, data && data.problems);
      if (resp.status === 401 && path !== "/api/auth/login") showLogin("Your session has ended: sign in again.");
      throw err;
    }
    return data;
  }

  /** Wrap an async handler: errors are shown, never left as unhandled rejections. */
  function guard(fn, where) {
    return async (...args) => {
      try {
        return await fn(...args);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return undefined;
        const target = where ? (typeof where === "function" ? where() : where) : null;
        if (target) showMsg(target, errorText(err), "error");
        else showGlobal(errorText(err), "error");
        return undefined;
      }
    };
  }

  // ------------------------------------------------------------------------------------------- auth
  function showLogin(message) {
    state.user = null;
    state.csrf = "";
    // the next user of this page starts from the bundled assumptions, never the previous user's
    state.overrides = [];
    state.blocs = {};
    state.loaded = {};
    $("app-view").hidden = true;
    $("user-box").hidden = true;
    $("login-view").hidden = false;
    showMsg($("login-error"), message || "", "error");
    $("login-password").value = "";
    $("login-username").focus();
  }

  function showApp(user) {
    state.user = user;
    $("user-email").textContent = user.email;
    $("user-org").textContent = user.org;
    $("user-role").textContent = user.role;
    $("user-box").hidden = false;
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    showMsg($("global-message"), "", null);
    const wanted = (location.hash || "").slice(1);
    activate(LOADERS[wanted] ? wanted : "priority");
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const btn = $("login-submit");
    btn.disabled = true;
    showMsg($("login-error"), "", "error");
    try {
      const r = await api("POST", "/api/auth/login", { username: $("login-username").value.trim(), password: $("login-password").value });
      state.csrf = r.csrf_token;
      $("login-password").value = "";
      state.loaded = {};
      showApp(r.user);
    } catch (err) {
      showMsg($("login-error"), err.status === 401 ? "Wrong email or password." : errorText(err), "error");
    } finally {
      btn.disabled = false;
    }
  }

  async function onLogout() {
    try {
      await api("POST", "/api/auth/logout");
    } catch (err) {
      // signed out already: nothing to do
    }
    window.location.assign("/");
  }

  // ------------------------------------------------------------------------------------------- tabs
  const LOADERS = {
    priority: () => loadPriority(),
    chains: () => loadChains(),
    scenarios: () => loadScenarios(),
    assumptions: () => loadAssumptions(),
    risk: async () => undefined,
    projects: () => loadProjects(),
    portfolio: () => loadPortfolio(),
    stockpiles: async () => undefined,
    delivery: async () => undefined,
    matches: async () => undefined,
    respond: () => loadRespond(),
    reports: () => loadRuns(),
    audit: () => loadAudit(),
    account: () => loadAccount(),
  };

  function activate(tab) {
    for (const b of document.querySelectorAll(".tab")) {
      const on = b.dataset.tab === tab;
      b.classList.toggle("active", on);
      b.setAttribute("aria-selected", on ? "true" : "false");
    }
    for (const p of document.querySelectorAll(".panel")) p.hidden = p.dataset.panel !== tab;
    if (location.hash !== `#${tab}`) history.replaceState(null, "", `#${tab}`);
    if (!state.loaded[tab]) {
      state.loaded[tab] = true;
      guard(LOADERS[tab])();
    } else if (tab === "reports") {
      guard(loadRuns)();
    } else if (tab === "account") {
      guard(loadAccount)();
    }
    resizePlots($(`tab-${tab}`));
  }

  function resizePlots(root) {
    if (!window.Plotly || !root) return;
    for (const div of root.querySelectorAll(".js-plotly-plot")) {
      if (div.offsetParent !== null) window.Plotly.Plots.resize(div);
    }
  }

  // ------------------------------------------------------------------------------------------- shared data
  async function nodes() {
    if (!state.nodes) state.nodes = await api("GET", "/api/atlas/nodes");
    return state.nodes;
  }

  function fillNodeSelect(select, list) {
    clear(select);
    for (const n of list) {
      select.append(el("option", { value: `${n.commodity}|${n.stage}` }, `${n.name} / ${n.stage} (${n.countries} countries)`));
    }
  }

  function baseLayout(extra) {
    return {
      font: FONT,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "#ffffff",
      margin: { l: 64, r: 20, t: 44, b: 48 },
      hoverlabel: { font: { family: FONT.family } },
      ...extra,
    };
  }

  function plot(div, data, layout, config) {
    return window.Plotly.react(div, data, layout, config || PLOT_CONFIG);
  }

  // ------------------------------------------------------------------------------------------- priority + map
  async function loadPriority() {
    if (!state.methods) state.methods = await api("GET", "/api/methods");
    const sel = $("priority-method");
    clear(sel);
    for (const m of state.methods) sel.append(el("option", { value: m.name, selected: m.name === "critmin" }, m.name));
    const list = await nodes();
    fillNodeSelect($("map-node"), list);
    const rows = await refreshPriority();
    const first = rows && rows.find((r) => list.some((n) => n.commodity === r.commodity && n.stage === r.chokepoint_stage));
    if (first) $("map-node").value = `${first.commodity}|${first.chokepoint_stage}`;
    await drawMap();
  }

  async function refreshPriority() {
    const method = $("priority-method").value || "critmin";
    const m = (state.methods || []).find((x) => x.name === method);
    $("priority-method-note").textContent = m ? `${m.title}. ${m.citation}` : "";
    const current = latest("priority");
    const rows = await api("GET", `/api/minerals/priority${queryString({ method, perspective: $("priority-perspective").value, top: $("priority-top").value || 25 })}`);
    if (!current()) return null;
    const tbody = clear($("priority-table").tBodies[0]);
    for (const r of rows) {
      const tr = el("tr", { dataset: { commodity: r.commodity, stage: r.chokepoint_stage || "" } },
        td(r.rank, "r"),
        el("td", null, r.name, el("span", { className: "sub" }, r.commodity)),
        td(num(r.score, 3), "r"),
        td(r.chokepoint_stage || DASH),
        td(r.top_country || DASH),
        td(pct(r.top_share, 0), "r"),
        td(pct(r.concern_share, 0), "r"),
        td(isNum(r.import_reliance) ? pct(r.import_reliance, 0) : "unknown", "r"));
      tr.title = (r.flags || []).join("\n");
      tr.addEventListener("click", guard(async () => {
        for (const x of tbody.querySelectorAll("tr.selected")) x.classList.remove("selected");
        tr.classList.add("selected");
        const key = `${r.commodity}|${r.chokepoint_stage}`;
        const opt = [...$("map-node").options].find((o) => o.value === key)
          || [...$("map-node").options].find((o) => o.value.startsWith(`${r.commodity}|`));
        if (opt) {
          $("map-node").value = opt.value;
          await drawMap();
        } else {
          showGlobal(`No country shares for ${r.commodity} to map.`, "warn");
        }
      }));
      tbody.append(tr);
    }
    if (!rows.length) emptyRow(tbody, 8, "No minerals ranked.");
    return rows;
  }

  async function worldIds() {
    if (!state.worldIds) {
      const resp = await fetch("/assets/topojson/world_110m.json", { credentials: "same-origin" });
      const topo = await resp.json();
      state.worldIds = topo.objects.countries.geometries.map((g) => g.id).filter((x) => typeof x === "string" && /^[A-Z]{3}$/.test(x));
    }
    return state.worldIds;
  }

  async function drawMap() {
    const [commodity, stage] = ($("map-node").value || "").split("|");
    if (!commodity) return;
    const current = latest("map");
    const [supply, ids] = await Promise.all([api("GET", `/api/atlas/supply${queryString({ commodity, stage })}`), worldIds()]);
    if (!current()) return;
    const rows = supply.rows.filter((r) => isNum(r.share));
    const listed = new Set(rows.map((r) => r.country_iso3));
    const rest = ids.filter((i) => !listed.has(i));
    const zmax = Math.max(...rows.map((r) => r.share * 100), 1);
    const name = (state.nodes.find((n) => n.commodity === commodity && n.stage === stage) || {}).name || commodity;
    const data = [
      {
        type: "choropleth", locationmode: "ISO-3", locations: rest, z: rest.map(() => 0), showscale: false,
        colorscale: [[0, "#e6eaef"], [1, "#e6eaef"]], marker: { line: { color: "#ffffff", width: 0.5 } },
        hovertemplate: "%{location}: no share listed<extra></extra>", name: "no data",
      },
      {
        type: "choropleth", locationmode: "ISO-3", locations: rows.map((r) => r.country_iso3), z: rows.map((r) => r.share * 100),
        customdata: rows.map((r) => pesc(`${(r.source && r.source.title) || r.source_id || ""}${r.year ? `, data ${r.year}` : ""}`)),
        zmin: 0, zmax, colorscale: [[0, "#dbe9f6"], [0.25, "#8fbbe0"], [0.6, "#3b7fc0"], [1, "#0b3a6e"]],
        marker: { line: { color: "#ffffff", width: 0.6 } },
        colorbar: { title: { text: "% of world" }, thickness: 12, len: 0.7, ticksuffix: " %" },
        hovertemplate: "%{location}: %{z:.1f} % of world supply<br>source: %{customdata}<extra></extra>", name: "share",
      },
    ];
    const layout = baseLayout({
      title: { text: `${pesc(name)}, ${pesc(stage)}: country shares of world supply`, font: { size: 14 } },
      margin: { l: 0, r: 0, t: 40, b: 0 },
      height: 380,
      geo: {
        projection: { type: "natural earth" }, showframe: false, showcoastlines: false, showcountries: true, countrycolor: "#ffffff",
        showland: true, landcolor: "#e6eaef", showocean: false, bgcolor: "rgba(0,0,0,0)", lataxis: { range: [-58, 85] },
      },
    });
    const tbody = clear($("supply-table").tBodies[0]);
    for (const r of [...supply.rows].sort((a, b) => (b.share || 0) - (a.share || 0))) {
      tbody.append(el("tr", null, td(r.country_iso3), td(pct(r.share, 1), "r"), td(r.basis || DASH), td(r.year || DASH, "r"), sourceCell(r.source ? [r.source] : [])));
    }
    await plot($("supply-map"), data, layout, GEO_CONFIG);
  }

  /** A table cell citing sources by title, each a link when it has one (never a bare source id). */
  function sourceCell(sources) {
    const cell = el("td", { className: "wrap small" });
    if (!sources.length) cell.append(DASH);
    sources.forEach((s, i) => {
      if (i) cell.append("; ");
      cell.append(s.url ? el("a", { href: s.url, target: "_blank", rel: "noopener noreferrer", title: s.id }, s.title) : el("span", { title: s.id }, s.title));
    });
    return cell;
  }

  // ------------------------------------------------------------------------------------------- chains
  async function loadChains() {
    const chains = await api("GET", "/api/chains");
    const sel = clear($("chain-select"));
    for (const c of chains) sel.append(el("option", { value: c }, c.replace(/_/g, " ")));
    if (chains.includes("rare_earth_magnets")) sel.value = "rare_earth_magnets";
    await drawSankey();
  }

  async function drawSankey() {
    const id = $("chain-select").value;
    if (!id) return;
    await Promise.all([drawSankeyChart(id), drawChainVulnerabilities(id)]);
  }

  async function drawSankeyChart(id) {
    const current = latest("sankey");
    const fig = await api("GET", `/api/chains/${encodeURIComponent(id)}/sankey`);
    if (!current()) return;
    const layout = { ...(fig.layout || {}), font: FONT, paper_bgcolor: "rgba(0,0,0,0)", height: 600, margin: { l: 10, r: 10, t: 50, b: 10 } };
    await plot($("sankey-chart"), fig.data || [], layout);
  }

  async function vulnerabilities() {
    if (!state.vulnerabilities) state.vulnerabilities = await api("GET", "/api/atlas/vulnerabilities");
    return state.vulnerabilities;
  }

  /** A share cell, marked when it reaches ``hot`` (a concentration worth a look). */
  function shareCell(v, hot) {
    return td(pct(v, 1), `r${hot !== undefined && isNum(v) && v >= hot ? " hot" : ""}`);
  }

  /** The chain's nodes, upstream first, with the concentration of supply at each (stage_metrics). */
  async function drawChainVulnerabilities(id) {
    const current = latest("chain-vuln");
    const [chainNodes, vuln] = await Promise.all([api("GET", `/api/chains/${encodeURIComponent(id)}/nodes`), vulnerabilities()]);
    if (!current()) return;
    $("chain-vuln-title").textContent = `Vulnerabilities by stage: ${id.replace(/_/g, " ")} chain`;
    const byNode = new Map(vuln.map((v) => [`${v.commodity_id}|${v.stage}`, v]));
    const tbody = clear($("chain-vuln-table").tBodies[0]);
    for (const n of chainNodes) {
      const v = byNode.get(`${n.commodity}|${n.stage}`);
      const commodity = el("td", null, n.name || n.commodity, el("span", { className: "sub mono" }, n.commodity));
      const stage = el("td", null, n.stage, v && v.chokepoint ? el("span", { className: "sub" }, el("span", { className: "badge badge-choke" }, "chokepoint")) : null);
      const dataset = { commodity: n.commodity, stage: n.stage };
      if (!v) {
        tbody.append(el("tr", { className: "nodata", dataset }, td(n.step + 1, "r"), commodity, stage,
          el("td", { className: "muted", colSpan: 11 }, "No country shares for this node in the atlas.")));
        continue;
      }
      const hhiWgi = td(isNum(v.hhi_wgi) ? v.hhi_wgi.toFixed(2) : DASH, "r");
      if (v.wgi_imputed) hhiWgi.title = `No WGI estimate (median used) for: ${v.wgi_imputed.split(";").join(", ")}`;
      tbody.append(el("tr", { className: v.chokepoint ? "choke" : null, dataset: { ...dataset, vuln: "1" } },
        td(n.step + 1, "r"), commodity, stage,
        td(num(v.hhi, 0), `r${isNum(v.hhi) && v.hhi > 2500 ? " hot" : ""}`),
        hhiWgi,
        el("td", null, v.top_country || DASH, el("span", { className: "sub" }, `${pct(v.top_share, 1)} of world`)),
        shareCell(v.top3_share),
        shareCell(v.concern_share, 0.5),
        shareCell(v.bloc_share),
        shareCell(v.participants_share),
        shareCell(v.coverage),
        td(num(v.n_countries, 0), "r"),
        el("td", null, `${v.basis || DASH}, ${v.year || DASH}`, v.bound ? el("span", { className: "sub" }, `bound: ${v.bound}`) : null),
        sourceCell(v.sources || [])));
    }
    if (!chainNodes.length) emptyRow(tbody, 14, "No nodes in this chain.");
  }

  // ------------------------------------------------------------------------------------------- runs
  const TERMINAL = new Set(["done", "failed", "cancelled", "interrupted"]);

  /** Start a background run, show its progress with a Cancel button in ``box`` and hand its result to ``onResult``. */
  async function startRun(kind, params, box, onResult, button, submit) {
    const token = {};
    box.runToken = token;
    clear(box);
    delete box.dataset.runId;
    box.dataset.status = "queued";
    const label = el("span", { className: "run-label" }, `${kind} run`);
    const status = el("span", { className: "status-queued", dataset: { testid: "run-state" } }, "starting");
    const msg = el("span", { className: "run-msg" });
    const cancel = el("button", { type: "button", className: "btn btn-small btn-danger", disabled: true, dataset: { testid: "run-cancel" } }, "Cancel");
    const bar = el("div", { className: "bar" });
    bar.style.width = "0%";
    const progress = el("div", { className: "progress", attrs: { role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0 } }, bar);
    box.append(el("div", { className: "run-line" }, label, status, msg, cancel), progress);
    if (button) button.disabled = true;
    let run = null;
    const show = (r) => {
      box.dataset.status = r.status;
      box.dataset.runId = r.id;
      status.className = `status-${r.status}`;
      status.textContent = r.status;
      const p = Math.round((r.status === "done" ? 1 : r.progress || 0) * 100);
      bar.style.width = `${p}%`;
      progress.setAttribute("aria-valuenow", String(p));
      msg.textContent = r.error ? r.error : r.message || "";
      cancel.hidden = TERMINAL.has(r.status);
    };
    const overrides = SIMULATING.has(kind) ? state.overrides.map((o) => ({ ...o })) : [];
    if (overrides.length) params = { ...params, parameters: overrides };
    const blocs = Object.keys(state.blocs).length ? JSON.parse(JSON.stringify(state.blocs)) : null;
    if (blocs) params = { ...params, blocs };
    const notes = [kind];
    if (overrides.length) notes.push(`${overrides.length} parameter override${overrides.length === 1 ? "" : "s"}`);
    if (blocs) notes.push("blocs changed");
    try {
      // `submit` starts the run another way (an uploaded study); it answers the run like POST /api/runs
      run = submit ? await submit() : await api("POST", "/api/runs", { kind, params });
      label.textContent = `Run ${run.id} (${notes.join(", ")})`;
      const id = run.id;
      cancel.addEventListener("click", guard(async () => {
        cancel.disabled = true;
        const r = await api("POST", `/api/runs/${id}/cancel`);
        if (box.runToken === token) show(r);
      }, msg));
      cancel.disabled = false;
      show(run);
      while (!TERMINAL.has(run.status)) {
        await sleep(500);
        if (box.runToken !== token) return;
        run = await api("GET", `/api/runs/${run.id}`);
        show(run);
      }
      if (box.runToken !== token) return;
      if (run.status === "done") {
        const res = await api("GET", `/api/runs/${run.id}/result`);
        if (box.runToken !== token) return;
        await onResult(res.result, res.run);
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      box.dataset.status = "failed";
      status.className = "status-failed";
      status.textContent = run ? "error" : "not started";
      msg.textContent = errorText(err);
      cancel.hidden = true;
    } finally {
      if (button && box.runToken === token) button.disabled = false;
    }
  }

  function intVal(id, fallback) {
    const v = parseInt($(id).value, 10);
    return Number.isFinite(v) ? v : fallback;
  }

  function floatVal(id) {
    const s = $(id).value.trim();
    if (s === "") return null;
    const v = Number(s);
    return Number.isFinite(v) ? v : null;
  }

  // ------------------------------------------------------------------------------------------- scenarios
  async function loadScenarios() {
    fillNodeSelect($("sb-node"), await nodes());
    const ga = [...$("sb-node").options].find((o) => o.value === "gallium|refine");
    if (ga) $("sb-node").value = ga.value;
    renderSelected();
    await Promise.all([searchLibrary(), loadSaved()]);
  }

  // ------------------------------------------------------------------------------------------- model assumptions
  /** Kinds of run that simulate, and so take the parameter overrides. */
  const SIMULATING = new Set(["simulate", "risk", "portfolio", "stockpile", "plan"]);

  async function loadAssumptions() {
    renderOverrides();
    await Promise.all([loadParameters(), loadBlocs()]);
  }

  async function loadParameters() {
    const current = latest("parameters");
    const table = await api("GET", "/api/parameters");
    if (!current()) return;
    state.parameterNames = table.names;
    const sel = clear($("ov-name"));
    for (const n of table.names) sel.append(el("option", { value: n.name }, `${n.name} (${n.role}, ${n.min}–${n.max})`));
    const tbody = clear($("parameter-table").tBodies[0]);
    for (const r of table.rows) {
      const range = r.low !== "" && r.high !== "" ? `${r.low} – ${r.high}` : "";
      const source = String(r.source || "");
      tbody.append(el("tr", { dataset: { name: r.name, scope: r.scope } }, td(r.name), td(r.scope), td(r.value, "r"), td(range, "r"), td(r.distribution),
        td(r.unit), td(r.kind), el("td", { className: "wrap", title: source }, source.length > 90 ? `${source.slice(0, 88)}…` : source),
        el("td", null, el("button", { type: "button", className: "btn btn-small", on: { click: () => prefillOverride(r) } }, "Override"))));
    }
  }

  const isoList = (text) => [...new Set(text.split(/[\s,;]+/).map((x) => x.trim().toUpperCase()).filter(Boolean))].sort();

  async function loadBlocs() {
    if (!state.atlasBlocs) state.atlasBlocs = (await api("GET", "/api/blocs")).blocs;
    for (const b of ["concern", "like_minded"]) $(`bloc-${b}`).value = (state.blocs[b] || state.atlasBlocs[b]).join(", ");
    renderBlocsNote();
  }

  function applyBlocs(ev) {
    ev.preventDefault();
    if (!state.atlasBlocs) {
      showMsg($("blocs-msg"), "The atlas's blocs could not be read: reload the page.", "error");
      return;
    }
    const blocs = {};
    for (const b of ["concern", "like_minded"]) {
      const members = isoList($(`bloc-${b}`).value);
      if (members.join() !== state.atlasBlocs[b].join()) blocs[b] = members;  // only what differs from the atlas goes with the runs
    }
    state.blocs = blocs;
    renderBlocsNote();
  }

  async function resetBlocs() {
    state.blocs = {};
    await loadBlocs();
  }

  function renderBlocsNote() {
    const changed = Object.keys(state.blocs);
    showMsg($("blocs-msg"), changed.length ? `Your runs use your ${changed.map((b) => b.replace("_", "-")).join(" and ")} list${changed.length > 1 ? "s" : ""}; the server checks them when a run starts.`
      : "Your runs use the atlas's blocs.", changed.length ? "warn" : null);
  }

  function prefillOverride(r) {
    $("ov-name").value = r.name;
    $("ov-scope").value = r.scope;
    $("ov-value").value = r.value;
    $("ov-distribution").value = r.distribution || "fixed";
    $("ov-low").value = r.low;
    $("ov-high").value = r.high;
    $("ov-value").focus();
  }

  function addOverride(ev) {
    ev.preventDefault();
    const numOrNull = (id) => ($(id).value.trim() === "" ? null : Number($(id).value));
    const o = { name: $("ov-name").value, scope: $("ov-scope").value.trim() || "*", value: Number($("ov-value").value),
      low: numOrNull("ov-low"), high: numOrNull("ov-high"), distribution: $("ov-distribution").value };
    if (o.distribution === "fixed") { o.low = null; o.high = null; }
    if (!Number.isFinite(o.value) || (o.low !== null && !Number.isFinite(o.low)) || (o.high !== null && !Number.isFinite(o.high))) {
      showMsg($("override-msg"), "Value, low and high must be finite numbers.", "error");
      return;
    }
    // one override per (name, scope): a new one replaces the old; the server checks ranges and scopes when a run starts
    state.overrides = state.overrides.filter((x) => !(x.name === o.name && x.scope === o.scope)).concat([o]);
    showMsg($("override-msg"), "", null);
    renderOverrides();
  }

  function overrideText(o) {
    const range = o.distribution === "fixed" ? "fixed" : `${o.distribution} ${o.low}–${o.high}`;
    return `${o.name} [${o.scope}] = ${o.value} (${range})`;
  }

  function renderOverrides() {
    const ul = clear($("override-list"));
    if (!state.overrides.length) {
      ul.append(el("li", { className: "empty" }, "None: runs use the bundled parameters."));
      return;
    }
    state.overrides.forEach((o, i) => {
      ul.append(el("li", { dataset: { name: o.name, scope: o.scope } }, overrideText(o), el("button", {
        type: "button", title: "Remove", attrs: { "aria-label": `Remove ${o.name} ${o.scope}` },
        on: { click: () => { state.overrides.splice(i, 1); renderOverrides(); } },
      }, "\u00d7")));
    });
  }

  function addScenario(id) {
    if (!state.selectedScenarios.includes(id)) state.selectedScenarios.push(id);
    renderSelected();
  }

  function renderSelected() {
    const ul = clear($("sim-selected"));
    if (!state.selectedScenarios.length) {
      ul.append(el("li", { className: "empty" }, "None yet: add scenarios from the library or save one you built."));
      return;
    }
    for (const id of state.selectedScenarios) {
      ul.append(el("li", { dataset: { id } }, id, el("button", {
        type: "button", title: "Remove", attrs: { "aria-label": `Remove ${id}` },
        on: { click: () => { state.selectedScenarios = state.selectedScenarios.filter((x) => x !== id); renderSelected(); } },
      }, "\u00d7")));
    }
  }

  async function searchLibrary() {
    const current = latest("library");
    const page = await api("GET", `/api/scenarios/library${queryString({ q: $("scenario-q").value.trim(), family: $("scenario-family").value, limit: 200 })}`);
    if (!current()) return;
    $("scenario-count").textContent = `${page.items.length} of ${page.total} scenarios shown`;
    const tbody = clear($("scenario-library").tBodies[0]);
    for (const s of page.items) {
      tbody.append(el("tr", null,
        el("td", { className: "wrap" }, el("span", { className: "mono" }, s.id), el("span", { className: "sub" }, s.title)),
        td(`${s.commodity} / ${s.stage}`),
        td(`${(s.restrictors || []).join(", ")} \u2192 ${(s.targets || []).join(", ")}`),
        td(s.regime),
        td(s.duration_months, "r"),
        el("td", null, el("button", { type: "button", className: "btn btn-small", dataset: { add: s.id }, on: { click: () => addScenario(s.id) } }, "Add"))));
    }
    if (!page.items.length) emptyRow(tbody, 6, "No scenario matches.");
  }

  async function loadSaved() {
    const current = latest("saved");
    const page = await api("GET", "/api/scenarios?limit=1000");
    if (!current()) return;
    const tbody = clear($("scenario-saved").tBodies[0]);
    for (const r of page.items) {
      const d = r.data || {};
      tbody.append(el("tr", null,
        el("td", null, el("span", { className: "mono" }, r.key), d.title ? el("span", { className: "sub" }, d.title) : null),
        td(`${d.commodity || "?"} / ${d.stage || "?"}`),
        el("td", null, r.org, r.confidential ? el("span", { className: "badge badge-conf" }, " confidential") : null),
        el("td", null, el("button", { type: "button", className: "btn btn-small", dataset: { add: r.key }, on: { click: () => addScenario(r.key) } }, "Add"))));
    }
    if (!page.items.length) emptyRow(tbody, 4, "No scenario saved in the workspace yet.");
  }

  function builtScenario() {
    const [commodity, stage] = ($("sb-node").value || "|").split("|");
    const restrictors = $("sb-restrictors").value.split(/[\s,;]+/).map((s) => s.trim().toUpperCase()).filter(Boolean);
    const s = {
      id: $("sb-id").value.trim() || `user.${commodity}.${stage}.${Date.now().toString(36)}`,
      title: $("sb-title").value.trim(),
      commodity, stage, restrictors,
      targets: [$("sb-targets").value],
      regime: $("sb-regime").value,
      duration_months: intVal("sb-duration", 12),
      start_month: intVal("sb-start", 0),
    };
    const w = floatVal("sb-withheld");
    if (w !== null) s.withheld_share = w;
    if (!s.title) s.title = `${s.regime} on ${commodity}/${stage} (${restrictors.join(", ")} \u2192 ${s.targets.join(", ")})`;
    return s;
  }

  async function saveScenario() {
    const msg = $("scenario-form-msg");
    const s = builtScenario();
    try {
      const r = await api("POST", "/api/scenarios", { data: s });
      showMsg(msg, `Saved scenario ${r.key} (visible to every organisation). It is added to the run list.`, "ok");
      addScenario(r.key);
      await loadSaved();
    } catch (err) {
      if (err.status !== 401) showMsg(msg, `Not saved: ${errorText(err)}`, "error");
    }
  }

  function runSimulation(params) {
    $("sim-results").hidden = true;
    return startRun("simulate", { draws: intVal("sim-draws", 200), ...params }, $("sim-run-status"), showSimulation, $("sim-run"));
  }

  let simResult = null;

  async function showSimulation(result) {
    simResult = result;
    $("sim-results").hidden = false;
    const tbody = clear($("sim-table").tBodies[0]);
    for (const r of result.scenarios || []) {
      tbody.append(el("tr", null,
        el("td", null, el("span", { className: "mono" }, r.scenario)),
        td(r.perspective),
        td(usd(r.expected_loss_usd), "r"),
        td(`${usd(r.loss_p05_usd)} ${DASH} ${usd(r.loss_p95_usd)}`, "r"),
        td(usd(r.cvar95_usd), "r"),
        td(num(r.shortfall_t, 0), "r"),
        td(`${num(r.peak_price_ratio_p50, 2)} (${num(r.peak_price_ratio_p95, 2)})`, "r")));
    }
    const ids = [...new Set((result.paths || []).map((p) => p.scenario))];
    const sel = clear($("sim-path-scenario"));
    for (const id of ids) sel.append(el("option", { value: id }, id));
    await drawPaths();
  }

  function band(x, lo, hi, mid, name, color, fillColor, yaxis) {
    const common = { x, type: "scatter", mode: "lines", connectgaps: false, yaxis };
    return [
      { ...common, y: hi, line: { width: 0, color }, hoverinfo: "skip", showlegend: false, name: `${name} p95` },
      { ...common, y: lo, line: { width: 0, color }, fill: "tonexty", fillcolor: fillColor, name: `${name}: 5\u201395 %`, hovertemplate: `${name} p05 %{y:.3g}<extra></extra>` },
      { ...common, y: mid, line: { width: 2, color }, name: `${name}: median`, hovertemplate: `${name} median %{y:.3g}<extra></extra>` },
    ];
  }

  async function drawPaths() {
    if (!simResult) return;
    const id = $("sim-path-scenario").value;
    const rows = (simResult.paths || []).filter((p) => p.scenario === id).sort((a, b) => a.month - b.month);
    if (!rows.length) {
      clear($("sim-price-chart"));
      clear($("sim-shortfall-chart"));
      return;
    }
    const x = rows.map((r) => r.month);
    const col = (k) => rows.map((r) => (isNum(r[k]) ? r[k] : null));
    const price = [
      ...band(x, col("price_t_p05"), col("price_t_p95"), col("price_t_p50"), "targeted buyers", "#1f5f99", "rgba(31,95,153,0.22)"),
      { x, y: col("price_u_p50"), type: "scatter", mode: "lines", line: { width: 1.5, dash: "dot", color: "#7f8c8d" }, name: "unrestricted segment: median" },
    ];
    await plot($("sim-price-chart"), price, baseLayout({
      title: { text: "Price ratio to the pre-disruption price", font: { size: 14 } },
      xaxis: { title: { text: "month" }, gridcolor: "#eef1f4" },
      yaxis: { title: { text: "P / P0" }, gridcolor: "#eef1f4", rangemode: "tozero" },
      legend: { orientation: "h", y: -0.25 }, height: 380,
    }));
    const short = [
      ...band(x, col("shortfall_usa_p05"), col("shortfall_usa_p95"), col("shortfall_usa_p50"), "USA", "#c0392b", "rgba(192,57,43,0.18)"),
      ...band(x, col("shortfall_jpn_p05"), col("shortfall_jpn_p95"), col("shortfall_jpn_p50"), "JPN", "#d9822b", "rgba(217,130,43,0.20)"),
    ];
    await plot($("sim-shortfall-chart"), short, baseLayout({
      title: { text: "Physical shortfall (t / month)", font: { size: 14 } },
      xaxis: { title: { text: "month" }, gridcolor: "#eef1f4" },
      yaxis: { title: { text: "t / month" }, gridcolor: "#eef1f4", rangemode: "tozero" },
      legend: { orientation: "h", y: -0.25 }, height: 380,
    }));
  }

  // ------------------------------------------------------------------------------------------- risk ranking
  const CATEGORY_COLORS = { high: "#c0392b", elevated: "#d9822b", moderate: "#b7950b", limited: "#2e8b57", negligible: "#7f8c8d" };

  async function runRisk(ev) {
    ev.preventDefault();
    clear($("rk-summary"));
    await startRun("risk", { perspective: $("rk-perspective").value, draws: intVal("rk-draws", 200) }, $("rk-run-status"), showRisk, $("rk-run"));
  }

  /** An annual probability: two decimals, or two significant digits when small. */
  function prob(v) {
    if (!isNum(v)) return DASH;
    return v >= 0.01 || v === 0 ? v.toFixed(2) : v.toExponential(1);
  }

  async function showRisk(r, run) {
    const rows = r.ranking || [];
    const meta = r.metadata || {};
    const params = (run && run.params) || {};
    if (params.perspective) $("rk-perspective").value = params.perspective;
    if (params.draws) $("rk-draws").value = String(params.draws);
    const valued = rows.filter((x) => isNum(x.expected_loss_usd));
    const total = valued.reduce((s, x) => s + x.expected_loss_usd, 0);
    summary($("rk-summary"), [
      ["Perspective", (rows[0] && rows[0].perspective) || params.perspective || DASH],
      ["Commodities valued", `${valued.length} of ${rows.length}`],
      ["High risk (\u2265 $1 bn/yr)", String(rows.filter((x) => x.category === "high").length)],
      ["Total expected loss", `${usd(total)}/yr`],
      ["Draws, seed", `${num(meta.draws, 0)}, seed ${num(meta.seed, 0)}`],
    ]);
    const tbody = clear($("rk-table").tBodies[0]);
    for (const x of rows) {
      const inForce = new Set(x.in_force_controls || []);
      const drivers = el("ul", { className: "plain" });
      for (const s of x.top_scenarios || []) {
        drivers.append(el("li", null, el("span", { className: "mono" }, s.scenario),
          inForce.has(s.scenario) ? el("span", { className: "badge badge-conf" }, "in force") : null,
          el("span", { className: "muted" }, ` p ${prob(s.probability)}/yr \u00b7 ${usd(s.contribution_usd)}/yr`)));
      }
      const flags = el("ul", { className: "plain" });
      for (const f of x.flags || []) flags.append(el("li", null, f));
      tbody.append(el("tr", { dataset: { commodity: x.commodity, category: x.category || "" } },
        td(x.rank, "r"),
        el("td", null, x.name || x.commodity, el("span", { className: "sub mono" }, x.commodity)),
        el("td", { className: "r" }, usd(x.expected_loss_usd), isNum(x.expected_loss_se_usd) ? el("span", { className: "sub" }, `\u00b1 ${usd(x.expected_loss_se_usd)} s.e.`) : null),
        td(usd(x.var95_usd), "r"),
        td(usd(x.cvar95_usd), "r"),
        el("td", null, el("span", { className: "badge badge-cat", dataset: { category: x.category || "" } }, x.category || DASH)),
        el("td", { className: "wrap" }, (x.top_scenarios || []).length ? drivers : DASH),
        td(num(x.scenarios, 0), "r"),
        el("td", { className: "wrap small" }, (x.flags || []).length ? flags : DASH)));
    }
    if (!rows.length) emptyRow(tbody, 9, "No commodity ranked.");
    const first = rows[0] || {};
    $("rk-basis").textContent = [first.units, first.basis].filter(Boolean).join(". ");
    const top = valued.filter((x) => x.expected_loss_usd > 0).slice(0, 15).reverse();
    const chart = $("rk-chart");
    if (!top.length) {
      if (window.Plotly) window.Plotly.purge(chart);
      clear(chart).append(el("p", { className: "muted" }, "No commodity with a positive expected loss."));
      return;
    }
    const none = chart.querySelector(":scope > p.muted");
    if (none) none.remove();
    await plot(chart, [{
      type: "bar", orientation: "h", y: top.map((x) => pesc(x.name || x.commodity)), x: top.map((x) => x.expected_loss_usd / 1e6),
      error_x: { type: "data", array: top.map((x) => (isNum(x.expected_loss_se_usd) ? x.expected_loss_se_usd / 1e6 : 0)), color: "#5f6b7a", thickness: 1 },
      marker: { color: top.map((x) => CATEGORY_COLORS[x.category] || "#1f5f99") },
      customdata: top.map((x) => [pesc(x.commodity), pesc(x.category), isNum(x.cvar95_usd) ? x.cvar95_usd / 1e6 : null]),
      hovertemplate: "%{y} (%{customdata[0]}): %{x:,.1f} M USD/yr expected loss<br>category %{customdata[1]}, CVaR 95 % %{customdata[2]:,.0f} M USD<extra></extra>",
    }], baseLayout({
      title: { text: `Expected loss by commodity, ${pesc(first.perspective || "")} (M USD per year, \u00b1 1 s.e.)`, font: { size: 14 } },
      margin: { l: 230, r: 20, t: 44, b: 44 }, xaxis: { gridcolor: "#eef1f4", title: { text: "M USD / yr" }, rangemode: "tozero" },
      height: 460, showlegend: false,
    }));
  }

  // ------------------------------------------------------------------------------------------- projects
  const PROJECT_FIELDS = ["project_id", "name", "sponsor", "country_iso3", "commodity_id", "stage", "status_class", "capacity_t", "capex_usd",
    "first_output", "sources", "note"];
  const NUMERIC_FIELDS = new Set(["capacity_t", "capex_usd"]);

  async function loadProjects() {
    const list = await nodes();
    const cl = clear($("commodity-list"));
    for (const c of [...new Set(list.map((n) => n.commodity))]) cl.append(el("option", { value: c }));
    const sl = clear($("stage-list"));
    for (const s of [...new Set(list.map((n) => n.stage))].sort()) sl.append(el("option", { value: s }));
    await refreshProjects();
  }

  async function refreshProjects() {
    const current = latest("projects");
    const page = await api("GET", `/api/projects${queryString({ q: $("project-q").value.trim(), limit: 5000 })}`);
    if (!current()) return;
    state.projects = page.items;
    $("project-count").textContent = `${page.items.length} of ${page.total} projects you can read`;
    const tbody = clear($("projects-table").tBodies[0]);
    for (const r of page.items) {
      const d = r.data || {};
      tbody.append(el("tr", { dataset: { key: r.key, id: r.id } },
        el("td", null, el("span", { className: "mono" }, r.key)),
        el("td", { className: "wrap" }, d.name || DASH, el("span", { className: "sub" }, d.sponsor || "")),
        td(d.country_iso3 || DASH),
        td(`${d.commodity_id || "?"} / ${d.stage || "?"}`),
        el("td", null, el("span", { className: "badge badge-status" }, d.status_class || DASH)),
        td(num(d.capacity_t, 0), "r"),
        el("td", null, r.org, r.confidential ? el("span", { className: "sub" }, el("span", { className: "badge badge-conf" }, "confidential")) : null),
        td(r.version, "r"),
        el("td", { className: "r" },
          el("button", { type: "button", className: "btn btn-small", dataset: { edit: r.key }, on: { click: () => openEditor(r) } }, r.can_edit ? "Edit" : "View"),
          " ",
          el("button", { type: "button", className: "btn btn-small", dataset: { comments: r.key }, on: { click: guard(() => openComments(r)) } }, "Comments"))));
    }
    if (!page.items.length) emptyRow(tbody, 9, "No project matches.");
  }

  function setForm(data, record) {
    for (const f of PROJECT_FIELDS) {
      const input = $(`pf-${f}`);
      const v = data ? data[f] : undefined;
      input.value = v === null || v === undefined ? (f === "status_class" ? "feasibility" : "") : String(v);
    }
    $("pf-confidential").checked = Boolean(record && record.confidential);
    const editable = !record || record.can_edit;
    for (const f of PROJECT_FIELDS) {
      $(`pf-${f}`).disabled = !editable;
    }
    $("pf-project_id").readOnly = Boolean(record);
    const owner = !record || (state.user && record.org === state.user.org);
    $("pf-confidential").disabled = !editable || !owner;
    $("project-save").hidden = !editable;
  }

  function openEditor(record) {
    state.editing = record ? { id: record.id, version: record.version, data: record.data, org: record.org, confidential: record.confidential } : null;
    $("project-editor").hidden = false;
    $("project-editor-title").textContent = record
      ? `${record.can_edit ? "Edit" : "View"} ${record.key} (version ${record.version}, ${record.org})`
      : "Add a project";
    showMsg($("project-msg"), "", null);
    setForm(record ? record.data : null, record);
    $("project-editor").scrollIntoView({ block: "nearest" });
  }

  function formData() {
    const out = {};
    for (const f of PROJECT_FIELDS) {
      const raw = $(`pf-${f}`).value.trim();
      if (NUMERIC_FIELDS.has(f)) out[f] = raw === "" ? null : Number(raw);
      else out[f] = f === "country_iso3" ? raw.toUpperCase() : raw;
    }
    return out;
  }

  async function saveProject(ev) {
    ev.preventDefault();
    const msg = $("project-msg");
    const fields = formData();
    const btn = $("project-save");
    btn.disabled = true;
    try {
      if (!state.editing) {
        const r = await api("POST", "/api/projects", { data: fields, confidential: $("pf-confidential").checked });
        showMsg(msg, `Project ${r.key} added${r.confidential ? " (confidential)" : ""}.`, "ok");
        state.editing = { id: r.id, version: r.version, data: r.data, org: r.org, confidential: r.confidential };
        $("pf-project_id").readOnly = true;
        $("project-editor-title").textContent = `Edit ${r.key} (version ${r.version}, ${r.org})`;
      } else {
        const e = state.editing;
        const body = { version: e.version, data: { ...e.data, ...fields } };
        if (state.user && e.org === state.user.org && $("pf-confidential").checked !== e.confidential) body.confidential = $("pf-confidential").checked;
        const r = await api("PUT", `/api/projects/${e.id}`, body);
        state.editing = { id: r.id, version: r.version, data: r.data, org: r.org, confidential: r.confidential };
        $("project-editor-title").textContent = `Edit ${r.key} (version ${r.version}, ${r.org})`;
        showMsg(msg, `Saved ${r.key}: now version ${r.version}.`, "ok");
      }
      await refreshProjects();
    } catch (err) {
      if (err.status === 401) return;
      if (err.status === 409 && state.editing) {
        const reload = el("button", { type: "button", className: "btn btn-small", dataset: { testid: "project-reload" }, on: { click: guard(reloadEditing, msg) } }, "Load their version");
        showMsg(msg, el("span", null,
          `Not saved: someone else changed this project since you opened it (you edited version ${state.editing.version}). `,
          "Load their version, then apply your changes again.", reload), "warn");
        msg.dataset.conflict = "1";
      } else {
        showMsg(msg, `Not saved: ${errorText(err)}`, "error");
      }
    } finally {
      btn.disabled = false;
    }
  }

  async function reloadEditing() {
    if (!state.editing) return;
    const r = await api("GET", `/api/projects/${state.editing.id}`);
    openEditor(r);
    showMsg($("project-msg"), `Loaded version ${r.version}.`, "ok");
    await refreshProjects();
  }

  async function openComments(record) {
    state.commentsFor = record;
    $("comments-card").hidden = false;
    $("comments-title").textContent = `Comments on ${record.key}`;
    showMsg($("comment-msg"), "", null);
    await refreshComments();
  }

  async function refreshComments() {
    const r = state.commentsFor;
    if (!r) return;
    const list = await api("GET", `/api/projects/${r.id}/comments`);
    const ul = clear($("comments-list"));
    for (const c of list) {
      ul.append(el("li", null, el("div", { className: "meta" }, `${c.user} (${c.org}), ${when(c.created_at)}`), el("div", { className: "body" }, c.body)));
    }
    if (!list.length) ul.append(el("li", { className: "muted" }, "No comments yet."));
  }

  async function addComment(ev) {
    ev.preventDefault();
    const body = $("comment-body").value.trim();
    if (!body || !state.commentsFor) return;
    await api("POST", `/api/projects/${state.commentsFor.id}/comments`, { body });
    $("comment-body").value = "";
    await refreshComments();
  }

  // ------------------------------------------------------------------------------------------- portfolio
  async function loadPortfolio() {
    state.agencies = await api("GET", "/api/agencies");
    const tbody = clear($("budget-table").tBodies[0]);
    for (const a of state.agencies) {
      const key = `${a.agency_id}:${a.instrument}`;
      const bundled = isNum(a.budget_usd) ? a.budget_usd : null;
      const input = el("input", {
        type: "number", min: "0", step: "any", className: "budget", value: bundled === null ? "" : String(bundled),
        placeholder: "no budget", dataset: { key, bundled: bundled === null ? "" : String(bundled) }, attrs: { "aria-label": `Budget of ${key} (USD)` },
      });
      const hint = el("span", { className: "sub" }, bundled === null ? "no bundled budget" : `bundled ${usd(bundled)}`);
      input.addEventListener("input", () => { hint.textContent = input.value.trim() === "" ? "no budget" : usd(Number(input.value)); });
      tbody.append(el("tr", null,
        el("td", { className: "wrap", title: a.budget_period || "" }, el("span", { className: "mono" }, a.agency_id), el("span", { className: "sub" }, a.name)),
        td(a.instrument === "any" ? "any (shared envelope)" : a.instrument),
        td(a.budget_basis === "cost" ? "credit subsidy" : "amount"),
        el("td", { className: "r" }, input, hint)));
    }
  }

  function budgetsFromTable() {
    const out = {};
    for (const input of $("budget-table").querySelectorAll("input.budget")) {
      const raw = input.value.trim();
      const bundled = input.dataset.bundled;
      if (raw === bundled) continue;
      if (raw === "") {
        if (bundled !== "") out[input.dataset.key] = 0;
        continue;
      }
      const v = Number(raw);
      if (!Number.isFinite(v) || v < 0) throw new Error(`budget of ${input.dataset.key}: '${raw}' is not a non-negative number`);
      if (bundled !== "" && Number(bundled) === v) continue;
      out[input.dataset.key] = v;
    }
    return out;
  }

  async function runPortfolio(ev) {
    ev.preventDefault();
    let budgets;
    try {
      budgets = budgetsFromTable();
    } catch (err) {
      showGlobal(err.message, "error");
      return;
    }
    const params = { budgets, draws: intVal("pf-draws", 200), frontier_points: intVal("pf-frontier", 10), cvar_weight: floatVal("pf-cvar") || 0 };
    const dl = floatVal("pf-deadline");
    if (dl !== null) params.deadline_months = dl;
    clear($("pf-summary"));
    $("pf-results").hidden = true;
    await startRun("portfolio", params, $("pf-run-status"), showPortfolio, $("pf-run"));
  }

  function summary(dl, items) {
    clear(dl);
    for (const [k, v] of items) dl.append(el("div", null, el("dt", null, k), el("dd", null, v)));
  }

  async function showPortfolio(r) {
    const selected = r.selected || [];
    const spent = selected.reduce((s, x) => s + (isNum(x.cost_usd) ? x.cost_usd : 0), 0);
    summary($("pf-summary"), [
      ["Solver status", `${r.status || DASH}${isNum(r.gap) && r.gap > 0 ? ` (gap ${pct(r.gap, 2)})` : ""}`],
      ["Projects selected", String(selected.length)],
      ["Expected avoided loss", usd(r.expected_avoided_usd)],
      ["Money committed", usd(spent)],
      ["Residual CVaR 95 %", usd(r.cvar_residual_usd)],
      ["Greedy baseline", usd(r.greedy_expected_avoided_usd)],
    ]);
    $("pf-results").hidden = false;
    const why = new Map((r.projects || []).map((p) => [p.project_id, p.reason]));
    const tbody = clear($("pf-selected").tBodies[0]);
    for (const s of selected) {
      tbody.append(el("tr", { dataset: { project: s.project_id } },
        el("td", { className: "wrap" }, s.name || s.project_id, el("span", { className: "sub mono" }, s.project_id)),
        td(s.node),
        el("td", null, s.instrument, el("span", { className: "sub" }, s.terms || "")),
        el("td", null, s.agency, el("span", { className: "sub" }, s.participant || "")),
        el("td", { className: "r" }, usd(s.cost_usd), isNum(s.budget_cost_usd) && s.budget_cost_usd !== s.cost_usd ? el("span", { className: "sub" }, `budget cost ${usd(s.budget_cost_usd)}`) : null),
        td(usd(s.expected_avoided_usd), "r"),
        td(num(s.months_to_output, 0), "r"),
        el("td", { className: "wrap", title: (s.assumptions || []).join("\n") }, why.get(s.project_id) || DASH,
          (s.assumptions || []).length ? el("span", { className: "sub" }, `${s.assumptions.length} assumptions (hover)`) : null)));
    }
    if (!selected.length) emptyRow(tbody, 8, "No project selected within these budgets.");
    const money = clear($("pf-money").tBodies[0]);
    for (const [k, v] of Object.entries(r.money_by_agency || {}).sort((a, b) => b[1] - a[1])) money.append(el("tr", null, td(k), td(usd(v), "r")));
    const sp = clear($("pf-spent").tBodies[0]);
    for (const [k, v] of Object.entries(r.budgets || {})) {
      sp.append(el("tr", null, td(k), td((r.budget_basis || {})[k] || DASH), td(usd((r.spent || {})[k]), "r"), td(usd(v), "r")));
    }
    const fr = (r.frontier || []).filter((f) => isNum(f.total_budget_usd)).sort((a, b) => a.total_budget_usd - b.total_budget_usd);
    if (!fr.length) {
      window.Plotly.purge($("pf-frontier-chart"));
      clear($("pf-frontier-chart"));
      return;
    }
    const total = Object.values(r.budgets || {}).reduce((s, v) => s + v, 0);
    await plot($("pf-frontier-chart"), [
      {
        x: fr.map((f) => f.total_budget_usd / 1e9), y: fr.map((f) => f.expected_avoided_usd / 1e9), type: "scatter", mode: "lines+markers",
        name: "frontier", line: { color: "#1f5f99", width: 2 }, marker: { size: 7 },
        customdata: fr.map((f) => [f.projects, (f.spent_usd || 0) / 1e9, f.budget_scale]),
        hovertemplate: "budgets x%{customdata[2]}: %{x:.2f} bn USD<br>expected avoided loss %{y:.3f} bn USD<br>%{customdata[0]} projects, %{customdata[1]:.2f} bn spent<extra></extra>",
      },
      {
        x: [total / 1e9], y: [(r.expected_avoided_usd || 0) / 1e9], type: "scatter", mode: "markers", name: "this portfolio",
        marker: { size: 13, symbol: "star", color: "#d9822b" }, hovertemplate: "this portfolio: %{y:.3f} bn USD avoided<extra></extra>",
      },
    ], baseLayout({
      title: { text: "Efficient frontier: budget vs expected avoided loss", font: { size: 14 } },
      xaxis: { title: { text: "total budget (bn USD)" }, gridcolor: "#eef1f4", rangemode: "tozero" },
      yaxis: { title: { text: "expected avoided loss (bn USD / yr)" }, gridcolor: "#eef1f4", rangemode: "tozero" },
      legend: { orientation: "h", y: -0.25 }, height: 380,
    }));
  }

  // ------------------------------------------------------------------------------------------- stockpiles
  async function runStockpile(ev) {
    ev.preventDefault();
    const params = { perspective: $("sp-perspective").value, pooled: $("sp-pooled").checked, draws: intVal("sp-draws", 200) };
    const b = floatVal("sp-budget");
    if (b !== null) params.budget_usd = b;
    await startRun("stockpile", params, $("sp-run-status"), showStockpile, $("sp-run"));
  }

  async function showStockpile(r) {
    const rows = [...(r.stockpiles || [])].sort((a, b) => (b.saving_usd || 0) - (a.saving_usd || 0));
    const plans = clear($("sp-budget-plans"));
    for (const [who, p] of Object.entries(r.budget_plans || {})) {
      const dl = el("dl", { className: "summary" });
      summary(dl, [["Holder", who], ["Budget", usd(p.budget_usd)], ["Spent", usd(p.spent_usd)], ["Value per USD", num(p.value_of_budget_usd_per_usd, 2)],
        ["Status", p.status || DASH]]);
      plans.append(dl);
    }
    // under a budget the recommended stock is the budgeted one: table and chart show it, as the summary does
    const budgeted = Object.keys(r.budget_plans || {}).length > 0;
    const stockT = (s) => (budgeted && isNum(s.budgeted_stock_t) ? s.budgeted_stock_t : s.optimal_stock_t);
    const stockUsd = (s) => (budgeted && isNum(s.budgeted_stock_usd) ? s.budgeted_stock_usd : s.optimal_stock_usd);
    const tbody = clear($("sp-table").tBodies[0]);
    for (const s of rows) {
      const days = isNum(s.days_of_consumption) && s.optimal_stock_t > 0 ? s.days_of_consumption * stockT(s) / s.optimal_stock_t : s.days_of_consumption;
      tbody.append(el("tr", null, td(s.node), td(s.participant), td(pct(s.probability_of_shortfall, 0), "r"), td(num(stockT(s), 0), "r"),
        td(usd(stockUsd(s)), "r"), td(num(days, 0), "r"), td(usd(s.saving_usd), "r")));
    }
    if (!rows.length) emptyRow(tbody, 7, "No stockpile sized.");
    const top = rows.filter((s) => isNum(stockUsd(s)) && stockUsd(s) > 0)
      .sort((a, b) => stockUsd(b) - stockUsd(a)).slice(0, 15).reverse();
    await plot($("sp-chart"), [{
      type: "bar", orientation: "h", y: top.map((s) => pesc(`${s.node} (${s.participant})`)), x: top.map((s) => stockUsd(s) / 1e6),
      marker: { color: "#1f5f99" }, hovertemplate: "%{y}: %{x:.1f} M USD<extra></extra>",
    }], baseLayout({
      title: { text: budgeted ? "Largest stocks under the budget (M USD)" : "Largest optimal stockpiles (M USD)", font: { size: 14 } },
      margin: { l: 230, r: 20, t: 44, b: 40 },
      xaxis: { gridcolor: "#eef1f4", title: { text: "M USD" } }, height: 420,
    }));
  }

  // ------------------------------------------------------------------------------------------- deliveries
  async function runDeliver(ev) {
    ev.preventDefault();
    const params = { months: intVal("dl-months", 6) };
    const asOf = $("dl-asof").value.trim();
    if (asOf) params.as_of = asOf;
    await startRun("deliver", params, $("dl-run-status"), showDeliver, $("dl-run"));
  }

  async function showDeliver(r, run) {
    const months = (r.metadata && r.metadata.months) || (run.params && run.params.months) || 6;
    const asOf = (r.metadata && r.metadata.as_of) || (run.params && run.params.as_of);
    const labels = Array.from({ length: months }, (_, k) => addMonths(asOf, k));
    const nodeOf = new Map((r.buyers || []).map((b) => [b.buyer_id, b.node]));
    const byBuyer = new Map();
    for (const a of r.allocation || []) {
      const key = a.buyer_id;
      if (!byBuyer.has(key)) byBuyer.set(key, { name: a.buyer || a.buyer_id, t: new Array(months).fill(0) });
      const i = (a.month || 1) - 1;
      if (i >= 0 && i < months) byBuyer.get(key).t[i] += a.tonnes || 0;
    }
    // one chart per node (a dropdown switches): tonnes of different materials are never stacked together
    const entries = [...byBuyer.entries()];
    const nodesShown = [...new Set(entries.map(([id]) => nodeOf.get(id) || "?"))].sort();
    const traces = entries.map(([id, b], i) => ({
      type: "bar", x: labels, y: b.t, visible: (nodeOf.get(id) || "?") === nodesShown[0],
      name: pesc(`${b.name.length > 44 ? `${b.name.slice(0, 42)}\u2026` : b.name}`),
      marker: { color: COLORS[i % COLORS.length] }, customdata: labels.map(() => pesc(`${id}: ${b.name} (${nodeOf.get(id) || "?"})`)),
      hovertemplate: "%{customdata}<br>%{x}: %{y:,.0f} t<extra></extra>",
    }));
    const buttons = nodesShown.map((n) => ({
      label: pesc(n), method: "update",
      args: [{ visible: entries.map(([id]) => (nodeOf.get(id) || "?") === n) }, { "title.text": `Deliveries of ${pesc(n)} by buyer and month (t)` }],
    }));
    if (traces.length) {
      await plot($("dl-chart"), traces, baseLayout({
        barmode: "stack", title: { text: `Deliveries of ${pesc(nodesShown[0])} by buyer and month (t)`, font: { size: 14 } },
        updatemenus: [{ buttons, x: 0, y: 1.18, xanchor: "left", showactive: true }],
        xaxis: { type: "category", title: { text: "month" } }, yaxis: { title: { text: "t" }, gridcolor: "#eef1f4" },
        legend: { orientation: "v", x: 1.02, font: { size: 11 } }, margin: { l: 64, r: 10, t: 70, b: 48 }, height: 560,
      }));
    } else {
      if (window.Plotly) window.Plotly.purge($("dl-chart"));
      clear($("dl-chart")).append(el("p", { className: "muted" }, "Nothing to deliver in this window."));
    }
    const tb = clear($("dl-buyers").tBodies[0]);
    for (const b of r.buyers || []) {
      tb.append(el("tr", null, el("td", { className: "wrap" }, b.name || b.buyer_id, el("span", { className: "sub mono" }, b.buyer_id)),
        td(b.node || nodeOf.get(b.buyer_id) || DASH), td(num(b.demand_t, 0), "r"), td(num(b.delivered_t, 0), "r"), td(pct(b.share_met, 0), "r")));
    }
    if (!(r.buyers || []).length) emptyRow(tb, 5, "No buyer planned.");
    const tt = clear($("dl-totals").tBodies[0]);
    for (const t of r.totals || []) tt.append(el("tr", null, td(t.receiving_country), td(t.node), td(num(t.tonnes, 0), "r")));
    if (!(r.totals || []).length) emptyRow(tt, 3, "Nothing delivered in this window.");
    const tn = clear($("dl-not").tBodies[0]);
    for (const p of r.not_supplying || []) tn.append(el("tr", null, el("td", { className: "mono" }, p.project_id), td(p.reason)));
    const tu = clear($("dl-unplanned").tBodies[0]);
    for (const b of r.buyers_not_planned || []) tu.append(el("tr", null, el("td", { className: "mono" }, b.buyer_id), td(b.reason)));
  }

  // ------------------------------------------------------------------------------------------- matches
  async function runMatch(ev) {
    ev.preventDefault();
    const params = {};
    const asOf = $("mt-asof").value.trim();
    if (asOf) params.as_of = asOf;
    await startRun("match", params, $("mt-run-status"), showMatch, $("mt-run"));
  }

  async function showMatch(r) {
    const tbody = clear($("mt-table").tBodies[0]);
    for (const m of r.matches || []) {
      tbody.append(el("tr", null,
        el("td", { className: "wrap" }, m.project || m.project_id, el("span", { className: "sub mono" }, m.project_id)),
        el("td", { className: "wrap" }, m.buyer || m.buyer_id, el("span", { className: "sub mono" }, m.buyer_id)),
        td(m.node), td(num(m.offer_t_per_year, 0), "r"), td(num(m.need_t_per_year, 0), "r"), td(num(m.score, 3), "r"),
        el("td", { className: "wrap small" }, m.reason || DASH)));
    }
    if (!(r.matches || []).length) emptyRow(tbody, 7, "No match.");
    const un = clear($("mt-unmatched").tBodies[0]);
    for (const u of r.unmatched_needs || []) un.append(el("tr", null, el("td", null, u.buyer || u.buyer_id, el("span", { className: "sub mono" }, u.buyer_id)), td(u.reason)));
  }

  // ------------------------------------------------------------------------------------------- respond to an event
  async function loadRespond() {
    fillNodeSelect($("rs-node"), await nodes());
    const ga = [...$("rs-node").options].find((o) => o.value === "gallium|refine");
    if (ga) $("rs-node").value = ga.value;
  }

  async function runRespond(ev) {
    ev.preventDefault();
    const [commodity, stage] = ($("rs-node").value || "|").split("|");
    const restrictors = $("rs-restrictors").value.split(",").map((x) => x.trim().toUpperCase()).filter(Boolean);
    if (!commodity || !restrictors.length) {
      showMsg($("respond-msg"), "Choose a node and name at least one restricting country (ISO3).", "error");
      return;
    }
    showMsg($("respond-msg"), "", null);
    const targets = [$("rs-targets").value];
    const regime = $("rs-regime").value;
    const scenario = {
      id: `respond.${commodity}.${stage}.${Date.now().toString(36)}`,
      title: `${restrictors.join(", ")} ${regime} on ${commodity}/${stage} to ${targets.join(", ")}`,
      commodity, stage, restrictors, targets, regime,
      duration_months: intVal("rs-duration", 6), start_month: intVal("rs-start", 1),
    };
    $("rs-result").hidden = true;
    await startRun("respond", { draws: intVal("rs-draws", 500), scenario }, $("rs-run-status"), showRespond, $("rs-run"));
  }

  function showRespond(result, run) {
    const ev = (result.events || [])[0];
    if (!ev) return;
    $("rs-result").hidden = false;
    const bloc = ev.impact.find((r) => r.perspective === "BLOC");
    $("rs-headline").textContent = `${ev.title}: ${ev.duration_months} months. ` + (bloc
      ? `Expected consumer loss to the participants ${usd(bloc.expected_loss_usd)} (CVaR 95 % ${usd(bloc.cvar95_usd)}); price peaks at x${bloc.peak_price_ratio_p50.toFixed(2)} (95th percentile x${bloc.peak_price_ratio_p95.toFixed(2)}).`
      : "");
    const tb = clear($("rs-impact").tBodies[0]);
    for (const r of ev.impact) {
      tb.append(el("tr", null, td(r.perspective), td(usd(r.expected_loss_usd), "r"), td(usd(r.cvar95_usd), "r"),
        td(isNum(r.shortfall_t) ? r.shortfall_t.toLocaleString("en-US", { maximumFractionDigits: 0 }) : DASH, "r"),
        td(`x${r.peak_price_ratio_p50.toFixed(2)} (x${r.peak_price_ratio_p95.toFixed(2)})`, "r")));
    }
    const ul = clear($("rs-alternatives"));
    if (!ev.alternatives.length) ul.append(el("li", null, "No participant or like-minded country produces at this stage."));
    for (const a of ev.alternatives.slice(0, 8)) {
      ul.append(el("li", null, `${a.country}: ${(100 * a.share_of_world).toFixed(1)} % of world output` +
        (a.spare_t_per_year > 0 ? `, spare ${a.spare_t_per_year.toLocaleString("en-US", { maximumFractionDigits: 0 })} t/yr` : "")));
    }
    const files = clear($("rs-files"));
    for (const f of ["brief.pdf", "brief.html", "brief.json"]) files.append(el("li", null, fileLink(run.id, f)));
  }

  // ------------------------------------------------------------------------------------------- reports, runs, audit
  async function runPlan(ev) {
    ev.preventDefault();
    clear($("pl-files"));
    await startRun("plan", { draws: intVal("pl-draws", 200), top: intVal("pl-top", 25) }, $("pl-run-status"), showPlan, $("pl-run"));
  }

  async function runStudy(ev) {
    ev.preventDefault();
    const file = $("study-file").files[0];
    if (!file) {
      showMsg($("study-msg"), "Choose a zipped study (the folder `critmin study init` writes, or the one downloaded here).", "error");
      return;
    }
    showMsg($("study-msg"), "", null);
    clear($("pl-files"));
    const q = new URLSearchParams({ filename: file.name });
    await startRun("plan", {}, $("pl-run-status"), showPlan, $("study-run"), () => api("POST", `/api/study/plan?${q}`, file));
  }

  function fileLink(runId, name) {
    return el("a", { href: `/api/runs/${runId}/files/${encodeURIComponent(name)}`, download: name, dataset: { file: name } }, name);
  }

  async function showPlan(result, run) {
    const ul = clear($("pl-files"));
    const files = run.files && run.files.length ? run.files : ["plan.pdf", "plan.xlsx", "plan.html", "plan.json"];
    const order = ["plan.pdf", "plan.xlsx", "plan.html", "plan.json"];
    files.sort((a, b) => order.indexOf(a) - order.indexOf(b));
    for (const f of files) ul.append(el("li", null, fileLink(run.id, f)));
    await loadRuns();
  }

  // A finished run's result shown again in its tab: [tab, status box, show function].
  const VIEWS = {
    simulate: ["scenarios", "sim-run-status", (res, run) => showSimulation(res, run)],
    risk: ["risk", "rk-run-status", (res, run) => showRisk(res, run)],
    portfolio: ["portfolio", "pf-run-status", (res, run) => showPortfolio(res, run)],
    stockpile: ["stockpiles", "sp-run-status", (res, run) => showStockpile(res, run)],
    deliver: ["delivery", "dl-run-status", (res, run) => showDeliver(res, run)],
    match: ["matches", "mt-run-status", (res, run) => showMatch(res, run)],
    plan: ["reports", "pl-run-status", (res, run) => showPlan(res, run)],
    respond: ["respond", "rs-run-status", (res, run) => showRespond(res, run)],
  };

  async function openRun(r) {
    const [tab, box, show] = VIEWS[r.kind];
    const res = await api("GET", `/api/runs/${r.id}/result`);
    activate(tab);
    const b = $(box);
    b.runToken = {};
    clear(b);
    b.dataset.status = "done";
    b.dataset.runId = r.id;
    b.append(el("div", { className: "run-line" }, el("span", { className: "run-label" }, `Run ${r.id} (${r.kind})`),
      el("span", { className: "status-done" }, "done"), el("span", { className: "run-msg" }, `started by ${r.user ? `${r.user} (${r.org})` : r.org}, ${when(r.created_at)}`)));
    if (r.kind === "portfolio") $("pf-results").hidden = false;
    await show(res.result, res.run);
  }

  /** What a run was asked for, in a few words: draws, seed, perspective, month, overrides, blocs. */
  function runSummary(p) {
    const bits = [];
    if (p.perspective) bits.push(p.perspective);
    if (p.draws) bits.push(`${p.draws} draws`);
    if (p.seed) bits.push(`seed ${p.seed}`);
    if (p.months) bits.push(`${p.months} months`);
    if (p.as_of) bits.push(`from ${p.as_of}`);
    if (p.scenario_ids && p.scenario_ids.length) bits.push(p.scenario_ids.length === 1 ? p.scenario_ids[0] : `${p.scenario_ids.length} scenarios`);
    if (p.scenario) bits.push(p.scenario.id || "built scenario");
    const n = (p.parameters || []).length;
    if (n) bits.push(`${n} parameter override${n === 1 ? "" : "s"}`);
    if (p.blocs && Object.keys(p.blocs).length) bits.push(`own ${Object.keys(p.blocs).map((b) => b.replace("_", "-")).join(" and ")} list`);
    return bits.join(" \u00b7 ");
  }

  async function loadRuns() {
    const current = latest("runs");
    const page = await api("GET", "/api/runs?limit=100");
    if (!current()) return;
    const tbody = clear($("runs-table").tBodies[0]);
    for (const r of page.items) {
      const files = el("td", null);
      if (r.status === "done") {
        const view = VIEWS[r.kind];
        if (view) {
          files.append(el("button", {
            type: "button", className: "btn btn-small", dataset: { open: r.id }, title: "Show this result in its tab",
            on: { click: guard(() => openRun(r)) },
          }, "Show"), " ");
        }
        files.append(el("a", { href: `/api/runs/${r.id}/result`, target: "_blank", rel: "noopener" }, "JSON"));
        for (const f of r.files || []) files.append(" ", fileLink(r.id, f));
      }
      tbody.append(el("tr", null, td(r.id, "r"), el("td", null, el("span", { className: "run-kind" }, r.kind), el("span", { className: "sub", dataset: { testid: "run-summary" } }, runSummary(r.params || {}))),
        el("td", null, el("span", { className: `status-${r.status}` }, r.status), r.cached_from ? el("span", { className: "sub" }, `reuses run ${r.cached_from}`) : null,
          r.error ? el("span", { className: "sub" }, r.error) : null),
        el("td", null, r.user || r.org, r.user ? el("span", { className: "sub" }, r.org) : null), td(when(r.created_at)), files));
    }
    if (!page.items.length) emptyRow(tbody, 6, "No runs yet.");
  }

  async function loadAudit() {
    const current = latest("audit");
    const page = await api("GET", "/api/audit?limit=300");
    if (!current()) return;
    const tbody = clear($("audit-table").tBodies[0]);
    for (const a of page.items) {
      const detail = JSON.stringify(a.detail || {});
      tbody.append(el("tr", null, td(when(a.at)), td(a.user), td(a.action), td(`${a.target_kind} ${a.target_key}`),
        el("td", { className: "wrap mono", title: detail }, detail.length > 160 ? `${detail.slice(0, 158)}\u2026` : detail)));
    }
    if (!page.items.length) emptyRow(tbody, 5, "No entries.");
  }

  // ------------------------------------------------------------------------------------------- register import
  async function importProjects(ev) {
    ev.preventDefault();
    const msg = $("project-import-msg");
    const file = $("project-import-file").files[0];
    if (!file) {
      showMsg(msg, "Choose a file first.", "error");
      return;
    }
    const btn = $("project-import");
    btn.disabled = true;
    try {
      const q = new URLSearchParams({ filename: file.name, confidential: $("project-import-confidential").checked ? "true" : "false" });
      const r = await api("POST", `/api/projects/import?${q}`, file);
      showMsg(msg, `${r.file}: ${r.projects} projects read; ${r.created} created, ${r.updated} updated, ${r.unchanged} unchanged.`, "ok");
      $("project-import-file").value = "";
      await refreshProjects();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      // each problem on its own line: the register reader names sheet, cell and field
      const list = el("ul", { className: "problems" }, ...(err.problems || []).slice(0, 50).map((p) => el("li", null, p.message)));
      showMsg(msg, el("div", null, el("strong", null, err.detail || errorText(err)), list), "error");
    } finally {
      btn.disabled = false;
    }
  }

  // ------------------------------------------------------------------------------------------- account
  async function loadAccount() {
    $("password-username").value = state.user ? state.user.email : "";
    const current = latest("account");
    const people = await api("GET", "/api/users");
    if (!current()) return;
    const tbody = clear($("colleagues-table").tBodies[0]);
    for (const u of people) tbody.append(el("tr", null, td(u.email), td(u.role), td(u.active ? "yes" : "no"), td(when(u.created_at))));
  }

  async function changePassword(ev) {
    ev.preventDefault();
    const msg = $("password-msg");
    const fresh = $("password-new").value;
    if (fresh !== $("password-repeat").value) {
      showMsg(msg, "The two new passwords differ.", "error");
      return;
    }
    const btn = $("password-submit");
    btn.disabled = true;
    try {
      const r = await api("POST", "/api/auth/password", { current_password: $("password-current").value, new_password: fresh });
      for (const id of ["password-current", "password-new", "password-repeat"]) $(id).value = "";
      const n = r.other_sessions_ended;
      showMsg(msg, `Password changed; ${n} other session${n === 1 ? "" : "s"} ended.`, "ok");
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      showMsg(msg, err instanceof ApiError && err.status === 403 ? "The current password is wrong." : errorText(err), "error");
    } finally {
      btn.disabled = false;
    }
  }

  // ------------------------------------------------------------------------------------------- wiring
  function wire() {
    $("login-form").addEventListener("submit", onLogin);
    $("logout-button").addEventListener("click", onLogout);
    for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => activate(b.dataset.tab));

    const refresh = guard(refreshPriority);
    $("priority-method").addEventListener("change", refresh);
    $("priority-perspective").addEventListener("change", refresh);
    $("priority-top").addEventListener("change", refresh);
    $("map-node").addEventListener("change", guard(drawMap));
    $("chain-select").addEventListener("change", guard(drawSankey));

    $("scenario-search-form").addEventListener("submit", (ev) => { ev.preventDefault(); guard(searchLibrary)(); });
    $("scenario-family").addEventListener("change", guard(searchLibrary));
    $("respond-form").addEventListener("submit", guard(runRespond, $("respond-msg")));
    $("scenario-form").addEventListener("submit", (ev) => ev.preventDefault());
    $("sb-save").addEventListener("click", guard(saveScenario, $("scenario-form-msg")));
    $("sb-run").addEventListener("click", () => {
      const s = builtScenario();
      if (!s.restrictors.length) {
        showMsg($("scenario-form-msg"), "Name at least one restricting country (ISO3).", "error");
        return;
      }
      showMsg($("scenario-form-msg"), "", null);
      runSimulation({ scenario: s });
    });
    $("sim-run").addEventListener("click", () => {
      if (!state.selectedScenarios.length) {
        showMsg($("scenario-form-msg"), "Add at least one scenario to simulate (library, saved, or build one and run it now).", "error");
        return;
      }
      showMsg($("scenario-form-msg"), "", null);
      runSimulation({ scenario_ids: [...state.selectedScenarios] });
    });
    $("sim-path-scenario").addEventListener("change", guard(drawPaths));

    $("project-search-form").addEventListener("submit", (ev) => { ev.preventDefault(); guard(refreshProjects)(); });
    $("project-new").addEventListener("click", () => openEditor(null));
    $("project-cancel").addEventListener("click", () => { $("project-editor").hidden = true; state.editing = null; });
    $("project-form").addEventListener("submit", saveProject);
    $("comment-form").addEventListener("submit", guard(addComment, $("comment-msg")));
    $("project-import-form").addEventListener("submit", importProjects);

    $("risk-form").addEventListener("submit", runRisk);
    $("portfolio-form").addEventListener("submit", runPortfolio);
    $("stockpile-form").addEventListener("submit", runStockpile);
    $("deliver-form").addEventListener("submit", runDeliver);
    $("match-form").addEventListener("submit", runMatch);
    $("plan-form").addEventListener("submit", runPlan);
    $("study-form").addEventListener("submit", guard(runStudy, $("study-msg")));
    $("runs-refresh").addEventListener("click", guard(loadRuns));
    $("audit-refresh").addEventListener("click", guard(loadAudit));
    $("password-form").addEventListener("submit", changePassword);
    $("override-form").addEventListener("submit", addOverride);
    $("blocs-form").addEventListener("submit", applyBlocs);
    $("blocs-reset").addEventListener("click", guard(resetBlocs, $("blocs-msg")));
    window.addEventListener("hashchange", () => {
      const t = location.hash.slice(1);
      if (state.user && LOADERS[t]) activate(t);
    });
  }

  async function boot() {
    wire();
    // Without the (readable) CSRF cookie there is no session: show the form without asking the server.
    if (!readCookie("critmin_csrf")) {
      showLogin("");
      return;
    }
    try {
      const me = await api("GET", "/api/auth/me");
      state.csrf = readCookie("critmin_csrf");
      showApp(me);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) showLogin(errorText(err));
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
