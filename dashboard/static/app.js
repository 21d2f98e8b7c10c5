// tankwatch dashboard page: park tree from /api/sources, live values and alarms from /ws/live.
// Plain JS, no framework, no request to any other host. The DOM is built once and then only the
// values that changed are written.
"use strict";

(function () {
  // ----- strings: every text on the page, Chinese first -------------------------------------------
  const STRINGS = {
    "zh-CN": {
      "title": "重大危险源在线监测",
      "langButton": "English",
      "loading": "加载中…",
      "loadError": "无法加载园区配置，重试中…",
      "sources": "危险源",
      "conn.connecting": "连接中…",
      "conn.live": "实时",
      "conn.down": "已断开，重连中…",
      "sum.alarms": "报警",
      "sum.faults": "故障",
      "sum.normal": "正常",
      "activeAlarms": "当前报警",
      "noAlarms": "无当前报警",
      "col.time": "时间",
      "col.priority": "优先级",
      "col.tag": "位号",
      "col.source": "危险源",
      "col.condition": "报警类型",
      "col.value": "报警值",
      "col.limit": "限值",
      "col.state": "状态",
      "state.unack": "未确认",
      "state.ack": "已确认",
      "status.normal": "正常",
      "status.fault": "故障",
      "status.alarm": "报警",
      "status.nodata": "无数据",
      "quality.good": "正常",
      "quality.bad": "坏值",
      "quality.stale": "数据中断",
      "quality.comm-fail": "通讯故障",
      "quality.out-of-range": "超量程",
      "kind.level": "液位",
      "kind.temperature": "温度",
      "kind.pressure": "压力",
      "kind.esd_valve": "切断阀",
      "kind.gas_combustible": "可燃气体",
      "kind.gas_toxic": "有毒气体",
      "kind.oxygen": "氧气",
      "esd.0": "开",
      "esd.1": "已切断",
      "esd.2": "旁路",
      "gas": "气体探测器",
      "gasLevels": "一级/二级",
      "gasDefault": "（国标默认）",
      "unit.storage": "储存单元",
      "unit.production": "生产单元",
      "exposed": "500 m内人数",
      "responsible": "包保责任人",
      "outOfService": "停用",
      "cond.dq": "数据质量",
      "cond.gas1": "一级报警",
      "cond.gas2": "二级报警",
      "cond.o2_low": "缺氧报警",
      "cond.o2_high": "富氧报警",
      "cond.hh": "高高报",
      "cond.h": "高报",
      "cond.l": "低报",
      "cond.ll": "低低报",
      "cond.first": "一级报警",
      "cond.second": "二级报警",
      "cond.low": "低限报警",
      "cond.high": "高限报警",
      "cond.stale": "数据中断",
      "cond.comm": "通讯故障",
      "cond.comm-fail": "通讯故障",
      "cond.bad": "坏值",
      "cond.out-of-range": "超量程",
      "cond.roc": "变化率",
      "cond.flat": "数值冻结",
      "cond.deviation": "液位偏差",
      "cond.esd": "切断阀动作",
      "prio.highest": "紧急",
      "prio.emergency": "紧急",
      "prio.critical": "紧急",
      "prio.urgent": "紧急",
      "prio.high": "高",
      "prio.medium": "中",
      "prio.low": "低",
      "prio.diagnostic": "诊断",
    },
    "en": {
      "title": "Major Hazard Source Monitoring",
      "langButton": "中文",
      "loading": "Loading…",
      "loadError": "Cannot load the park configuration, retrying…",
      "sources": "Hazard sources",
      "conn.connecting": "Connecting…",
      "conn.live": "Live",
      "conn.down": "Disconnected, reconnecting…",
      "sum.alarms": "alarms",
      "sum.faults": "faults",
      "sum.normal": "normal",
      "activeAlarms": "Active alarms",
      "noAlarms": "No active alarms",
      "col.time": "Time",
      "col.priority": "Priority",
      "col.tag": "Tag",
      "col.source": "Hazard source",
      "col.condition": "Condition",
      "col.value": "Value",
      "col.limit": "Limit",
      "col.state": "State",
      "state.unack": "Unacknowledged",
      "state.ack": "Acknowledged",
      "status.normal": "Normal",
      "status.fault": "Fault",
      "status.alarm": "Alarm",
      "status.nodata": "No data",
      "quality.good": "Good",
      "quality.bad": "Bad value",
      "quality.stale": "Stale",
      "quality.comm-fail": "Comm. failure",
      "quality.out-of-range": "Out of range",
      "kind.level": "Level",
      "kind.temperature": "Temp.",
      "kind.pressure": "Pressure",
      "kind.esd_valve": "ESD valve",
      "kind.gas_combustible": "Combustible gas",
      "kind.gas_toxic": "Toxic gas",
      "kind.oxygen": "Oxygen",
      "esd.0": "Open",
      "esd.1": "Tripped",
      "esd.2": "Bypassed",
      "gas": "Gas detectors",
      "gasLevels": "L1/L2",
      "gasDefault": " (standard default)",
      "unit.storage": "Storage unit",
      "unit.production": "Production unit",
      "exposed": "People within 500 m",
      "responsible": "Responsible",
      "outOfService": "Out of service",
      "cond.dq": "Data quality",
      "cond.gas1": "Gas level 1",
      "cond.gas2": "Gas level 2",
      "cond.o2_low": "Oxygen low",
      "cond.o2_high": "Oxygen high",
      "cond.hh": "High-high",
      "cond.h": "High",
      "cond.l": "Low",
      "cond.ll": "Low-low",
      "cond.first": "Gas level 1",
      "cond.second": "Gas level 2",
      "cond.low": "Low limit",
      "cond.high": "High limit",
      "cond.stale": "Stale data",
      "cond.comm": "Comm. failure",
      "cond.comm-fail": "Comm. failure",
      "cond.bad": "Bad value",
      "cond.out-of-range": "Out of range",
      "cond.roc": "Rate of change",
      "cond.flat": "Flat-line",
      "cond.deviation": "Level deviation",
      "cond.esd": "ESD operated",
      "prio.highest": "Emergency",
      "prio.emergency": "Emergency",
      "prio.critical": "Emergency",
      "prio.urgent": "Emergency",
      "prio.high": "High",
      "prio.medium": "Medium",
      "prio.low": "Low",
      "prio.diagnostic": "Diagnostic",
    },
  };
  const LANG_KEY = "tankwatch.lang";
  let lang = readLang();

  // ?lang=en (or zh-CN) in the address wins, so a wall screen can be set up by URL alone.
  function readLang() {
    const asked = new URLSearchParams(window.location.search).get("lang");
    if (asked && STRINGS[asked]) {
      try {
        window.localStorage.setItem(LANG_KEY, asked);
      } catch (_e) {
        // storage may be disabled; the URL still decides for this page
      }
      return asked;
    }
    try {
      const saved = window.localStorage.getItem(LANG_KEY);
      return saved && STRINGS[saved] ? saved : "zh-CN";
    } catch (_e) {
      return "zh-CN"; // storage may be disabled; Chinese is the default
    }
  }

  function t(key, fallback) {
    const table = STRINGS[lang];
    if (key in table) return table[key];
    if (key in STRINGS["zh-CN"]) return STRINGS["zh-CN"][key];
    return fallback === undefined ? key : fallback;
  }

  // ----- small DOM helpers -------------------------------------------------------------------------
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // Write only when different: the cheapest DOM update is the one not made.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function setAttr(node, name, value) {
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function formatClock(date) {
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  function formatAlarmTime(ms) {
    const date = new Date(ms);
    const time = pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
    const today = new Date(serverNow());
    if (date.toDateString() === today.toDateString()) return time;
    return pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " + time;
  }

  function decimalsFor(sensor) {
    const span = sensor.range[1] - sensor.range[0];
    if (span <= 5) return 3;
    if (span <= 50) return 2;
    return 1;
  }

  function formatValue(sensor, value) {
    if (value === null || value === undefined) return "—";
    return value.toFixed(decimalsFor(sensor));
  }

  // ----- state -------------------------------------------------------------------------------------
  let tree = null; // /api/sources
  const sensors = new Map(); // sensor id -> {info, sourceId, reading, views: [update functions]}
  const sourceCards = new Map(); // hazard source id -> {node, sensorIds}
  const sourceNames = new Map();
  const alarms = new Map(); // occurrence id -> alarm
  const alarmRows = new Map(); // occurrence id -> {tr, cells}
  let serverOffsetMs = 0; // server clock minus browser clock, from the snapshot

  function serverNow() {
    return Date.now() + serverOffsetMs;
  }

  // Status of one sensor: alarm (red) beats fault (yellow) beats normal (green); no data is grey.
  const STALE_MIN_MS = 30000;
  function sensorStatus(entry) {
    if (entry.alarmCount > 0) return "alarm";
    const r = entry.reading;
    if (entry.faultCount > 0) return "fault";
    if (!r) return "nodata";
    if (r.quality !== "good") return "fault";
    const staleAfter = Math.max(STALE_MIN_MS, 10 * 1000 * entry.info.expected_period_s);
    if (serverNow() - r.ts_ms > staleAfter) return "fault";
    return "normal";
  }

  const STATUS_RANK = { nodata: 0, normal: 1, fault: 2, alarm: 3 };

  function qualityText(entry) {
    const r = entry.reading;
    if (!r) return t("status.nodata");
    if (r.quality !== "good") return t("quality." + r.quality, r.quality);
    if (sensorStatus(entry) === "fault") return t("quality.stale");
    return "";
  }

  // ----- building the tree -------------------------------------------------------------------------
  function register(info, sourceId) {
    const entry = {
      info: info, sourceId: sourceId, reading: null, alarmCount: 0, faultCount: 0, views: [], status: null,
    };
    sensors.set(info.id, entry);
    return entry;
  }

  function limitsOf(info) {
    const marks = [];
    const lim = info.limits;
    if (lim) {
      for (const key of ["hh", "h", "l", "ll"]) {
        if (lim[key] !== null && lim[key] !== undefined) marks.push([key, lim[key]]);
      }
    }
    return marks;
  }

  function fractionOf(info, value) {
    const low = info.range[0];
    const high = info.range[1];
    return Math.min(1, Math.max(0, (value - low) / (high - low)));
  }

  // A value with its label, coloured by the sensor's status.
  function valueRow(entry, label) {
    const row = el("div", "kv");
    const name = el("span", "k", label);
    const val = el("span", "v");
    const unit = el("span", "u", entry.info.unit === "state" ? "" : entry.info.unit);
    const note = el("span", "q");
    row.append(name, val, unit, note);
    row.title = entry.info.name || entry.info.id;
    entry.views.push(function (status) {
      const r = entry.reading;
      if (entry.info.kind === "esd_valve") {
        const state = r && r.value !== null ? String(Math.round(r.value)) : null;
        setText(val, state === null ? "—" : t("esd." + state, state));
        setAttr(row, "data-esd", state === null ? "" : state);
      } else {
        setText(val, formatValue(entry.info, r ? r.value : null));
      }
      setText(note, qualityText(entry));
      setAttr(row, "data-status", status);
    });
    return row;
  }

  function buildVessel(levelEntry) {
    const vessel = el("div", "vessel");
    const fill = el("div", "fill");
    vessel.append(fill);
    for (const [key, value] of limitsOf(levelEntry.info)) {
      const mark = el("div", "mark mark-" + key);
      mark.style.bottom = (fractionOf(levelEntry.info, value) * 100).toFixed(2) + "%";
      mark.append(el("span", null, key.toUpperCase()));
      mark.title = key.toUpperCase() + " " + value + " " + levelEntry.info.unit;
      vessel.append(mark);
    }
    levelEntry.views.push(function (status) {
      const r = levelEntry.reading;
      const frac = r && r.value !== null ? fractionOf(levelEntry.info, r.value) : 0;
      const height = (frac * 100).toFixed(1) + "%";
      if (fill.style.height !== height) fill.style.height = height;
      setAttr(vessel, "data-status", status);
    });
    return vessel;
  }

  function buildTank(tank, sourceId) {
    const node = el("div", "tank");
    const head = el("div", "tank-head");
    head.append(el("span", "tank-id", tank.id), el("span", "tank-name", tank.name || ""));
    node.append(head);
    node.append(el("div", "tank-chem", tank.chemical + (tank.in_service ? "" : " · " + t("outOfService"))));
    const entries = tank.sensors.map(function (s) { return register(s, sourceId); });
    const levels = entries.filter(function (e) { return e.info.kind === "level"; });
    const body = el("div", "tank-body");
    if (levels.length) body.append(buildVessel(levels[0]));
    const values = el("div", "tank-values");
    for (const entry of entries) {
      let label = t("kind." + entry.info.kind, entry.info.kind);
      if (entry.info.kind === "level" && levels.length > 1) label += " " + entry.info.id.split("-").pop();
      values.append(valueRow(entry, label));
    }
    body.append(values);
    node.append(body);
    return { node: node, sensorIds: entries.map(function (e) { return e.info.id; }) };
  }

  function buildGas(entry) {
    const info = entry.info;
    const chip = el("div", "gas");
    const id = el("div", "gas-id", info.id.split("-").slice(1).join("-") || info.id);
    const val = el("div", "gas-val");
    const unit = el("span", "u", info.unit);
    const levels = el("div", "gas-lim");
    const g = info.gas_limits;
    if (g) {
      const pair = info.kind === "oxygen" ? [g.low, g.high] : [g.first, g.second];
      levels.textContent = pair.map(function (v) { return v === null || v === undefined ? "—" : v; }).join(" / ");
      levels.title = t("gasLevels") + (info.gas_limits_default ? t("gasDefault") : "");
    } else {
      levels.textContent = "— / —";
    }
    chip.title = (info.name || info.id) + (info.gas ? " · " + info.gas : "");
    const num = el("span", "n");
    val.append(num, unit);
    const note = el("div", "q");
    chip.append(id, val, levels, note);
    entry.views.push(function (status) {
      setText(num, formatValue(info, entry.reading ? entry.reading.value : null));
      setText(note, qualityText(entry));
      setAttr(chip, "data-status", status);
    });
    return chip;
  }

  function buildSource(src) {
    sourceNames.set(src.id, src.name);
    const card = el("article", "source");
    const head = el("header", "source-head");
    const dot = el("span", "status-dot");
    const title = el("h3", null, src.name);
    const meta = el("span", "source-meta",
      src.id + " · " + t("unit." + src.unit_kind, src.unit_kind) + " · " + t("exposed") + " " + src.exposed_population);
    head.append(dot, title, meta);
    card.append(head);
    const r = src.responsible;
    card.title = t("responsible") + ": " + [r.principal.name, r.technical.name, r.operational.name].join(" / ");
    const ids = [];
    if (src.tanks.length) {
      const tanks = el("div", "tanks");
      for (const tank of src.tanks) {
        const built = buildTank(tank, src.id);
        tanks.append(built.node);
        ids.push.apply(ids, built.sensorIds);
      }
      card.append(tanks);
    }
    const own = src.sensors.map(function (s) { return register(s, src.id); });
    const gas = own.filter(function (e) { return /^gas_|^oxygen$/.test(e.info.kind); });
    const other = own.filter(function (e) { return gas.indexOf(e) < 0; });
    if (other.length) {
      const list = el("div", "source-values");
      for (const entry of other) list.append(valueRow(entry, entry.info.name || entry.info.id));
      card.append(list);
    }
    if (gas.length) {
      const section = el("div", "gas-section");
      section.append(el("div", "gas-title", t("gas") + " · " + t("gasLevels")));
      const grid = el("div", "gas-grid");
      for (const entry of gas) grid.append(buildGas(entry));
      section.append(grid);
      card.append(section);
    }
    for (const entry of own) ids.push(entry.info.id);
    sourceCards.set(src.id, { node: card, dot: dot, sensorIds: ids });
    return card;
  }

  function buildTree() {
    const root = document.getElementById("sources");
    const keep = [document.getElementById("sources-title")];
    root.replaceChildren.apply(root, keep);
    sensors.clear();
    sourceCards.clear();
    setText(document.getElementById("park-name"), tree.park.name);
    for (const ent of tree.enterprises) {
      const section = el("section", "enterprise");
      section.append(el("h2", "enterprise-name", ent.name));
      const cards = el("div", "source-cards");
      for (const src of ent.hazard_sources) cards.append(buildSource(src));
      section.append(cards);
      root.append(section);
    }
  }

  // ----- applying data -----------------------------------------------------------------------------
  const dirty = new Set();
  let renderQueued = false;

  function markDirty(sensorId) {
    if (!sensors.has(sensorId)) return;
    dirty.add(sensorId);
    if (!renderQueued) {
      renderQueued = true;
      window.requestAnimationFrame(render);
    }
  }

  function render() {
    renderQueued = false;
    const touchedSources = new Set();
    for (const id of dirty) {
      const entry = sensors.get(id);
      if (!entry) continue;
      const status = sensorStatus(entry);
      entry.status = status;
      for (const view of entry.views) view(status);
      touchedSources.add(entry.sourceId);
    }
    dirty.clear();
    for (const id of touchedSources) renderSource(id);
    renderSummary();
  }

  function renderSource(sourceId) {
    const card = sourceCards.get(sourceId);
    if (!card) return;
    let worst = "nodata";
    for (const id of card.sensorIds) {
      const status = sensors.get(id).status || "nodata";
      if (STATUS_RANK[status] > STATUS_RANK[worst]) worst = status;
    }
    setAttr(card.node, "data-status", worst);
  }

  function renderSummary() {
    let alarmsN = 0;
    let faults = 0;
    let normal = 0;
    for (const entry of sensors.values()) {
      if (entry.status === "alarm") alarmsN += 1;
      else if (entry.status === "fault") faults += 1;
      else if (entry.status === "normal") normal += 1;
    }
    setText(document.getElementById("sum-alarms"), String(alarmsN));
    setText(document.getElementById("sum-faults"), String(faults));
    setText(document.getElementById("sum-normal"), String(normal));
  }

  function applyRows(rows) {
    for (const row of rows) {
      const entry = sensors.get(row[0]);
      if (!entry) continue;
      if (entry.reading && entry.reading.ts_ms > row[1]) continue; // never step back in time
      entry.reading = { ts_ms: row[1], value: row[2], quality: row[3] };
      markDirty(row[0]);
    }
  }

  // ----- alarms ------------------------------------------------------------------------------------
  const PRIORITY_RANK = { highest: 0, emergency: 0, critical: 0, urgent: 0, high: 1, medium: 2, low: 3, diagnostic: 4 };

  function priorityRank(p) {
    return p in PRIORITY_RANK ? PRIORITY_RANK[p] : 5;
  }

  // Data-quality alarms make a sensor yellow (fault); process and gas alarms make it red.
  const FAULT_CONDITIONS = /^(dq|stale|comm|comm-fail|bad|out-of-range|flat)$/i;

  function countAlarm(a, delta) {
    const entry = sensors.get(a.sensor_id);
    if (!entry) return;
    const field = FAULT_CONDITIONS.test(String(a.condition)) ? "faultCount" : "alarmCount";
    entry[field] = Math.max(0, entry[field] + delta);
    markDirty(a.sensor_id);
  }

  function putAlarm(a) {
    const old = alarms.get(a.occurrence_id);
    if (old) countAlarm(old, -1);
    countAlarm(a, 1);
    alarms.set(a.occurrence_id, a);
  }

  function dropAlarm(occurrenceId) {
    const old = alarms.get(occurrenceId);
    if (!old) return;
    alarms.delete(occurrenceId);
    countAlarm(old, -1);
  }

  function resetAlarms(list) {
    for (const id of Array.from(alarms.keys())) dropAlarm(id);
    for (const a of list) if (a.state === "active") putAlarm(a);
  }

  // One alarm transition (ISA-18.2): what the active list shows after it.
  function applyEvent(e, fromSnapshot) {
    const existing = alarms.get(e.occurrence_id);
    switch (e.action) {
      case "raised":
      case "realarmed":
      case "unshelved":
      case "unsuppressed":
        // In a snapshot, the stored row already reflects later acknowledgements: keep it.
        if (existing && fromSnapshot) return;
        putAlarm({
          occurrence_id: e.occurrence_id,
          sensor_id: e.sensor_id,
          condition: e.condition,
          priority: e.priority,
          enterprise_id: e.enterprise_id,
          source_id: e.source_id,
          state: "active",
          acknowledged: e.action === "raised" || e.action === "realarmed" ? false : Boolean(existing && existing.acknowledged),
          raised_ms: existing && e.action !== "raised" ? existing.raised_ms : e.ts_ms,
          value: e.value,
          limit: e.limit,
          note: e.note,
        });
        break;
      case "acknowledged":
        if (existing) alarms.set(e.occurrence_id, Object.assign({}, existing, { acknowledged: true }));
        break;
      case "cleared":
      case "reset":
      case "shelved":
      case "suppressed":
        dropAlarm(e.occurrence_id);
        break;
      default:
        break; // comments and escalations do not change the list
    }
  }

  const alarmBody = document.getElementById("alarm-rows");

  function alarmValueText(info, value, unit) {
    if (value === null || value === undefined) return "—";
    if (info.kind === "esd_valve") return t("esd." + Math.round(value), String(value));
    return formatValue(info, value) + unit;
  }

  function alarmCells(a) {
    const entry = sensors.get(a.sensor_id);
    const info = entry ? entry.info : { range: [0, 100], unit: "" };
    const unit = info.unit === "state" ? "" : " " + info.unit;
    return [
      formatAlarmTime(a.raised_ms),
      t("prio." + a.priority, a.priority),
      a.sensor_id,
      sourceNames.get(a.source_id) || a.source_id,
      t("cond." + String(a.condition).toLowerCase(), a.condition),
      alarmValueText(info, a.value, unit),
      a.limit === null || a.limit === undefined ? "—" : a.limit + unit,
      a.acknowledged ? t("state.ack") : t("state.unack"),
    ];
  }

  function renderAlarms() {
    const list = Array.from(alarms.values()).sort(function (a, b) {
      return priorityRank(a.priority) - priorityRank(b.priority) || b.raised_ms - a.raised_ms;
    });
    for (const [id, row] of alarmRows) {
      if (!alarms.has(id)) {
        row.tr.remove();
        alarmRows.delete(id);
      }
    }
    let previous = null;
    for (const a of list) {
      let row = alarmRows.get(a.occurrence_id);
      if (!row) {
        const tr = el("tr");
        const cells = [];
        for (let i = 0; i < 8; i++) {
          const td = el("td", i === 5 || i === 6 ? "num" : null);
          cells.push(td);
          tr.append(td);
        }
        row = { tr: tr, cells: cells };
        alarmRows.set(a.occurrence_id, row);
      }
      const texts = alarmCells(a);
      for (let i = 0; i < 8; i++) setText(row.cells[i], texts[i]);
      setAttr(row.tr, "data-priority", a.priority);
      setAttr(row.tr, "data-ack", a.acknowledged ? "1" : "0");
      // Move a row only when it is not already in place.
      const want = previous ? previous.nextSibling : alarmBody.firstChild;
      if (want !== row.tr) alarmBody.insertBefore(row.tr, want);
      previous = row.tr;
    }
    setText(document.getElementById("alarm-count"), String(list.length));
    document.getElementById("alarm-empty").hidden = list.length > 0;
  }

  // ----- websocket ---------------------------------------------------------------------------------
  let socket = null;
  let retryMs = 1000;

  function setConnection(state) {
    const node = document.getElementById("conn");
    setAttr(node, "data-state", state);
    const key = state === "live" ? "conn.live" : state === "down" ? "conn.down" : "conn.connecting";
    const text = document.getElementById("conn-text");
    text.setAttribute("data-i18n", key);
    setText(text, t(key));
  }

  function onMessage(event) {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (_e) {
      return; // a malformed frame is ignored, the next one carries fresh state
    }
    if (msg.type === "snapshot") {
      if (typeof msg.ts_ms === "number") serverOffsetMs = msg.ts_ms - Date.now();
      applyRows(msg.readings || []);
      resetAlarms(msg.alarms || []);
      for (const e of msg.events || []) applyEvent(e, true);
      renderAlarms();
    } else if (msg.type === "readings") {
      applyRows(msg.rows || []);
    } else if (msg.type === "events") {
      for (const e of msg.events || []) applyEvent(e, false);
      renderAlarms();
    }
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    setConnection("connecting");
    socket = new WebSocket(scheme + window.location.host + "/ws/live");
    socket.onopen = function () {
      retryMs = 1000;
      setConnection("live");
    };
    socket.onmessage = onMessage;
    socket.onclose = function () {
      setConnection("down");
      window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    };
    socket.onerror = function () {
      socket.close();
    };
  }

  // ----- language ----------------------------------------------------------------------------------
  function applyStaticStrings() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) {
      setText(node, t(node.getAttribute("data-i18n")));
    }
    setText(document.getElementById("lang"), t("langButton"));
    document.title = "tankwatch · " + t("title");
  }

  function switchLanguage() {
    lang = lang === "zh-CN" ? "en" : "zh-CN";
    try {
      window.localStorage.setItem(LANG_KEY, lang);
    } catch (_e) {
      // the choice still holds for this page
    }
    applyStaticStrings();
    if (tree) {
      const readings = new Map();
      const counts = new Map();
      for (const [id, entry] of sensors) {
        readings.set(id, entry.reading);
        counts.set(id, [entry.alarmCount, entry.faultCount]);
      }
      buildTree();
      for (const [id, entry] of sensors) {
        entry.reading = readings.get(id) || null;
        const kept = counts.get(id) || [0, 0];
        entry.alarmCount = kept[0];
        entry.faultCount = kept[1];
        markDirty(id);
      }
    }
    renderAlarms();
  }

  // ----- start -------------------------------------------------------------------------------------
  function tick() {
    setText(document.getElementById("clock"), formatClock(new Date(serverNow())));
  }

  // Staleness depends on time passing, not only on messages: re-judge every sensor now and then.
  function recheckStale() {
    for (const id of sensors.keys()) markDirty(id);
  }

  function loadSources() {
    window.fetch("api/sources", { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        tree = data;
        buildTree();
        for (const id of sensors.keys()) markDirty(id);
        connect();
      })
      .catch(function () {
        const notice = document.getElementById("sources-notice");
        if (notice) {
          notice.setAttribute("data-i18n", "loadError");
          setText(notice, t("loadError"));
        }
        window.setTimeout(loadSources, 5000);
      });
  }

  document.getElementById("lang").addEventListener("click", switchLanguage);
  applyStaticStrings();
  tick();
  window.setInterval(tick, 1000);
  window.setInterval(recheckStale, 10000);
  loadSources();
})();
