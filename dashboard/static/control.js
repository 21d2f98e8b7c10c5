// 控制室 — the enterprise control room: tank mimic per hazard source, alarm banner and list with
// acknowledge / shelve / comment / reset, KPIs (alarms per 10 min, flood) and the trend panel.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const setText = tw.setText;
  const setAttr = tw.setAttr;

  let enterpriseFilter = null; // #/control/E1 shows one enterprise only
  let showShelved = false;

  // ----- mimic -------------------------------------------------------------------------------------
  const sourceCards = new Map(); // hazard source id -> {node, dot, sensorIds}

  function limitsOf(info) {
    const marks = [];
    const lim = info.limits;
    if (lim) for (const key of ["hh", "h", "l", "ll"]) if (typeof lim[key] === "number") marks.push([key, lim[key]]);
    return marks;
  }

  function fractionOf(info, value) {
    const low = info.range[0];
    const high = info.range[1];
    return Math.min(1, Math.max(0, (value - low) / (high - low)));
  }

  function trendOnClick(node, sensorId) {
    node.setAttribute("data-sensor", sensorId);
    node.classList.add("clickable");
    node.tabIndex = 0;
    node.addEventListener("click", function (event) {
      event.stopPropagation();
      tw.trend.open(sensorId, event.ctrlKey || event.metaKey || event.shiftKey); // held: overlay on the trend
    });
    node.addEventListener("keydown", function (event) {
      if (event.key === "Enter") tw.trend.open(sensorId);
    });
  }

  // A value with its label, coloured by the sensor's status.
  function valueRow(entry, label, labelIsData) {
    const row = el("div", "kv");
    const name = (labelIsData ? tw.dataEl : el)("span", "k", label);
    const val = el("span", "v");
    const unit = el("span", "u", entry.info.unit === "state" ? "" : entry.info.unit);
    const noteNode = el("span", "q");
    row.append(name, val, unit, noteNode);
    row.title = entry.info.name || entry.info.id;
    trendOnClick(row, entry.info.id);
    entry.views.push(function (status) {
      const r = entry.reading;
      if (entry.info.kind === "esd_valve") {
        const state = r && typeof r.value === "number" ? String(Math.round(r.value)) : null;
        setText(val, state === null ? "—" : t("esd." + state, state));
        setAttr(row, "data-esd", state === null ? "" : state);
      } else {
        setText(val, tw.formatValue(entry.info, r ? r.value : null));
      }
      setText(noteNode, tw.qualityText(entry));
      setAttr(row, "data-status", status);
      setAttr(row, "data-live", tw.isLive(entry) ? "1" : "0");
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
    trendOnClick(vessel, levelEntry.info.id);
    levelEntry.views.push(function (status) {
      const r = levelEntry.reading;
      const frac = r && typeof r.value === "number" ? fractionOf(levelEntry.info, r.value) : 0;
      const height = (frac * 100).toFixed(1) + "%";
      if (fill.style.height !== height) fill.style.height = height;
      setAttr(vessel, "data-status", status);
      setAttr(vessel, "data-live", tw.isLive(levelEntry) ? "1" : "0");
    });
    return vessel;
  }

  function buildTank(tank) {
    const node = el("div", "tank");
    const head = el("div", "tank-head");
    head.append(el("span", "tank-id", tank.id), tw.dataEl("span", "tank-name", tank.name || ""));
    node.append(head);
    const chem = el("div", "tank-chem");
    chem.append(tw.dataEl("span", null, tank.chemical));
    if (!tank.in_service) chem.append(el("span", null, " · " + t("outOfService")));
    node.append(chem);
    const entries = tank.sensors.map(function (s) { return tw.sensors.get(s.id); });
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
    const noteNode = el("div", "q");
    chip.append(id, val, levels, noteNode);
    trendOnClick(chip, info.id);
    entry.views.push(function (status) {
      setText(num, tw.formatValue(info, entry.reading ? entry.reading.value : null));
      setText(noteNode, tw.qualityText(entry));
      setAttr(chip, "data-status", status);
      setAttr(chip, "data-live", tw.isLive(entry) ? "1" : "0");
    });
    return chip;
  }

  function buildSource(src) {
    const card = el("article", "source");
    card.id = "source-" + src.id;
    card.setAttribute("data-source", src.id);
    const head = el("header", "source-head");
    const dot = el("span", "status-dot");
    const title = tw.dataEl("h3", null, src.name);
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
        const built = buildTank(tank);
        tanks.append(built.node);
        ids.push.apply(ids, built.sensorIds);
      }
      card.append(tanks);
    }
    const own = src.sensors.map(function (s) { return tw.sensors.get(s.id); });
    const gas = own.filter(function (e) { return /^gas_|^oxygen$/.test(e.info.kind); });
    const other = own.filter(function (e) { return gas.indexOf(e) < 0; });
    if (other.length) {
      const list = el("div", "source-values");
      for (const entry of other) list.append(valueRow(entry, entry.info.name || entry.info.id, true));
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
    sourceCards.set(src.id, { node: card, sensorIds: ids });
    return card;
  }

  function buildMimic() {
    const root = document.getElementById("sources");
    root.replaceChildren(document.getElementById("sources-title"));
    sourceCards.clear();
    for (const entry of tw.sensors.values()) entry.views = [];
    for (const ent of tw.tree.enterprises) {
      const section = el("section", "enterprise");
      section.setAttribute("data-enterprise", ent.id);
      section.append(tw.dataEl("h2", "enterprise-name", ent.name));
      const cards = el("div", "source-cards");
      for (const src of ent.hazard_sources) cards.append(buildSource(src));
      section.append(cards);
      root.append(section);
    }
    applyFilter();
    for (const id of tw.sensors.keys()) tw.markDirty(id);
  }

  function renderSource(sourceId) {
    const card = sourceCards.get(sourceId);
    if (!card) return;
    let worst = "nodata";
    for (const id of card.sensorIds) {
      const status = tw.sensors.get(id).status || "nodata";
      if (tw.STATUS_RANK[status] > tw.STATUS_RANK[worst]) worst = status;
    }
    setAttr(card.node, "data-status", worst);
  }

  function applyFilter() {
    for (const section of document.querySelectorAll("#sources .enterprise")) {
      section.hidden = Boolean(enterpriseFilter) && section.getAttribute("data-enterprise") !== enterpriseFilter;
    }
  }

  // ----- alarm list --------------------------------------------------------------------------------
  const alarmBody = document.getElementById("alarm-rows");
  const alarmRows = new Map(); // occurrence id -> {tr, cells, actions, key}

  function alarmValueText(info, value, unit) {
    if (value === null || value === undefined) return "—";
    if (info.kind === "esd_valve") return t("esd." + Math.round(value), String(value));
    return tw.formatValue(info, value) + unit;
  }

  function stateText(a) {
    if (a.state === "shelved") return t("state.shelved");
    if (a.state === "latched") return t("state.latched") + (a.acknowledged ? " · " + t("state.ack") : "");
    if (a.state === "cleared") return t("state.returned");
    return (a.acknowledged ? t("state.ack") : t("state.unack")) + (a.escalated ? " · " + t("state.escalated") : "");
  }

  function alarmCells(a) {
    const entry = tw.sensors.get(a.sensor_id);
    const info = entry ? entry.info : { range: [0, 100], unit: "", kind: "" };
    const unit = info.unit === "state" || !info.unit ? "" : " " + info.unit;
    const source = tw.sourceInfo.get(a.source_id);
    return {
      time: tw.formatTime(a.raised_ms),
      priority: t("prio." + a.priority, a.priority),
      tag: a.sensor_id,
      source: source ? source.source.name : a.source_name || a.source_id,
      condition: t("cond." + String(a.condition).toLowerCase(), a.condition),
      value: alarmValueText(info, a.value, unit),
      limit: a.limit === null || a.limit === undefined ? "—" : a.limit + unit,
      state: stateText(a),
    };
  }

  // The compact row: tag over its source, value over its limit, so every action stays in view at 1366 px.
  function fillAlarmRow(cells, c) {
    setText(cells[0], c.time);
    setText(cells[1], c.priority);
    setText(cells[2].firstChild, c.tag);
    setText(cells[2].lastChild, c.source);
    setText(cells[3], c.condition);
    setText(cells[4].firstChild, c.value);
    setText(cells[4].lastChild, c.limit);
    setText(cells[5], c.state);
  }

  function visible(a) {
    if (enterpriseFilter && a.enterprise_id !== enterpriseFilter) return false;
    return a.state !== "shelved";
  }

  // Who acts: the alarm routes record the user with every command (ISA-18.2: who and when).
  function me() {
    const u = tw.user;
    return u ? String(u.login || u.username || u.name) : "operator";
  }

  function run(action, a, body, button) {
    if (!tw.connected) { // what the page shows is not live: nobody acknowledges or shelves on old data
      flash(t("live.offline"));
      return Promise.reject(new Error(t("live.offline")));
    }
    if (button) button.disabled = true;
    body = Object.assign({ user: me() }, body || {});
    return tw.alarmAction(a.occurrence_id, action, body).then(function () {
      // The server's event follows on the websocket; applying it now makes the click feel instant.
      const local = { ack: "acknowledged", shelve: "shelved", unshelve: "unshelved", reset: "reset", comment: "commented" };
      tw.applyEvent(Object.assign({}, a, { action: local[action], note: body.reason || body.text || body.note,
        user: body.user, ts_ms: tw.serverNow() }), true);
      tw.emit("alarms", { local: action });
    }).catch(function (err) {
      if (button) button.disabled = false;
      flash(t("act.failed") + ": " + err.message);
      throw err;
    });
  }

  function flash(message) {
    const node = document.getElementById("alarm-actions-note");
    node.hidden = false;
    node.removeAttribute("data-i18n");
    node.setAttribute("data-error", message); // stays after the text goes back, for whoever needs to know why
    setText(node, message);
    window.setTimeout(function () { updateActionsNote(); }, 6000);
  }

  function updateActionsNote() {
    const node = document.getElementById("alarm-actions-note");
    const any = tw.canAct("ack");
    node.hidden = any;
    node.setAttribute("data-i18n", "act.unavailable");
    setText(node, t("act.unavailable"));
  }

  // The site's shelving policy (GET /api/alarms/shelving-policy): limits per priority, reason codes, four eyes.
  let policy = null;
  function loadPolicy() {
    if (policy) return Promise.resolve(policy);
    return tw.api("GET", "/api/alarms/shelving-policy").then(function (data) {
      policy = data;
      return data;
    });
  }

  const SHELVE_MINUTES = [5, 10, 15, 30, 60, 120, 240, 480, 720, 1440];

  function shelve(a) {
    const tag = a.sensor_id + " · " + t("cond." + String(a.condition).toLowerCase(), a.condition) + " · " +
      t("prio." + a.priority, a.priority);
    return loadPolicy().then(function (p) {
      const limit = p.max_minutes[a.priority] || 60;
      const minutes = SHELVE_MINUTES.filter(function (m) { return m <= limit; });
      if (minutes.indexOf(limit) < 0) minutes.push(limit);
      const codeNeeded = p.code_required.indexOf(a.priority) >= 0;
      const role = tw.user ? String(tw.user.role) : "";
      const fourEyes = p.approval_required.indexOf(a.priority) >= 0 && p.self_approving.indexOf(role) < 0;
      const codes = p.reason_codes.map(function (r) { return [r.code, tw.lang === "en" ? r.en : r.zh]; });
      const fields = [
        { name: "reason_code", labelKey: "act.reasonCode", required: codeNeeded,
          options: codeNeeded ? codes : [["", "—"]].concat(codes) },
        { name: "reason", labelKey: "act.reason", required: true },
        { name: "minutes", labelKey: "act.duration", value: String(Math.min(60, limit)),
          options: minutes.map(function (m) { return [String(m), m + " " + t("act.minutes")]; }) },
      ];
      if (fourEyes) {
        fields.push({ name: "approver", labelKey: "act.approver", required: true, autocomplete: "off" },
          { name: "approver_password", labelKey: "act.approverPassword", type: "password", required: true,
            autocomplete: "off" });
      }
      return tw.ask({
        title: t("act.shelve"),
        sub: tag + " · " + tw.tf("act.shelveLimit", { n: limit }) + (fourEyes ? " · " + t("act.fourEyes") : ""),
        fields: fields,
        submit: function (v) {
          const body = { reason: v.reason, duration_s: Number(v.minutes) * 60 };
          if (v.reason_code) body.reason_code = v.reason_code;
          if (fourEyes) body.approver = { login: v.approver, password: v.approver_password };
          return run("shelve", a, body);
        },
      });
    }).catch(function (err) { flash(t("act.failed") + ": " + err.message); });
  }

  function comment(a) {
    return tw.ask({
      title: t("act.comment"),
      sub: a.sensor_id,
      fields: [{ name: "text", labelKey: "act.note", type: "textarea", required: true, value: a.comment || "" }],
      submit: function (v) { return run("comment", a, { text: v.text }); },
    });
  }

  // The companyCode a lower tier reports an enterprise under (its alarms are handled there), or undefined.
  function reportedFrom(enterpriseId) {
    const ent = tw.tree && tw.tree.enterprises.find(function (e) { return e.id === enterpriseId; });
    return ent ? ent.reported_as : undefined;
  }

  function actionButtons(a) {
    const box = el("span", "row-actions");
    const add = function (action, key, fn, cls) {
      if (!tw.canAct(action)) return;
      const b = tw.button(key, function (event) {
        event.stopPropagation();
        fn(b);
      }, "small " + (cls || ""));
      b.setAttribute("data-action", action);
      b.disabled = !tw.connected;
      if (!tw.connected) b.title = t("live.offline");
      box.append(b);
    };
    if (reportedFrom(a.enterprise_id)) { // raised at the enterprise and uplinked: it acts on it in its own system
      box.append(el("span", "notice", t("act.reported")));
      return box;
    }
    if (a.state === "shelved") {
      add("unshelve", "act.unshelve", function (b) { run("unshelve", a, {}, b).catch(function () {}); });
      return box;
    }
    if (!a.acknowledged) add("ack", "act.ack", function (b) { run("ack", a, {}, b).catch(function () {}); }, "ack");
    if (a.state === "latched" || (tw.LATCHING.test(String(a.condition)) && a.state === "cleared")) {
      add("reset", "act.reset", function (b) { run("reset", a, {}, b).catch(function () {}); });
    }
    add("shelve", "act.shelve", function () { shelve(a); });
    add("comment", "act.comment", function () { comment(a); });
    return box;
  }

  function renderAlarms() {
    const all = Array.from(tw.alarms.values());
    const list = all.filter(visible).sort(function (a, b) {
      // unacknowledged first, then priority, then newest
      return (a.acknowledged - b.acknowledged) || tw.priorityRank(a.priority) - tw.priorityRank(b.priority) ||
        b.raised_ms - a.raised_ms;
    });
    const keep = new Set(list.map(function (a) { return a.occurrence_id; }));
    for (const [id, row] of alarmRows) {
      if (!keep.has(id)) {
        row.tr.remove();
        alarmRows.delete(id);
      }
    }
    let previous = null;
    for (const a of list) {
      let row = alarmRows.get(a.occurrence_id);
      if (!row) {
        const tr = el("tr");
        tr.setAttribute("data-occurrence", a.occurrence_id);
        tr.setAttribute("data-sensor", a.sensor_id);
        tr.addEventListener("click", function () { tw.trend.open(a.sensor_id); });
        const cells = [];
        for (let i = 0; i < 7; i++) {
          const td = el("td", i === 4 ? "num" : i === 6 ? "actions" : null);
          if (i === 2) td.append(el("div", "line1"), tw.dataEl("div", "line2")); // tag over its source's name
          if (i === 4) td.append(el("div", "line1"), el("div", "line2"));
          cells.push(td);
          tr.append(td);
        }
        row = { tr: tr, cells: cells, key: null };
        alarmRows.set(a.occurrence_id, row);
      }
      fillAlarmRow(row.cells, alarmCells(a));
      const key = [a.state, a.acknowledged, t("act.ack"), tw.connected].join("|");
      if (row.key !== key) {
        row.key = key;
        row.cells[6].replaceChildren(actionButtons(a));
      }
      row.cells[5].title = [a.comment, a.shelve_note].filter(Boolean).join(" · ");
      setAttr(row.tr, "data-priority", a.priority);
      setAttr(row.tr, "data-ack", a.acknowledged ? "1" : "0");
      setAttr(row.tr, "data-state", a.state);
      setAttr(row.tr, "data-live", a.live ? "1" : "0"); // raised while this page watched, not from the snapshot
      setAttr(row.tr, "data-kind", tw.isFault(a) ? "fault" : "process");
      const want = previous ? previous.nextSibling : alarmBody.firstChild;
      if (want !== row.tr) alarmBody.insertBefore(row.tr, want);
      previous = row.tr;
    }
    const active = all.filter(function (a) {
      return a.state !== "shelved" && (!enterpriseFilter || a.enterprise_id === enterpriseFilter);
    });
    setText(document.getElementById("alarm-count"), String(active.length));
    document.querySelector("#view-control .alarm-table:not(.shelf-table)").hidden = showShelved;
    renderShelves();
    renderBanner(active);
    renderLocalKpis(active);
  }

  // ----- shelved alarms: one row per shelf (sensor × condition) for as long as it holds, with who, why, until
  // when, and how many occurrences came under it (GET /api/alarms/shelves)
  let shelves = [];
  let shelvesQueued = null;

  function loadShelves() {
    if (!tw.has("/api/alarms/shelves", "get")) return Promise.resolve();
    return tw.api("GET", "/api/alarms/shelves").then(function (data) {
      shelves = data.shelves || [];
      renderAlarms();
    }).catch(function () {});
  }

  // Shelving events come in bursts (an alarm and its current occurrence): load once after them.
  function reloadShelvesSoon() {
    if (shelvesQueued) return;
    shelvesQueued = window.setTimeout(function () {
      shelvesQueued = null;
      loadShelves();
    }, 300);
  }

  function shelfRow(shelf) {
    const tr = el("tr");
    tr.setAttribute("data-shelf", shelf.shelf_id);
    tr.setAttribute("data-sensor", shelf.sensor_id);
    tr.setAttribute("data-priority", shelf.priority);
    const code = shelf.reason_code ? "[" + shelf.reason_code + "] " : "";
    const by = shelf.shelved_by + (shelf.approved_by ? " · " + t("shelf.approvedBy") + " " + shelf.approved_by : "");
    const left = shelf.until_ms - tw.serverNow();
    const until = el("div", "line2", tw.formatTime(shelf.until_ms) + " · " +
      tw.tf("shelf.left", { left: tw.formatDuration(Math.max(0, left)) }));
    until.setAttribute("data-until", String(shelf.until_ms));
    const twoLines = function (first, second, cls, make) {
      const td = el("td", cls);
      const line = make || el;
      td.append(typeof first === "string" ? line("div", "line1", first) : first,
        typeof second === "string" ? line("div", "line2", second) : second);
      return td;
    };
    const actions = el("td", "actions");
    if (tw.canAct("unshelve")) {
      const b = tw.button("act.unshelve", function (event) {
        event.stopPropagation();
        if (!tw.connected) return;
        b.disabled = true;
        tw.alarmAction(shelf.occurrence_id, "unshelve", { user: me() }).then(loadShelves, function (err) {
          b.disabled = false;
          flash(t("act.failed") + ": " + err.message);
        });
      }, "small");
      b.setAttribute("data-action", "unshelve");
      b.disabled = !tw.connected;
      actions.append(b);
    }
    tr.append(
      twoLines(shelf.sensor_id, t("cond." + String(shelf.condition).toLowerCase(), shelf.condition)),
      el("td", null, t("prio." + shelf.priority, shelf.priority)),
      twoLines(by, code + shelf.reason, "wrap", tw.dataEl), // a login and what a person typed
      twoLines(tw.formatTime(shelf.since_ms), until),
      el("td", "num", String(shelf.occurrences)),
      actions,
    );
    tr.addEventListener("click", function () { tw.trend.open(shelf.sensor_id); });
    return tr;
  }

  function renderShelves() {
    const mine = shelves.filter(function (x) { return !enterpriseFilter || x.enterprise_id === enterpriseFilter; });
    setText(document.getElementById("shelved-count"), String(mine.length));
    const table = document.getElementById("shelf-table");
    table.hidden = !showShelved;
    if (showShelved) document.getElementById("shelf-rows").replaceChildren.apply(
      document.getElementById("shelf-rows"), mine.map(shelfRow));
    const empty = document.getElementById("alarm-empty");
    const count = showShelved ? mine.length : alarmRows.size;
    empty.hidden = count > 0;
    const emptyKey = showShelved ? "noShelved" : "noAlarms";
    empty.setAttribute("data-i18n", emptyKey);
    setText(empty, t(emptyKey));
  }

  // ----- banner ------------------------------------------------------------------------------------
  function renderBanner(active) {
    const banner = document.getElementById("alarm-banner");
    const unacked = active.filter(function (a) { return !a.acknowledged && a.state !== "cleared"; });
    if (!unacked.length) {
      banner.hidden = true;
      return;
    }
    unacked.sort(function (a, b) { return tw.priorityRank(a.priority) - tw.priorityRank(b.priority) || b.raised_ms - a.raised_ms; });
    const top = unacked[0];
    const cells = alarmCells(top);
    banner.hidden = false;
    setAttr(banner, "data-priority", top.priority);
    document.getElementById("alarm-banner-text").replaceChildren(
      el("span", null, t("banner.alarm") + " (" + unacked.length + ") · " + cells.priority + " · " + cells.tag + " " +
        cells.condition + " " + cells.value + " · "),
      tw.dataEl("span", null, cells.source), el("span", null, " · " + cells.time));
    const ackAllButton = document.getElementById("ack-all");
    ackAllButton.hidden = !tw.canAct("ack") || unacked.every(function (a) { return reportedFrom(a.enterprise_id); });
    ackAllButton.disabled = !tw.connected;
  }

  // Acknowledge every unacknowledged alarm in view, a few requests at a time, with a bar that counts them.
  const ACK_AT_ONCE = 4;

  function ackAll() {
    const targets = Array.from(tw.alarms.values()).filter(function (a) {
      return !a.acknowledged && a.state !== "shelved" && !reportedFrom(a.enterprise_id) &&
        (!enterpriseFilter || a.enterprise_id === enterpriseFilter);
    });
    if (!targets.length || !tw.connected) return Promise.resolve();
    const box = document.getElementById("ack-progress");
    const bar = document.getElementById("ack-progress-bar");
    const text = document.getElementById("ack-progress-text");
    const button = document.getElementById("ack-all");
    let done = 0;
    let failed = 0;
    const show = function () {
      bar.max = targets.length;
      bar.value = done + failed;
      setText(text, tw.tf("act.ackProgress", { done: done, total: targets.length }) +
        (failed ? " · " + tw.tf("act.ackFailed", { n: failed }) : ""));
    };
    box.hidden = false;
    button.disabled = true;
    show();
    const queue = targets.slice();
    const worker = function () {
      const a = queue.shift();
      if (!a) return Promise.resolve();
      return run("ack", a, {}).then(function () { done += 1; }, function () { failed += 1; })
        .then(show).then(worker);
    };
    const workers = [];
    for (let i = 0; i < Math.min(ACK_AT_ONCE, targets.length); i++) workers.push(worker());
    return Promise.all(workers).then(function () {
      button.disabled = !tw.connected;
      window.setTimeout(function () { box.hidden = true; }, failed ? 8000 : 2000);
    });
  }

  // ----- KPIs --------------------------------------------------------------------------------------
  const kpiNode = document.getElementById("kpis");
  const tiles = {};

  function tile(key) {
    if (!tiles[key]) {
      const node = el("div", "kpi");
      node.setAttribute("data-kpi", key);
      const value = el("b", "kpi-value", "—");
      const label = el("span", "kpi-label", t(key));
      label.setAttribute("data-i18n", key);
      node.append(value, label);
      kpiNode.append(node);
      tiles[key] = { node: node, value: value };
    }
    return tiles[key];
  }

  function renderLocalKpis(active) {
    setText(tile("kpi.active").value, String(active.length));
    setText(tile("kpi.unack").value, String(active.filter(function (a) { return !a.acknowledged; }).length));
  }

  // GET /api/alarms/kpis (engineer A): per enterprise; the last 10 min say "now", the last 24 h the rest.
  function kpiRows(data) {
    const rows = (data && data.enterprises) || [];
    return enterpriseFilter ? rows.filter(function (r) { return r.enterprise_id === enterpriseFilter; }) : rows;
  }

  function sum(rows, fn) {
    return rows.reduce(function (total, r) { return total + (fn(r) || 0); }, 0);
  }

  let kpiTimer = null;
  let lastFlood = null; // the flood state last drawn: redrawn in the new language at once, before the next fetch

  function drawFlood(flood) {
    lastFlood = flood;
    const floodTile = tile("kpi.flood");
    setText(floodTile.value, t(flood ? "kpi.floodYes" : "kpi.floodNo"));
    setAttr(floodTile.node, "data-flood", flood ? "1" : "0");
  }

  function loadKpis() {
    if (!tw.has("/api/alarms/kpis", "get")) {
      kpiUnavailable();
      return;
    }
    Promise.all([tw.api("GET", "/api/alarms/kpis?hours=" + (10 / 60)), tw.api("GET", "/api/alarms/kpis?hours=24")])
      .then(function (answers) {
        const now = kpiRows(answers[0]);
        const day = kpiRows(answers[1]);
        const rate = sum(now, function (r) { return r.alarms; });
        // ISA-18.2 flood: more than 10 alarms in 10 minutes at one operator position
        const flood = now.some(function (r) { return r.alarms > 10 || r.flood_periods > 0; });
        setText(tile("kpi.rate").value, String(rate));
        drawFlood(flood);
        setText(tile("kpi.floods24").value, String(sum(day, function (r) { return r.flood_periods; })));
        setText(tile("kpi.chattering").value, String(sum(day, function (r) { return (r.chattering || []).length; })));
        setText(tile("kpi.stale").value, String(sum(day, function (r) { return (r.stale || []).length; })));
        const missing = kpiNode.querySelector(".api-note");
        if (missing) missing.remove();
      })
      .catch(function (err) {
        if (err.status === 404) kpiUnavailable();
      });
  }

  function kpiUnavailable() {
    if (kpiNode.querySelector(".api-note")) return;
    const p = el("p", "api-note", t("kpi.unavailable"));
    p.setAttribute("data-i18n", "kpi.unavailable");
    kpiNode.append(p);
  }

  // ----- wiring ------------------------------------------------------------------------------------
  tw.on("tree", buildMimic);
  tw.on("lang", function () {
    if (tw.tree) buildMimic();
    for (const row of alarmRows.values()) row.key = null;
    renderAlarms();
    for (const key in tiles) setText(tiles[key].node.querySelector(".kpi-label"), t(key));
    if (lastFlood !== null) drawFlood(lastFlood); // a word (泛滥中/FLOOD, 否/no): not left in the old language
    loadKpis(); // while the figures are fetched again
  });
  tw.on("rendered", function (touched) { for (const id of touched) renderSource(id); });
  tw.on("alarms", function (info) {
    renderAlarms();
    const events = (info && info.events) || [];
    if ((info && info.snapshot) || events.some(function (e) { return /shelved$/.test(e.action); })) reloadShelvesSoon();
  });
  tw.on("connection", function () {
    for (const row of alarmRows.values()) row.key = null;
    renderAlarms();
  });
  tw.on("tick", function () {
    // the time column says "today" or a date: refresh it when the day turns, cheaply, once a minute
    if (new Date().getSeconds() === 0) renderAlarms();
    for (const td of document.querySelectorAll("#shelf-rows [data-until]")) {
      const until = Number(td.getAttribute("data-until"));
      setText(td, tw.formatTime(until) + " · " + tw.tf("shelf.left", { left: tw.formatDuration(Math.max(0, until - tw.serverNow())) }));
    }
  });

  document.getElementById("show-shelved").addEventListener("click", function (event) {
    showShelved = !showShelved;
    event.currentTarget.setAttribute("aria-pressed", showShelved ? "true" : "false");
    renderAlarms();
  });
  document.getElementById("ack-all").addEventListener("click", ackAll);

  tw.views.control = {
    show: function (parts) {
      const wanted = parts[0] && tw.tree && tw.tree.enterprises.some(function (e) { return e.id === parts[0]; })
        ? parts[0] : null;
      if (wanted !== enterpriseFilter) {
        enterpriseFilter = wanted;
        applyFilter();
        renderAlarms();
      }
      if (parts[1]) {
        const card = document.getElementById("source-" + parts[1]);
        if (card) card.scrollIntoView({ block: "start" });
      }
      updateActionsNote();
      renderAlarms();
      loadKpis();
      loadShelves();
      if (!kpiTimer) kpiTimer = window.setInterval(function () { loadKpis(); loadShelves(); }, 15000);
    },
    hide: function () {
      if (kpiTimer) window.clearInterval(kpiTimer);
      kpiTimer = null;
    },
  };
})();
