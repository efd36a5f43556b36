#!/usr/bin/env bash
# Installs the Socket.IO tests' npm packages (socket.io-client and ws, pinned
# with their integrity by package-lock.json) into tests/socketio/node_modules,
# unless they are there and current.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
fi
