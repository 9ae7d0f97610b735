#!/usr/bin/env bash
# Builds this JavaScript ESP service (app.js) into a Wasm component:
#   $WASP_OUT_DIR/<NAME>.wasm (default: build/ next to this script).
# Works wherever this folder is: it needs app.js, the SDK (wasp-sdk.js)
# and the WIT (wit/esp.wit) next to it; inside the wasp repository it
# falls back to the repository's sdk/js and wit/.
# componentize-js is pinned in package.json / package-lock.json and
# installed with `npm ci` under $WASP_TOOLCHAIN_DIR (default:
# ~/.cache/wasp/toolchains), one folder per lock file, on first use; later
# runs reuse it, and skip the build when nothing changed.
set -euo pipefail
NAME=business-hours
here="$(cd "$(dirname "$0")" && pwd)"
tools="${WASP_TOOLCHAIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wasp/toolchains}"
out_dir="${WASP_OUT_DIR:-$here/build}"
out="$out_dir/$NAME.wasm"
cd "$here"

wit="$here/wit"
[[ -d "$wit" ]] || wit="$here/../../../wit"
if [[ ! -f "$wit/esp.wit" ]]; then
    echo "js: wit/esp.wit is missing next to app.js (wasp new js <name> writes it)" >&2
    exit 1
fi
staged=""
if [[ ! -f "$here/wasp-sdk.js" ]]; then
    # In the repository: the SDK comes from sdk/js, staged beside app.js
    # for the build only.
    sdk="$here/../../../sdk/js/wasp-sdk.js"
    if [[ ! -f "$sdk" ]]; then
        echo "js: wasp-sdk.js is missing next to app.js (wasp new js <name> writes it)" >&2
        exit 1
    fi
    cp "$sdk" "$here/wasp-sdk.js"
    staged="$here/wasp-sdk.js"
    trap 'rm -f "$staged"' EXIT
fi

lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
node_dir="$tools/js-${lock_hash:0:16}"
if [[ ! -f "$node_dir/node_modules/.wasp-lock-hash" || "$(cat "$node_dir/node_modules/.wasp-lock-hash")" != "$lock_hash" ]]; then
    echo "js: installing componentize-js (npm ci) into $node_dir (first use, about a minute)" >&2
    start=$(date +%s)
    mkdir -p "$node_dir"
    cp package.json package-lock.json "$node_dir/"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$lock_hash" > "$node_dir/node_modules/.wasp-lock-hash"
    echo "js: installed componentize-js in $(( $(date +%s) - start )) s" >&2
fi

stamp="$out.inputs"
inputs="$(cat ./*.js "$wit/esp.wit" build.sh package-lock.json | sha256sum | cut -d' ' -f1)"
if [[ -f "$out" && -f "$stamp" && "$(cat "$stamp")" == "$inputs" ]]; then
    echo "js: $out is up to date" >&2
    exit 0
fi

mkdir -p "$out_dir"
echo "js: bundling SpiderMonkey and app.js into $out (about 15 s)" >&2
start=$(date +%s)
# The host links WASI p2 without wasi:http: leave out http and fetch-event.
"$node_dir/node_modules/.bin/componentize-js" app.js --wit "$wit" --world-name esp-service \
    --disable http fetch-event -o "$out.tmp" >&2
mv "$out.tmp" "$out"
echo "$inputs" > "$stamp"
echo "js: built $out ($(stat -c %s "$out") bytes) in $(( $(date +%s) - start )) s" >&2
