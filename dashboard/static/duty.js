// 值班点名 — duty watch, a pane of the park view: this shift's desks (control rooms, the park's and county's duty
// desks) with their check-ins, the caller's own check-in, roll calls by regulators and the called room's answer.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const REGULATORS = ["park_regulator", "county_regulator"];

  function chip(prefix, status) {
    const node = el("span", "grade-chip duty-status", t(prefix + status));
    node.setAttribute("data-status", status);
    return node;
  }

  function act(pane, key, run) {
    const b = tw.button(key, function () {
      b.disabled = true;
      run().then(function () { render(pane); }, function (err) {
        b.disabled = false;
        tw.setText(document.getElementById("duty-error"), t("act.failed") + ": " + err.message);
      });
    });
    return b;
  }

  function deskTable(pane, data) {
    const tableNode = el("table", "grid-table duty-table");
    const head = el("tr");
    for (const key of ["duty.desk", "duty.state", "duty.who", "duty.at", "col.actions"]) head.append(el("th", null, t(key)));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    const calls = tw.hasRole(REGULATORS) && tw.has("/api/duty/roll-calls", "post");
    for (const d of data.desks) {
      const tr = el("tr");
      tr.setAttribute("data-desk", d.desk);
      tr.setAttribute("data-status", d.status);
      const state = el("td");
      state.append(chip("duty.status.", d.status));
      const actions = el("td", "actions");
      if (data.my_desks.indexOf(d.desk) >= 0 && !d.check_in) {
        actions.append(act(pane, "duty.checkIn", function () { return tw.api("POST", "/api/duty/check-in", { desk: d.desk }); }));
      }
      if (calls && d.kind === "enterprise") {
        actions.append(act(pane, "duty.call", function () {
          return tw.api("POST", "/api/duty/roll-calls", { enterprise_ids: [d.desk] });
        }));
      }
      tr.append(tw.dataEl("td", null, d.name), state, tw.dataEl("td", null, d.check_in ? d.check_in.name : "—"),
        el("td", null, d.check_in ? tw.formatTime(d.check_in.ts_ms) : "—"), actions);
      body.append(tr);
    }
    tableNode.append(thead, body);
    return tableNode;
  }

  function callTable(pane, data) {
    const tableNode = el("table", "grid-table roll-call-table");
    const head = el("tr");
    for (const key of ["col.enterprise", "duty.calledBy", "duty.calledAt", "duty.answerBy", "duty.state", "duty.answered",
      "col.actions"]) head.append(el("th", null, t(key)));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    for (const c of data.roll_calls) {
      const tr = el("tr");
      tr.setAttribute("data-call", c.id);
      tr.setAttribute("data-desk", c.desk);
      tr.setAttribute("data-status", c.status);
      const state = el("td");
      state.append(chip("duty.call.", c.status));
      const actions = el("td", "actions");
      if (!c.answered_ms && data.my_desks.indexOf(c.desk) >= 0) {
        actions.append(act(pane, "duty.answer", function () {
          return tw.api("POST", "/api/duty/roll-calls/" + encodeURIComponent(c.id) + "/answer", {});
        }));
      }
      tr.append(tw.dataEl("td", null, c.desk_name), tw.dataEl("td", null, c.requested_by),
        el("td", null, tw.formatTime(c.requested_ms)), el("td", null, tw.formatTime(c.due_ms)), state,
        el("td", null, c.answered_ms ? c.answered_by + " · " + tw.formatTime(c.answered_ms) : "—"), actions);
      body.append(tr);
    }
    tableNode.append(thead, body);
    return tableNode;
  }

  function randomCall(pane) {
    const form = el("form", "filters duty-random");
    const label = el("label");
    const count = el("input");
    count.type = "number";
    count.name = "count";
    count.min = "1";
    count.max = "50";
    count.value = "1";
    label.append(el("span", null, t("duty.randomCount")), count);
    const go = el("button", "tool", t("duty.random"));
    go.type = "submit";
    form.append(label, go);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      go.disabled = true;
      tw.api("POST", "/api/duty/roll-calls", { random: Number(count.value) }).then(function () { render(pane); },
        function (err) {
          go.disabled = false;
          tw.setText(document.getElementById("duty-error"), t("act.failed") + ": " + err.message);
        });
    });
    return form;
  }

  const fresh = tw.latestOnly(); // a render overtaken by a newer one (an action's refresh) is dropped

  function render(pane) {
    if (!tw.has("/api/duty", "get")) {
      tw.note(pane, "duty.unavailable");
      return;
    }
    const only = fresh();
    tw.api("GET", "/api/duty").then(only(function (data) {
      const shift = el("p", "notice", tw.tf("duty.shift", {
        shift: data.shift, start: tw.formatTime(data.shift_start_ms), end: tw.formatTime(data.shift_end_ms),
        due: tw.formatTime(data.check_in_due_ms),
      }));
      const error = el("p", "error");
      error.id = "duty-error";
      error.setAttribute("aria-live", "polite");
      pane.replaceChildren(shift, error);
      const desks = el("div", "table-wrap");
      desks.append(deskTable(pane, data));
      pane.append(el("h3", null, t("duty.desks")), desks);
      pane.append(el("h3", null, t("duty.rollCalls")));
      if (tw.hasRole(REGULATORS) && tw.has("/api/duty/roll-calls", "post")) pane.append(randomCall(pane));
      if (data.roll_calls.length) {
        const calls = el("div", "table-wrap");
        calls.append(callTable(pane, data));
        pane.append(calls);
      } else {
        pane.append(el("p", "api-note", t("duty.noCalls")));
      }
    })).catch(only(function (err) {
      tw.note(pane, "apiError", err.message);
    }));
  }

  tw.parkPanes.duty = function () { render(document.getElementById("park-duty")); };
})();
