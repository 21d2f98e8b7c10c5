// Trend panel (uPlot, served from vendor/): the history of one to four sensors from GET /api/readings over any
// range — presets or a picked one, drag to zoom (double-click to zoom back), step earlier or later — with a
// read-out under the cursor, every alarm limit as a labelled line, readings of bad quality marked on the curve,
// and the shown range exported as CSV or Excel (GET /api/readings/export). A range ending now follows live values.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const setText = tw.setText;

  const MAX_SERIES = 4;
  const COLOURS = ["#3b82c4", "#e3b341", "#a371f7", "#3fb950"];
  const LIMIT_KEYS = ["hh", "h", "l", "ll"];
  const GAS_KEYS = ["first", "second", "low", "high"];
  const CRITICAL_LIMITS = new Set(["hh", "ll", "second", "low", "high"]);
  const HOUR = 3600 * 1000;

  const panel = document.getElementById("trend");
  const chart = document.getElementById("trend-chart");
  const legend = document.getElementById("trend-legend");
  const bar = document.getElementById("trend-bar");

  let sensors = []; // ids shown, the first one leads
  let startMs = 0;
  let endMs = 0;
  let follow = true; // the range ends now and moves with live readings
  let data = new Map(); // sensor id -> {ts: [], value: [], quality: []}
  let plot = null;
  let request = 0;

  // ----- what a sensor brings to the chart -----------------------------------------------------------------
  function info(id) {
    const entry = tw.sensors.get(id);
    return entry ? entry.info : null;
  }

  function unitOf(id) {
    const i = info(id);
    return i && i.unit && i.unit !== "state" ? i.unit : "";
  }

  function limitsOf(id) {
    const i = info(id);
    const marks = [];
    if (!i) return marks;
    if (i.limits) for (const k of LIMIT_KEYS) if (typeof i.limits[k] === "number") marks.push([k, i.limits[k]]);
    if (i.gas_limits) for (const k of GAS_KEYS) if (typeof i.gas_limits[k] === "number") marks.push([k, i.gas_limits[k]]);
    return marks;
  }

  // ----- the range -----------------------------------------------------------------------------------------
  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function localInput(ms) {
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" +
      pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function setRange(start, end, live) {
    startMs = Math.round(start);
    endMs = Math.round(end);
    follow = live;
    bar.start.value = localInput(startMs);
    bar.end.value = localInput(endMs);
    const span = endMs - startMs;
    for (const b of document.querySelectorAll("#trend-ranges button")) {
      b.setAttribute("aria-pressed", live && Number(b.getAttribute("data-range")) === span ? "true" : "false");
    }
  }

  // ----- loading --------------------------------------------------------------------------------------------
  function load() {
    if (!sensors.length) return Promise.resolve();
    const mine = ++request;
    const width = Math.max(200, Math.min(2000, chart.clientWidth || 600));
    chart.setAttribute("data-loading", "1");
    const requests = sensors.map(function (id) {
      const q = new URLSearchParams({ sensor: id, start: String(startMs), end: String(endMs + 1),
        max_points: String(width) });
      return tw.api("GET", "/api/readings?" + q.toString()).then(function (r) {
        return [id, {
          ts: r.points.map(function (p) { return p.ts_ms; }),
          value: r.points.map(function (p) { return p.value; }),
          quality: r.points.map(function (p) { return p.quality; }),
        }];
      });
    });
    return Promise.all(requests).then(function (pairs) {
      if (mine !== request) return; // a newer request took over
      data = new Map(pairs);
      draw();
    }).catch(function (err) {
      if (mine === request) tw.note(chart, err.status === 404 ? "notAvailable" : "apiError", err.message);
    }).then(function () { chart.removeAttribute("data-loading"); });
  }

  // ----- drawing --------------------------------------------------------------------------------------------
  // 24-hour time on the axis (with the date on ranges longer than two days), as the rest of the page writes it.
  function clockText(ms, withDate) {
    const d = new Date(ms);
    const hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    return withDate ? pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hm : hm;
  }

  // One x axis of every timestamp shown; a sensor with no reading at a timestamp is a gap there, not a line.
  function table() {
    const tables = sensors.map(function (id) {
      const d = data.get(id) || { ts: [], value: [] };
      return [d.ts, d.value];
    });
    return tables.length === 1 ? tables[0] : uPlot.join(tables, tables.map(function () { return [2]; }));
  }

  function scalesFor() {
    const units = [];
    for (const id of sensors) if (units.indexOf(unitOf(id)) < 0) units.push(unitOf(id));
    return units;
  }

  // Limit lines of every sensor, labelled in the page's language, on that sensor's scale.
  function drawLimits(u) {
    const ctx = u.ctx;
    const left = u.bbox.left;
    const right = u.bbox.left + u.bbox.width;
    ctx.save();
    ctx.font = Math.round(11 * devicePixelRatio) + "px sans-serif";
    ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    sensors.forEach(function (id) {
      const scale = "u:" + unitOf(id);
      for (const [key, value] of limitsOf(id)) {
        const y = u.valToPos(value, scale, true);
        if (!(y >= u.bbox.top && y <= u.bbox.top + u.bbox.height)) continue;
        ctx.strokeStyle = CRITICAL_LIMITS.has(key) ? "#f85149" : "#d29922";
        ctx.beginPath();
        ctx.moveTo(left, y);
        ctx.lineTo(right, y);
        ctx.stroke();
        ctx.fillStyle = ctx.strokeStyle;
        ctx.fillText(t("limit." + key) + " " + value, right - 80 * devicePixelRatio, y - 3 * devicePixelRatio);
      }
    });
    ctx.restore();
  }

  // A reading whose quality is not good gets a red mark on the curve (or at the bottom, when it has no value).
  function drawQuality(u) {
    const ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = "#f85149";
    const size = 3 * devicePixelRatio;
    sensors.forEach(function (id) {
      const d = data.get(id);
      if (!d) return;
      const scale = "u:" + unitOf(id);
      for (let i = 0; i < d.ts.length; i++) {
        if (d.quality[i] === "good") continue;
        const x = u.valToPos(d.ts[i], "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
        const y = d.value[i] === null ? u.bbox.top + u.bbox.height - size : u.valToPos(d.value[i], scale, true);
        ctx.fillRect(x - size, y - size, 2 * size, 2 * size);
      }
    });
    ctx.restore();
  }

  function draw() {
    if (plot) {
      plot.destroy();
      plot = null;
    }
    const units = scalesFor();
    const rows = table();
    const count = rows[0].length;
    chart.replaceChildren();
    chart.setAttribute("data-series", sensors.join(","));
    chart.setAttribute("data-points", String(count));
    renderLegend();
    if (!count) {
      chart.append(el("p", "notice", t("trend.empty")));
      return;
    }
    const scales = { x: { time: true, min: startMs, max: endMs } };
    const long = endMs - startMs > 2 * 24 * HOUR;
    const axes = [{ stroke: "#8b9bb0", grid: { stroke: "#2a3a4c" }, ticks: { stroke: "#2a3a4c" },
      values: function (u, splits) { return splits.map(function (v) { return clockText(v, long); }); } }];
    units.forEach(function (unit, i) {
      scales["u:" + unit] = { auto: true };
      axes.push({ scale: "u:" + unit, side: i === 0 ? 3 : 1, label: unit, stroke: "#8b9bb0",
        grid: { show: i === 0, stroke: "#2a3a4c" }, ticks: { stroke: "#2a3a4c" }, size: 56 });
    });
    const series = [{ value: function (u, v) { return v === null ? "—" : tw.formatTime(v); } }];
    sensors.forEach(function (id, i) {
      const i2 = info(id);
      series.push({ label: (i2 && (i2.name || i2.id)) || id, scale: "u:" + unitOf(id), stroke: COLOURS[i],
        width: 1.6, spanGaps: false,
        value: function (u, v) { return v === null ? "—" : tw.formatValue(i2, v) + " " + unitOf(id); } });
    });
    const height = panel.classList.contains("expanded") ? Math.max(260, chart.clientHeight || 420) : 220;
    plot = new uPlot({
      width: Math.max(200, chart.clientWidth || 600),
      height: height,
      ms: 1, // timestamps are epoch milliseconds
      scales: scales,
      axes: axes,
      series: series,
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      hooks: {
        draw: [drawLimits, drawQuality],
        setSelect: [function (u) {
          if (u.select.width < 5) return;
          const from = u.posToVal(u.select.left, "x");
          const to = u.posToVal(u.select.left + u.select.width, "x");
          setRange(from, to, false);
          load();
        }],
      },
    }, rows, chart);
    // uPlot's legend shows the sensors' names: data, as they are in either language
    for (const node of chart.querySelectorAll(".u-legend .u-label")) node.translate = false;
    chart.addEventListener("dblclick", zoomOut, { once: true });
  }

  function zoomOut() {
    const span = endMs - startMs;
    const now = tw.serverNow();
    const end = Math.min(now, endMs + span);
    setRange(end - span * 3, end, end >= now);
    load();
  }

  function renderLegend() {
    legend.replaceChildren();
    sensors.forEach(function (id, i) {
      const chip = el("span", "trend-chip");
      chip.setAttribute("data-sensor", id);
      chip.style.borderColor = COLOURS[i];
      const i2 = info(id);
      chip.append(tw.dataEl("b", null, (i2 && (i2.name || i2.id)) || id));
      if (unitOf(id)) chip.append(el("span", "u", " " + unitOf(id)));
      for (const [key, value] of limitsOf(id)) {
        const mark = el("span", "trend-limit" + (CRITICAL_LIMITS.has(key) ? " crit" : ""),
          t("limit." + key) + " " + value);
        mark.setAttribute("data-limit", key);
        chip.append(mark);
      }
      if (sensors.length > 1) {
        const remove = tw.button("trend.remove", function () { removeSensor(id); }, "small");
        chip.append(remove);
      }
      legend.append(chip);
    });
    if (sensors.length) {
      const note = el("span", "trend-quality-note", t("trend.qualityNote"));
      legend.append(note);
    }
    fillAdd();
  }

  // The sensors of the same tank or hazard source, offered to overlay.
  function fillAdd() {
    const select = document.getElementById("trend-add");
    select.replaceChildren(el("option", null, t("trend.add")));
    select.firstChild.value = "";
    const lead = tw.sensors.get(sensors[0]);
    if (!lead) return;
    for (const entry of tw.sensors.values()) {
      if (sensors.indexOf(entry.info.id) >= 0 || entry.sourceId !== lead.sourceId) continue;
      if (lead.tank && entry.tank !== lead.tank) continue;
      const o = el("option", null, entry.info.id + " " + (entry.info.name || ""));
      o.value = entry.info.id;
      o.translate = false;
      select.append(o);
    }
    select.disabled = sensors.length >= MAX_SERIES || select.options.length < 2;
  }

  // ----- what people do --------------------------------------------------------------------------------------
  // Open a sensor's trend (or, with ``add``, overlay it on what is shown).
  function open(id, add) {
    if (!tw.sensors.has(id)) return;
    if (add && sensors.length && sensors.indexOf(id) < 0 && sensors.length < MAX_SERIES) sensors.push(id);
    else if (!add) sensors = [id];
    panel.classList.add("open");
    bar.hidden = false;
    if (!startMs || follow) {
      const span = endMs - startMs || HOUR;
      const now = tw.serverNow();
      setRange(now - span, now, true);
    }
    load();
  }

  function removeSensor(id) {
    sensors = sensors.filter(function (x) { return x !== id; });
    load();
  }

  function download(format) {
    const q = new URLSearchParams({ start: String(startMs), end: String(endMs + 1), format: format,
      lang: tw.lang === "en" ? "en" : "zh" });
    for (const id of sensors) q.append("sensor", id);
    tw.download("/api/readings/export?" + q.toString(), "trend." + format)
      .catch(function (err) { tw.note(chart, "apiError", err.message); });
  }

  for (const b of document.querySelectorAll("#trend-ranges button")) {
    b.addEventListener("click", function () {
      const now = tw.serverNow();
      setRange(now - Number(b.getAttribute("data-range")), now, true);
      load();
    });
  }
  bar.addEventListener("submit", function (event) {
    event.preventDefault();
    const start = new Date(bar.start.value).getTime();
    const end = new Date(bar.end.value).getTime();
    if (!(start < end)) return;
    setRange(start, end, end >= tw.serverNow() - 60000);
    load();
  });
  document.getElementById("trend-earlier").addEventListener("click", function () {
    const span = endMs - startMs;
    setRange(startMs - span / 2, endMs - span / 2, false);
    load();
  });
  document.getElementById("trend-later").addEventListener("click", function () {
    const span = endMs - startMs;
    const now = tw.serverNow();
    const end = Math.min(now, endMs + span / 2);
    setRange(end - span, end, end >= now);
    load();
  });
  document.getElementById("trend-add").addEventListener("change", function (event) {
    if (event.target.value) open(event.target.value, true);
  });
  document.getElementById("trend-csv").addEventListener("click", function () { download("csv"); });
  document.getElementById("trend-xlsx").addEventListener("click", function () { download("xlsx"); });
  document.getElementById("trend-expand").addEventListener("click", function (event) {
    const on = !panel.classList.contains("expanded");
    panel.classList.toggle("expanded", on);
    event.currentTarget.setAttribute("aria-pressed", on ? "true" : "false");
    if (sensors.length) window.requestAnimationFrame(draw);
  });

  // A range ending now moves with live readings: they are appended, the window slides, once a second at most.
  let drawQueued = false;
  tw.on("readings", function (rows) {
    if (!follow || !sensors.length || !plot) return;
    let changed = false;
    for (const row of rows) {
      const d = data.get(row[0]);
      if (!d || (d.ts.length && row[1] <= d.ts[d.ts.length - 1])) continue;
      d.ts.push(row[1]);
      d.value.push(row[2]);
      d.quality.push(row[3]);
      changed = true;
    }
    if (!changed || drawQueued) return;
    drawQueued = true;
    window.setTimeout(function () {
      drawQueued = false;
      const now = tw.serverNow();
      setRange(now - (endMs - startMs), now, true);
      plot.setData(table(), false);
      plot.setScale("x", { min: startMs, max: endMs });
    }, 1000);
  });
  tw.on("lang", function () { if (sensors.length) draw(); });
  window.addEventListener("resize", function () {
    if (plot) plot.setSize({ width: Math.max(200, chart.clientWidth), height: plot.height });
  });

  tw.trend = { open: open, get sensorId() { return sensors[0] || null; }, get sensors() { return sensors.slice(); } };
})();
