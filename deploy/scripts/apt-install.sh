#!/usr/bin/env bash
# Install the Debian packages named on the command line, as root or through sudo (the deps scripts name only what
# is missing).
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
