#!/usr/bin/env bash
# Provides /socket.io/socket.io.js: installs the pinned socket.io-client from
# the npm registry (npm ci checks every tarball against the sha512 in
# package-lock.json) and copies its browser bundle, dist/socket.io.min.js,
# into web/socket.io/ (gitignored: never kept in git), where the gateway
# serves it. The copy must also match bundle.sha256, so a copy already there
# (a previous build, or the one a container build finds in its context)
# is used only if it is that exact file. Run by the build (CMake target
# socketio_client) and so by deploy/Dockerfile.
# Upgrading: change the version in package.json, run
# `npm install --package-lock-only`, put the new bundle's sha256 in
# bundle.sha256.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../web/socket.io"
want="$(cat "$here/bundle.sha256")"
verified() {
    [ -f "$out/socket.io.js" ] && [ "$(sha256sum <"$out/socket.io.js" | cut -d' ' -f1)" = "$want" ]
}
verified && exit 0
cd "$here"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
dist="$here/node_modules/socket.io-client/dist"
mkdir -p "$out"
cp "$dist/socket.io.min.js.map" "$out/socket.io.min.js.map"
cp "$dist/socket.io.min.js" "$out/socket.io.js.tmp"
mv "$out/socket.io.js.tmp" "$out/socket.io.js"
if ! verified; then
    echo "fetch.sh: dist/socket.io.min.js of the pinned package does not match bundle.sha256" >&2
    rm -f "$out/socket.io.js"
    exit 1
fi
