// 在线巡查 — online patrols and spot checks, a pane of the park view: for regulators the plan (who is due, who was
// drawn today), an enterprise's live state to walk through and the patrol's findings; for everyone in scope the
// findings with their rectification requests, answered by the enterprise and verified by the regulator.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const REGULATORS = ["park_regulator", "county_regulator"];
  const ENTERPRISE_PEOPLE = ["operator", "safety_manager"];

  function chip(prefix, status) {
    const node = el("span", "grade-chip patrol-status", t(prefix + status));
    node.setAttribute("data-status", status);
    return node;
  }

  function failed(err) {
    tw.setText(document.getElementById("patrol-error"), t("act.failed") + ": " + err.message);
  }

  function table(heads, rows) {
    const node = el("table", "grid-table");
    const head = el("tr");
    for (const key of heads) head.append(el("th", null, t(key)));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    for (const r of rows) body.append(r);
    node.append(thead, body);
    const wrap = el("div", "table-wrap");
    wrap.append(node);
    return wrap;
  }

  function planRows(pane, plan, walk) {
    return plan.enterprises.map(function (e) {
      const tr = el("tr");
      tr.setAttribute("data-enterprise", e.enterprise_id);
      tr.setAttribute("data-status", e.status);
      const state = el("td");
      state.append(chip("patrol.status.", e.status));
      if (e.spot_check_today) state.append(" ", chip("patrol.", "spot"));
      const actions = el("td", "actions");
      actions.append(tw.button("patrol.start", function () { walkThrough(pane, e, walk); }));
      tr.append(tw.dataEl("td", null, e.enterprise_name), state,
        el("td", null, e.last_ms ? tw.formatTime(e.last_ms) + " · " + t("patrol.kind." + e.last_kind) : "—"),
        el("td", null, e.due_ms ? tw.formatTime(e.due_ms) : t("patrol.now")), el("td", "num", String(e.open_findings)),
        actions);
      return tr;
    });
  }

  function liveCards(live) {
    const box = el("div", "patrol-live");
    const card = function (key, value, bad) {
      const c = el("div", "patrol-card" + (bad ? " bad" : ""));
      c.append(el("div", "detail-label", t(key)), el("b", null, value));
      return c;
    };
    box.append(
      card("patrol.alarms", String(live.active_alarms), live.active_alarms > 0),
      card("patrol.escalations", String(live.open_escalations), live.open_escalations > 0),
      card("patrol.online", live.points_online + " / " + live.points, live.points_online < live.points),
      card("patrol.commitment", t("commit.status." + live.commitment, t("commit.none")), live.commitment === "missing"),
      card("patrol.checkIn", t("duty.status." + live.check_in), live.check_in === "missing"),
      card("patrol.duties", String(live.duties_overdue), live.duties_overdue > 0),
      card("patrol.openFindings", String(live.open_findings), live.open_findings > 0));
    return box;
  }

  function findingRow(list) {
    const row = el("div", "patrol-finding");
    const text = el("input");
    text.name = "text";
    text.maxLength = 2000;
    text.placeholder = t("patrol.findingText");
    const severity = el("select");
    severity.name = "severity";
    for (const s of ["general", "major"]) {
      const o = el("option", null, t("patrol.severity." + s));
      o.value = s;
      severity.append(o);
    }
    const evidence = el("label", "check");
    const ev = el("input");
    ev.type = "checkbox";
    ev.name = "evidence";
    evidence.append(ev, el("span", null, t("patrol.evidence")));
    const rectify = el("label", "check");
    const rx = el("input");
    rx.type = "checkbox";
    rx.name = "rectify";
    rx.checked = true;
    rectify.append(rx, el("span", null, t("patrol.rectify")));
    const days = el("input");
    days.type = "number";
    days.name = "days";
    days.min = "1";
    days.max = "366";
    days.value = "7";
    const daysLabel = el("label");
    daysLabel.append(el("span", null, t("patrol.days")), days);
    row.append(text, severity, evidence, rectify, daysLabel);
    list.append(row);
  }

  function walkThrough(pane, e, walk) {
    walk.replaceChildren(el("p", "notice", t("patrol.loading")));
    tw.api("GET", "/api/patrols/" + encodeURIComponent(e.enterprise_id) + "/live").then(function (live) {
      const form = el("form", "user-form patrol-form");
      form.setAttribute("data-enterprise", e.enterprise_id);
      const title = el("h3", null, t("patrol.walk") + " · ");
      title.append(tw.dataEl("span", null, e.enterprise_name));
      const kind = el("select");
      kind.name = "kind";
      for (const k of ["patrol", "spot_check"]) {
        const o = el("option", null, t("patrol.kind." + k));
        o.value = k;
        kind.append(o);
      }
      kind.value = e.spot_check_today ? "spot_check" : "patrol";
      const kindLabel = el("label");
      kindLabel.append(el("span", null, t("patrol.kind")), kind);
      const note = el("textarea");
      note.name = "note";
      note.rows = 2;
      note.maxLength = 2000;
      const noteLabel = el("label");
      noteLabel.append(el("span", null, t("patrol.note")), note);
      const list = el("div", "patrol-findings");
      const add = tw.button("patrol.addFinding", function () { findingRow(list); });
      const actions = el("div", "form-actions");
      const submit = el("button", "primary", t("patrol.save"));
      submit.type = "submit";
      actions.append(add, submit);
      form.append(title, liveCards(live), kindLabel, noteLabel, list, actions);
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        const findings = [];
        for (const row of list.querySelectorAll(".patrol-finding")) {
          const text = row.querySelector("[name=text]").value.trim();
          if (!text) continue;
          findings.push({
            text: text, severity: row.querySelector("[name=severity]").value,
            evidence: row.querySelector("[name=evidence]").checked, rectify: row.querySelector("[name=rectify]").checked,
            rectify_days: Number(row.querySelector("[name=days]").value) || null,
          });
        }
        submit.disabled = true;
        tw.api("POST", "/api/patrols", { enterprise_id: e.enterprise_id, kind: kind.value, note: note.value, findings: findings })
          .then(function () { render(pane); }, function (err) { submit.disabled = false; failed(err); });
      });
      walk.replaceChildren(form);
    }).catch(failed);
  }

  function findingRows(pane, rows) {
    const mayAnswer = tw.hasRole(ENTERPRISE_PEOPLE);
    const mayVerify = tw.hasRole(REGULATORS);
    return rows.map(function (f) {
      const tr = el("tr");
      tr.setAttribute("data-finding", String(f.id));
      tr.setAttribute("data-enterprise", f.enterprise_id);
      tr.setAttribute("data-state", f.state);
      const state = el("td");
      state.append(chip("patrol.finding.", f.state));
      const actions = el("td", "actions");
      if (mayAnswer && (f.state === "open" || f.state === "overdue")) {
        actions.append(tw.button("patrol.answer", function () {
          tw.ask({
            title: t("patrol.answer"), sub: f.text,
            fields: [{ name: "text", labelKey: "patrol.answerText", type: "textarea", required: true }],
            submit: function (values) {
              return tw.api("POST", "/api/findings/" + f.id + "/answer", { text: values.text });
            },
          }).then(function (values) { if (values) render(pane); });
        }));
      }
      if (mayVerify && f.state === "answered") {
        actions.append(tw.button("patrol.verify", function () {
          tw.api("POST", "/api/findings/" + f.id + "/verify", {}).then(function () { render(pane); }, failed);
        }));
      }
      const found = el("td");
      found.append(tw.dataEl("span", null, f.text));
      tr.append(tw.dataEl("td", null, f.enterprise_name), el("td", null, tw.formatTime(f.found_ms)),
        tw.dataEl("td", null, f.found_by), found, el("td", null, t("patrol.severity." + f.severity)),
        el("td", null, f.rectify_by_ms ? tw.formatTime(f.rectify_by_ms) : "—"), state,
        tw.dataEl("td", null, f.answer || "—"), actions);
      return tr;
    });
  }

  const fresh = tw.latestOnly(); // a render overtaken by a newer one (an action's refresh) is dropped

  function render(pane) {
    if (!tw.has("/api/findings", "get")) {
      tw.note(pane, "patrol.unavailable");
      return;
    }
    const error = el("p", "error");
    error.id = "patrol-error";
    error.setAttribute("aria-live", "polite");
    const regulator = tw.hasRole(REGULATORS);
    const only = fresh();
    Promise.all([regulator ? tw.api("GET", "/api/patrols") : Promise.resolve(null), tw.api("GET", "/api/findings")])
      .then(only(function (answers) {
        const plan = answers[0];
        const found = answers[1];
        pane.replaceChildren(error);
        if (plan) {
          const walk = el("div", "patrol-walk");
          pane.append(el("p", "notice", tw.tf("patrol.policy", { days: plan.every_days, percent: plan.spot_check_percent })),
            table(["col.enterprise", "duty.state", "patrol.last", "patrol.due", "patrol.openFindings", "col.actions"],
              planRows(pane, plan, walk)), walk);
        }
        pane.append(el("h3", null, t("patrol.findings")));
        if (found.length) {
          pane.append(table(["col.enterprise", "patrol.foundAt", "patrol.foundBy", "patrol.finding", "patrol.severity",
            "patrol.rectifyBy", "duty.state", "patrol.answerText", "col.actions"], findingRows(pane, found)));
        } else {
          pane.append(el("p", "api-note", t("patrol.noFindings")));
        }
      })).catch(only(function (err) { tw.note(pane, "apiError", err.message); }));
  }

  tw.parkPanes.patrols = function () { render(document.getElementById("park-patrols")); };
})();
