#!/usr/bin/env bash
# Browser-test dependencies from Debian: chromium (driven by Playwright through executable_path, never a
# downloaded browser build) and CJK fonts so the zh-CN page renders in screenshots. Installs only what is missing.
set -euo pipefail

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)

if [ ${#need[@]} -eq 0 ]; then
  echo "browser-deps: chromium and fonts-noto-cjk present"
  exit 0
fi

echo "browser-deps: installing ${need[*]}"
"$(dirname "$0")/apt-install.sh" "${need[@]}"
/usr/bin/chromium --version
