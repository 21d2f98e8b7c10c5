// 信息通报 — bulletins, a pane of the park view for regulators: issue a park's or county's bulletin for a day, week or
// month, read its league table with a chart of online rates against the target (uPlot bars), and download it as
// XLSX or PDF. Issued bulletins are listed, newest first.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const COLUMNS = ["rank", "enterprise_name", "points", "online_rate_percent", "meets_target", "alarms",
    "alarms_per_1000_point_hours", "median_ack_min", "median_disposition_min", "missed_commitments",
    "missed_check_ins", "overdue_duties", "open_findings", "quality_violations"];
  const AXIS = "#8b9bb0"; // the trend chart's axis and grid colours
  const GRID = "#2a3a4c";
  let plot = null;

  function cell(row, key) {
    const v = row[key];
    if (key === "enterprise_name") return tw.dataEl("td", null, v);
    if (key === "meets_target") {
      const td = el("td", null, v === null ? "—" : t(v ? "bulletin.yes" : "bulletin.no"));
      if (v === false) td.className = "bad";
      return td;
    }
    return el("td", "num", v === null || v === undefined ? "—" : String(v));
  }

  function chart(holder, b) {
    if (plot) { plot.destroy(); plot = null; }
    holder.replaceChildren();
    if (!window.uPlot || !b.rows.length) return;
    const xs = b.rows.map(function (r, i) { return i + 1; });
    const rates = b.rows.map(function (r) { return r.online_rate_percent; });
    const target = b.rows.map(function () { return b.target_percent; });
    const low = Math.min.apply(null, rates.filter(function (v) { return v !== null; }).concat([b.target_percent]));
    const names = b.rows.map(function (r) { return r.enterprise_name; });
    plot = new window.uPlot({
      width: Math.max(300, holder.clientWidth || 640), height: 220,
      scales: { x: { time: false, range: [0.5, b.rows.length + 0.5] },
        y: { range: [Math.max(0, Math.floor(low) - 1), 100] } },
      axes: [
        { stroke: AXIS, grid: { show: false }, ticks: { stroke: GRID },
          values: function (u, splits) { return splits.map(function (v) { return names[v - 1] || ""; }); },
          splits: function () { return xs; } },
        { stroke: AXIS, grid: { stroke: GRID }, ticks: { stroke: GRID }, label: t("bulletin.onlineRate") },
      ],
      series: [
        {},
        { label: t("bulletin.onlineRate"), fill: "rgba(59,130,196,0.6)", stroke: "#3b82c4",
          paths: window.uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } },
        { label: t("bulletin.target"), stroke: "#f85149", dash: [6, 4], width: 1.5, points: { show: false } },
      ],
      legend: { live: false },
    }, [xs, rates, target], holder);
  }

  // The data-quality rules the violations were counted by, each with its source (data: as the site file has it).
  function rules(quality) {
    const list = el("ul", "line2 bulletin-rules");
    for (const name of ["interruption", "flat_line", "out_of_range"]) {
      const item = el("li", null, tw.tf("bulletin.rule." + name, quality[name]) + " — ");
      item.append(tw.dataEl("span", null, quality[name].source));
      list.append(item);
    }
    return list;
  }

  function showBulletin(pane, detail, b) {
    const head = el("div", "bulletin-head");
    const source = el("p", "line2", t("bulletin.targetSource") + " ");
    source.append(tw.dataEl("span", null, b.target_source));
    head.append(
      el("h3", null, t("bulletin.period." + b.period.kind) + " " + b.period.label),
      tw.dataEl("p", "line2", b.scope_name),
      el("p", null, tw.tf("bulletin.summary", {
        rate: b.online_rate_percent === null ? "—" : b.online_rate_percent, target: b.target_percent,
        meeting: b.meeting_target, total: b.rows.length,
        from: tw.formatTime(b.measured_from_ms), to: tw.formatTime(b.measured_to_ms),
      })),
      source,
      rules(b.quality_rules),
    );
    const downloads = el("div", "actions");
    for (const format of ["xlsx", "pdf"]) {
      const btn = tw.button("bulletin.download." + format, function () {
        tw.download("/api/bulletins/" + b.id + "/export?format=" + format,
          "bulletin-" + b.scope_id + "-" + b.period.label + "." + format)
          .catch(function (err) { detail.append(el("p", "error", err.message)); });
      });
      btn.setAttribute("data-format", format);
      downloads.append(btn);
    }
    const graph = el("div", "bulletin-chart");
    const table = el("table", "grid-table bulletin-table");
    const tr = el("tr");
    for (const key of COLUMNS) tr.append(el("th", null, t("bulletin.col." + key)));
    const thead = el("thead");
    thead.append(tr);
    const body = el("tbody");
    for (const row of b.rows) {
      const line = el("tr");
      line.setAttribute("data-enterprise", row.enterprise_id);
      for (const key of COLUMNS) line.append(cell(row, key));
      body.append(line);
    }
    table.append(thead, body);
    const wrap = el("div", "table-wrap");
    wrap.append(table);
    detail.replaceChildren(head, downloads, graph, wrap);
    detail.setAttribute("data-bulletin", String(b.id));
    chart(graph, b);
  }

  function open(pane, detail, id) {
    tw.api("GET", "/api/bulletins/" + id).then(function (b) { showBulletin(pane, detail, b); })
      .catch(function (err) { detail.replaceChildren(el("p", "error", err.message)); });
  }

  function form(pane, detail, scopes, reload) {
    const box = el("div", "bulletin-form");
    const scope = el("select");
    scope.name = "scope";
    for (const s of scopes) {
      const o = tw.dataEl("option", null, t("bulletin.scope." + s.kind) + " " + s.name);
      o.value = s.kind + "\u0000" + s.id;
      scope.append(o);
    }
    const period = el("select");
    period.name = "period";
    for (const p of ["daily", "weekly", "monthly"]) {
      const o = el("option", null, t("bulletin.period." + p));
      o.value = p;
      period.append(o);
    }
    const day = el("input");
    day.type = "date";
    day.name = "day";
    const issue = tw.button("bulletin.issue", function () {
      const [kind, id] = scope.value.split("\u0000");
      const body = { scope: { kind: kind, id: id }, period: period.value };
      if (day.value) body.day = day.value;
      issue.disabled = true;
      tw.api("POST", "/api/bulletins", body).then(function (b) {
        showBulletin(pane, detail, b);
        reload();
      }).catch(function (err) {
        detail.replaceChildren(el("p", "error", err.message));
      }).finally(function () { issue.disabled = false; });
    });
    issue.setAttribute("data-action", "issue");
    const dayLabel = el("label", null, t("bulletin.day") + " ");
    dayLabel.append(day);
    box.append(scope, period, dayLabel, issue, el("span", "line2", t("bulletin.dayHint")));
    return box;
  }

  const fresh = tw.latestOnly(); // a render overtaken by a newer one (the tab shown twice) is dropped

  function render(pane) {
    if (!tw.has("/api/bulletins", "post")) {
      tw.note(pane, "bulletin.unavailable");
      return;
    }
    const detail = el("div", "bulletin-detail");
    const list = el("ul", "bulletin-list");
    function reload() {
      tw.api("GET", "/api/bulletins").then(function (rows) {
        list.replaceChildren();
        for (const r of rows) {
          const item = el("li");
          const link = el("a", null, t("bulletin.period." + r.period) + " " + r.label);
          link.href = "#/park/bulletins";
          link.addEventListener("click", function (ev) { ev.preventDefault(); open(pane, detail, r.id); });
          item.append(link, el("span", "line2", " " + t("bulletin.scope." + r.scope_kind) + " · " +
            tw.formatTime(r.issued_ms) + " · "), tw.dataEl("span", "line2", r.issued_by));
          list.append(item);
        }
        if (!rows.length) list.append(el("li", "line2", t("bulletin.none")));
        else if (!detail.hasAttribute("data-bulletin")) open(pane, detail, rows[0].id); // the newest, at first
      }).catch(function (err) { list.replaceChildren(el("li", "error", err.message)); });
    }
    const only = fresh();
    tw.api("GET", "/api/bulletins/scopes").then(only(function (scopes) {
      pane.replaceChildren(el("p", "notice", t("bulletin.notice")), form(pane, detail, scopes, reload),
        el("h3", null, t("bulletin.issued")), list, detail);
      reload();
    })).catch(only(function (err) {
      tw.note(pane, err.status === 403 ? "bulletin.regulatorsOnly" : "apiError", err.message);
    }));
  }

  tw.parkPanes.bulletins = function () { render(document.getElementById("park-bulletins")); };
})();
