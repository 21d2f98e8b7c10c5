// 测试回放 — the tester: scenario and feed list, start/stop at a speed, and the timeline of expected
// (golden) vs actual alarms, from /api/replay/* (dashboard/routers/replay.py).
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const setText = tw.setText;

  let timer = null;
  let lastStatus = null;

  function unavailable(err) {
    const noteNode = document.getElementById("replay-note");
    noteNode.hidden = false;
    const missing = !err || err.status === 404 || err.status === 503;
    noteNode.setAttribute("data-i18n", missing ? "replay.unavailable" : "apiError");
    setText(noteNode, t(missing ? "replay.unavailable" : "apiError") + (err && err.detail ? " (" + err.detail + ")" : ""));
    document.getElementById("scenario-rows").replaceChildren();
    document.getElementById("replay-stop").disabled = true;
  }

  function speedValue() {
    const v = document.getElementById("replay-speed").value;
    return v === "max" ? "max" : Number(v);
  }

  function loadCatalogue() {
    if (!tw.has("/api/replay/scenarios", "get")) {
      unavailable(null);
      return;
    }
    tw.api("GET", "/api/replay/scenarios").then(function (data) {
      document.getElementById("replay-note").hidden = true;
      document.getElementById("replay-stop").disabled = false;
      const body = document.getElementById("scenario-rows");
      body.replaceChildren();
      const mayRun = tw.hasRole(tw.REPLAY_ROLES);
      document.getElementById("replay-stop").hidden = !mayRun;
      document.getElementById("replay-speed").disabled = !mayRun;
      for (const item of (data.scenarios || []).concat(data.feeds || [])) {
        const tr = el("tr");
        tr.setAttribute("data-name", item.name);
        const actions = el("td");
        tr.append(el("td", null, t(item.kind === "feed" ? "replay.feed" : "replay.scenario")), el("td", "mono", item.name),
          el("td", null, tw.bilingualText(item.description)), el("td", null, item.has_golden ? t("yes") : t("no")),
          actions);
        body.append(tr);
        if (!mayRun) continue; // replay control is for testers and admins
        const b = tw.button("replay.start", function () {
          b.disabled = true;
          tw.api("POST", "/api/replay/start", { kind: item.kind, name: item.name, speed: speedValue() })
            .then(renderStatus)
            .catch(function (err) { window.alert(t("act.failed") + ": " + err.message); })
            .then(function () { b.disabled = false; });
        }, "small primary");
        b.setAttribute("data-action", "start");
        actions.append(b);
      }
    }).catch(unavailable);
  }

  function loadStatus() {
    if (!tw.has("/api/replay/status", "get")) return;
    tw.api("GET", "/api/replay/status").then(renderStatus).catch(function () {});
  }

  function renderStatus(s) {
    lastStatus = s;
    const key = s.state === "running" ? "replay.running" : s.state === "idle" ? "replay.idle" : "replay.finished";
    const speed = s.speed === null || s.speed === undefined ? "max" : s.speed + "×";
    const pos = s.duration_s ? Math.round(s.position_s) + " / " + Math.round(s.duration_s) + " s" : Math.round(s.position_s || 0) + " s";
    const check = s.check_ok === true ? " · " + t("replay.match") : s.check_ok === false ? " · " + t("replay.mismatch") : "";
    const status = document.getElementById("replay-status");
    status.setAttribute("data-state", s.state);
    const bar = document.getElementById("replay-progress");
    bar.hidden = !s.duration_s || s.state === "idle";
    if (s.duration_s) {
      bar.max = s.duration_s;
      bar.value = Math.min(s.duration_s, s.position_s || 0);
    }
    setText(status, t(key) + (s.name ? " · " + s.name + " · " + speed + " · " + pos : "") + check + (s.error ? " · " + s.error : ""));
    renderTimeline(s);
  }

  // A golden file's sensor pattern (glob: ? one character, * any) in words: the sensors it matches here, or how many.
  function describePattern(pattern) {
    if (!/[?*]/.test(pattern)) return pattern;
    const rx = new RegExp("^" + pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\?/g, ".")
      .replace(/\*/g, ".*") + "$");
    const ids = Array.from(tw.sensors.keys()).filter(function (id) { return rx.test(id); });
    if (ids.length && ids.length <= 3) return ids.join(" / ");
    return tw.tf("replay.anySensor", { n: ids.length });
  }

  // Two lanes on one time axis: the golden file's windows above, what the alarm core did below.
  function renderTimeline(s) {
    const box = document.getElementById("replay-timeline");
    const expected = s.expected || [];
    const actual = s.actual || [];
    if (!expected.length && !actual.length) {
      tw.note(box, "replay.noTimeline");
      return;
    }
    const keys = [];
    const seen = new Set();
    for (const e of expected.concat(actual)) {
      const k = e.sensor_id + " " + e.condition;
      if (!seen.has(k)) {
        seen.add(k);
        keys.push(k);
      }
    }
    let end = s.duration_s || 0;
    for (const e of expected.concat(actual)) end = Math.max(end, e.t_s, e.window_s ? e.window_s[1] : 0);
    end = Math.max(end, 1);
    const rowH = 26;
    const left = 200;
    const W = 1000;
    const H = 30 + keys.length * rowH;
    const x = function (ts) { return left + ts / end * (W - left - 20); };
    const root = tw.svg("svg", { viewBox: "0 0 " + W + " " + H, class: "timeline-svg" });
    for (let i = 0; i <= 5; i++) {
      const ts = end * i / 5;
      root.append(tw.svg("line", { x1: x(ts), x2: x(ts), y1: 16, y2: H, class: "grid" }));
      const label = tw.svg("text", { x: x(ts), y: 12, class: "axis", "text-anchor": "middle" });
      label.textContent = Math.round(ts) + " s";
      root.append(label);
    }
    keys.forEach(function (k, i) {
      const y0 = 22 + i * rowH;
      const label = tw.svg("text", { x: 4, y: y0 + 15, class: "axis lane-label" });
      const parts = k.split(" ");
      label.textContent = describePattern(parts[0]) + " " + t("cond." + String(parts[1]).toLowerCase(), parts[1]);
      root.append(label);
      for (const e of expected) {
        if (e.sensor_id + " " + e.condition !== k) continue;
        const w = e.window_s || [e.t_s, e.t_s];
        root.append(tw.svg("rect", { x: x(w[0]) - 2, y: y0 + 2, width: Math.max(4, x(w[1]) - x(w[0]) + 4), height: 9,
          class: "expected" + (e.matched === false ? " missed" : "") }));
      }
      for (const e of actual) {
        if (e.sensor_id + " " + e.condition !== k) continue;
        root.append(tw.svg("circle", { cx: x(e.t_s), cy: y0 + 17, r: 5,
          class: "actual " + e.action + (e.matched === false ? " unexpected" : "") }));
      }
    });
    const legend = el("p", "legend");
    legend.append(el("span", "legend-expected", t("replay.expected")), el("span", "legend-actual", t("replay.actual")));
    box.replaceChildren(legend, root);
  }

  document.getElementById("replay-stop").addEventListener("click", function () {
    tw.api("POST", "/api/replay/stop", {}).then(renderStatus).catch(unavailable);
  });
  tw.on("lang", function () {
    if (tw.view === "replay") loadCatalogue();
    if (lastStatus) renderStatus(lastStatus);
  });

  tw.views.replay = {
    show: function () {
      loadCatalogue();
      loadStatus();
      if (!timer) timer = window.setInterval(loadStatus, 2000);
    },
    hide: function () {
      if (timer) window.clearInterval(timer);
      timer = null;
    },
  };
})();
