// 包保履职 — a pane of the park view: each hazard source's three responsible persons, their periodic duties (with
// where each rule comes from and how sure that is), when each was last done and falls due; the responsible person
// records a duty done with its checklist and findings (/api/baobao).
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;

  function text(item, stem) {
    return tw.lang === "en" ? item[stem + "_en"] || item[stem + "_zh"] : item[stem + "_zh"] || item[stem + "_en"];
  }

  function recordForm(pane, src, duty) {
    const form = el("form", "user-form baobao-form");
    form.setAttribute("data-source", src.source_id);
    form.setAttribute("data-duty", duty.duty_id);
    const title = el("h3", null, t("baobao.recordTitle") + " · " + text(duty, "name") + " · ");
    title.append(tw.dataEl("span", null, src.source_id));
    const points = el("fieldset");
    points.append(el("legend", null, t("baobao.checklist")));
    duty.checklist.forEach(function (item, i) {
      const label = el("label", "check");
      const box = el("input");
      box.type = "checkbox";
      box.name = "point" + i;
      box.checked = true;
      label.append(box, el("span", null, tw.lang === "en" ? item.en : item.zh));
      points.append(label);
    });
    const dangers = el("label");
    const count = el("input");
    count.type = "number";
    count.name = "hidden_dangers";
    count.min = "0";
    count.max = "999";
    count.value = "0";
    dangers.append(el("span", null, t("baobao.dangers")), count);
    const findings = el("label");
    const area = el("textarea");
    area.name = "findings";
    area.maxLength = 2000;
    area.rows = 3;
    findings.append(el("span", null, t("baobao.findings")), area);
    const error = el("p", "error");
    error.hidden = true;
    const actions = el("div", "form-actions");
    const cancel = el("button", "tool", t("cancel"));
    cancel.type = "button";
    cancel.addEventListener("click", function () { form.remove(); });
    const submit = el("button", "primary", t("baobao.save"));
    submit.type = "submit";
    actions.append(cancel, submit);
    form.append(title, points, dangers, findings, error, actions);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      submit.disabled = true;
      const body = {
        source_id: src.source_id, duty_id: duty.duty_id, findings: area.value, hidden_dangers: Number(count.value),
        checklist: duty.checklist.map(function (_, i) { return form.elements["point" + i].checked; }),
      };
      tw.api("POST", "/api/baobao/records", body).then(function () { render(pane); }, function (err) {
        submit.disabled = false;
        error.hidden = false;
        tw.setText(error, t("act.failed") + ": " + err.message);
      });
    });
    return form;
  }

  function sourceTable(pane, src, forms) {
    const tableNode = el("table", "grid-table baobao-table");
    const head = el("tr");
    for (const key of ["baobao.person", "baobao.duty", "baobao.every", "baobao.last", "baobao.due", "duty.state",
      "baobao.basis", "col.actions"]) head.append(el("th", null, t(key)));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    const me = tw.user ? tw.user.login : null;
    for (const d of src.duties) {
      const tr = el("tr");
      tr.setAttribute("data-source", src.source_id);
      tr.setAttribute("data-duty", d.duty_id);
      tr.setAttribute("data-status", d.status);
      const who = el("td");
      who.append(el("span", null, t("person." + d.person) + " "), tw.dataEl("span", null, d.person_name));
      const last = d.last ? tw.formatTime(d.last.done_ms) + (d.last.findings ? " · " : "") : "—";
      const lastCell = el("td", null, last);
      if (d.last && d.last.findings) lastCell.append(tw.dataEl("span", null, d.last.findings));
      const state = el("td");
      const chip = el("span", "grade-chip baobao-status", t("baobao.status." + d.status));
      chip.setAttribute("data-status", d.status);
      state.append(chip);
      const basis = el("td", "line2", t("baobao.confidence." + d.confidence.replace(/ /g, "_")));
      basis.title = d.source;
      const actions = el("td", "actions");
      if (me && d.person_user === me) {
        actions.append(tw.button("baobao.record", function () {
          forms.replaceChildren(recordForm(pane, src, d));
        }));
      }
      tr.append(who, el("td", null, text(d, "name")), el("td", null, tw.tf("baobao.days", { n: d.every_days })),
        lastCell, el("td", null, tw.formatTime(d.due_ms) + (d.due_for ? " · " + tw.tf("baobao.before", { day: d.due_for }) : "")),
        state, basis, actions);
      body.append(tr);
    }
    tableNode.append(thead, body);
    return tableNode;
  }

  const fresh = tw.latestOnly(); // a render overtaken by a newer one (an action's refresh) is dropped

  function render(pane) {
    if (!tw.has("/api/baobao", "get")) {
      tw.note(pane, "baobao.unavailable");
      return;
    }
    const only = fresh();
    tw.api("GET", "/api/baobao").then(only(function (data) {
      pane.replaceChildren();
      const forms = el("div", "baobao-forms");
      pane.append(forms);
      for (const src of data.sources) {
        const section = el("section", "page-section");
        section.append(tw.dataEl("h3", null, src.enterprise_name + " · " + src.source_id + " " + src.source_name));
        const wrap = el("div", "table-wrap");
        wrap.append(sourceTable(pane, src, forms));
        section.append(wrap);
        pane.append(section);
      }
      if (!data.sources.length) pane.append(el("p", "api-note", t("baobao.empty")));
    })).catch(only(function (err) {
      tw.note(pane, "apiError", err.message);
    }));
  }

  tw.parkPanes.baobao = function () { render(document.getElementById("park-baobao")); };
})();
