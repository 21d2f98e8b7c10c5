// 报警设置 and 升级路线 — read-only: every sensor's alarm settings as the alarm core compiled them
// (/api/settings/alarms, each limit with its source) and the escalation routes with inheritance resolved
// (/api/settings/escalation, tankwatch's defaults marked). Both change only in the site file.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const ROUTE_ROLES = ["admin", "park_regulator", "county_regulator", "safety_manager"];
  const filters = document.getElementById("rules-filters");
  const table = document.getElementById("rules-table");
  const routesPane = document.getElementById("settings-routes");
  let sensors = null; // the last /api/settings/alarms answer

  // ----- 报警设置 ---------------------------------------------------------------------------------------------
  function fillFilters() {
    const ents = tw.tree ? tw.tree.enterprises : [];
    const keep = { enterprise: filters.enterprise.value, source: filters.source.value };
    const any = function () { const o = el("option", null, t("journal.any")); o.value = ""; return o; };
    filters.enterprise.replaceChildren(any());
    filters.source.replaceChildren(any());
    for (const e of ents) {
      const o = el("option", null, e.name);
      o.value = e.id;
      filters.enterprise.append(o);
      if (keep.enterprise && keep.enterprise !== e.id) continue;
      for (const src of e.hazard_sources) {
        const so = el("option", null, src.name);
        so.value = src.id;
        filters.source.append(so);
      }
    }
    filters.enterprise.translate = false;
    filters.source.translate = false;
    filters.enterprise.value = keep.enterprise;
    filters.source.value = filters.source.querySelector('option[value="' + CSS.escape(keep.source) + '"]')
      ? keep.source : "";
  }

  function seconds(s) {
    return s === null || s === undefined ? "—" : tw.formatAge(s * 1000);
  }

  function conditionLines(s) {
    const cell = el("td", "rule-conditions");
    if (!s.conditions.length) cell.append(el("div", null, "—"));
    for (const c of s.conditions) {
      const line = el("div", "rule-line");
      line.setAttribute("data-priority", c.priority);
      const unit = s.unit && s.unit !== "state" ? " " + s.unit : "";
      line.append(el("b", null, t("cond." + c.condition.toLowerCase(), c.condition)),
        el("span", "mono", " " + c.setpoint + unit + " "),
        el("span", "prio", t("prio." + c.priority, c.priority)));
      if (c.source !== "site file") {
        line.append(" · ", el("span", "rule-source", t("settings.fromStandard")), " ",
          tw.dataEl("span", "rule-source", c.source));
      }
      cell.append(line);
    }
    return cell;
  }

  function timing(s) {
    const first = s.conditions[0];
    const cell = el("td", "rule-timing");
    if (first) {
      const unit = s.unit && s.unit !== "state" ? " " + s.unit : "";
      cell.append(el("div", null, t("settings.deadband") + " " + first.deadband + unit),
        el("div", null, t("settings.onDelay") + " " + seconds(first.on_delay_s) + " · " + t("settings.offDelay") + " " +
          seconds(first.off_delay_s)));
    }
    if (s.realarm_s) cell.append(el("div", null, t("settings.realarm") + " " + seconds(s.realarm_s)));
    if (!cell.childNodes.length) cell.append(el("div", null, "—"));
    return cell;
  }

  function quality(s) {
    const cell = el("td", "rule-quality");
    const unit = s.unit && s.unit !== "state" ? " " + s.unit : "";
    cell.append(el("div", null, t("settings.stale") + " " + seconds(s.stale_after_s)));
    if (s.roc_per_min) {
      cell.append(el("div", null, t("cond.roc") + " " + s.roc_per_min + unit + "/min · " + seconds(s.roc_window_s)));
    }
    if (s.flatline_s) cell.append(el("div", null, t("cond.flat") + " " + seconds(s.flatline_s)));
    return cell;
  }

  function notes(s) {
    const cell = el("td");
    if (s.out_of_service) cell.append(el("div", "tag", t("settings.outOfService")));
    if (s.esd_sensor) {
      const line = el("div");
      line.append(t("settings.esd") + " ", tw.dataEl("span", "mono", s.esd_sensor));
      cell.append(line);
    }
    if (s.hazard_level) cell.append(el("div", null, tw.tf("settings.hazardLevel", { n: s.hazard_level })));
    if (!cell.childNodes.length) cell.append(el("div", null, "—"));
    return cell;
  }

  function drawSensors() {
    const find = filters.find.value.trim().toLowerCase();
    const head = el("tr");
    for (const k of ["col.tagSource", "settings.kindRange", "settings.conditions", "settings.timing",
      "settings.quality", "settings.notes"]) head.append(el("th", null, t(k)));
    const body = el("tbody");
    for (const s of sensors || []) {
      if (find && (s.id + " " + (s.name || "")).toLowerCase().indexOf(find) < 0) continue;
      const tr = el("tr");
      tr.setAttribute("data-sensor", s.id);
      const tag = el("td");
      tag.append(tw.dataEl("div", "line1 mono", s.id), tw.dataEl("div", "line2", s.name || ""));
      const kind = el("td");
      kind.append(el("div", null, t("kind." + s.kind, s.kind) + (s.unit && s.unit !== "state" ? " · " + s.unit : "")),
        el("div", "line2 mono", s.range[0] + " … " + s.range[1]));
      tr.append(tag, kind, conditionLines(s), timing(s), quality(s), notes(s));
      body.append(tr);
    }
    const thead = el("thead");
    thead.append(head);
    table.replaceChildren(thead, body);
    tw.settingsStatus(tw.tf("settings.count", { n: body.childNodes.length }));
  }

  function loadSensors() {
    const q = new URLSearchParams();
    if (filters.enterprise.value) q.set("enterprise", filters.enterprise.value);
    if (filters.source.value) q.set("source", filters.source.value);
    tw.settingsStatus(t("settings.loading"));
    tw.api("GET", "/api/settings/alarms?" + q.toString()).then(function (data) {
      sensors = data.sensors;
      drawSensors();
    }, function (err) { tw.settingsStatus(t("act.failed") + ": " + err.message); });
  }

  filters.addEventListener("change", function (event) {
    if (event.target.name === "enterprise") fillFilters();
    if (event.target.name !== "find") loadSensors();
  });
  filters.find.addEventListener("input", function () { if (sensors) drawSensors(); });
  filters.addEventListener("submit", function (event) { event.preventDefault(); });

  tw.settingsPanes.alarms = { roles: null, show: function () { fillFilters(); loadSensors(); } };

  // ----- 升级路线 ---------------------------------------------------------------------------------------------
  const MATCH_KEYS = ["priority", "grade", "enterprise", "source", "sensor", "condition", "quality"];

  function matchText(match) {
    const parts = [];
    for (const k of MATCH_KEYS) {
      const values = match[k];
      if (!values) continue;
      const shown = values.map(function (v) {
        if (k === "priority") return t("prio." + v, v);
        if (k === "condition") return t("cond." + String(v).toLowerCase(), v);
        if (k === "grade") return t("grade." + v, v);
        return v;
      });
      parts.push(t("settings.match." + k) + ": " + shown.join(" / "));
    }
    return parts.length ? parts.join(" · ") : t("settings.matchAll");
  }

  function defaultTag(route, key) {
    return route.tankwatch_defaults.indexOf(key) >= 0 ? el("span", "tag default-tag", t("settings.default")) : null;
  }

  function routeCard(route) {
    const card = el("section", "route-card");
    card.style.marginLeft = route.depth * 24 + "px";
    card.setAttribute("data-route", route.id);
    const head = el("h3");
    head.append(tw.dataEl("span", "mono", route.id), " ", el("span", "route-match", matchText(route.match)));
    if (route.continue_matching) head.append(" ", el("span", "tag", t("settings.continue")));
    const steps = el("ol", "route-steps");
    route.steps.forEach(function (step) { steps.append(el("li", null, t("esc.stepName." + step, step))); });
    const stepsTag = defaultTag(route, "steps");
    if (stepsTag) steps.append(stepsTag);
    const timers = el("table", "grid-table timers");
    const th = el("tr");
    th.append(el("th", null, t("col.priority")));
    for (let i = 0; i < route.steps.length - 1; i += 1) {
      th.append(el("th", null, t("esc.stepName." + route.steps[i], route.steps[i]) + " → " +
        t("esc.stepName." + route.steps[i + 1], route.steps[i + 1])));
    }
    const tbody = el("tbody");
    for (const p of ["critical", "high", "medium", "low"]) {
      if (!route.timers_min[p]) continue;
      const tr = el("tr");
      const name = el("td", null, t("prio." + p, p));
      const tag = defaultTag(route, "timers_min." + p);
      if (tag) name.append(" ", tag);
      tr.append(name);
      for (const m of route.timers_min[p]) tr.append(el("td", "num", tw.tf("settings.minutes", { n: m })));
      tbody.append(tr);
    }
    const thead = el("thead");
    thead.append(th);
    timers.append(thead, tbody);
    const foot = el("p", "route-foot");
    foot.append(tw.tf("settings.repeat", { n: route.repeat_min }));
    const repeatTag = defaultTag(route, "repeat_interval_min");
    if (repeatTag) foot.append(" ", repeatTag);
    if (route.receivers.length) {
      foot.append(" · " + t("settings.receivers") + ": ", tw.dataEl("span", "mono", route.receivers.join(", ")));
    }
    card.append(head, steps, timers, foot);
    return card;
  }

  function drawRoutes(data) {
    const intro = el("p", "api-note", t("settings.routesIntro"));
    const list = el("div", "route-list");
    for (const r of data.routes) list.append(routeCard(r));
    const inhibit = el("section", "route-card");
    inhibit.append(el("h3", null, t("settings.inhibit")));
    for (const rule of data.inhibit) {
      inhibit.append(el("p", null, tw.tf("settings.inhibitRule", {
        source: matchText(rule.source), target: matchText(rule.target),
        equal: rule.equal.map(function (k) { return t("settings.label." + k, k); }).join(" / "),
      })));
    }
    if (!data.inhibit.length) inhibit.append(el("p", null, t("settings.none")));
    if (data.inhibit_default) inhibit.append(el("span", "tag default-tag", t("settings.default")));
    const receivers = el("section", "route-card");
    receivers.append(el("h3", null, t("settings.receivers")));
    for (const r of data.receivers) {
      const p = el("p");
      p.append(tw.dataEl("span", "mono", r.id), " · " + t("settings.receiver." + r.kind, r.kind) + " · " +
        tw.tf("settings.attempts", { n: r.attempts }));
      receivers.append(p);
    }
    if (!data.receivers.length) receivers.append(el("p", null, t("settings.inboxOnly")));
    receivers.append(el("p", "line2", tw.tf("settings.grouping", { wait: data.group_wait_s,
      dedup: tw.formatAge(data.dedup_window_s * 1000) })));
    routesPane.replaceChildren(intro, list, inhibit, receivers);
    tw.settingsStatus("");
  }

  tw.settingsPanes.routes = {
    roles: ROUTE_ROLES,
    show: function () {
      tw.settingsStatus(t("settings.loading"));
      tw.api("GET", "/api/settings/escalation").then(drawRoutes, function (err) {
        tw.settingsStatus(t("act.failed") + ": " + err.message);
      });
    },
  };

  tw.on("lang", function () {
    // a hidden pane is drawn afresh when shown: emptied, it shows nothing in the old language meanwhile
    if (!document.getElementById("settings-alarms").hidden) {
      if (sensors) drawSensors();
    } else {
      table.replaceChildren();
    }
    if (!routesPane.hidden) tw.settingsPanes.routes.show();
    else routesPane.replaceChildren();
  });
})();
