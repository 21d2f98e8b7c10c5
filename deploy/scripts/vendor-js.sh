#!/usr/bin/env bash
# Fetch the page's browser libraries from npm at pinned versions into dashboard/static/vendor/, with their
# licences: the page is served whole by tankwatch and fetches nothing from other hosts at run time.
# Run by hand when a version changes (the files are committed); needs npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=dashboard/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --no-audit --no-fund --ignore-scripts \
  uplot@1.6.32 leaflet@1.9.4 leaflet.markercluster@1.5.3 gcoord@1.0.7 swagger-ui-dist@5.36.0 redoc@2.5.1 >/dev/null)
m="$work/node_modules"
rm -rf "$dest" && mkdir -p "$dest"/{uplot,leaflet/images,leaflet.markercluster,gcoord,swagger-ui,redoc}
cp "$m/uplot/dist/uPlot.iife.min.js" "$m/uplot/dist/uPlot.min.css" "$m/uplot/LICENSE" "$dest/uplot/"
cp "$m/leaflet/dist/leaflet.js" "$m/leaflet/dist/leaflet.css" "$m/leaflet/LICENSE" "$dest/leaflet/"
cp "$m"/leaflet/dist/images/*.png "$dest/leaflet/images/"
cp "$m/leaflet.markercluster/dist/leaflet.markercluster.js" "$m/leaflet.markercluster/dist/MarkerCluster.css" \
  "$m/leaflet.markercluster/dist/MarkerCluster.Default.css" "$m/leaflet.markercluster/MIT-LICENCE.txt" \
  "$dest/leaflet.markercluster/"
cp "$m/gcoord/dist/gcoord.global.prod.js" "$m/gcoord/LICENSE" "$dest/gcoord/"
cp "$m/swagger-ui-dist/swagger-ui-bundle.js" "$m/swagger-ui-dist/swagger-ui.css" "$m/swagger-ui-dist/LICENSE" \
  "$m/swagger-ui-dist/NOTICE" "$dest/swagger-ui/"
cp "$m/redoc/bundles/redoc.standalone.js" "$m/redoc/bundles/redoc.standalone.js.LICENSE.txt" "$m/redoc/LICENSE" \
  "$dest/redoc/"
# the bundles name their source maps, which are not shipped
sed -i -E '\@^/[*/]# sourceMappingURL=[^ ]*( \*/)?$@d' "$dest/swagger-ui/swagger-ui-bundle.js" "$dest/swagger-ui/swagger-ui.css" \
  "$dest/leaflet/leaflet.js" "$dest/leaflet.markercluster/leaflet.markercluster.js" "$dest/redoc/redoc.standalone.js"
cat > "$dest/VERSIONS.md" <<'VERSIONS'
# Browser libraries served by the dashboard (from npm, pinned; refreshed by deploy/scripts/vendor-js.sh)

| library | version | licence | used for |
|---|---|---|---|
| uPlot | 1.6.32 | MIT | trend charts: zoom, pan, cursor read-out, several series |
| Leaflet | 1.9.4 | BSD-2-Clause | the park map: tiles or none, plan image overlay, zoom, pan, scale bar |
| Leaflet.markercluster | 1.5.3 | MIT | clustering tanks and detectors on the park map |
| gcoord | 1.0.7 | MIT | WGS-84 → GCJ-02 for tile sources in the Chinese offset datum |
| swagger-ui-dist | 5.36.0 | Apache-2.0 | the API docs (`/docs` and the page's API view), served locally |
| ReDoc | 2.5.1 | MIT | the API reference (`/redoc`), served locally |
VERSIONS
echo "vendored into $dest"
