#!/usr/bin/env bash
# Builds the Python `Language` service into a Wasm component:
#   target/examples/language.wasm
# Installs its own toolchain (componentize-py, pinned) into a venv under
# target/toolchains/python on first run; later runs reuse it, and skip the
# build when no input changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
COMPONENTIZE_PY_VERSION=0.25.1

venv="$root/target/toolchains/python"
out_dir="$root/target/examples"
out="$out_dir/language.wasm"
gen="$root/target/examples/python-bindings"

if [[ ! -x "$venv/bin/componentize-py" ]] || \
   [[ "$("$venv/bin/componentize-py" --version 2>/dev/null)" != *"$COMPONENTIZE_PY_VERSION"* ]]; then
    echo "python: installing componentize-py $COMPONENTIZE_PY_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

# Up to date? (newer than every input, and built by this toolchain version)
stamp="$out.inputs"
inputs="$(cat "$here"/app.py "$root"/wit/esp.wit "$here"/build.sh | sha256sum | cut -d' ' -f1)"
if [[ -f "$out" && -f "$stamp" && "$(cat "$stamp")" == "$inputs" ]]; then
    echo "python: $out is up to date"
    exit 0
fi

mkdir -p "$out_dir"
rm -rf "$gen"
# Bindings into target/ (handy for editors; componentize generates its own too).
"$venv/bin/componentize-py" -d "$root/wit" -w esp-service bindings "$gen"
"$venv/bin/componentize-py" -d "$root/wit" -w esp-service componentize \
    -p "$here" -p "$gen" app -o "$out.tmp"
mv "$out.tmp" "$out"
echo "$inputs" > "$stamp"
echo "python: built $out ($(stat -c %s "$out") bytes)"
