#!/usr/bin/env bash
# Install the Debian packages the report tests need when they are missing: Chromium for the browser test of
# the HTML report (tests/test_report_browser.py, driven by Playwright without downloading a browser) and
# pdflatex with booktabs for the LaTeX compile test (tests/test_report.py). Minimal: texlive-latex-base
# (pdflatex, article) and texlive-latex-recommended (booktabs), not texlive-full.
set -euo pipefail
packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v pdflatex >/dev/null 2>&1 || packages+=(texlive-latex-base)
kpsewhich booktabs.sty >/dev/null 2>&1 || packages+=(texlive-latex-recommended)
if ((${#packages[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
