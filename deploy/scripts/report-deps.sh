#!/usr/bin/env bash
# Report-export dependencies from Debian: fonts-noto-cjk (Noto Sans CJK, embedded by fpdf2 so a bulletin's
# PDF prints 企业 names and headings) and poppler-utils (pdftotext, with which the tests read the PDF back).
# Installs only what is missing.
set -euo pipefail

need=()
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)

if [ ${#need[@]} -eq 0 ]; then
  echo "report-deps: fonts-noto-cjk and poppler-utils present"
  exit 0
fi

echo "report-deps: installing ${need[*]}"
"$(dirname "$0")/apt-install.sh" "${need[@]}"
pdftotext -v 2>&1 | sed -n 1p  # sed reads to the end: no SIGPIPE for pdftotext under pipefail
