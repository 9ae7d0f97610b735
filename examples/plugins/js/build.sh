#!/usr/bin/env bash
# Builds the JavaScript `BusinessHours` service into a Wasm component:
#   target/examples/business-hours.wasm
# componentize-js is pinned in package.json / package-lock.json and
# installed with `npm ci` into node_modules/ here (not committed) on first
# run; later runs skip the install, and skip the build when nothing changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out_dir="$root/target/examples"
out="$out_dir/business-hours.wasm"
cd "$here"

lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f node_modules/.wasp-lock-hash || "$(cat node_modules/.wasp-lock-hash)" != "$lock_hash" ]]; then
    echo "js: installing componentize-js (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock_hash" > node_modules/.wasp-lock-hash
fi

stamp="$out.inputs"
inputs="$(cat app.js "$root/wit/esp.wit" build.sh package-lock.json | sha256sum | cut -d' ' -f1)"
if [[ -f "$out" && -f "$stamp" && "$(cat "$stamp")" == "$inputs" ]]; then
    echo "js: $out is up to date"
    exit 0
fi

mkdir -p "$out_dir"
# The host links WASI p2 without wasi:http: leave out http and fetch-event.
npx --no-install componentize-js app.js --wit "$root/wit" --world-name esp-service \
    --disable http fetch-event -o "$out.tmp"
mv "$out.tmp" "$out"
echo "$inputs" > "$stamp"
echo "js: built $out ($(stat -c %s "$out") bytes)"
