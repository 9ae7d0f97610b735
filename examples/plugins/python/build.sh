#!/usr/bin/env bash
# Builds this Python ESP service (app.py) into a Wasm component:
#   $WASP_OUT_DIR/<NAME>.wasm (default: build/ next to this script).
# Works wherever this folder is: it needs app.py, the SDK (wasp_sdk/) and
# the WIT (wit/esp.wit) next to it; inside the wasp repository it falls
# back to the repository's sdk/python and wit/.
# Installs its toolchain (componentize-py, pinned) into a venv under
# $WASP_TOOLCHAIN_DIR (default: ~/.cache/wasp/toolchains) on first use;
# later runs reuse it, and skip the build when no input changed.
set -euo pipefail
NAME=language
COMPONENTIZE_PY_VERSION=0.25.1
here="$(cd "$(dirname "$0")" && pwd)"
tools="${WASP_TOOLCHAIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wasp/toolchains}"
out_dir="${WASP_OUT_DIR:-$here/build}"
out="$out_dir/$NAME.wasm"

wit="$here/wit"
[[ -d "$wit" ]] || wit="$here/../../../wit"
sdk="$here"
[[ -d "$sdk/wasp_sdk" ]] || sdk="$here/../../../sdk/python"
if [[ ! -f "$wit/esp.wit" || ! -f "$sdk/wasp_sdk/__init__.py" ]]; then
    echo "python: wit/esp.wit or wasp_sdk/ is missing next to app.py (wasp new python <name> writes both)" >&2
    exit 1
fi

venv="$tools/python"
if [[ ! -x "$venv/bin/componentize-py" ]] || \
   [[ "$("$venv/bin/componentize-py" --version 2>/dev/null)" != *"$COMPONENTIZE_PY_VERSION"* ]]; then
    echo "python: installing componentize-py $COMPONENTIZE_PY_VERSION into $venv (first use, about a minute)" >&2
    start=$(date +%s)
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
    echo "python: installed componentize-py in $(( $(date +%s) - start )) s" >&2
fi

# Up to date? (same inputs, built by this toolchain version)
stamp="$out.inputs"
inputs="$(cat "$here"/*.py "$sdk"/wasp_sdk/*.py "$wit"/esp.wit "$here"/build.sh | sha256sum | cut -d' ' -f1)"
if [[ -f "$out" && -f "$stamp" && "$(cat "$stamp")" == "$inputs" ]]; then
    echo "python: $out is up to date" >&2
    exit 0
fi

mkdir -p "$out_dir"
echo "python: bundling CPython and app.py into $out (about 20 s)" >&2
start=$(date +%s)
"$venv/bin/componentize-py" -d "$wit" -w esp-service componentize \
    -p "$here" -p "$sdk" app -o "$out.tmp" >/dev/null
mv "$out.tmp" "$out"
echo "$inputs" > "$stamp"
echo "python: built $out ($(stat -c %s "$out") bytes) in $(( $(date +%s) - start )) s" >&2
