#!/usr/bin/env bash
# Rebuild sessionpush.min.js from sessionpush.js with esbuild, installed
# into a temporary folder (nothing is added to the project). The first line
# of the output names the source's SHA-256, which a test checks, so a
# source changed without rebuilding fails CI. Users need none of this: the
# gateway serves both files as committed.
set -euo pipefail
cd "$(dirname "$0")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm install --no-save --silent esbuild@0.24.0)
sum="$(sha256sum sessionpush.js | cut -d' ' -f1)"
"$tmp/node_modules/.bin/esbuild" sessionpush.js --minify --format=esm \
    --target=es2020 --legal-comments=none \
    --banner:js="// sessionpush.min.js, from sessionpush.js sha256 $sum" \
    --outfile=sessionpush.min.js
