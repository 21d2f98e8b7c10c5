// 安全承诺 — the daily safety commitment: a pane of the park view with each unit's state on a day (made, late,
// missing, due) and, for the enterprise's own people, the form that makes today's commitment (/api/commitments).
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const SUBMITTERS = ["operator", "safety_manager"];
  let day = null; // the local date shown (YYYY-MM-DD); null: today

  function cellOf(text) {
    return el("td", null, text === undefined || text === null || text === "" ? "—" : String(text));
  }

  function workText(c, kinds) {
    const parts = kinds.filter(function (k) { return c.work[k]; }).map(function (k) { return t("work." + k) + " " + c.work[k]; });
    return parts.join("，") || t("commit.none");
  }

  function flagText(c, kinds) {
    return kinds.filter(function (k) { return c.flags[k]; }).map(function (k) { return t("flag." + k); }).join("，") ||
      t("commit.none");
  }

  function statusChip(status) {
    const chip = el("span", "grade-chip commit-status", t("commit.status." + status));
    chip.setAttribute("data-status", status);
    return chip;
  }

  function numberField(form, name, labelKey, value) {
    const label = el("label");
    const input = el("input");
    input.type = "number";
    input.name = name;
    input.min = "0";
    input.max = "999";
    input.step = "1";
    input.value = String(value);
    input.required = true;
    label.append(el("span", null, t(labelKey)), input);
    form.append(label);
  }

  // The form for one unit's commitment of today.
  function commitForm(unit, data, pane) {
    const form = el("form", "user-form commit-form");
    form.setAttribute("data-enterprise", unit.enterprise_id);
    const title = el("h3", null, t("commit.title") + " · ");
    title.append(tw.dataEl("span", null, unit.enterprise_name + (unit.source_id ? " · " + unit.source_id : "")));
    form.append(title);
    const units = el("fieldset");
    units.append(el("legend", null, t("commit.units")));
    numberField(units, "total", "commit.total", 1);
    numberField(units, "running", "commit.running", 1);
    numberField(units, "parked", "commit.parked", 0);
    numberField(units, "maintenance", "commit.maintenance", 0);
    const work = el("fieldset");
    work.append(el("legend", null, t("commit.work")));
    for (const k of data.work_kinds) numberField(work, "work." + k, "work." + k, 0);
    const flags = el("fieldset");
    flags.append(el("legend", null, t("commit.flags")));
    for (const k of data.flag_kinds) {
      const label = el("label", "check");
      const box = el("input");
      box.type = "checkbox";
      box.name = "flag." + k;
      label.append(box, el("span", null, t("flag." + k)));
      flags.append(label);
    }
    const grade = el("label");
    const select = el("select");
    select.name = "risk_grade";
    for (const g of [1, 2, 3, 4]) {
      const o = el("option", null, t("risk." + g));
      o.value = String(g);
      select.append(o);
    }
    select.value = "3";
    grade.append(el("span", null, t("commit.risk")), select);
    const who = el("label");
    const name = el("input");
    name.name = "committed_by";
    name.maxLength = 64;
    name.required = true;
    name.value = tw.user ? tw.user.name || tw.user.login : "";
    who.append(el("span", null, t("commit.by")), name);
    const noteLabel = el("label");
    const note = el("textarea");
    note.name = "note";
    note.maxLength = 500;
    note.rows = 2;
    noteLabel.append(el("span", null, t("commit.note")), note);
    const error = el("p", "error");
    error.hidden = true;
    const actions = el("div", "form-actions");
    const submit = el("button", "primary", t("commit.submit"));
    submit.type = "submit";
    actions.append(submit);
    form.append(units, work, flags, grade, who, noteLabel, error, actions);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const value = function (n) { return Number(form.elements[n].value); };
      const body = {
        enterprise_id: unit.enterprise_id,
        units: { total: value("total"), running: value("running"), parked: value("parked"), maintenance: value("maintenance") },
        work: {},
        flags: {},
        risk_grade: value("risk_grade"),
        committed_by: name.value,
        note: note.value,
      };
      if (unit.source_id) body.source_id = unit.source_id;
      for (const k of data.work_kinds) if (value("work." + k)) body.work[k] = value("work." + k);
      for (const k of data.flag_kinds) if (form.elements["flag." + k].checked) body.flags[k] = true;
      error.hidden = true;
      submit.disabled = true;
      tw.api("POST", "/api/commitments", body).then(function () {
        render(pane);
      }, function (err) {
        submit.disabled = false;
        error.hidden = false;
        tw.setText(error, t("act.failed") + ": " + err.message);
      });
    });
    return form;
  }

  function dayTable(data) {
    const tableNode = el("table", "grid-table commit-table");
    const head = el("tr");
    for (const key of ["col.enterprise", "col.source", "commit.state", "commit.by", "commit.at", "commit.unitsShort",
      "commit.work", "commit.flags", "commit.risk"]) head.append(el("th", null, t(key)));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    for (const u of data.units) {
      const tr = el("tr");
      tr.setAttribute("data-enterprise", u.enterprise_id);
      tr.setAttribute("data-status", u.status);
      const c = u.commitment;
      const state = el("td");
      state.append(statusChip(u.status));
      tr.append(tw.dataEl("td", null, u.enterprise_name || u.enterprise_id), cellOf(u.source_id), state);
      if (c) {
        tr.append(tw.dataEl("td", null, c.committed_by), cellOf(tw.formatTime(c.submitted_ms)),
          cellOf(tw.tf("commit.runningOf", { running: c.units.running, total: c.units.total })),
          cellOf(workText(c, data.work_kinds)), cellOf(flagText(c, data.flag_kinds)), cellOf(t("risk." + c.risk_grade)));
      } else {
        for (let i = 0; i < 6; i++) tr.append(cellOf(null));
      }
      body.append(tr);
    }
    tableNode.append(thead, body);
    return tableNode;
  }

  const fresh = tw.latestOnly(); // a render overtaken by a newer one (an action's refresh) is dropped

  function render(pane) {
    if (!tw.has("/api/commitments", "get")) {
      tw.note(pane, "commit.unavailable");
      return;
    }
    const query = day ? "?day=" + encodeURIComponent(day) : "";
    const only = fresh();
    tw.api("GET", "/api/commitments" + query).then(only(function (data) {
      const bar = el("form", "filters");
      const pick = el("input");
      pick.type = "date";
      pick.name = "day";
      pick.value = data.day;
      pick.addEventListener("change", function () {
        day = pick.value || null;
        render(pane);
      });
      const label = el("label");
      label.append(el("span", null, t("commit.day")), pick);
      bar.append(label, el("span", "notice", tw.tf("commit.deadline", { time: data.deadline, zone: data.timezone })));
      pane.replaceChildren(bar);
      if (!data.units.length) {
        pane.append(el("p", "api-note", t("commit.empty")));
        return;
      }
      pane.append(el("div", "table-wrap"));
      pane.lastChild.append(dayTable(data));
      if (tw.hasRole(SUBMITTERS) && tw.has("/api/commitments", "post") && data.day === data.today) {
        for (const u of data.units) if (u.status === "due" || u.status === "missing") pane.append(commitForm(u, data, pane));
      }
    })).catch(only(function (err) {
      tw.note(pane, "apiError", err.message);
    }));
  }

  tw.parkPanes.commitments = function () { render(document.getElementById("park-commitments")); };
})();
