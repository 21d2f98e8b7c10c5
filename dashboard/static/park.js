// 园区监管 — the park regulator: an SVG map drawn from the site file's coordinates (no tiles) coloured by
// grade, the enterprise list, and the escalation inbox, compliance, credibility, evidence and GB 18218 pages.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const setText = tw.setText;
  const setAttr = tw.setAttr;

  const GRADE_RANK = { red: 0, yellow: 1, green: 2, unknown: 3 };
  const FETCHED_PANES = ["compliance", "credibility", "evidence", "hazard", "uplink"];
  let grades = new Map(); // subject id (enterprise or hazard source) -> {colour, reasons}
  let gradesFromApi = false;
  let gradesSeen = false; // the first answer sets the baseline; later changes to red raise the banner
  let compliance = new Map(); // hazard source id -> {compliant, gaps}
  let online = new Map(); // enterprise id -> online rate (0..1)
  let selected = null; // enterprise id shown in the detail panel
  let sub = "overview";
  let timer = null;
  tw.parkPanes = {}; // further sub-tabs: name → render(), registered by their own scripts (commitments.js)

  // Text of a bilingual record (text_zh / text_en) in the page's language.
  function bilingual(item, stem) {
    const zh = item[stem + "_zh"];
    const en = item[stem + "_en"];
    return tw.lang === "en" ? en || zh : zh || en;
  }

  // ----- grades ------------------------------------------------------------------------------------
  function colourOf(item) {
    const c = item.colour || item.color || item.grade || item.level_colour;
    return typeof c === "string" ? c.toLowerCase() : null;
  }

  function subjectOf(item) {
    return item.subject_id || item.source_id || item.enterprise_id || item.id || null;
  }

  function reasonsOf(item) {
    const r = item.reasons || item.reason || [];
    return (Array.isArray(r) ? r : [r]).map(function (x) {
      if (typeof x === "string") return x;
      return bilingual(x, "text") || x.text || x.message || x.rule_id || JSON.stringify(x);
    });
  }

  // Every object in the answer that names a subject and a colour is a grade, whatever the envelope.
  function collectGrades(data, out) {
    if (Array.isArray(data)) {
      for (const item of data) collectGrades(item, out);
    } else if (data && typeof data === "object") {
      const colour = colourOf(data);
      const subject = subjectOf(data);
      if (subject && colour && GRADE_RANK[colour] !== undefined) out.set(subject, { colour: colour, reasons: reasonsOf(data) });
      for (const key in data) if (data[key] && typeof data[key] === "object") collectGrades(data[key], out);
    }
    return out;
  }

  function setGrades(next) {
    const newlyRed = [];
    if (gradesSeen) {
      for (const [id, g] of next) {
        const before = grades.get(id);
        if (g.colour === "red" && (!before || before.colour !== "red")) newlyRed.push(id);
      }
    }
    gradesSeen = true;
    grades = next;
    if (newlyRed.length) redBanner(newlyRed);
    renderOverview();
  }

  // Without the grading API the map still says something: colours from the alarms the page sees.
  function gradesFromAlarms() {
    const out = new Map();
    if (!tw.tree) return out;
    for (const ent of tw.tree.enterprises) {
      let worst = "green";
      for (const src of ent.hazard_sources) {
        let colour = "green";
        for (const a of tw.alarms.values()) {
          if (a.source_id !== src.id || a.state === "shelved") continue;
          const c = tw.isFault(a) || !tw.isLoud(a.priority) ? "yellow" : "red";
          if (GRADE_RANK[c] < GRADE_RANK[colour]) colour = c;
        }
        out.set(src.id, { colour: colour, reasons: [] });
        if (GRADE_RANK[colour] < GRADE_RANK[worst]) worst = colour;
      }
      out.set(ent.id, { colour: worst, reasons: [] });
    }
    return out;
  }

  function loadGrades() {
    const noteNode = document.getElementById("grades-note");
    if (!tw.has("/api/grades", "get")) {
      gradesFromApi = false;
      noteNode.hidden = false;
      setText(noteNode, t("grade.unavailable"));
      grades = gradesFromAlarms();
      renderOverview();
      return Promise.resolve();
    }
    return tw.api("GET", "/api/grades").then(function (data) {
      gradesFromApi = true;
      noteNode.hidden = true;
      setGrades(collectGrades(data, new Map()));
    }).catch(function (err) {
      // 503: the grading stage is not running in this process; colour from alarms meanwhile
      gradesFromApi = false;
      grades = gradesFromAlarms();
      noteNode.hidden = false;
      setText(noteNode, (err.status === 503 || err.status === 404 ? t("grade.unavailable") : t("apiError")) +
        (err.detail ? " (" + err.detail + ")" : ""));
      renderOverview();
    });
  }

  function gradeOf(id) {
    const g = grades.get(id);
    return g ? g.colour : "unknown";
  }

  let redIds = []; // what the grade banner shows, to say it again in another language

  function redBanner(ids) {
    redIds = ids;
    const names = ids.map(function (id) {
      const src = tw.sourceInfo.get(id);
      if (src) return src.enterprise.name + " · " + src.source.name;
      const ent = tw.tree && tw.tree.enterprises.find(function (e) { return e.id === id; });
      return ent ? ent.name : id;
    });
    const reasons = ids.map(function (id) { return (grades.get(id) || { reasons: [] }).reasons.join("；"); })
      .filter(Boolean);
    const banner = document.getElementById("grade-banner");
    banner.hidden = false;
    document.getElementById("grade-banner-text").replaceChildren(
      el("span", null, t("banner.grade") + " · "), tw.dataEl("span", null, names.join("、")),
      el("span", null, (reasons.length ? " — " + reasons[0] : "") + " · " + tw.formatTime(tw.serverNow())));
  }

  // ----- compliance and online rate for the list ---------------------------------------------------
  function loadCompliance() {
    if (!tw.has("/api/compliance", "get")) return Promise.resolve(null);
    return tw.api("GET", "/api/compliance").then(function (data) {
      const next = new Map();
      const rows = Array.isArray(data) ? data : data.sources || data.items || data.hazard_sources || [];
      for (const r of rows) {
        const id = r.source_id || r.hazard_source_id || r.id;
        if (!id) continue;
        const gaps = r.gaps || r.findings || [];
        next.set(id, { compliant: r.compliant !== undefined ? Boolean(r.compliant) : !gaps.length, gaps: gaps,
          applicable: r.applicable !== false, why: r.not_applicable_reason || "", raw: r });
      }
      compliance = next;
      // online rates may ride along (per enterprise or per source)
      const rates = new Map();
      const ents = Array.isArray(data) ? [] : data.enterprises || [];
      for (const e of ents) {
        const v = e.online_rate_24h ?? e.online_rate ?? null;
        if (typeof v === "number") rates.set(e.enterprise_id || e.id, v);
      }
      if (rates.size) online = rates;
      return data;
    }).catch(function () { return null; });
  }

  function credibilityPath() {
    return tw.findPath(/credib/, "get");
  }

  function loadOnline() {
    const path = credibilityPath();
    if (!path || /\{/.test(path)) return Promise.resolve(null);
    return tw.api("GET", path).then(function (data) {
      const rates = new Map();
      const ents = Array.isArray(data) ? data : data.enterprises || [];
      for (const e of ents) {
        const v = e.online_rate_24h ?? e.online_rate ?? (e.h24 && e.h24.online_rate) ?? null;
        if (typeof v === "number") rates.set(e.enterprise_id || e.id, v);
      }
      if (rates.size) online = rates;
      return data;
    }).catch(function () { return null; });
  }

  // ----- map (map.js) ------------------------------------------------------------------------------
  let mapLayers = null; // GET /api/map: tiles, plan image, zones
  let mapBuilt = false;

  function buildMap() {
    const loadLayers = tw.has("/api/map", "get") ? tw.api("GET", "/api/map").catch(function () { return null; })
      : Promise.resolve(null);
    return loadLayers.then(function (layers) {
      mapLayers = layers;
      if (layers && layers.tiles_problem) {
        const noteNode = document.getElementById("grades-note");
        noteNode.hidden = false;
        setText(noteNode, t("map.noTiles") + ": " + layers.tiles_problem);
      }
      tw.parkMap.build(tw.tree, layers);
      mapBuilt = true;
      renderOverview();
    });
  }

  // ----- overview: map colours, list, detail -------------------------------------------------------
  function alarmCounts() {
    const counts = new Map();
    for (const a of tw.alarms.values()) {
      if (a.state === "shelved") continue;
      counts.set(a.enterprise_id, (counts.get(a.enterprise_id) || 0) + 1);
      counts.set(a.source_id, (counts.get(a.source_id) || 0) + 1);
    }
    return counts;
  }

  function entCompliance(ent) {
    let known = false;
    let gaps = 0;
    for (const src of ent.hazard_sources) {
      const c = compliance.get(src.id);
      if (!c) continue;
      known = true;
      if (!c.compliant) gaps += c.gaps.length || 1;
    }
    return known ? (gaps ? t("gaps") + " " + gaps : t("compliant")) : "—";
  }

  function renderOverview() {
    if (!tw.tree) return;
    if (!gradesFromApi) grades = gradesFromAlarms();
    if (mapBuilt) tw.parkMap.setGrades(gradeOf);
    const counts = { red: 0, yellow: 0, green: 0 };
    for (const ent of tw.tree.enterprises) {
      for (const src of ent.hazard_sources) {
        const g = gradeOf(src.id);
        if (g in counts) counts[g] += 1;
      }
    }
    const box = document.getElementById("grade-counts");
    box.replaceChildren();
    for (const c of ["red", "yellow", "green"]) {
      const pill = el("span", "pill grade-pill");
      pill.setAttribute("data-grade", c);
      pill.append(el("b", null, String(counts[c])), el("span", null, " " + t("grade." + c)));
      box.append(pill);
    }
    const alarmsBy = alarmCounts();
    const ents = tw.tree.enterprises.slice().sort(function (a, b) {
      return GRADE_RANK[gradeOf(a.id)] - GRADE_RANK[gradeOf(b.id)] || (alarmsBy.get(b.id) || 0) - (alarmsBy.get(a.id) || 0);
    });
    const body = document.getElementById("ent-rows");
    body.replaceChildren();
    for (const ent of ents) {
      const tr = el("tr");
      tr.setAttribute("data-enterprise", ent.id);
      tr.setAttribute("data-grade", gradeOf(ent.id));
      if (ent.id === selected) tr.setAttribute("aria-selected", "true");
      const grade = el("td", "grade-cell");
      grade.append(el("span", "grade-chip", t("grade." + gradeOf(ent.id))));
      const rate = online.get(ent.id);
      tr.append(tw.dataEl("td", null, ent.name), grade, el("td", "num", String(alarmsBy.get(ent.id) || 0)),
        el("td", "num", rate === undefined ? "—" : tw.percent(rate)), el("td", null, entCompliance(ent)));
      tr.addEventListener("click", function () { select(ent.id); });
      body.append(tr);
    }
    renderDetail();
  }

  function select(id) {
    selected = id;
    tw.parkMap.select(id);
    renderOverview();
  }
  tw.parkMap.onSelect = select;
  tw.parkMap.rebuild = function () {
    tw.parkMap.build(tw.tree, mapLayers);
    renderOverview();
  };

  function liveSummary(src) {
    const parts = [];
    const ids = [];
    for (const tank of src.tanks) for (const s of tank.sensors) ids.push(s.id);
    for (const s of src.sensors) ids.push(s.id);
    let faults = 0;
    let alarmsN = 0;
    for (const id of ids) {
      const e = tw.sensors.get(id);
      if (!e) continue;
      if (e.status === "fault") faults += 1;
      if (e.status === "alarm") alarmsN += 1;
    }
    for (const tank of src.tanks) {
      const level = tank.sensors.find(function (s) { return s.kind === "level"; });
      const e = level && tw.sensors.get(level.id);
      if (e && e.reading && typeof e.reading.value === "number") {
        parts.push(tank.id + " " + (e.reading.value / (tank.height_m || 1) * 100).toFixed(0) + "%");
      }
      const esd = tank.sensors.find(function (s) { return s.kind === "esd_valve"; });
      const x = esd && tw.sensors.get(esd.id);
      if (x && x.reading && x.reading.value >= 1) parts.push(tank.id + " " + t("esd." + Math.round(x.reading.value)));
    }
    let gasMax = null;
    for (const s of src.sensors) {
      const e = tw.sensors.get(s.id);
      if (s.kind === "gas_combustible" && e && e.reading && typeof e.reading.value === "number") {
        gasMax = gasMax === null ? e.reading.value : Math.max(gasMax, e.reading.value);
      }
    }
    if (gasMax !== null) parts.push("max " + gasMax.toFixed(1) + " %LEL");
    return { text: parts.join(" · "), faults: faults, alarms: alarmsN };
  }

  function renderDetail() {
    const box = document.getElementById("ent-detail");
    const ent = selected && tw.tree.enterprises.find(function (e) { return e.id === selected; });
    if (!ent) {
      box.replaceChildren(el("p", "notice", t("park.pickEnterprise")));
      return;
    }
    box.replaceChildren();
    const head = el("div", "detail-head");
    head.append(tw.dataEl("h3", null, ent.name));
    const chip = el("span", "grade-chip", t("grade." + gradeOf(ent.id)));
    chip.setAttribute("data-grade", gradeOf(ent.id));
    head.append(chip);
    const link = el("a", "tool", t("park.openControl"));
    link.href = "#/control/" + encodeURIComponent(ent.id);
    head.append(link);
    box.append(head);
    for (const src of ent.hazard_sources) {
      const card = el("div", "detail-source");
      card.setAttribute("data-source", src.id);
      card.setAttribute("data-grade", gradeOf(src.id));
      const h = el("div", "detail-source-head");
      const a = tw.dataEl("a", null, src.id + " " + src.name);
      a.href = "#/control/" + encodeURIComponent(ent.id) + "/" + encodeURIComponent(src.id);
      h.append(el("span", "grade-dot"), a, el("span", "grade-chip", t("grade." + gradeOf(src.id))));
      card.append(h);
      const live = liveSummary(src);
      card.append(el("div", "detail-live", t("park.liveValues") + ": " + (live.text || "—") + " · " +
        t("status.alarm") + " " + live.alarms + " · " + t("status.fault") + " " + live.faults));
      const g = grades.get(src.id);
      const reasons = el("ul", "reasons");
      for (const r of (g && g.reasons.length ? g.reasons : [t("park.noReasons")])) reasons.append(el("li", null, r));
      card.append(el("div", "detail-label", t("park.reasons")), reasons);
      const c = compliance.get(src.id);
      if (c && !c.compliant) {
        const gaps = el("ul", "gaps");
        for (const gap of c.gaps) gaps.append(el("li", null, gapText(gap)));
        card.append(el("div", "detail-label", t("gaps")), gaps);
      }
      box.append(card);
    }
  }

  function gapText(gap) {
    if (typeof gap === "string") return gap;
    return [gap.tank_id || gap.sensor_id || "", bilingual(gap, "text") || gap.detail || gap.message || gap.rule || ""]
      .filter(Boolean).join(" · ") || JSON.stringify(gap);
  }

  // ----- generic tables for pages whose APIs are newest --------------------------------------------
  function cell(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
    if (typeof value === "boolean") return t(value ? "yes" : "no");
    if (Array.isArray(value)) return value.map(function (v) { return typeof v === "object" ? gapText(v) : String(v); }).join("；");
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  // ``dataColumns``: the column names whose cells show data (names, what people typed), as they are in either language.
  function table(rows, dataColumns) {
    const tableNode = el("table", "grid-table");
    const cols = Object.keys(rows[0] || {});
    const head = el("tr");
    for (const c of cols) head.append(el("th", null, c));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    for (const r of rows) {
      const tr = el("tr");
      for (const c of cols) tr.append(((dataColumns || []).indexOf(c) >= 0 ? tw.dataEl : el)("td", null, cell(r[c])));
      body.append(tr);
    }
    tableNode.append(thead, body);
    return tableNode;
  }

  function rowsOf(data, keys) {
    if (Array.isArray(data)) return data;
    for (const k of keys) if (data && Array.isArray(data[k])) return data[k];
    return [];
  }

  // ----- escalation inbox (engineer E: dashboard/routers/escalations.py) ----------------------------
  let escalations = [];
  const CLOSE_REASONS = ["handled", "false_alarm", "equipment_fault", "maintenance", "test"];
  const MY_LEVEL = { park_regulator: "park", county_regulator: "county" };

  function escPath(action) {
    return tw.findPath(new RegExp("/escalations/\\{[^}]+\\}/" + action + "$"), "post");
  }

  function escId(e) {
    return e.escalation_id || e.id;
  }

  function loadEscalations() {
    const pane = document.getElementById("park-escalations");
    if (!tw.has("/api/escalations", "get")) {
      tw.note(pane, "esc.unavailable");
      return Promise.resolve();
    }
    // the server sorts (open first, then priority, then age) and folds a device's comm-loss into one row
    return tw.api("GET", "/api/escalations?state=all&limit=200&fold=device").then(function (data) {
      escalations = rowsOf(data, ["escalations", "items"]);
      renderEscalations();
    }).catch(function (err) {
      tw.note(pane, err.status === 404 ? "esc.unavailable" : "apiError", err.message);
    });
  }

  // An action on a row applies to every escalation folded into it (a device's comm-loss on each of its points).
  function escAction(e, action, body) {
    if (!tw.connected) return Promise.reject(new Error(t("live.offline")));
    const path = escPath(action);
    const ids = [escId(e)].concat((e.folded || []).map(function (f) { return f.escalation_id; }));
    return Promise.all(ids.map(function (id) {
      return tw.api("POST", path.replace(/\{[^}]+\}/, encodeURIComponent(id)), body || {});
    })).then(loadEscalations);
  }

  // The countdown cell: the next step's deadline while the escalation climbs, else why there is none.
  const ENDED = ["closed", "resolved", "lapsed"];

  function slaText(e) {
    if (ENDED.indexOf(e.status) >= 0) return "—";
    if (typeof e.next_step_ms === "number") return null; // ticking (tickSla)
    if (e.paused) return t("esc.paused");
    if (e.inhibited_by) return t("esc.inhibited");
    if (e.overdue && e.at_top) return t("esc.overdue") + " · " + t("esc.top");
    if (e.overdue) return t("esc.overdue");
    return t("esc.answered");
  }

  // The status in the page's words, then the latest disposition in the regulator's own (data).
  function statusCell(e) {
    const td = el("td", "esc-status", t("esc.st." + e.status, e.status));
    const last = e.dispositions && e.dispositions.length ? e.dispositions[e.dispositions.length - 1] : null;
    if (last) td.append(el("span", null, " · "), tw.dataEl("span", null, last.text));
    return td;
  }

  // What the alarm itself is doing now, in the regulator's words.
  function alarmStateText(e) {
    if (e.alarm_active) return "";
    if (e.latched) return t("esc.latched");
    const answered = e.status !== "open";
    return answered ? t("esc.returned") : t("esc.returnedUnack");
  }

  // The caller's own organisation level has signed (regulators) or acknowledged (enterprise) already.
  function doneAtMyLevel(e) {
    const role = tw.user ? String(tw.user.role) : "";
    const level = MY_LEVEL[role] || "enterprise";
    const mine = (e.levels || []).find(function (l) { return l.level === level; });
    return Boolean(mine && mine.acknowledged_ms);
  }

  // The escalation has reached the caller's organisation level (a regulator can sign only from then on).
  function notifiedAtMyLevel(e) {
    const role = tw.user ? String(tw.user.role) : "";
    const level = MY_LEVEL[role] || "enterprise";
    const mine = (e.levels || []).find(function (l) { return l.level === level; });
    return Boolean(mine && mine.notified_ms);
  }

  function renderEscalations() {
    const pane = document.getElementById("park-escalations");
    const count = document.getElementById("esc-count");
    const open = escalations.filter(function (e) { return ENDED.indexOf(e.status) < 0; });
    count.hidden = !open.length;
    setText(count, String(open.length));
    if (!escalations.length) {
      tw.note(pane, "esc.empty");
      return;
    }
    const role = tw.user ? String(tw.user.role) : "";
    const regulator = Boolean(MY_LEVEL[role]);
    const enterprise = tw.hasRole(["operator", "safety_manager"]);
    const tableNode = el("table", "grid-table esc-table");
    const head = el("tr");
    for (const k of ["esc.opened", "col.enterprise", "col.source", "esc.alarm", "esc.step", "esc.status", "esc.sla", "col.actions"]) {
      head.append(el("th", null, t(k)));
    }
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    for (const e of escalations) {
      const tr = el("tr");
      tr.setAttribute("data-escalation", escId(e));
      tr.setAttribute("data-status", e.status);
      tr.setAttribute("data-enterprise", e.enterprise_id);
      tr.setAttribute("data-priority", e.priority);
      tr.setAttribute("data-condition", e.condition);
      tr.setAttribute("data-alarm", e.alarm_active ? "active" : e.latched ? "latched" : "returned");
      if (e.folded && e.folded.length) tr.setAttribute("data-folded", String(e.folded.length));
      const sla = el("td", "num sla");
      const why = slaText(e);
      if (why === null) sla.setAttribute("data-deadline", String(e.next_step_ms));
      else setText(sla, why);
      const state = alarmStateText(e);
      const alarmText = [e.sensor_id, t("cond." + String(e.condition).toLowerCase(), e.condition),
        t("prio." + e.priority, e.priority), state ? "(" + state + ")" : ""].filter(Boolean).join(" ");
      const alarmCell = el("td", null, alarmText);
      if (e.folded && e.folded.length) {
        const more = el("div", "esc-folded", tw.tf("esc.folded", { n: e.folded.length }));
        more.title = e.folded.map(function (f) { return f.sensor_id; }).join(", ");
        alarmCell.append(more);
      }
      const actions = el("td", "actions");
      const add = function (action, key, fields) {
        if (!escPath(action)) return;
        const b = tw.button(key, function () {
          if (!fields) {
            b.disabled = true;
            escAction(e, action, {}).catch(function (err) {
              b.disabled = !tw.connected;
              tw.ask({ title: t("act.failed"), sub: err.message, fields: [] });
            });
            return;
          }
          tw.ask({ title: t(key), sub: alarmText, fields: fields,
            submit: function (v) { return escAction(e, action, v); } });
        }, "small");
        b.setAttribute("data-action", action);
        b.disabled = !tw.connected;
        if (!tw.connected) b.title = t("live.offline");
        actions.append(b);
      };
      if (ENDED.indexOf(e.status) < 0) {
        const done = doneAtMyLevel(e);
        if (regulator && !done && notifiedAtMyLevel(e)) add("sign", "esc.sign");
        if (enterprise && !done) add("ack", "act.ack");
        if (regulator && done) {
          add("dispose", "esc.dispose", [{ name: "text", labelKey: "esc.disposition", type: "textarea", required: true }]);
          if (!e.closed_ms) {
            add("close", "esc.close", [
              { name: "reason", labelKey: "esc.reasonCode",
                options: CLOSE_REASONS.map(function (r) { return [r, t("esc.reason." + r, r)]; }) },
              { name: "note", labelKey: "act.note" },
            ]);
          }
        }
      }
      const stepText = e.step ? t("esc.stepName." + e.step, e.step) : "—";
      tr.append(
        el("td", null, tw.formatTime(e.raised_ms)),
        tw.dataEl("td", null, e.enterprise_name || e.enterprise_id),
        tw.dataEl("td", null, e.source_name || e.source_id),
        alarmCell,
        el("td", null, stepText + (e.next_step ? " → " + t("esc.stepName." + e.next_step, e.next_step) : "")),
        statusCell(e), sla, actions);
      body.append(tr);
    }
    tableNode.append(thead, body);
    pane.replaceChildren(tableNode);
    tickSla();
  }

  function tickSla() {
    for (const td of document.querySelectorAll("#park-escalations td.sla[data-deadline]")) {
      const left = Number(td.getAttribute("data-deadline")) - tw.serverNow();
      setText(td, left < 0 ? t("esc.overdue") + " " + tw.formatDuration(-left) : tw.formatDuration(left));
      setAttr(td, "data-overdue", left < 0 ? "1" : "0");
    }
  }

  // ----- compliance, credibility, evidence, GB 18218 -----------------------------------------------
  function renderCompliance() {
    const pane = document.getElementById("park-compliance");
    if (!tw.has("/api/compliance", "get")) {
      tw.note(pane, "compliance.unavailable");
      return;
    }
    loadCompliance().then(function (data) {
      if (!data) {
        tw.note(pane, "apiError");
        return;
      }
      pane.replaceChildren();
      for (const ent of tw.tree.enterprises) {
        const section = el("section", "page-section");
        section.append(tw.dataEl("h3", null, ent.name));
        for (const src of ent.hazard_sources) {
          const c = compliance.get(src.id);
          const row = el("div", "compliance-row");
          row.setAttribute("data-source", src.id);
          row.setAttribute("data-compliant", c ? (c.compliant ? "1" : "0") : "");
          const verdict = !c ? "—" : !c.applicable ? t("compliance.na") : c.compliant ? t("compliant")
            : t("gaps") + " " + (c.gaps.length || "");
          row.append(tw.dataEl("b", null, src.id + " " + src.name), el("span", "grade-chip", verdict));
          if (c && !c.applicable && c.why) row.append(el("span", "notice", tw.bilingualText(c.why)));
          if (c && c.raw && c.raw.basis) row.append(el("span", "notice", tw.bilingualText(c.raw.basis)));
          if (c && c.gaps.length) {
            const ul = el("ul", "gaps");
            for (const gap of c.gaps) ul.append(el("li", null, gapText(gap)));
            row.append(ul);
          }
          section.append(row);
        }
        pane.append(section);
      }
    });
  }

  // Data credibility (GET /api/credibility): per enterprise, then the sensors that fell short, worst first; and
  // the messages lost on the way in (the broker's drop counter, device counter gaps, a full inbox).
  const CRED_SENSOR_ROWS = 50;

  function pct(v) {
    return typeof v === "number" ? (v * 100).toFixed(1) + " %" : "—";
  }

  // ``dataColumns``: the columns that show data (names), kept as they are in either language.
  function credTable(headKeys, rows, dataColumns) {
    const tableNode = el("table", "grid-table cred-table");
    const head = el("tr");
    for (const k of headKeys) head.append(el("th", null, t(k)));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    for (const cells of rows) {
      const tr = el("tr");
      cells.forEach(function (c, i) {
        const make = (dataColumns || []).indexOf(i) >= 0 ? tw.dataEl : el;
        tr.append(make("td", typeof c === "number" ? "num" : null, cell(c)));
      });
      body.append(tr);
    }
    tableNode.append(thead, body);
    return tableNode;
  }

  function renderCredibility() {
    const pane = document.getElementById("park-credibility");
    if (!tw.has("/api/credibility", "get")) {
      tw.note(pane, "credibility.unavailable");
      return;
    }
    tw.api("GET", "/api/credibility?window=24h").then(function (data) {
      pane.replaceChildren();
      const names = new Map(tw.tree.enterprises.map(function (e) { return [e.id, e.name]; }));
      if (data.start_ms > data.ts_ms - 24 * 3600 * 1000) {
        pane.append(el("p", "notice", tw.tf("cred.since", { time: tw.formatTime(data.start_ms) })));
      }
      pane.append(el("h3", null, t("cred.enterprises")), credTable(
        ["col.enterprise", "cred.sensors", "cred.online", "cred.completeness", "cred.interruptions", "cred.flat",
          "cred.lost"],
        data.enterprises.map(function (e) {
          return [names.get(e.enterprise_id) || e.enterprise_id, e.sensors, pct(e.online_rate), pct(e.completeness),
            e.interruption_count, e.flat_line_count, e.messages_lost === null ? "—" : e.messages_lost];
        }), [0]));
      if (data.ingest_loss) {
        const loss = data.ingest_loss;
        const causes = Object.keys(loss.by_cause).filter(function (k) { return loss.by_cause[k]; })
          .map(function (k) { return t("cred.cause." + k, k) + " " + loss.by_cause[k]; });
        const line = el("p", loss.total ? "notice cred-loss" : "notice", tw.tf("cred.ingestLoss", { n: loss.total }) +
          (causes.length ? " (" + causes.join(", ") + ")" : ""));
        line.setAttribute("data-lost", String(loss.total));
        pane.append(line);
      }
      const short = data.sensors.filter(function (x) {
        return x.online_rate < 1 || x.interruption_count > 0 || x.flat_line_count > 0;
      }).sort(function (a, b) { return a.online_rate - b.online_rate || b.interruption_count - a.interruption_count; });
      pane.append(el("h3", null, tw.tf("cred.shortSensors", { n: short.length })));
      if (short.length) {
        pane.append(credTable(
          ["col.tag", "col.enterprise", "cred.online", "cred.completeness", "cred.interruptions", "cred.longest",
            "cred.flat"],
          short.slice(0, CRED_SENSOR_ROWS).map(function (x) {
            return [x.sensor_id, names.get(x.enterprise_id) || x.enterprise_id, pct(x.online_rate),
              pct(x.completeness), x.interruption_count, tw.formatDuration(x.longest_interruption_ms),
              x.flat_line_count];
          }), [1]));
      }
    }).catch(function (err) {
      tw.note(pane, err.status === 404 ? "credibility.unavailable" : "apiError", err.message);
    });
  }

  function renderEvidence() {
    const pane = document.getElementById("park-evidence");
    if (!tw.has("/api/evidence", "get")) {
      tw.note(pane, "evidence.unavailable");
      return;
    }
    tw.api("GET", "/api/evidence").then(function (data) {
      const rows = rowsOf(data, ["evidence", "entries", "items"]);
      if (!rows.length) {
        tw.note(pane, "evidence.empty");
        return;
      }
      const shown = rows.map(function (r) {
        const src = tw.sourceInfo.get(r.source_id);
        return {
          [t("evidence.found")]: tw.formatTime(r.found_ms),
          [t("evidence.kind")]: t("evidence.kind." + r.kind, r.kind),
          [t("col.source")]: (src ? src.enterprise.name + " · " + src.source.name : r.source_id) +
            (r.sensor_id ? " · " + r.sensor_id : ""),
          [t("evidence.range")]: tw.formatTime(r.start_ms) + " – " + (r.end_ms ? tw.formatTime(r.end_ms) : "…"),
          [t("evidence.summary")]: bilingual(r, "summary") || "",
          [t("evidence.data")]: r.data,
        };
      });
      pane.replaceChildren(table(shown, [t("col.source"), t("evidence.data")]));
    }).catch(function (err) {
      tw.note(pane, err.status === 404 ? "evidence.unavailable" : "apiError", err.message);
    });
  }

  // Upload quality of the lower-tier enterprises (GET /api/uplink/status): connected or interrupted, last message,
  // online rate over 24 h and 30 days, upload delay, resends, and what the last heartbeat said.
  function renderUplink() {
    const pane = document.getElementById("park-uplink");
    tw.api("GET", "/api/uplink/status").then(function (data) {
      if (!data.enterprises.length) {
        tw.note(pane, "uplink.empty");
        return;
      }
      const names = new Map(tw.tree.enterprises.map(function (e) { return [e.id, e.name]; }));
      const rows = data.enterprises.map(function (e) {
        return [names.get(e.enterprise_id) || e.enterprise_id || "—", e.company_code,
          t(e.connected ? "uplink.connected" : "uplink.interrupted"), tw.formatTime(e.last_message_ms),
          pct(e.online_rate_24h), pct(e.online_rate_30d),
          e.upload_delay_ms === null ? "—" : (e.upload_delay_ms / 1000).toFixed(1) + " s", e.resent_24h,
          e.points_total === null ? "—" : e.points_online + " / " + e.points_total, e.backlog ?? "—"];
      });
      const grid = credTable(["col.enterprise", "uplink.company", "uplink.state", "uplink.last", "uplink.online24h",
        "uplink.online30d", "uplink.delay", "uplink.resent", "uplink.points", "uplink.backlog"], rows, [0, 1]);
      data.enterprises.forEach(function (e, i) {
        grid.tBodies[0].rows[i].setAttribute("data-connected", e.connected ? "1" : "0");
      });
      pane.replaceChildren(el("h3", null, t("uplink.title")), grid);
    }).catch(function (err) {
      tw.note(pane, err.status === 404 ? "uplink.unavailable" : err.status === 403 ? "uplink.forbidden" : "apiError",
        err.message);
    });
  }

  function assessmentBlock(titleKey, a) {
    const box = el("div", "assessment");
    box.append(el("div", "detail-label", t(titleKey) + (a && a.complete === false ? " · " + t("hazard.incomplete") : "")));
    if (!a) {
      box.append(el("p", "notice", "—"));
      return box;
    }
    const level = a.level === null || a.level === undefined ? t("hazard.notMajor")
      : tw.lang === "en" || !a.level_zh ? t("hazard.level") + " " + a.level : a.level_zh;
    const s = typeof a.s === "number" ? a.s.toFixed(3) : "—";
    const r = typeof a.r === "number" ? a.r.toFixed(2) : "—";
    const summary = el("div", "assessment-summary", "S = Σq/Q = " + s + " · R = " + r + " · " + level);
    summary.setAttribute("data-level", String(a.level ?? ""));
    box.append(summary);
    const terms = rowsOf(a, ["terms", "chemicals", "contents"]);
    if (terms.length) {
      const rows = terms.map(function (x) {
        return { [t("hazard.chemical")]: (tw.lang === "en" ? x.name_en : x.name_zh) || x.chemical,
          "CAS": x.cas, [t("hazard.q")]: x.q_t, [t("hazard.Q")]: x.critical_t, "β": x.beta, "q/Q": x.ratio };
      });
      box.append(table(rows, [t("hazard.chemical")]));
    }
    return box;
  }

  function renderHazard() {
    const pane = document.getElementById("park-hazard");
    if (!tw.has("/api/sources/{source_id}/hazard", "get")) {
      tw.note(pane, "hazard.unavailable");
      return;
    }
    pane.replaceChildren();
    for (const ent of tw.tree.enterprises) {
      for (const src of ent.hazard_sources) {
        const section = el("section", "page-section hazard-source");
        section.setAttribute("data-source", src.id);
        section.append(tw.dataEl("h3", null, ent.name + " · " + src.id + " " + src.name));
        pane.append(section);
        tw.api("GET", "/api/sources/" + encodeURIComponent(src.id) + "/hazard").then(function (data) {
          section.append(assessmentBlock("hazard.regulatory", data.regulatory || data.design),
            assessmentBlock("hazard.live", data.live || data.dynamic));
        }).catch(function (err) {
          section.append(el("p", "api-note", t(err.status === 404 ? "hazard.unavailable" : "apiError") + " (" + err.message + ")"));
        });
      }
    }
  }

  // ----- view --------------------------------------------------------------------------------------
  function refresh() {
    if (sub === "overview") {
      Promise.all([loadGrades(), loadCompliance(), loadOnline()]).then(renderOverview);
    }
    if (sub === "uplink") renderUplink();
    loadEscalations();
  }

  function showSub(name) {
    const known = ["overview", "escalations"].concat(FETCHED_PANES).indexOf(name) >= 0;
    sub = known || tw.parkPanes[name] ? name : "overview";
    for (const pane of document.querySelectorAll("#view-park .park-pane")) pane.hidden = pane.getAttribute("data-sub") !== sub;
    for (const a of document.querySelectorAll("#park-tabs a")) {
      a.setAttribute("aria-current", a.getAttribute("data-sub") === sub ? "page" : "false");
    }
    if (sub === "compliance") renderCompliance();
    if (sub === "credibility") renderCredibility();
    if (sub === "evidence") renderEvidence();
    if (sub === "hazard") renderHazard();
    if (sub === "uplink") renderUplink();
    if (tw.parkPanes[sub]) tw.parkPanes[sub]();
    // Leaflet measures its box: build the map the first time it is seen, and tell it when it shows again
    if (sub === "overview" && tw.tree) {
      if (!mapBuilt) buildMap();
      else window.requestAnimationFrame(tw.parkMap.resize);
    }
  }

  // The Uplink tab: for regulators and admins of an instance that receives enterprises from a lower tier.
  const UPLINK_ROLES = ["admin", "park_regulator", "county_regulator"];

  tw.on("tree", function () {
    document.querySelector('#park-tabs a[data-sub="uplink"]').hidden = !tw.hasRole(UPLINK_ROLES) ||
      !tw.tree.enterprises.some(function (e) { return e.reported_as; });
    mapBuilt = false;
    if (tw.view === "park" && sub === "overview") buildMap();
    renderOverview();
  });
  tw.on("lang", function () {
    if (!tw.tree) return;
    if (!document.getElementById("grade-banner").hidden && redIds.length) {
      loadGrades().then(function () { redBanner(redIds); }); // the reasons come in the page's language
    }
    renderOverview();
    if (escalations.length) renderEscalations();
    // The panes drawn whole from a fetch each time they are shown (this file's and the routines'): a hidden one
    // is emptied, so it shows nothing in the old language while its next fetch is on its way.
    for (const name of FETCHED_PANES.concat(Object.keys(tw.parkPanes))) {
      if (!(tw.view === "park" && sub === name)) document.getElementById("park-" + name).replaceChildren();
    }
    if (tw.view === "park") showSub(sub);
  });
  tw.on("alarms", function () { if (tw.view === "park" && sub === "overview") renderOverview(); });
  tw.on("tick", tickSla);
  tw.on("connection", function () { if (escalations.length) renderEscalations(); });
  tw.on("message", function (msg) {
    if (msg.type === "grades" || msg.type === "grade") {
      gradesFromApi = true;
      const next = new Map(grades);
      collectGrades(msg.grades || msg.items || msg, next);
      setGrades(next);
    }
  });
  document.getElementById("grade-banner-close").addEventListener("click", function () {
    document.getElementById("grade-banner").hidden = true;
  });

  // Grades are watched from every view: a new red grade raises the banner wherever the user is.
  function watchGrades() {
    if (tw.view !== "park" && tw.has("/api/grades", "get")) loadGrades();
  }
  tw.on("tree", function () {
    loadGrades();
    window.setInterval(watchGrades, 10000);
  });

  tw.views.park = {
    show: function (parts) {
      showSub(parts[0] || "overview");
      refresh();
      if (!timer) timer = window.setInterval(refresh, 5000);
    },
    hide: function () {
      if (timer) window.clearInterval(timer);
      timer = null;
    },
    grades: function () { return grades; },
  };
})();
