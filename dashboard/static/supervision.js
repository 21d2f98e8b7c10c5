// 分类监管 — supervision classes, a pane of the park view for regulators: each enterprise's class over the period
// (特别管控 / 重点关注 / 一般监管) with the rules and figures behind it, its history, and an override with a reason.
// Distinct from the live red/yellow/green grade, and the page says so.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const REGULATORS = ["park_regulator", "county_regulator"];
  const METRICS = ["hazard_level", "regulator_escalations", "median_ack_min", "alarms_per_1000_point_hours",
    "interruptions", "routine_misses", "open_findings"];

  function chip(cls) {
    const node = el("span", "grade-chip class-chip", t("class." + cls));
    node.setAttribute("data-class", cls);
    return node;
  }

  function ruleText(r) {
    return tw.lang === "en" ? r.text_en : r.text_zh;
  }

  function figures(metrics) {
    return METRICS.filter(function (m) { return metrics[m] !== null && metrics[m] !== undefined; })
      .map(function (m) { return t("metric." + m) + " " + metrics[m]; }).join(" · ");
  }

  function showHistory(pane, e, holder) {
    tw.api("GET", "/api/supervision/" + encodeURIComponent(e.enterprise_id) + "/history").then(function (rows) {
      const list = el("ul", "class-history");
      for (const h of rows) {
        const item = el("li");
        item.append(el("span", null, tw.formatTime(h.ts_ms) + " "), chip(h.class));
        if (h.by) { // a regulator's entry: an override, or the computed class confirmed (which ends an override)
          item.append(el("span", null, " " + t(h.override ? "class.overrideBy" : "class.confirmedBy") + " "),
            tw.dataEl("span", null, h.by + "：" + h.reason));
        }
        list.append(item);
      }
      if (!rows.length) list.append(el("li", null, t("class.noHistory")));
      holder.replaceChildren(list);
    }).catch(function (err) { holder.replaceChildren(el("p", "error", err.message)); });
  }

  const fresh = tw.latestOnly(); // e.g. the tab's first render answering after an override's
  let historyOf = null; // the enterprise whose history is open: a new render of the pane shows it again

  function render(pane) {
    if (!tw.has("/api/supervision", "get")) {
      tw.note(pane, "class.unavailable");
      return;
    }
    const only = fresh();
    tw.api("GET", "/api/supervision").then(only(function (data) {
      const tableNode = el("table", "grid-table class-table");
      const head = el("tr");
      for (const key of ["col.enterprise", "class.class", "class.computed", "class.why", "class.figures", "col.actions"]) {
        head.append(el("th", null, t(key)));
      }
      const thead = el("thead");
      thead.append(head);
      const body = el("tbody");
      const holder = el("div", "class-detail");
      for (const e of data.enterprises) {
        const tr = el("tr");
        tr.setAttribute("data-enterprise", e.enterprise_id);
        tr.setAttribute("data-class", e.class);
        const cls = el("td");
        cls.append(chip(e.class));
        if (e.override) {
          cls.append(el("div", "line2", t("class.overridden")));
          cls.lastChild.append(tw.dataEl("span", null, " " + e.override.by + "：" + e.override.reason));
        }
        const computed = el("td");
        computed.append(chip(e.computed));
        const why = el("td");
        for (const r of e.rules) {
          const line = el("div", null, ruleText(r));
          line.title = r.source;
          why.append(line);
        }
        if (!e.rules.length) why.append(el("span", "line2", t("class.noRule")));
        const actions = el("td", "actions");
        actions.append(tw.button("class.history", function () {
          historyOf = e.enterprise_id;
          showHistory(pane, e, holder);
        }));
        if (tw.hasRole(REGULATORS) && tw.has("/api/supervision/{enterprise_id}/override", "post")) {
          actions.append(tw.button("class.override", function () {
            tw.ask({
              title: t("class.override"), sub: e.enterprise_name,
              fields: [
                { name: "class", labelKey: "class.class", value: e.class,
                  options: ["special", "focus", "general"].map(function (c) { return [c, t("class." + c)]; }) },
                { name: "reason", labelKey: "class.reason", type: "textarea", required: true },
              ],
              submit: function (values) {
                return tw.api("POST", "/api/supervision/" + encodeURIComponent(e.enterprise_id) + "/override",
                  { class: values.class, reason: values.reason });
              },
            }).then(function (values) { if (values) render(pane); });
          }));
        }
        tr.append(tw.dataEl("td", null, e.enterprise_name), cls, computed, why, el("td", "line2", figures(e.metrics)), actions);
        body.append(tr);
      }
      tableNode.append(thead, body);
      const wrap = el("div", "table-wrap");
      wrap.append(tableNode);
      pane.replaceChildren(el("p", "notice", tw.tf("class.notice", { days: data.period_days })), wrap, holder);
      const open = data.enterprises.find(function (e) { return e.enterprise_id === historyOf; });
      if (open) showHistory(pane, open, holder);
    })).catch(only(function (err) {
      tw.note(pane, err.status === 403 ? "class.regulatorsOnly" : "apiError", err.message);
    }));
  }

  tw.parkPanes.supervision = function () { render(document.getElementById("park-supervision")); };
})();
