#!/usr/bin/env bash
# Installs the browser test's npm packages (playwright-core, pinned by
# package-lock.json) into tests/browser/node_modules, unless they are there
# and current. Never downloads a browser: the test drives Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi
