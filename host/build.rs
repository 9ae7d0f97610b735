//! Builds the guest components in `plugins/` for wasm32-wasip2 so that the
//! bundled ones can be embedded in the binary (`builtin:fax`, ...) and the
//! test fixtures (misbehaving components) exist as real, freshly built
//! components. Nothing under `plugins/` is ever committed as a blob.
//!
//! The plugins are their own cargo workspace, built into `<target>/plugins`
//! (a different target dir, so the nested cargo never waits on the lock of
//! the build that runs this script).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Components embedded in the binary: `builtin:<name>` and the package in
/// `plugins/` that builds it (its artifact is the package name with `_` for
/// `-`).
const BUILTIN: &[(&str, &str)] = &[
    ("fax", "fax"),
    ("im", "im"),
    ("echo", "echo"),
    ("classification", "classification"),
    ("sms", "sms"),
    ("social", "social"),
    ("genesys-xml", "genesys-xml"),
    ("json", "json-codec"),
];
/// Components only the tests use (their paths become `WASP_FIXTURE_<NAME>`).
const FIXTURES: &[&str] = &["chaos"];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let plugins = root.join("plugins");
    println!(
        "cargo:rerun-if-changed={}",
        plugins.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        plugins.join("Cargo.lock").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        plugins.join(".cargo").display()
    );
    let packages = BUILTIN.iter().map(|(_, package)| package);
    for member in packages.chain(FIXTURES).chain(&["sdk", "codec-sdk"]) {
        println!("cargo:rerun-if-changed={}", plugins.join(member).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // The classification model's data set is embedded in its component.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("examples/classification").display()
    );
    println!("cargo:rerun-if-env-changed=WASP_PLUGINS_TARGET_DIR");

    let out_dir = PathBuf::from(env("OUT_DIR"));
    let target_dir = std::env::var_os("WASP_PLUGINS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cargo_target_dir(&out_dir).join("plugins"));

    ensure_wasm_target();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags (coverage, clippy wrappers, host RUSTFLAGS)
    // must not leak into the guest build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd.status().expect("run cargo for plugins/");
    assert!(status.success(), "building plugins/ for {TARGET} failed");

    let wasm_dir = target_dir.join(TARGET).join("release");
    let mut generated = String::from(
        "/// Components embedded in this binary, by `builtin:` name.\n\
         pub const BUILTIN: &[(&str, &[u8])] = &[\n",
    );
    for (name, package) in BUILTIN {
        let path = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(path.exists(), "missing {}", path.display());
        generated.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("builtin.rs"), generated).expect("write builtin.rs");
    for name in FIXTURES {
        let path = wasm_dir.join(format!("{name}.wasm"));
        assert!(path.exists(), "missing {}", path.display());
        println!(
            "cargo:rustc-env=WASP_FIXTURE_{}={}",
            name.to_uppercase(),
            path.display()
        );
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is set by cargo"))
}

/// The cargo target dir holding `OUT_DIR`: the nearest ancestor with the
/// `CACHEDIR.TAG` cargo writes at its root.
fn cargo_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.to_path_buf())
}

/// rust-toolchain.toml names the wasm32-wasip2 target, but rustup only adds
/// it when it installs the toolchain; on a machine whose toolchain is
/// already there, add the target here so the first build just works.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let have = sysroot
        .map(|s| s.join("lib/rustlib").join(TARGET).exists())
        .unwrap_or(false);
    if !have {
        let ok = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed"
        );
    }
}
