// The duty operator's console: open alerts in the token's scope, arriving live over SSE, newest
// critical first, with a countdown to escalation and the acknowledge / dispatch / resolve actions.
(() => {
  "use strict";
  const TOKEN_KEY = "eldercare.console.token";
  const LANG_KEY = "eldercare.console.lang";
  const I18N = {
    zh: {
      title: "养老紧急呼叫值班台", scope: "值班范围", conn_connecting: "正在连接…", conn_live: "实时",
      conn_error: "连接中断，正在重连", open_critical: "未处理紧急", open_all: "未结束",
      queue: "待处理警情（紧急优先，最新在前）", empty: "暂无未结束的警情", ack: "确认接警", dispatch: "派遣 / 通知",
      send: "派遣", resolve: "处置完毕", timeline: "处置时间线", city: "全市", county: "县区",
      t_emergency_contact: "紧急联系人", t_caregiver: "护理员", t_doctor: "家庭医生", t_ambulance_120: "120 急救",
      r_helped_at_home: "上门协助，老人无碍", r_taken_to_hospital: "送医", r_false_alarm: "误报",
      r_resolved_by_family: "家属已处理", r_device_fixed: "设备已修复", r_other: "其他",
      critical: "紧急", warning: "预警", escalated: "已升级至市级", escalates_in: "升级倒计时",
      resident: "老人", village: "村社区", contact: "紧急联系人", raised: "报警时间", count: "次数",
      status: "状态", open: "未确认", acknowledged: "已确认", resolved: "已处置", level: "层级", rule: "规则版本",
      k_raised: "报警", k_updated: "重复信号", k_acknowledged: "确认接警", k_dispatched: "派遣",
      k_escalated: "升级至市级", k_resolved: "处置完毕", unknown: "（未知）", silenced: "已静默",
      k_notified: "通知紧急联系人", n_sent: "已发出", n_retrying: "未接通，稍后重试", n_failed: "未能联系",
      n_no_contact: "无紧急联系人", c_geofence_exit: "离开安全区域", r_returned_to_zone: "已返回安全区域",
      c_checkin_outside_geofence: "护理员签到不在老人家附近", c_checkout_outside_geofence: "护理员签退不在老人家附近",
      c_caregiver_late: "护理员迟到", c_caregiver_no_show: "护理员未到", c_order_not_accepted: "订单超时未接",
      c_visit_short: "服务时长过短", c_caregiver_double_booked: "护理员同时签到两处",
      need_token: "本页面需要值班员令牌（市级或县区）。请在地址后加上 ?token=…（用 eldercare token --role county --county 410928 生成）。",
      bad_token: "令牌被拒绝（HTTP {status}）：无效、过期或角色不符。",
      c_sos: "SOS 呼救", c_fall: "跌倒", c_no_activity: "长时间无活动", c_visit_overdue: "探访逾期",
      c_heart_rate_high: "心率过高", c_heart_rate_low: "心率过低", c_spo2_low: "血氧过低",
      c_systolic_high: "收缩压过高", c_systolic_low: "收缩压过低", c_diastolic_high: "舒张压过高",
      c_diastolic_low: "舒张压过低", c_temperature_high: "体温过高", c_temperature_low: "体温过低",
      c_device_off_wrist: "手环脱落", c_device_low_battery: "设备低电量", c_device_tamper: "设备被拆",
      c_irregular_heart_rhythm: "心律不齐", c_unknown_resident: "数据异常：未知老人",
      c_unknown_device_code: "数据异常：未知设备代码", c_bad_timestamp: "数据异常：时间戳",
    },
    en: {
      title: "Elder emergency duty console", scope: "Scope", conn_connecting: "Connecting…", conn_live: "Live",
      conn_error: "Disconnected, reconnecting", open_critical: "Open critical", open_all: "Unresolved",
      queue: "Alerts to handle (critical first, newest first)", empty: "No unresolved alerts", ack: "Acknowledge",
      dispatch: "Dispatch / notify", send: "Dispatch", resolve: "Resolve", timeline: "Timeline", city: "City",
      county: "County", t_emergency_contact: "Emergency contact", t_caregiver: "Caregiver", t_doctor: "Family doctor",
      t_ambulance_120: "Ambulance 120", r_helped_at_home: "Helped at home", r_taken_to_hospital: "Taken to hospital",
      r_false_alarm: "False alarm", r_resolved_by_family: "Resolved by family", r_device_fixed: "Device fixed",
      r_other: "Other", critical: "Critical", warning: "Warning", escalated: "Escalated to the city",
      escalates_in: "Escalates in", resident: "Resident", village: "Village", contact: "Emergency contact",
      raised: "Raised", count: "Signals", status: "Status", open: "Open", acknowledged: "Acknowledged",
      resolved: "Resolved", level: "Level", rule: "Rule version", k_raised: "Raised", k_updated: "Repeated signal",
      k_acknowledged: "Acknowledged", k_dispatched: "Dispatched", k_escalated: "Escalated to the city",
      k_resolved: "Resolved", unknown: "(unknown)", silenced: "Silenced",
      k_notified: "Emergency contact notified", n_sent: "sent", n_retrying: "not reached, retrying",
      n_failed: "could not be reached", n_no_contact: "no emergency contact on file",
      c_geofence_exit: "Left the safe zone", r_returned_to_zone: "Back in the safe zone",
      c_checkin_outside_geofence: "Check-in away from the home", c_checkout_outside_geofence: "Check-out away from the home",
      c_caregiver_late: "Caregiver late", c_caregiver_no_show: "Caregiver no-show", c_order_not_accepted: "Order not accepted",
      c_visit_short: "Visit too short", c_caregiver_double_booked: "Caregiver in two places",
      need_token: "This page needs a duty operator's token (city or county): add ?token=… to the address (make one with eldercare token --role county --county 410928).",
      bad_token: "The token was refused (HTTP {status}): invalid, expired or the wrong role.",
      c_sos: "SOS call", c_fall: "Fall", c_no_activity: "No activity", c_visit_overdue: "Visit overdue",
      c_heart_rate_high: "Heart rate high", c_heart_rate_low: "Heart rate low", c_spo2_low: "SpO2 low",
      c_systolic_high: "Systolic high", c_systolic_low: "Systolic low", c_diastolic_high: "Diastolic high",
      c_diastolic_low: "Diastolic low", c_temperature_high: "Temperature high", c_temperature_low: "Temperature low",
      c_device_off_wrist: "Band off wrist", c_device_low_battery: "Low battery", c_device_tamper: "Device tampered",
      c_irregular_heart_rhythm: "Irregular rhythm", c_unknown_resident: "Data quality: unknown resident",
      c_unknown_device_code: "Data quality: unknown device code", c_bad_timestamp: "Data quality: timestamp",
    },
  };
  const state = { lang: localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh", alerts: new Map(), selected: null,
                  seq: 0, source: null };
  let token = null;
  const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);
  const t = (key) => I18N[state.lang][key] ?? I18N.zh[key] ?? key;
  const cause = (c) => I18N[state.lang]["c_" + c] ?? c;
  const hms = (iso) => iso ? new Date(iso).toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false }) : "—";
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]);

  function readToken() {
    const params = new URLSearchParams(location.search);
    const fromUrl = params.get("token");
    if (fromUrl) {
      try { localStorage.setItem(TOKEN_KEY, fromUrl); } catch (e) { /* private mode */ }
      params.delete("token");
      history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
      return fromUrl;
    }
    try { return localStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function notice(key, status) {
    const box = $("notice");
    box.hidden = false;
    $("notice-zh").textContent = I18N.zh[key].replace("{status}", status ?? "");
    $("notice-en").textContent = I18N.en[key].replace("{status}", status ?? "");
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, cache: "no-store",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...(options.headers || {}) } });
    if (response.status === 401 || response.status === 403) {
      notice("bad_token", response.status);
      throw new Error(`HTTP ${response.status}`);
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    return response.json();
  }

  function claims() {
    try { return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))); } catch (e) { return {}; }
  }

  function ordered() {
    const rank = (a) => (a.status === "open" ? 0 : 1) * 2 + (a.severity === "critical" ? 0 : 1);
    return [...state.alerts.values()].filter((a) => a.status !== "resolved")
      .sort((a, b) => (a.severity === b.severity ? 0 : a.severity === "critical" ? -1 : 1)
        || b.raised_at.localeCompare(a.raised_at) || rank(a) - rank(b));
  }

  function countdown(a) {
    if (a.level === "city") return { text: t("escalated"), late: true };
    if (!a.escalate_at || a.status !== "open") return { text: "", late: false };
    const left = Math.round((new Date(a.escalate_at) - Date.now()) / 1000);
    return { text: `${t("escalates_in")} ${Math.max(0, left)}s`, late: left <= 10 };
  }

  function render() {
    const list = $("alerts");
    const items = ordered();
    list.innerHTML = items.map((a) => {
      const cd = countdown(a);
      const who = a.resident ? `${esc(a.resident.name)} · ${esc(a.resident.village ?? "")}` : esc(a.resident_id ?? t("unknown"));
      return `<li class="card ${a.severity} ${a.status} ${a.id === state.selected ? "selected" : ""}" data-testid="alert-card"
        data-alert-id="${a.id}" data-severity="${a.severity}" data-status="${a.status}" data-level="${a.level}">
        <span class="cause">${esc(cause(a.cause))} <span class="badge ${a.severity}">${t(a.severity)}</span>
          ${a.level === "city" ? `<span class="badge city">${t("city")}</span>` : ""}
          ${a.silenced ? `<span class="badge">${t("silenced")}</span>` : ""}</span>
        <span class="countdown ${cd.late ? "late" : ""}" data-testid="countdown">${esc(cd.text)}</span>
        <span class="who">${who} · ${t("contact")}: ${esc(a.resident?.emergency_contact ?? "—")}</span>
        <span class="mono">${hms(a.raised_at)} · ×${a.count} · <span data-testid="card-status">${t(a.status)}</span></span>
      </li>`;
    }).join("");
    $("empty").hidden = items.length > 0;
    const critical = items.filter((a) => a.severity === "critical" && a.status === "open").length;
    $("count-critical").textContent = critical; $("count-critical").dataset.value = critical;
    $("count-open").textContent = items.length; $("count-open").dataset.value = items.length;
  }

  async function showDetail(id) {
    state.selected = id;
    const a = await api(`/v1/alerts/${id}`);
    state.alerts.set(a.id, { ...state.alerts.get(a.id), ...a });
    const panel = $("detail");
    panel.hidden = false;
    panel.dataset.alertId = a.id;
    $("detail-title").textContent = `${cause(a.cause)} · ${t(a.severity)}`;
    const facts = [[t("resident"), a.resident?.name ?? t("unknown")], [t("village"), a.resident ? `${a.resident.township ?? ""} ${a.resident.village ?? ""}` : "—"],
      [t("contact"), a.resident?.emergency_contact ?? "—"], [t("raised"), hms(a.raised_at)], [t("count"), a.count],
      [t("status"), t(a.status)], [t("level"), t(a.level)], [t("rule"), a.rule_version]];
    $("detail-facts").innerHTML = facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("");
    $("timeline").innerHTML = a.timeline.map((s) => `<li data-testid="timeline-step" data-kind="${s.kind}">
      <time class="mono" datetime="${s.at}">${hms(s.at)}</time>${esc(t("k_" + s.kind))}${s.actor ? " · " + esc(s.actor) : ""}${s.kind === "notified" && s.data
        ? " · " + esc(s.data.contact) + " · " + esc(t("n_" + s.data.outcome)) : ""}</li>`).join("");
    $("ack-button").disabled = a.status !== "open";
    $("dispatch-button").disabled = a.status === "resolved";
    $("resolve-button").disabled = a.status === "resolved";
    render();
  }

  async function act(action) {
    const id = state.selected;
    if (!id) return;
    let body = {};
    if (action === "dispatch") {
      const targets = [...document.querySelectorAll(".dispatch input:checked")].map((i) => i.value);
      if (!targets.length) return;
      body = { targets };
    } else if (action === "resolve") {
      body = { resolution: $("resolution").value };
    }
    const a = await api(`/v1/alerts/${id}/${action}`, { method: "POST", body: JSON.stringify(body),
      headers: { "Idempotency-Key": `${id}:${action}:${Date.now()}` } });
    state.alerts.set(a.id, a);
    await showDetail(id);
  }

  function connect() {
    const conn = $("conn-status");
    const url = `/v1/alerts/stream?access_token=${encodeURIComponent(token)}&since=${state.seq}`;
    const source = new EventSource(url);
    state.source = source;
    const onStep = (event) => {
      const frame = JSON.parse(event.data);
      state.seq = Math.max(state.seq, frame.seq);
      state.alerts.set(frame.alert.id, frame.alert);
      render();
      if (frame.alert.id === state.selected) showDetail(frame.alert.id).catch(() => {});
    };
    for (const kind of ["raised", "updated", "acknowledged", "dispatched", "escalated", "resolved", "notified"]) {
      source.addEventListener(kind, onStep);
    }
    source.addEventListener("ready", () => { conn.dataset.state = "live"; conn.querySelector(".conn-text").textContent = t("conn_live"); });
    source.onerror = () => { conn.dataset.state = "error"; conn.querySelector(".conn-text").textContent = t("conn_error"); };
  }

  function applyLang() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    const c = claims();
    $("scope").textContent = c.role === "county" ? `${t("county")} ${c.county}` : t("city");
    render();
    if (state.selected) showDetail(state.selected).catch(() => {});
  }

  async function start() {
    token = readToken();
    $("lang-switch").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      try { localStorage.setItem(LANG_KEY, state.lang); } catch (e) { /* ignore */ }
      applyLang();
    });
    setInterval(() => { $("clock").textContent = hms(new Date().toISOString()); render(); }, 1000);
    if (!token) { notice("need_token"); return; }
    applyLang();
    $("alerts").addEventListener("click", (e) => {
      const card = e.target.closest("[data-alert-id]");
      if (card) showDetail(card.dataset.alertId).catch(console.error);
    });
    for (const button of document.querySelectorAll("[data-action]")) {
      button.addEventListener("click", () => act(button.dataset.action).catch(console.error));
    }
    const page = await api("/v1/alerts?status=open&status=acknowledged&limit=500");
    for (const a of page.items) state.alerts.set(a.id, a);
    state.seq = page.stream_seq;
    render();
    connect();
  }

  document.addEventListener("DOMContentLoaded", () => start().catch(console.error));
})();
