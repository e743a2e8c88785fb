/* The city command-centre page: loads /v1/aggregates and /v1/targets, listens on /v1/stream
   (Server-Sent Events) and re-renders without reloading. A county row drills down to the county's
   townships (/v1/aggregates/counties/{code}/townships, re-read with every refresh while shown). Charts are plotly.js served by the
   reporting service itself from the installed plotly wheel (/static/plotly.min.js): no CDN. */
(() => {
  "use strict";

  const TOKEN_KEY = "eldercare.dashboard.token";
  const LANG_KEY = "eldercare.dashboard.lang";
  const DEBOUNCE_MS = 250;          // a burst of deltas costs one fetch
  const SAFETY_POLL_MS = 30000;     // also re-read now and then (deltas folded by another replica)
  // The townships are counted on read (a second or so for the largest county): at most this often.
  const TOWNSHIPS_EVERY_MS = 3000;
  const FACILITY_TYPES = ["county_special_care", "street_center", "daycare_center", "township_home",
                          "happiness_home"];
  const CATEGORIES = ["extreme_poverty_centralised", "extreme_poverty_dispersed", "minimum_allowance",
                      "low_income", "severe_disability", "dementia", "family_planning_special"];
  const AGE_BANDS = ["60-64", "65-69", "70-74", "75-79", "80-84", "85-89", "90-94", "95-99", "100+"];
  const ABILITY = ["0", "1", "2", "3", "4", "unassessed"];
  const ABILITY_COLORS = ["#3ddc97", "#a3e05a", "#ffbf47", "#ff8a4c", "#ff5d6c", "#6f82a3"];
  const CATEGORY_COLORS = ["#3cd2ff", "#7a8cff", "#3ddc97", "#ffbf47", "#ff6b7a", "#c98bff", "#5ee0d0"];
  const FONT = getComputedStyle(document.documentElement).getPropertyValue("--font").trim() || "sans-serif";
  const GRID = "rgba(147,172,208,0.14)";

  // Words (zh/en) live in strings.js, loaded first.
  const { I18N, NOTICE } = window.ELDERCARE_STRINGS;

  // ---------------------------------------------------------------- state

  const state = {
    lang: localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh",
    agg: null,              // /v1/aggregates (or the stream's snapshot)
    targets: null,          // /v1/targets
    selected: "city",       // scope of the ability and facility charts
    drill: null,            // the county whose townships are shown instead of the county table
    townships: null,        // /v1/aggregates/counties/{drill}/townships
    townshipsAt: 0,         // when they were read (performance.now())
    streamSeq: null,        // the newest seq the stream told us about
    lastRenderAt: null,
  };
  // What the page did, for people debugging it and for the end-to-end test (no token here).
  const stats = window.__dashboard = { snapshots: 0, deltas: 0, fetches: 0, renders: 0, errors: 0,
                                       connection: "connecting", seq: null };
  let token = null;
  let source = null;
  let stopped = false;

  class AuthError extends Error {
    constructor(status) { super(`HTTP ${status}`); this.status = status; }
  }

  const t = (key) => I18N[state.lang][key] ?? I18N.zh[key] ?? key;
  const $ = (sel, root = document) => root.querySelector(sel);
  const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
  const locale = () => (state.lang === "zh" ? "zh-CN" : "en-US");

  const fmtInt = (n) => (n == null ? "—" : Number(n).toLocaleString(locale()));
  const fmtDec = (x, digits = 1) => (x == null ? "—" : Number(x).toLocaleString(locale(), {
    minimumFractionDigits: digits, maximumFractionDigits: digits }));
  const fmtPct = (x, digits = 1) => (x == null ? "—" : `${(x * 100).toFixed(digits)}%`);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function setFig(node, value, text) {
    if (!node) return;
    node.dataset.value = value == null ? "" : String(value);
    node.textContent = text;
  }

  function setBar(node, progress) {
    if (!node) return;
    const p = progress == null ? 0 : Math.max(0, Math.min(1, progress));
    node.querySelector("i").style.width = `${(p * 100).toFixed(1)}%`;
    node.dataset.level = progress == null ? "none" : progress >= 1 ? "good" : progress >= 0.5 ? "mid" : "warn";
    node.setAttribute("role", "progressbar");
    node.setAttribute("aria-valuemin", "0");
    node.setAttribute("aria-valuemax", "100");
    node.setAttribute("aria-valuenow", String(Math.round(p * 100)));
  }

  function scopeName(code) {
    if (code === "city") return t("city");
    const row = state.targets?.rows.find((r) => r.county_code === code);
    if (!row) return code;
    return state.lang === "zh" ? row.name_zh : row.name_en;
  }

  // ---------------------------------------------------------------- token and notice

  function readToken() {
    const params = new URLSearchParams(location.search);
    const fromUrl = params.get("token");
    if (fromUrl) {
      try { localStorage.setItem(TOKEN_KEY, fromUrl); } catch (e) { /* private mode: keep it in memory */ }
      params.delete("token");
      const rest = params.toString();
      history.replaceState(history.state, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
      return fromUrl;
    }
    try { return localStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function showNotice(kind, status) {
    stopped = true;
    if (source) { source.close(); source = null; }
    const box = $("#notice");
    box.dataset.kind = kind;
    $("[data-testid=notice-zh]").innerHTML = NOTICE[kind].zh.replace("{status}", status ?? "");
    $("[data-testid=notice-en]").innerHTML = NOTICE[kind].en.replace("{status}", status ?? "");
    box.hidden = false;
    setConnection("offline");
  }

  // ---------------------------------------------------------------- data

  async function api(path) {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    if (response.status === 401 || response.status === 403) throw new AuthError(response.status);
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  function failed(error) {
    stats.errors += 1;
    if (error instanceof AuthError) {
      try { localStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
      showNotice("denied", error.status);
      return;
    }
    console.warn("dashboard:", error);
  }

  // Fetches never overlap, so their answers arrive in order; a request made while one is in
  // flight runs once after it (whatever number of deltas came in between).
  let timer = null;
  let inFlight = false;
  let again = false;

  function scheduleRefresh(delay = DEBOUNCE_MS) {
    if (timer !== null || stopped) return;
    timer = setTimeout(() => { timer = null; refresh(); }, delay);
  }

  async function refresh(snapshot = null) {
    if (stopped) return;
    if (inFlight) { again = true; return; }
    inFlight = true;
    try {
      const drill = state.drill;
      const due = drill && (!state.townships || performance.now() - state.townshipsAt >= TOWNSHIPS_EVERY_MS);
      const [agg, targets, townships] = await Promise.all([
        snapshot ? Promise.resolve(snapshot) : api("/v1/aggregates"),
        api("/v1/targets"),
        due ? api(`/v1/aggregates/counties/${encodeURIComponent(drill)}/townships`) : Promise.resolve(null),
      ]);
      stats.fetches += 1;
      state.agg = agg;
      state.targets = targets;
      if (due && drill === state.drill) {  // not if the reader went back meanwhile
        state.townships = townships;
        state.townshipsAt = performance.now();
      } else if (drill && !due) {
        scheduleRefresh(TOWNSHIPS_EVERY_MS);  // the townships' turn comes: read them then
      }
      state.lastRenderAt = new Date();
      render();
    } catch (error) {
      failed(error);
    } finally {
      inFlight = false;
      if (again && !stopped) { again = false; scheduleRefresh(0); }
    }
  }

  // ---------------------------------------------------------------- live stream

  let retryDelay = 1000;

  function setConnection(which) {
    stats.connection = which;
    const node = byTestId("conn-status");
    node.dataset.state = which;
    $(".conn-text", node).textContent = t(`conn_${which}`);
  }

  function connect() {
    if (stopped) return;
    let url = `/v1/stream?access_token=${encodeURIComponent(token)}`;
    if (state.streamSeq != null) url += `&since=${state.streamSeq}`;  // resume after a manual reconnect
    const es = source = new EventSource(url);
    es.addEventListener("open", () => { retryDelay = 1000; setConnection("connected"); });
    es.addEventListener("snapshot", (event) => {
      const snap = JSON.parse(event.data);
      stats.snapshots += 1;
      state.streamSeq = snap.seq;
      setConnection("connected");
      refresh(snap);
    });
    es.addEventListener("delta", (event) => {
      const delta = JSON.parse(event.data);
      stats.deltas += 1;
      state.streamSeq = delta.seq;
      setConnection("connected");
      scheduleRefresh();
    });
    es.addEventListener("error", () => {
      if (stopped) return;
      setConnection("reconnecting");
      if (es.readyState !== EventSource.CLOSED) return;  // the browser retries by itself (Last-Event-ID)
      // The server answered with an error (or not a stream): find out whether the token is the
      // reason, else try again with a growing pause.
      es.close();
      api("/v1/aggregates").then(() => {
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 15000);
      }, (error) => {
        if (error instanceof AuthError) { failed(error); return; }
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 15000);
      });
    });
  }

  // ---------------------------------------------------------------- rendering

  function applyLanguage() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("doc_title");
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    const button = byTestId("lang-switch");
    button.setAttribute("aria-pressed", state.lang === "en" ? "true" : "false");
    setConnection(stats.connection);
    if (state.agg) render();
  }

  function render() {
    if (!state.agg) return;
    stats.renders += 1;
    stats.seq = state.agg.seq;
    state.lastRenderAt = state.lastRenderAt ?? new Date();
    renderHeadlines();
    renderTable();
    renderTownships();
    renderCharts();
    setFig(byTestId("live-seq"), state.agg.seq, String(state.agg.seq));
    const updated = byTestId("live-updated");
    updated.textContent = state.lastRenderAt.toLocaleTimeString(locale(), { hour12: false });
    updated.setAttribute("datetime", state.lastRenderAt.toISOString());
    const asOf = state.targets?.as_of || state.agg.scopes.city.as_of;
    byTestId("as-of").textContent = `${t("as_of")} ${asOf}`;
    // Panels of their own modules (services-panel.js) draw from the same figures.
    document.dispatchEvent(new CustomEvent("dashboard:rendered",
                                           { detail: { agg: state.agg, targets: state.targets, lang: state.lang } }));
  }

  function indicatorsOf(code) {
    return state.targets?.rows.find((r) => r.county_code === code)?.indicators ?? null;
  }

  function renderHeadlines() {
    const city = state.agg.scopes.city;
    const r = city.residents;
    setFig(byTestId("headline-registered"), r.registered, fmtInt(r.registered));
    setFig(byTestId("headline-active"), r.active, fmtInt(r.active));
    setFig(byTestId("headline-elderly"), r.elderly_60plus, fmtInt(r.elderly_60plus));
    setFig(byTestId("headline-advanced-age"), r.advanced_age_80plus, fmtInt(r.advanced_age_80plus));
    byTestId("headline-advanced-age-share").textContent =
      r.elderly_60plus ? fmtPct(r.advanced_age_80plus / r.elderly_60plus) : "—";
    setFig(byTestId("headline-centenarians"), r.centenarians, fmtInt(r.centenarians));

    const row = state.targets?.rows.find((x) => x.county_code === "city");
    const task = row?.elderly_60plus.task_list;
    setFig(byTestId("headline-elderly-task"), task, fmtInt(task));
    const ind = row?.indicators;
    const family = ind?.family_beds;
    setFig(byTestId("headline-family-beds"), family ? family.actual : city.family_beds,
           fmtInt(family ? family.actual : city.family_beds));
    setFig(byTestId("headline-family-beds-target"), family?.target, fmtInt(family?.target));
    setFig(byTestId("headline-family-beds-live"), family?.live_requirement, fmtInt(family?.live_requirement));
    setBar(byTestId("headline-family-beds-bar"), family?.progress);
    byTestId("headline-family-beds-progress").textContent = fmtPct(family?.progress, 0);
    const per1000 = ind?.beds_per_1000;
    setFig(byTestId("headline-beds-per-1000"), per1000?.actual, fmtDec(per1000?.actual));
    byTestId("headline-beds-per-1000-target").textContent = fmtInt(per1000?.target ?? 39);
    setBar(byTestId("headline-beds-per-1000-bar"), per1000?.progress);
    byTestId("headline-beds-per-1000-progress").textContent = fmtPct(per1000?.progress, 0);
    const nursing = ind?.nursing_bed_share;
    setFig(byTestId("headline-nursing-share"), nursing?.actual, fmtPct(nursing?.actual));
    byTestId("headline-nursing-share-target").textContent = `≥ ${fmtPct(nursing?.target ?? 0.55, 0)}`;
    setBar(byTestId("headline-nursing-share-bar"), nursing?.progress);
    byTestId("headline-nursing-share-progress").textContent = fmtPct(nursing?.progress, 0);
    const training = ind?.training;
    const trainees = training ? training.actual : city.training.trainees;
    setFig(byTestId("headline-training"), trainees, fmtInt(trainees));
    setFig(byTestId("headline-training-target"), training?.target, fmtInt(training?.target));
    setBar(byTestId("headline-training-bar"), training?.progress);
    byTestId("headline-training-progress").textContent = fmtPct(training?.progress, 0);
  }

  function progressCell(code, key, actual, target, progress, titleText) {
    const fig = el("span", { class: "fig" },
      el("span", { "data-testid": `county-${code}-${key}`, "data-value": actual ?? "", text: fmtInt(actual) }),
      el("span", { class: "t", text: " / " }),
      el("span", { class: "t", "data-testid": `county-${code}-${key}-target`, "data-value": target ?? "",
                   text: fmtInt(target) }));
    const pct = el("span", { class: "pct", "data-testid": `county-${code}-${key}-progress`,
                             "data-value": progress ?? "", text: progress == null ? "—" : fmtPct(progress, 0) });
    const bar = el("div", { class: "bar" }, el("i"));
    setBar(bar, progress);
    return el("td", { title: titleText ?? null }, el("div", { class: "prog" }, fig, pct, bar));
  }

  function renderTable() {
    const tbody = $("#county-rows");
    const rows = state.targets?.rows ?? [];
    const focused = document.activeElement?.closest?.("tr[data-code]")?.dataset.code;
    const fresh = [];
    for (const row of rows) {
      const code = row.county_code;
      const view = state.agg.scopes[code];
      const ind = row.indicators;
      const name = code === "city" ? t("city") : (state.lang === "zh" ? row.name_zh : row.name_en);
      const tr = el("tr", { "data-code": code, "data-testid": `county-row-${code}`, tabindex: "0",
                            "aria-selected": state.selected === code ? "true" : "false",
                            class: code === "city" ? "city" : null, title: t("select_row") });
      const nameLine = el("div", {}, el("span", { "data-testid": `county-${code}-name`, text: name }));
      if (code !== "city") {
        nameLine.append(el("button", { type: "button", class: "drill-btn", "data-drill": code,
                                       "data-testid": `county-${code}-drill`, title: t("drill_title"),
                                       text: `${t("drill")} ›` }));
      }
      const nameCell = el("th", { scope: "row" }, nameLine);
      const platform = ind.smart_platform;
      if (code !== "city") {
        // A platform counts as live only if it posted within 24 h: say when it was last heard from.
        const heard = platform.last_heard_at;
        const stale = heard && platform.actual < 1;
        nameCell.append(el("div", { class: "task", "data-testid": `county-${code}-platform-heard`,
                                    "data-value": heard ?? "", "data-live": String(platform.actual >= 1) },
          heard ? `${t("platform_heard")} ${new Date(heard).toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB",
                    { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" })}${stale ? t("platform_stale") : ""}`
                : t("platform_never")));
      }
      tr.append(nameCell);
      const registry = row.elderly_60plus.registry;
      const task = row.elderly_60plus.task_list;
      tr.append(el("td", { class: "num" },
        el("div", { "data-testid": `county-${code}-elderly-registry`, "data-value": registry, text: fmtInt(registry) }),
        el("div", { class: "task" }, `${t("task_list_prefix")} `,
           el("span", { "data-testid": `county-${code}-elderly-task`, "data-value": task, text: fmtInt(task) }))));
      const per1000 = ind.beds_per_1000;
      tr.append(el("td", { class: `num ${per1000.actual == null ? "na" : per1000.progress >= 1 ? "ok" : "low"}`,
                           "data-testid": `county-${code}-beds-per-1000`, "data-value": per1000.actual ?? "",
                           text: fmtDec(per1000.actual) }));
      const nursing = ind.nursing_bed_share;
      tr.append(el("td", { class: `num ${nursing.actual == null ? "na" : nursing.progress >= 1 ? "ok" : "low"}`,
                           "data-testid": `county-${code}-nursing-share`, "data-value": nursing.actual ?? "",
                           text: fmtPct(nursing.actual) }));
      const family = ind.family_beds;
      tr.append(progressCell(code, "family-beds", family.actual, family.target, family.progress,
                             `${t("live_requirement")}: ${fmtInt(family.live_requirement)}`));
      let facActual = 0;
      let facTarget = 0;
      const lines = [];
      for (const type of FACILITY_TYPES) {
        const f = ind[`facilities_${type}`];
        facActual += f.actual ?? 0;
        facTarget += f.target ?? 0;
        lines.push(`${t("facility")[type]}: ${fmtInt(f.actual)} / ${fmtInt(f.target)}`);
      }
      tr.append(progressCell(code, "facilities", facActual, facTarget,
                             facTarget ? Math.round((facActual / facTarget) * 10000) / 10000 : null, lines.join("\n")));
      const training = ind.training;
      tr.append(progressCell(code, "training", training.actual, training.target, training.progress));
      const doctor = view?.family_doctor;
      tr.append(el("td", { class: `num ${doctor?.share_65plus == null ? "na" : ""}`,
                           title: doctor ? `${fmtInt(doctor.contracted_65plus)} / ${fmtInt(doctor.elderly_65plus)}` : null,
                           "data-testid": `county-${code}-family-doctor`, "data-value": doctor?.share_65plus ?? "",
                           text: fmtPct(doctor?.share_65plus) }));
      if (!view) tr.dataset.missing = "true";
      fresh.push(tr);
    }
    tbody.replaceChildren(...fresh);
    if (focused) tbody.querySelector(`tr[data-code="${focused}"]`)?.focus();
  }

  function select(code) {
    state.selected = state.selected === code ? "city" : code;
    render();
  }

  // ---------------------------------------------------------------- below the county

  function drillInto(code) {
    state.drill = code;
    state.selected = code;  // the charts beside follow the county
    state.townships = null;
    render();
    byTestId("township-back").focus();
    refresh();
  }

  function drillOut() {
    const code = state.drill;
    state.drill = null;
    state.townships = null;
    render();
    byTestId(`county-${code}-drill`)?.focus();
  }

  function renderTownships() {
    const drilled = state.drill != null;
    byTestId("county-view").hidden = drilled;
    byTestId("township-view").hidden = !drilled;
    if (!drilled) return;
    byTestId("township-county").textContent = scopeName(state.drill);
    const tbody = $("#township-rows");
    const data = state.townships;
    const count = byTestId("township-count");
    if (!data || data.county_code !== state.drill) {
      count.dataset.value = "";
      count.textContent = t("loading");
      tbody.replaceChildren();
      return;
    }
    count.dataset.value = String(data.townships.length);
    count.textContent = `${fmtInt(data.townships.length)} ${t("township_count")}`;
    const num = (testid, value, text) => el("td", { class: "num", "data-testid": testid, "data-value": value ?? "",
                                                    text: text ?? fmtInt(value) });
    tbody.replaceChildren(...data.townships.map((town) => {
      const r = town.residents;
      const doctor = town.family_doctor;
      const fig = el("span", { class: "fig" },
        el("span", { "data-testid": "township-family-doctor-contracted", "data-value": doctor.contracted_65plus,
                     text: fmtInt(doctor.contracted_65plus) }),
        el("span", { class: "t", text: " / " }),
        el("span", { class: "t", "data-testid": "township-family-doctor-elderly", "data-value": doctor.elderly_65plus,
                     text: fmtInt(doctor.elderly_65plus) }));
      const pct = el("span", { class: "pct", "data-testid": "township-family-doctor", "data-value": doctor.share_65plus ?? "",
                               text: fmtPct(doctor.share_65plus, 0) });
      const bar = el("div", { class: "bar" }, el("i"));
      setBar(bar, doctor.share_65plus);
      return el("tr", { "data-testid": "township-row", "data-name": town.name },
        el("th", { scope: "row", "data-testid": "township-name", text: town.name }),
        el("td", { class: "num" },
           el("div", { "data-testid": "township-registered", "data-value": r.registered, text: fmtInt(r.registered) }),
           el("div", { class: "task", "data-testid": "township-active", "data-value": r.active, text: fmtInt(r.active) })),
        num("township-elderly", r.elderly_60plus),
        num("township-advanced-age", r.advanced_age_80plus),
        num("township-family-beds", town.family_beds),
        el("td", {}, el("div", { class: "prog" }, fig, pct, bar)));
    }));
  }

  // ---------------------------------------------------------------- charts (plotly.js)

  const CONFIG = { displayModeBar: false, responsive: true, displaylogo: false };

  function layout(extra = {}) {
    const axis = { gridcolor: GRID, zerolinecolor: GRID, linecolor: GRID, tickfont: { size: 13 },
                   automargin: true, fixedrange: true };
    return {
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: FONT, color: "#cfe0f7", size: 13 },
      margin: { l: 10, r: 14, t: 6, b: 10 },
      showlegend: false, autosize: true, uirevision: "keep",
      hoverlabel: { font: { family: FONT } },
      separators: ".,",
      ...extra,
      xaxis: { ...axis, ...(extra.xaxis || {}) },
      yaxis: { ...axis, ...(extra.yaxis || {}) },
    };
  }

  function plot(id, data, lay, summary) {
    const node = document.getElementById(id);
    node.setAttribute("aria-label", summary);
    if (!window.Plotly) return;  // the chart library did not load: figures and table still work
    window.Plotly.react(node, data, lay, CONFIG);
  }

  function renderCharts() {
    const city = state.agg.scopes.city.residents;

    // Age structure: residents per age band (the API gives no gender per band, so gender is apart).
    const bandLabels = AGE_BANDS.map((b) => b + t("age_suffix"));
    const bandValues = AGE_BANDS.map((b) => city.by_age_band?.[b] ?? 0);
    plot("chart-age", [{
      type: "bar", orientation: "h", y: bandLabels, x: bandValues, text: bandValues.map(fmtInt),
      textposition: "outside", cliponaxis: false,
      marker: { color: AGE_BANDS.map((_, i) => `rgba(60,210,255,${0.45 + i * 0.06})`),
                line: { color: "#3cd2ff", width: 1 } },
      hovertemplate: "%{y}: %{x:,}<extra></extra>",
    }], layout({ bargap: 0.25, xaxis: { showticklabels: false, showgrid: true }, margin: { l: 10, r: 64, t: 4, b: 6 } }),
    `${t("chart_age")}: ${AGE_BANDS.map((b, i) => `${bandLabels[i]} ${bandValues[i]}`).join(", ")}`);

    const genders = ["male", "female"];
    const genderValues = genders.map((g) => city.by_gender?.[g] ?? 0);
    plot("chart-gender", [{
      type: "pie", hole: 0.58, labels: genders.map((g) => t(g)), values: genderValues, sort: false,
      marker: { colors: ["#3cd2ff", "#ff7ab8"], line: { color: "#050d1f", width: 2 } },
      textinfo: "label+percent", textfont: { size: 14 }, insidetextorientation: "horizontal", hovertemplate: "%{label}: %{value:,}<extra></extra>",
    }], layout({ margin: { l: 6, r: 6, t: 6, b: 6 },
                 annotations: [{ text: fmtInt(genderValues[0] + genderValues[1]), showarrow: false,
                                 font: { size: 20, color: "#ffffff" } }] }),
    `${t("chart_gender")}: ${genders.map((g, i) => `${t(g)} ${genderValues[i]}`).join(", ")}`);

    // Categories per county (stacked).
    const counties = (state.targets?.rows ?? []).filter((r) => r.county_code !== "city");
    const names = counties.map((r) => (state.lang === "zh" ? r.name_zh : r.name_en));
    // English names on two lines ("Qingfeng<br>County") so nine of them fit without slanting.
    const ticks = state.lang === "zh" ? names : names.map((n) => n.replace(" ", "<br>"));
    const catTraces = CATEGORIES.map((c, i) => ({
      type: "bar", name: t("category")[c], x: ticks,
      y: counties.map((r) => state.agg.scopes[r.county_code]?.residents.by_category?.[c] ?? 0),
      marker: { color: CATEGORY_COLORS[i] },
      customdata: names, hovertemplate: `%{customdata} · ${t("category")[c]}: %{y:,}<extra></extra>`,
    }));
    plot("chart-categories", catTraces, layout({
      barmode: "stack", bargap: 0.35, showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 12 } },
      margin: { l: 10, r: 10, t: 4, b: 6 }, xaxis: { tickangle: 0 },
    }), `${t("chart_categories")}: ${names.map((n, i) =>
      `${n} ${catTraces.reduce((s, tr) => s + tr.y[i], 0)}`).join(", ")}`);

    // Ability levels and facility coverage of the selected scope.
    const scope = state.agg.scopes[state.selected] ? state.selected : "city";
    const scopeLabel = scopeName(scope);
    byTestId("ability-scope").textContent = scopeLabel;
    byTestId("facility-scope").textContent = scopeLabel;
    for (const tr of document.querySelectorAll("#county-rows tr")) {
      tr.setAttribute("aria-selected", tr.dataset.code === scope ? "true" : "false");
    }
    const ability = state.agg.scopes[scope].residents.by_ability_level ?? {};
    const abilityLabels = ABILITY.map((a) => t("ability")[a]);
    const abilityValues = ABILITY.map((a) => ability[a] ?? 0);
    plot("chart-ability", [{
      type: "bar", x: abilityLabels, y: abilityValues, text: abilityValues.map(fmtInt), textposition: "outside",
      cliponaxis: false, marker: { color: ABILITY_COLORS }, hovertemplate: "%{x}: %{y:,}<extra></extra>",
    }], layout({ bargap: 0.3, yaxis: { showticklabels: false }, margin: { l: 6, r: 6, t: 22, b: 6 } }),
    `${t("chart_ability")} (${scopeLabel}): ${abilityLabels.map((l, i) => `${l} ${abilityValues[i]}`).join(", ")}`);

    const ind = indicatorsOf(scope);
    const facLabels = FACILITY_TYPES.map((f) => t("facility")[f]);
    const facActual = FACILITY_TYPES.map((f) => ind?.[`facilities_${f}`]?.actual
      ?? state.agg.scopes[scope].facilities.by_type[f]?.count ?? 0);
    const facTarget = FACILITY_TYPES.map((f) => ind?.[`facilities_${f}`]?.target ?? 0);
    plot("chart-facilities", [
      { type: "bar", orientation: "h", name: t("target"), y: facLabels, x: facTarget,
        marker: { color: "rgba(147,172,208,0.28)", line: { color: "rgba(147,172,208,0.6)", width: 1 } },
        hovertemplate: `%{y} · ${t("target")}: %{x:,}<extra></extra>` },
      { type: "bar", orientation: "h", name: t("actual"), y: facLabels, x: facActual,
        text: facActual.map((a, i) => `${fmtInt(a)} / ${fmtInt(facTarget[i])}`), textposition: "outside",
        cliponaxis: false, marker: { color: "#3ddc97" },
        hovertemplate: `%{y} · ${t("actual")}: %{x:,}<extra></extra>` },
    ], layout({
      barmode: "overlay", bargap: 0.35, showlegend: true,
      legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" },
      yaxis: { autorange: "reversed" }, xaxis: { showticklabels: false }, margin: { l: 6, r: 60, t: 4, b: 6 },
    }), `${t("chart_facilities")} (${scopeLabel}): ${facLabels.map((l, i) =>
      `${l} ${facActual[i]}/${facTarget[i]}`).join(", ")}`);
  }

  // ---------------------------------------------------------------- start

  function tick() {
    byTestId("clock").textContent = new Date().toLocaleTimeString(locale(), { hour12: false });
  }

  function start() {
    applyLanguage();
    tick();
    setInterval(tick, 1000);
    byTestId("lang-switch").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      try { localStorage.setItem(LANG_KEY, state.lang); } catch (e) { /* ignore */ }
      applyLanguage();
    });
    const tbody = $("#county-rows");
    tbody.addEventListener("click", (event) => {
      const drill = event.target.closest("button[data-drill]");
      if (drill) { drillInto(drill.dataset.drill); return; }
      const tr = event.target.closest("tr[data-code]");
      if (tr) select(tr.dataset.code);
    });
    tbody.addEventListener("keydown", (event) => {
      if (event.target.closest("button")) return;  // the drill button answers Enter itself
      const tr = event.target.closest("tr[data-code]");
      if (tr && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); select(tr.dataset.code); }
    });
    byTestId("township-back").addEventListener("click", drillOut);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && state.drill) drillOut();
    });

    token = readToken();
    if (!token) { showNotice("missing"); return; }
    connect();
    setInterval(() => { if (!document.hidden && stats.connection === "connected") scheduleRefresh(0); },
                SAFETY_POLL_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
