// Trend panel: one sensor's history from GET /api/readings (downsampled server-side) as an SVG polyline,
// with its alarm limits drawn; the 1 h view follows live readings.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const W = 640;
  const H = 220;
  const M = { left: 52, right: 78, top: 12, bottom: 26 };
  const LIMIT_STYLE = { hh: "lim-crit", ll: "lim-crit", h: "lim-warn", l: "lim-warn",
    first: "lim-warn", second: "lim-crit", low: "lim-crit", high: "lim-crit" };

  let sensorId = null;
  let rangeMs = 3600000;
  let points = []; // [ts_ms, value|null]
  let request = 0;

  const chart = document.getElementById("trend-chart");
  const title = document.getElementById("trend-sensor");

  function limitsOf(info) {
    const marks = [];
    const lim = info.limits;
    if (lim) for (const key of ["hh", "h", "l", "ll"]) if (typeof lim[key] === "number") marks.push([key, lim[key]]);
    const g = info.gas_limits;
    if (g) for (const key of ["first", "second", "low", "high"]) if (typeof g[key] === "number") marks.push([key, g[key]]);
    return marks;
  }

  function open(id) {
    const entry = tw.sensors.get(id);
    if (!entry) return;
    sensorId = id;
    const info = entry.info;
    tw.setText(title, (info.name || info.id) + (info.unit && info.unit !== "state" ? " (" + info.unit + ")" : ""));
    title.setAttribute("data-sensor", id);
    document.getElementById("trend").classList.add("open");
    load();
  }

  function load() {
    if (!sensorId) return;
    const mine = ++request;
    const end = Math.round(tw.serverNow());
    const maxPoints = Math.min(2000, Math.max(200, Math.round(chart.clientWidth || W)));
    const query = "?sensor=" + encodeURIComponent(sensorId) + "&start=" + (end - rangeMs) + "&end=" + (end + 1) +
      "&max_points=" + maxPoints;
    tw.note(chart, "trend.loading");
    tw.api("GET", "/api/readings" + query).then(function (data) {
      if (mine !== request) return; // a newer request superseded this one
      points = data.points.map(function (p) { return [p.ts_ms, p.value]; });
      draw();
    }).catch(function (err) {
      if (mine === request) tw.note(chart, err.status === 404 ? "notAvailable" : "apiError", err.message);
    });
  }

  function draw() {
    const entry = tw.sensors.get(sensorId);
    if (!entry) return;
    const info = entry.info;
    const end = tw.serverNow();
    const start = end - rangeMs;
    const values = points.filter(function (p) { return p[1] !== null && p[0] >= start; });
    const marks = limitsOf(info);
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of values) {
      lo = Math.min(lo, p[1]);
      hi = Math.max(hi, p[1]);
    }
    for (const m of marks) {
      // Every limit stays in view: how far the value is from each is what the operator reads off a trend.
      lo = Math.min(lo, m[1]);
      hi = Math.max(hi, m[1]);
    }
    if (!Number.isFinite(lo)) {
      lo = info.range[0];
      hi = info.range[1];
    }
    if (hi - lo < 1e-9) {
      hi += 1;
      lo -= 1;
    }
    const pad = (hi - lo) * 0.08;
    lo -= pad;
    hi += pad;
    const x = function (ts) { return M.left + (ts - start) / rangeMs * (W - M.left - M.right); };
    const y = function (v) { return M.top + (hi - v) / (hi - lo) * (H - M.top - M.bottom); };
    const root = tw.svg("svg", { viewBox: "0 0 " + W + " " + H, class: "trend-svg", role: "img",
      "aria-label": (info.name || info.id) });
    root.append(tw.svg("rect", { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom,
      class: "plot" }));
    const digits = Math.abs(hi - lo) < 5 ? 2 : Math.abs(hi - lo) < 50 ? 1 : 0;
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4;
      root.append(tw.svg("line", { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: "grid" }));
      const label = tw.svg("text", { x: M.left - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" });
      label.textContent = v.toFixed(digits);
      root.append(label);
    }
    for (let i = 0; i <= 4; i++) {
      const ts = start + rangeMs * i / 4;
      const d = new Date(ts);
      const label = tw.svg("text", { x: x(ts), y: H - 8, class: "axis",
        "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" });
      label.textContent = rangeMs > 86400000 ? tw.pad(d.getMonth() + 1) + "-" + tw.pad(d.getDate()) + " " +
        tw.pad(d.getHours()) + "h" : tw.pad(d.getHours()) + ":" + tw.pad(d.getMinutes());
      root.append(label);
    }
    for (const m of marks) {
      if (m[1] < lo || m[1] > hi) continue;
      root.append(tw.svg("line", { x1: M.left, x2: W - M.right, y1: y(m[1]), y2: y(m[1]),
        class: "limit " + (LIMIT_STYLE[m[0]] || "lim-warn"), "data-limit": m[0] }));
      const label = tw.svg("text", { x: W - M.right + 4, y: y(m[1]) + 4, class: "axis limit-label" });
      label.textContent = t("limit." + m[0]) + " " + m[1];
      root.append(label);
    }
    // A gap (null value: the device gave no number) breaks the line instead of bridging it.
    let run = [];
    const flush = function () {
      if (run.length) root.append(tw.svg("polyline", { points: run.join(" "), class: "series" }));
      run = [];
    };
    for (const p of points) {
      if (p[0] < start) continue;
      if (p[1] === null) {
        flush();
        continue;
      }
      run.push(x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1));
    }
    flush();
    chart.replaceChildren(root);
    if (!values.length) chart.append(tw.el("p", "notice", t("trend.empty")));
    chart.setAttribute("data-points", String(values.length));
  }

  // The 1 h view follows live values; longer views are reloaded when picked.
  let drawQueued = false;
  tw.on("readings", function (rows) {
    if (!sensorId || rangeMs > 3600000) return;
    for (const row of rows) {
      if (row[0] !== sensorId) continue;
      const last = points.length ? points[points.length - 1][0] : -1;
      if (row[1] > last) points.push([row[1], row[2]]);
      if (!drawQueued) {
        drawQueued = true;
        window.setTimeout(function () {
          drawQueued = false;
          draw();
        }, 1000);
      }
    }
  });

  for (const b of document.querySelectorAll("#trend-ranges button")) {
    b.addEventListener("click", function () {
      rangeMs = Number(b.getAttribute("data-range"));
      for (const other of document.querySelectorAll("#trend-ranges button")) {
        other.setAttribute("aria-pressed", other === b ? "true" : "false");
      }
      load();
    });
  }
  tw.on("lang", function () { if (sensorId) draw(); });

  tw.trend = { open: open, get sensorId() { return sensorId; } };
})();
