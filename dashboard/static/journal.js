// 报警日志 — the alarm journal (occurrences over any range, filtered, exported), the shift hand-over report and,
// for admins and regulators, the audit journal with its chain check. From /api/alarms/journal,
// /api/alarms/shift-report, /api/audit and /api/audit/verify.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const setText = tw.setText;

  const PAGE = 200;
  const SHIFT_MS = 8 * 3600 * 1000;
  const DAY_MS = 24 * 3600 * 1000;
  const PRIORITIES = ["critical", "high", "medium", "low"];
  const CONDITIONS = ["HH", "H", "L", "LL", "GAS2", "GAS1", "O2_HIGH", "O2_LOW", "ROC", "FLAT", "DQ", "FAULT", "COMM"];
  const STATES = ["active", "shelved", "suppressed", "out_of_service", "cleared"];
  const AUDIT_ROLES = ["admin", "park_regulator", "county_regulator"];
  const form = document.getElementById("journal-filters");
  const body = document.getElementById("journal-body");
  const status = document.getElementById("journal-status");
  const more = document.getElementById("journal-more");
  let sub = "alarms";
  let shown = []; // journal rows on the page
  let drawn = null; // what the body shows, {draw, data}: drawn again from its data when the language changes
  const fresh = tw.latestOnly(); // a filter submitted while the view's first load is on its way wins

  // ----- the form ----------------------------------------------------------------------------------
  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function localInput(ms) {
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" +
      pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function options(select, values, label) {
    const keep = select.value;
    select.replaceChildren(el("option", null, t("journal.any")));
    select.firstChild.value = "";
    for (const v of values) {
      const o = el("option", null, label(v));
      o.value = v;
      select.append(o);
    }
    select.value = keep;
  }

  function fillSelects() {
    const ents = tw.tree ? tw.tree.enterprises : [];
    options(form.enterprise, ents.map(function (e) { return e.id; }), function (id) {
      return (ents.find(function (e) { return e.id === id; }) || {}).name || id;
    });
    form.enterprise.translate = false;
    options(form.priority, PRIORITIES, function (p) { return t("prio." + p, p); });
    options(form.condition, CONDITIONS, function (c) { return t("cond." + c.toLowerCase(), c); });
    options(form.state, STATES, function (s) { return t("journal.state." + s, s); });
  }

  function range(defaultMs) {
    const end = form.end.value ? new Date(form.end.value).getTime() : tw.serverNow();
    const start = form.start.value ? new Date(form.start.value).getTime() : end - defaultMs;
    return { start: Math.round(start), end: Math.round(end) };
  }

  function query(extra) {
    const q = new URLSearchParams();
    const r = range(sub === "shift" ? SHIFT_MS : DAY_MS);
    q.set("start", String(r.start));
    q.set("end", String(r.end));
    const fields = sub === "alarms" ? ["enterprise", "priority", "condition", "state", "user"]
      : sub === "shift" ? ["enterprise"] : ["user", "action"];
    for (const name of fields) {
      const v = form[name].value.trim();
      if (v) q.set(sub === "audit" && name === "user" ? "actor" : name, v);
    }
    for (const k in extra || {}) q.set(k, extra[k]);
    return q;
  }

  function showFor() {
    for (const node of form.querySelectorAll("[data-for]")) {
      node.hidden = node.getAttribute("data-for").split(" ").indexOf(sub) < 0;
    }
    document.getElementById("audit-verify").hidden = sub !== "audit" || !tw.hasRole(["admin"]);
    for (const a of document.querySelectorAll("#journal-tabs a")) {
      a.setAttribute("aria-current", a.getAttribute("data-sub") === sub ? "page" : "false");
      if (a.getAttribute("data-sub") === "audit") a.hidden = !tw.hasRole(AUDIT_ROLES);
    }
  }

  function loading(key) {
    status.setAttribute("data-busy", "1");
    setText(status, t(key));
  }

  function done(text) {
    status.removeAttribute("data-busy");
    setText(status, text || "");
  }

  function failed(err) {
    done(t("act.failed") + ": " + err.message);
  }

  // ----- alarms --------------------------------------------------------------------------------------
  const HEAD = ["col.time", "col.enterprise", "col.tagSource", "col.condition", "col.priority", "col.valueLimit",
    "col.state", "journal.ackBy", "journal.closed"];

  function alarmRow(a) {
    const tr = el("tr");
    tr.setAttribute("data-occurrence", a.occurrence_id);
    tr.setAttribute("data-priority", a.priority);
    const tag = el("td");
    tag.append(el("div", "line1", a.sensor_id), tw.dataEl("div", "line2", a.source_name || a.source_id));
    const entry = tw.sensors.get(a.sensor_id);
    const info = entry ? entry.info : { range: [0, 100], unit: "" };
    const unit = info.unit && info.unit !== "state" ? " " + info.unit : "";
    const value = el("td", "num");
    value.append(el("div", "line1", a.value === null ? "—" : tw.formatValue(info, a.value) + unit),
      el("div", "line2", a.limit === null ? "—" : a.limit + unit));
    tr.append(el("td", "mono", tw.formatTime(a.raised_ms)), tw.dataEl("td", null, a.enterprise_name || a.enterprise_id),
      tag, el("td", null, t("cond." + String(a.condition).toLowerCase(), a.condition)),
      el("td", null, t("prio." + a.priority, a.priority)),
      value, el("td", null, t("journal.lifecycle." + a.lifecycle, a.lifecycle)),
      tw.dataEl("td", null, a.acknowledged_by ? a.acknowledged_by + " · " + tw.formatTime(a.acknowledged_ms) : "—"),
      el("td", "mono", a.closed_ms ? tw.formatTime(a.closed_ms) : "—"));
    return tr;
  }

  function table(headKeys, cls) {
    const node = el("table", "grid-table " + (cls || ""));
    const head = el("tr");
    for (const k of headKeys) head.append(el("th", null, t(k)));
    const thead = el("thead");
    thead.append(head);
    node.append(thead, el("tbody"));
    return node;
  }

  // ``data``: the rows loaded so far and how many match.
  function drawAlarms(data) {
    body.replaceChildren(table(HEAD, "journal-table"));
    const rows = body.querySelector("tbody");
    for (const a of data.alarms) rows.append(alarmRow(a));
    more.hidden = data.alarms.length >= data.total;
    done(tw.tf("journal.count", { shown: data.alarms.length, total: data.total }));
  }

  // What a load got is drawn now and again on a language change; a failed load leaves no earlier result
  // on show as if it answered the form.
  function draw(fn, data) {
    drawn = { draw: fn, data: data };
    fn(data);
  }

  function failedLoad(err) {
    drawn = null;
    body.replaceChildren();
    failed(err);
  }

  function loadAlarms(append) {
    const q = query({ limit: String(PAGE), offset: String(append ? shown.length : 0) });
    const only = fresh();
    loading("journal.loading");
    return tw.api("GET", "/api/alarms/journal?" + q.toString()).then(only(function (data) {
      shown = append ? shown.concat(data.alarms) : data.alarms;
      draw(drawAlarms, { alarms: shown, total: data.total });
    })).catch(only(append ? failed : failedLoad));
  }

  // ----- shift report ---------------------------------------------------------------------------------
  // A whole result in one request (no "more"): the shift report, the audit journal.
  function loadWhole(path, drawFn) {
    const only = fresh();
    loading("journal.loading");
    more.hidden = true;
    return tw.api("GET", path).then(only(function (data) { draw(drawFn, data); })).catch(only(failedLoad));
  }

  function loadShift() {
    return loadWhole("/api/alarms/shift-report?" + query().toString(), drawShift);
  }

  // A heading and a table of ``items`` (a row of ``cells(item)`` each), when there are any.
  function tableSection(titleKey, headKeys, items, cells) {
    if (!items.length) return;
    const node = table(headKeys);
    for (const item of items) {
      const tr = el("tr");
      tr.append(...cells(item));
      node.querySelector("tbody").append(tr);
    }
    body.append(el("h3", null, t(titleKey)), node);
  }

  function drawShift(r) {
    body.replaceChildren();
    const facts = el("div", "kpis shift-kpis");
    const tile = function (value, key) {
      const k = el("div", "kpi");
      k.append(el("b", "kpi-value", String(value)), el("span", "kpi-label", t(key)));
      facts.append(k);
    };
    tile(r.raised, "journal.raised");
    for (const p of PRIORITIES) if (r.raised_by_priority[p]) tile(r.raised_by_priority[p], "prio." + p);
    tile(r.still_active.length, "journal.stillActive");
    tile(r.shelved.length, "journal.shelved");
    tile(r.median_ack_s === null ? "—" : tw.formatDuration(r.median_ack_s * 1000), "journal.medianAck");
    body.append(facts);
    const acks = Object.keys(r.acknowledged_by);
    if (acks.length) {
      body.append(el("h3", null, t("journal.ackBy")));
      const list = el("ul", "ack-list");
      for (const who of acks) {
        const li = el("li");
        li.append(tw.dataEl("span", null, who), el("span", null, " · " + r.acknowledged_by[who]));
        list.append(li);
      }
      body.append(list);
    }
    body.append(el("h3", null, t("journal.stillActive")));
    const active = table(HEAD, "journal-table");
    for (const a of r.still_active) active.querySelector("tbody").append(alarmRow(a));
    body.append(active);
    tableSection("journal.shelved", ["col.tag", "col.condition", "shelf.byReason", "shelf.sinceUntil"], r.shelved,
      function (s) {
        return [el("td", null, s.sensor_id), el("td", null, t("cond." + s.condition.toLowerCase(), s.condition)),
          tw.dataEl("td", null, s.shelved_by + " · " + s.reason),
          el("td", "mono", tw.formatTime(s.since_ms) + " – " + tw.formatTime(s.ended_ms || s.until_ms))];
      });
    tableSection("journal.comments", ["col.time", "journal.user", "col.tag", "act.note"], r.comments, function (c) {
      return [el("td", "mono", tw.formatTime(c.ts_ms)), tw.dataEl("td", null, c.user || ""),
        el("td", null, c.sensor_id), tw.dataEl("td", null, c.text || "")];
    });
    done(tw.formatTime(r.start_ms) + " – " + tw.formatTime(r.end_ms));
  }

  // ----- audit -----------------------------------------------------------------------------------------
  function loadAudit() {
    return loadWhole("/api/audit?" + query({ limit: "1000" }).toString(), drawAudit);
  }

  function drawAudit(data) {
    const node = table(["col.time", "journal.user", "journal.action", "journal.target", "col.enterprise",
      "journal.remote", "journal.detail"], "audit-table");
    for (const e of data.entries) {
      const tr = el("tr");
      tr.setAttribute("data-seq", String(e.seq));
      tr.append(el("td", "mono", tw.formatTime(e.ts_ms)), tw.dataEl("td", null, e.actor + (e.role ? " · " +
        t("role." + e.role, e.role) : "")), el("td", "mono", e.action),
        tw.dataEl("td", null, e.target_kind + " " + e.target_id), tw.dataEl("td", null, e.enterprise_id || "—"),
        tw.dataEl("td", "mono", e.remote || ""), tw.dataEl("td", "detail", JSON.stringify(e.detail)));
      node.querySelector("tbody").append(tr);
    }
    body.replaceChildren(node);
    done(tw.tf("journal.auditCount", { n: data.count }));
  }

  function verify() {
    loading("journal.verifying");
    tw.api("GET", "/api/audit/verify").then(function (v) {
      done(v.ok ? tw.tf("journal.chainOk", { n: v.entries }) : tw.tf("journal.chainBroken", { seq: v.broken_seq }) +
        (v.reason ? " · " + v.reason : ""));
      status.setAttribute("data-chain", v.ok ? "ok" : "broken");
    }).catch(failed);
  }

  // ----- downloads (the token goes in a header, so through fetch and a blob) ---------------------------
  function download(format) {
    const path = sub === "shift" ? "/api/alarms/shift-report" : "/api/alarms/journal";
    const q = query({ format: format, lang: tw.lang === "en" ? "en" : "zh" });
    loading("journal.exporting");
    tw.download(path + "?" + q.toString(), (sub === "shift" ? "shift-report." : "alarm-journal.") + format)
      .then(function () { done(""); }, failed);
  }

  function load() {
    showFor();
    if (sub === "alarms") return loadAlarms(false);
    if (sub === "shift") return loadShift();
    return loadAudit();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    load();
  });
  more.addEventListener("click", function () { loadAlarms(true); });
  document.getElementById("journal-csv").addEventListener("click", function () { download("csv"); });
  document.getElementById("journal-xlsx").addEventListener("click", function () { download("xlsx"); });
  document.getElementById("audit-verify").addEventListener("click", verify);
  tw.on("tree", fillSelects);
  tw.on("lang", function () {
    fillSelects();
    if (drawn) drawn.draw(drawn.data);
  });

  tw.views.journal = {
    show: function (parts) {
      const wanted = parts[0] === "shift" ? "shift" : parts[0] === "audit" && tw.hasRole(AUDIT_ROLES) ? "audit"
        : "alarms";
      if (!form.end.value && !form.start.value) {
        const now = tw.serverNow();
        form.end.value = localInput(now);
        form.start.value = localInput(now - (wanted === "shift" ? SHIFT_MS : DAY_MS));
      }
      if (wanted !== sub) {
        sub = wanted;
        drawn = null; // the other tab's result does not stay on show while this one loads
        body.replaceChildren();
        const now = tw.serverNow();
        form.start.value = localInput(now - (sub === "shift" ? SHIFT_MS : DAY_MS));
        form.end.value = localInput(now);
      }
      fillSelects();
      load();
    },
  };
})();
