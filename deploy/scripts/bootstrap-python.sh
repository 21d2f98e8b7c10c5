#!/usr/bin/env bash
# Create the project's virtual environment; on a fresh Debian machine, install python3-venv first.
set -euo pipefail
venv=${1:-.venv}
if [ -x "$venv/bin/python" ]; then exit 0; fi
if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "tankwatch needs Python >= 3.11 (Debian 12 ships 3.11)" >&2; exit 1
fi
if ! python3 -m venv "$venv" 2>/dev/null; then
  rm -rf "$venv"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv python3-pip >/dev/null
  fi
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
