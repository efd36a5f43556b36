#!/usr/bin/env bash
# Provides /socket.io/socket.io.js: installs the pinned socket.io-client from
# the npm registry (npm ci checks every tarball against the sha512 in
# package-lock.json) and copies its browser bundle into web/socket.io/, where
# the gateway serves it (gitignored: never kept in git). Run by the build
# (CMake target socketio_client) and by deploy/Dockerfile; skips npm when the
# copy is newer than the lock file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../web/socket.io"
if [ -f "$out/socket.io.js" ] && [ "$out/socket.io.js" -nt "$here/package-lock.json" ]; then
    exit 0
fi
cd "$here"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
dist="$here/node_modules/socket.io-client/dist"
mkdir -p "$out"
cp "$dist/socket.io.min.js.map" "$out/socket.io.min.js.map"
cp "$dist/socket.io.min.js" "$out/socket.io.js.tmp"
mv "$out/socket.io.js.tmp" "$out/socket.io.js"
