/* The services panel: orders (the menu-style service orders) and alert response, per county and the
   city, from the `orders` and `alerts` sections of /v1/aggregates. Its own module: app.js only tells
   it when it rendered ("dashboard:rendered", with the aggregates, the targets and the language), and
   it draws #services-panel with its own words (zh/en). Every figure carries the API's raw value in
   data-value (the end-to-end test compares them). */
(() => {
  "use strict";

  const WORDS = {
    zh: {
      title: "居家养老服务订单与告警响应",
      hint: "点单式服务 · 上门核验（EVV） · 紧急告警",
      orders: "服务订单", alerts: "告警响应",
      placed: "订单数", completion: "完成率", accept: "接单时长中位数", on_time: "准时签到率",
      evv: "上门核验率", evv_target: "目标 100%（美国各州要求 90%）", rating: "满意度",
      subsidy: "补贴支出（政府+集体+社会，元）",
      by_category: "按服务类别",
      raised: "告警数", within60: "60秒内响应", within180: "180秒内响应",
      target60: "目标 97.5%", target180: "目标 99%",
      ack: "响应时长 中位 / P90", resolve: "处置时长 中位 / P90", escalations: "升级", open: "未结",
      col_county: "县区", col_orders: "订单", col_completion: "完成率", col_accept: "接单中位",
      col_on_time: "准时签到", col_evv: "核验率", col_rating: "满意度", col_subsidy: "补贴（元）",
      col_alerts: "告警", col_60: "≤60秒", col_180: "≤180秒", col_ack: "响应 中位/P90",
      col_resolve: "处置 中位/P90", col_escalations: "升级", col_open: "未结",
      city: "濮阳市", seconds: "秒", minutes: "分",
      sources: { government: "政府", collective: "集体", social: "社会", personal: "个人" },
      categories: {},
      none: "暂无",
    },
    en: {
      title: "Home-care service orders and alert response",
      hint: "Menu-style services · visit verification (EVV) · emergency alerts",
      orders: "Service orders", alerts: "Alert response",
      placed: "Orders", completion: "Completion rate", accept: "Median time to accept", on_time: "On-time check-ins",
      evv: "EVV verification rate", evv_target: "Target 100% (US states require 90%)", rating: "Satisfaction",
      subsidy: "Subsidy spend (gov. + collective + social, yuan)",
      by_category: "By service category",
      raised: "Alerts", within60: "Acknowledged within 60 s", within180: "Acknowledged within 180 s",
      target60: "Target 97.5%", target180: "Target 99%",
      ack: "Time to acknowledge, median / p90", resolve: "Time to resolve, median / p90",
      escalations: "Escalations", open: "Open",
      col_county: "County", col_orders: "Orders", col_completion: "Completed", col_accept: "Accept (median)",
      col_on_time: "On time", col_evv: "EVV", col_rating: "Rating", col_subsidy: "Subsidy (yuan)",
      col_alerts: "Alerts", col_60: "≤ 60 s", col_180: "≤ 180 s", col_ack: "Ack median / p90",
      col_resolve: "Resolve median / p90", col_escalations: "Escalated", col_open: "Open",
      city: "Puyang City", seconds: "s", minutes: "min",
      sources: { government: "Gov.", collective: "Coll.", social: "Social", personal: "Personal" },
      categories: { 生活照料: "Daily living", 基础照护: "Basic care", 健康管理: "Health management",
                    探访关爱: "Visiting and care", 精神慰藉: "Emotional support", 委托代办: "Errands",
                    适老化改造: "Home adaptation", 其他: "Other" },
      none: "none yet",
    },
  };
  const SOURCES = ["government", "collective", "social", "personal"];

  let last = null;  // the latest "dashboard:rendered" detail
  const stats = window.__servicesPanel = { renders: 0 };

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

  function render(detail) {
    const root = document.getElementById("services-panel");
    if (!root || !detail?.agg) return;
    const w = WORDS[detail.lang] ?? WORDS.zh;
    const locale = detail.lang === "en" ? "en-US" : "zh-CN";
    const int = (n) => (n == null ? "—" : Number(n).toLocaleString(locale));
    const pct = (x, d = 1) => (x == null ? "—" : `${(x * 100).toFixed(d)}%`);
    const dur = (s) => (s == null ? "—" : s < 120 ? `${Number(s).toFixed(s < 10 ? 1 : 0)}${w.seconds}`
                                                   : `${(s / 60).toFixed(1)}${w.minutes}`);
    const yuan = (fen) => (fen == null ? "—" : (fen / 100).toLocaleString(locale, { maximumFractionDigits: 2 }));
    const fig = (id, value, text, cls = "mono") => el("span", { class: cls, "data-testid": id,
                                                                "data-value": value ?? "", text });
    const pair = (id, a, b) => el("span", { class: "mono" }, fig(`${id}-median`, a, dur(a), ""), " / ",
                                  fig(`${id}-p90`, b, dur(b), ""));
    const scopes = detail.agg.scopes;
    const city = scopes.city;
    if (!city?.orders || !city?.alerts) return;
    const o = city.orders;
    const a = city.alerts;

    const card = (label, node, sub, level) => el("article", { class: "svc-card", "data-level": level ?? null },
      el("h3", { text: label }), el("p", { class: "svc-big" }, node),
      sub == null ? "" : typeof sub === "string" ? el("p", { class: "sub", text: sub }) : sub);
    const level = (x, target) => (x == null ? null : x >= target ? "good" : x >= target - 0.1 ? "mid" : "warn");

    const categories = Object.entries(o.by_category);
    const categoryList = el("p", { class: "sub svc-cats", "data-testid": "svc-headline-by-category" },
      el("span", { class: "svc-label", text: `${w.by_category}: ` }),
      ...(categories.length ? categories.map(([name, n], i) => el("span", {},
        i ? " · " : "", `${w.categories[name] ?? name} `,
        fig(`svc-headline-category-${name}`, n, int(n)))) : [w.none]));
    const spend = el("p", { class: "sub" }, ...SOURCES.flatMap((s, i) => [
      i ? " · " : "", `${w.sources[s]} `, fig(`svc-headline-spend-${s}`, o.subsidy.spend_fen[s], yuan(o.subsidy.spend_fen[s]))]));

    const ordersRow = el("div", { class: "svc-cards" },
      card(w.placed, fig("svc-headline-placed", o.placed, int(o.placed))),
      card(w.completion, fig("svc-headline-completion", o.completion_rate, pct(o.completion_rate))),
      card(w.accept, fig("svc-headline-accept-median", o.accept_seconds_median, dur(o.accept_seconds_median))),
      card(w.on_time, fig("svc-headline-on-time", o.on_time_check_in_share, pct(o.on_time_check_in_share))),
      card(w.evv, fig("svc-headline-evv", o.evv_verification_rate, pct(o.evv_verification_rate)), w.evv_target,
           level(o.evv_verification_rate, 1)),
      card(w.rating, fig("svc-headline-rating", o.rating_mean, o.rating_mean == null ? "—" : `${o.rating_mean} / 5`)),
      card(w.subsidy, fig("svc-headline-subsidy", o.subsidy.subsidy_fen, yuan(o.subsidy.subsidy_fen)), spend));
    const alertsRow = el("div", { class: "svc-cards" },
      card(w.raised, fig("svc-headline-alerts", a.alerts, int(a.alerts))),
      card(w.within60, fig("svc-headline-within-60", a.acked_within_60s, pct(a.acked_within_60s)), w.target60,
           level(a.acked_within_60s, a.targets.acked_within_60s)),
      card(w.within180, fig("svc-headline-within-180", a.acked_within_180s, pct(a.acked_within_180s)), w.target180,
           level(a.acked_within_180s, a.targets.acked_within_180s)),
      card(w.ack, pair("svc-headline-ack", a.ack_seconds_median, a.ack_seconds_p90)),
      card(w.resolve, pair("svc-headline-resolve", a.resolve_seconds_median, a.resolve_seconds_p90)),
      card(w.escalations, fig("svc-headline-escalations", a.escalations, int(a.escalations))),
      card(w.open, fig("svc-headline-open", a.open, int(a.open))));

    // The table: every county the reader may see (in the targets' order), then the city.
    const names = {};
    for (const r of detail.targets?.rows ?? []) names[r.county_code] = detail.lang === "en" ? r.name_en : r.name_zh;
    const codes = [...(detail.targets?.rows ?? []).map((r) => r.county_code).filter((c) => c !== "city" && scopes[c]),
                   "city"];
    const head = el("tr", {}, ...["col_county", "col_orders", "col_completion", "col_accept", "col_on_time", "col_evv",
                                  "col_rating", "col_subsidy", "col_alerts", "col_60", "col_180", "col_ack",
                                  "col_resolve", "col_escalations", "col_open"]
      .map((k, i) => el("th", { scope: "col", class: i ? "num" : null, text: w[k] })));
    const body = el("tbody", { id: "services-rows" });
    for (const code of codes) {
      const s = scopes[code];
      if (!s?.orders) continue;
      const so = s.orders;
      const sa = s.alerts;
      const id = (k) => `svc-${code}-${k}`;
      const td = (node) => el("td", { class: "num" }, node);
      body.append(el("tr", { "data-testid": `svc-row-${code}`, class: code === "city" ? "city" : null },
        el("th", { scope: "row", text: code === "city" ? w.city : (names[code] ?? code) }),
        td(fig(id("placed"), so.placed, int(so.placed))),
        td(fig(id("completion"), so.completion_rate, pct(so.completion_rate))),
        td(fig(id("accept-median"), so.accept_seconds_median, dur(so.accept_seconds_median))),
        td(fig(id("on-time"), so.on_time_check_in_share, pct(so.on_time_check_in_share))),
        td(fig(id("evv"), so.evv_verification_rate, pct(so.evv_verification_rate))),
        td(fig(id("rating"), so.rating_mean, so.rating_mean == null ? "—" : String(so.rating_mean))),
        td(fig(id("subsidy"), so.subsidy.subsidy_fen, yuan(so.subsidy.subsidy_fen))),
        td(fig(id("alerts"), sa.alerts, int(sa.alerts))),
        td(fig(id("within-60"), sa.acked_within_60s, pct(sa.acked_within_60s))),
        td(fig(id("within-180"), sa.acked_within_180s, pct(sa.acked_within_180s))),
        td(pair(id("ack"), sa.ack_seconds_median, sa.ack_seconds_p90)),
        td(pair(id("resolve"), sa.resolve_seconds_median, sa.resolve_seconds_p90)),
        td(fig(id("escalations"), sa.escalations, int(sa.escalations))),
        td(fig(id("open"), sa.open, int(sa.open)))));
    }

    root.replaceChildren(
      el("h2", { id: "h-services" }, el("span", { text: w.title }), el("small", { class: "hint", text: w.hint })),
      el("div", { class: "svc-group" }, el("h3", { class: "svc-head", text: w.orders }), ordersRow, categoryList),
      el("div", { class: "svc-group" }, el("h3", { class: "svc-head", text: w.alerts }), alertsRow),
      el("div", { class: "table-wrap" }, el("table", { class: "counties svc-table", "data-testid": "services-table" },
        el("thead", {}, head), body)));
    root.dataset.seq = String(detail.agg.seq);
    stats.renders += 1;
  }

  document.addEventListener("dashboard:rendered", (event) => { last = event.detail; render(last); });
})();
