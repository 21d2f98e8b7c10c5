// The park map (Leaflet, served from vendor/): base tiles only when the site file names a source (an internal GIS
// server, 天地图 with its key from the server's environment; none by default, so nothing is fetched off this host),
// the georeferenced plan image, zones, the park and each enterprise's outline, hazard sources coloured by grade,
// and — zoomed in — tanks and gas detectors, clustered; labels that would overlap give way to more important ones.
// Site coordinates are WGS-84; a GCJ-02 tile source gets them shifted (gcoord).
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;

  const DETAIL_ZOOM = 16; // tanks and detectors from here on (a plant fills the map)
  const SOURCE_LABEL_ZOOM = 14;
  const TANK_RING_M = 45; // tanks without a location sit on a ring this far around their hazard source
  const DETECTOR_RING_M = 80;
  const ZONE_STYLE = {
    core: { color: "#f85149", fillOpacity: 0.10 },
    key: { color: "#d29922", fillOpacity: 0.08 },
    general: { color: "#3b82c4", fillOpacity: 0.05 },
    closed_area: { color: "#a371f7", fillOpacity: 0.06 },
    building: { color: "#8b9bb0", fillOpacity: 0.25 },
  };

  let map = null;
  let toMap = null; // WGS-84 {lat, lon} -> [lat, lng] in the tiles' datum
  const areas = new Map(); // enterprise id -> polygon
  const dots = new Map(); // hazard source id -> circle marker
  const details = []; // {marker, sensorIds}
  const labels = []; // {marker, priority}
  let detailLayer = null;
  let onSelect = function () {};

  function shifter(datum) {
    if (datum === "gcj02" && window.gcoord) {
      return function (p) {
        const out = window.gcoord.transform([p.lon, p.lat], window.gcoord.WGS84, window.gcoord.GCJ02);
        return [out[1], out[0]];
      };
    }
    return function (p) { return [p.lat, p.lon]; };
  }

  // A point `metres` from `centre` at `angle` radians (north = 0), on the sphere's tangent plane: close enough
  // within a plant.
  function offset(centre, metres, angle) {
    const dLat = metres * Math.cos(angle) / 111320;
    const dLon = metres * Math.sin(angle) / (111320 * Math.cos(centre.lat * Math.PI / 180));
    return { lat: centre.lat + dLat, lon: centre.lon + dLon };
  }

  // Convex hull (monotone chain) of map points, for an enterprise without an outline of its own.
  function hull(points) {
    const p = points.slice().sort(function (a, b) { return a[1] - b[1] || a[0] - b[0]; });
    if (p.length < 3) return p;
    const cross = function (o, a, b) { return (a[1] - o[1]) * (b[0] - o[0]) - (a[0] - o[0]) * (b[1] - o[1]); };
    const lower = [];
    for (const q of p) {
      while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], q) <= 0) lower.pop();
      lower.push(q);
    }
    const upper = [];
    for (const q of p.slice().reverse()) {
      while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], q) <= 0) upper.pop();
      upper.push(q);
    }
    return lower.slice(0, -1).concat(upper.slice(0, -1));
  }

  function label(latlng, text, cls, priority) {
    const icon = L.divIcon({ className: "map-label " + cls, html: "", iconSize: null });
    const marker = L.marker(latlng, { icon: icon, keyboard: false, interactive: cls === "ent-label" });
    marker.on("add", function () {
      const node = marker.getElement();
      node.textContent = text;
      node.translate = false; // a name from the site file
    });
    labels.push({ marker: marker, priority: priority });
    return marker;
  }

  // Hide every label that would cover a more important one (enterprises before sources before tanks).
  function declutter() {
    const shown = [];
    const order = labels.slice().sort(function (a, b) { return a.priority - b.priority; });
    for (const item of order) {
      const node = item.marker.getElement();
      if (!node || !map.hasLayer(item.marker)) continue;
      node.style.visibility = "";
      const r = node.getBoundingClientRect();
      const clash = shown.some(function (s) {
        return r.left < s.right && r.right > s.left && r.top < s.bottom && r.bottom > s.top;
      });
      if (clash) node.style.visibility = "hidden";
      else shown.push(r);
    }
  }

  function northArrow() {
    const control = L.control({ position: "topright" });
    control.onAdd = function () {
      const box = el("div", "north-arrow");
      box.append(el("span", "arrow", "▲"), el("span", null, t("map.north")));
      box.title = t("map.northTitle");
      return box;
    };
    return control;
  }

  function addZones(zones) {
    const group = L.layerGroup();
    for (const z of zones) {
      if (z.kind === "gate") {
        const m = L.circleMarker(toMap(z.location), { radius: 6, color: "#e6edf3", weight: 2, fillColor: "#3fb950",
          fillOpacity: 1, className: "zone-gate" });
        m.bindTooltip(z.name, { direction: "top" });
        group.addLayer(m);
        continue;
      }
      const style = ZONE_STYLE[z.kind] || ZONE_STYLE.general;
      const poly = L.polygon(z.outline.map(toMap), { color: style.color, weight: 1.5, dashArray: "6 4",
        fillOpacity: style.fillOpacity, className: "zone zone-" + z.kind });
      poly.bindTooltip(z.name + " · " + t("map.zone." + z.kind, z.kind), { sticky: true });
      group.addLayer(poly);
    }
    return group;
  }

  function addSites(tree) {
    const group = L.layerGroup();
    for (const ent of tree.enterprises) {
      const pts = (ent.outline.length >= 3 ? ent.outline : null);
      const ring = pts ? pts.map(toMap) : hull([ent.location].concat(ent.hazard_sources.map(function (s) {
        return s.location;
      })).flatMap(function (p) {
        // a small margin around each point, so a lone source still makes an area
        return [0, 1, 2, 3].map(function (k) { return toMap(offset(p, 110, k * Math.PI / 2 + Math.PI / 4)); });
      }));
      const area = L.polygon(ring, { weight: 2, className: "ent-area" });
      area.on("click", function () { onSelect(ent.id); });
      area.on("add", function () { area.getElement().setAttribute("data-enterprise", ent.id); });
      areas.set(ent.id, area);
      group.addLayer(area);
      const name = label(toMap(ent.location), ent.name, "ent-label", 0);
      name.on("click", function () { onSelect(ent.id); });
      name.on("add", function () {
        const node = name.getElement();
        node.classList.add("ent-marker");
        node.setAttribute("data-enterprise", ent.id);
        node.tabIndex = 0;
        node.addEventListener("keydown", function (event) { if (event.key === "Enter") onSelect(ent.id); });
      });
      group.addLayer(name);
      for (const src of ent.hazard_sources) {
        const dot = L.circleMarker(toMap(src.location), { radius: 11, weight: 2, color: "#0d141c", fillOpacity: 1,
          className: "src-dot" });
        dot.on("add", function () { dot.getElement().setAttribute("data-source", src.id); });
        dot.on("click", function () { onSelect(ent.id); });
        dot.bindTooltip(src.id + " " + src.name, { direction: "top" });
        dots.set(src.id, dot);
        group.addLayer(dot);
        const srcLabel = label(toMap(offset(src.location, 30, Math.PI)), src.id + " " + src.name, "src-label", 1);
        srcLabel.options.minZoom = SOURCE_LABEL_ZOOM;
        group.addLayer(srcLabel);
      }
    }
    return group;
  }

  // Tanks and detectors, shown from DETAIL_ZOOM on, clustered until they stand apart.
  function addDetails(tree) {
    const cluster = L.markerClusterGroup({ disableClusteringAtZoom: DETAIL_ZOOM + 2, showCoverageOnHover: false,
      maxClusterRadius: 40 });
    for (const ent of tree.enterprises) {
      for (const src of ent.hazard_sources) {
        src.tanks.forEach(function (tank, i) {
          const where = tank.location || offset(src.location, TANK_RING_M, 2 * Math.PI * i / src.tanks.length);
          const m = L.circleMarker(toMap(where), { radius: 8, weight: 2, color: "#8b9bb0", fillOpacity: 0.9,
            className: "tank-dot" });
          m.bindTooltip(tank.id + " " + (tank.name || "") + " · " + tank.chemical, { direction: "top" });
          m.on("click", function () { location.hash = "#/control/" + ent.id + "/" + src.id; });
          cluster.addLayer(m);
          details.push({ marker: m, sensorIds: tank.sensors.map(function (s) { return s.id; }) });
        });
        const detectors = src.sensors.filter(function (s) { return /^gas_|^oxygen$/.test(s.kind); });
        detectors.forEach(function (s, i) {
          const where = s.location || offset(src.location, DETECTOR_RING_M, 2 * Math.PI * (i + 0.5) / detectors.length);
          const m = L.circleMarker(toMap(where), { radius: 5, weight: 1.5, color: "#8b9bb0", fillOpacity: 0.9,
            className: "detector-dot" });
          m.bindTooltip(s.id + " " + (s.name || "") + (s.gas ? " · " + s.gas : ""), { direction: "top" });
          m.on("click", function () { tw.trend.open(s.id); location.hash = "#/control/" + ent.id + "/" + src.id; });
          cluster.addLayer(m);
          details.push({ marker: m, sensorIds: [s.id] });
        });
      }
    }
    return cluster;
  }

  function showDetails() {
    const want = map.getZoom() >= DETAIL_ZOOM;
    if (want && !map.hasLayer(detailLayer)) map.addLayer(detailLayer);
    if (!want && map.hasLayer(detailLayer)) map.removeLayer(detailLayer);
    for (const item of labels) {
      const min = item.marker.options.minZoom;
      if (min === undefined) continue;
      const node = item.marker.getElement();
      if (node) node.hidden = map.getZoom() < min;
    }
    declutter();
  }

  // The worst status of a marker's sensors colours it (alarm red, fault yellow, stale grey, normal green).
  function renderDetails() {
    for (const item of details) {
      let worst = "nodata";
      for (const id of item.sensorIds) {
        const entry = tw.sensors.get(id);
        const s = entry && entry.status;
        if (s && tw.STATUS_RANK[s] > tw.STATUS_RANK[worst]) worst = s;
      }
      const node = item.marker.getElement && item.marker.getElement();
      if (node) node.setAttribute("data-status", worst);
    }
  }

  function loadPlan(plan) {
    if (!plan) return;
    tw.fetchBlob(plan.url).then(function (url) {
      const overlay = L.imageOverlay(url, [toMap(plan.south_west), toMap(plan.north_east)],
        { opacity: plan.opacity, className: "plan-image" });
      overlay.addTo(map).bringToBack();
      layerControl.addOverlay(overlay, t("map.plan"));
    }).catch(function (err) { tw.note(document.getElementById("grades-note"), "apiError", err.message); });
  }

  let layerControl = null;

  // Build the map for the park tree (and the layers of /api/map, when the server offers them).
  function build(tree, layers) {
    const box = document.getElementById("park-map");
    if (map) map.remove();
    areas.clear();
    dots.clear();
    details.length = 0;
    labels.length = 0;
    const tiles = layers && layers.tiles;
    toMap = shifter(tiles ? tiles.datum : "wgs84");
    map = L.map(box, { zoomSnap: 0.5, maxZoom: tiles ? tiles.max_zoom : 20, minZoom: tiles ? tiles.min_zoom : 3,
      attributionControl: Boolean(tiles && tiles.attribution) });
    box.setAttribute("data-tiles", tiles ? "1" : "0");
    if (tiles) {
      L.tileLayer(tiles.url, { subdomains: tiles.subdomains || "abc", attribution: tiles.attribution,
        maxZoom: tiles.max_zoom, minZoom: tiles.min_zoom }).addTo(map);
    }
    L.control.scale({ metric: true, imperial: false, position: "bottomleft" }).addTo(map);
    northArrow().addTo(map);
    const overlays = {};
    if (tree.park.outline.length >= 3) {
      L.polygon(tree.park.outline.map(toMap), { color: "#8b9bb0", weight: 2, dashArray: "10 6", fill: false,
        className: "park-outline", interactive: false }).addTo(map);
    }
    if (layers && layers.zones.length) {
      const zones = addZones(layers.zones).addTo(map);
      overlays[t("map.zones")] = zones;
    }
    addSites(tree).addTo(map);
    detailLayer = addDetails(tree);
    overlays[t("map.details")] = detailLayer;
    layerControl = L.control.layers(null, overlays, { collapsed: true }).addTo(map);
    const pts = tree.park.outline.concat([tree.park.location]);
    for (const ent of tree.enterprises) for (const src of ent.hazard_sources) pts.push(src.location);
    map.fitBounds(L.latLngBounds(pts.map(toMap)).pad(0.1));
    map.on("zoomend moveend", showDetails);
    showDetails();
    loadPlan(layers && layers.plan);
  }

  function setGrades(gradeOf) {
    for (const [id, area] of areas) {
      const node = area.getElement();
      if (node) node.setAttribute("data-grade", gradeOf(id));
    }
    for (const [id, dot] of dots) {
      const node = dot.getElement();
      if (node) node.setAttribute("data-grade", gradeOf(id));
    }
  }

  // Mark the enterprise picked (on the map or in the list) and zoom to its site, close enough for its tanks.
  function select(id) {
    for (const node of document.querySelectorAll("#park-map .ent-marker, #park-map .ent-area")) {
      node.classList.toggle("selected", node.getAttribute("data-enterprise") === id);
    }
    const area = areas.get(id);
    if (map && area) map.flyToBounds(area.getBounds().pad(0.4), { maxZoom: DETAIL_ZOOM + 0.5, duration: 0.6 });
  }

  tw.on("rendered", function () { if (map) renderDetails(); });
  tw.on("lang", function () { if (map && tw.tree) tw.parkMap.rebuild(); });

  tw.parkMap = {
    build: build,
    setGrades: setGrades,
    select: select,
    resize: function () { if (map) map.invalidateSize(); },
    set onSelect(fn) { onSelect = fn; },
    rebuild: function () {},
  };
})();
