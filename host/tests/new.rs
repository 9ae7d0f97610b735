//! `wasp new` / `wasp build` / `wasp call`, as a plugin author runs them:
//! a project in each language is written into a temp folder outside the
//! repository, built there, and its component called.
//!
//! The builds reuse what is already on the machine: the Python and
//! JavaScript toolchains that `scripts/build-examples` installs under the
//! repository's `target/toolchains` (`WASP_TOOLCHAIN_DIR`), and for Rust a
//! cargo target folder kept under `target/new-test-rust`, so only the first
//! run compiles the SDK's dependencies.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

const WASP: &str = env!("CARGO_BIN_EXE_wasp");

fn repo_target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// Runs `wasp ARGS` in `dir` with the tests' caches; a run that hangs is
/// killed. Returns the output; the caller checks it.
fn wasp(dir: &Path, args: &[&str], limit: Duration) -> Output {
    common::finish_within(
        Command::new(WASP)
            .env("WASP_CACHE_DIR", common::cache_dir())
            .env("WASP_TOOLCHAIN_DIR", repo_target().join("toolchains"))
            .env("CARGO_TARGET_DIR", repo_target().join("new-test-rust"))
            .current_dir(dir)
            .args(args),
        limit,
    )
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `wasp new LANG greeter` in a fresh temp folder, `wasp build` in the
/// project, then calls: the component, and the cluster of its wasp.toml.
fn new_build_call(language: &str) {
    let temp = tempfile::tempdir().unwrap();
    assert!(
        !temp
            .path()
            .starts_with(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")),
        "the project must be outside the repository"
    );
    ok(wasp(
        temp.path(),
        &["new", language, "greeter"],
        Duration::from_secs(30),
    ));
    let project = temp.path().join("greeter");
    assert!(project.join("wasp.toml").is_file());
    assert!(project.join("README.md").is_file());

    let out = ok(wasp(&project, &["build"], Duration::from_secs(600)));
    let component = PathBuf::from(out.trim());
    assert_eq!(component, project.join("build/greeter.wasm"), "{out}");
    assert!(component.is_file());

    let out = ok(wasp(
        &project,
        &["call", "build/greeter.wasm", "Greet", "--param", "Name=Ada"],
        Duration::from_secs(120),
    ));
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        answer,
        json!({"Greeting": "Hello, Ada!", "Tenant": 101}),
        "{language}"
    );

    // The cluster as wasp.toml configures it, with a config value changed.
    let out = ok(wasp(
        &project,
        &[
            "call",
            "wasp.toml",
            "greeter",
            "Greet",
            "--param",
            "Name=Ada",
            "--config",
            "greeting=Hi",
        ],
        Duration::from_secs(120),
    ));
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["Greeting"], "Hi, Ada!", "{language}: {answer}");

    // A missing parameter is the SDK's fault 1, naming it.
    let out = wasp(
        &project,
        &["call", "build/greeter.wasm", "Greet"],
        Duration::from_secs(120),
    );
    assert!(!out.status.success(), "{}", text(&out));
    let fault: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fault["FaultCode"], 3005, "{fault}");
    assert_eq!(fault["ComponentFaultCode"], 1, "{fault}");
    assert_eq!(fault["FaultString"], "missing parameter 'Name'", "{fault}");

    // The config's example of Greet is what the cluster's description
    // suggests, and that line works as suggested.
    let described = ok(wasp(
        &project,
        &["call", "wasp.toml", "greeter"],
        Duration::from_secs(120),
    ));
    assert!(
        described.contains(r#"wasp call wasp.toml greeter Greet --param-json '{"Name":"Ada"}'"#),
        "{described}"
    );
    let answer: Value = serde_json::from_str(&ok(wasp(
        &project,
        &[
            "call",
            "wasp.toml",
            "greeter",
            "Greet",
            "--param-json",
            r#"{"Name":"Ada"}"#,
        ],
        Duration::from_secs(120),
    )))
    .unwrap();
    assert_eq!(answer["Greeting"], "Hello, Ada!", "{answer}");

    // A second build with nothing changed keeps the component.
    let before = std::fs::metadata(&component).unwrap().modified().unwrap();
    ok(wasp(&project, &["build"], Duration::from_secs(300)));
    let after = std::fs::metadata(&component).unwrap().modified().unwrap();
    assert_eq!(
        before, after,
        "{language}: an unchanged build rewrote the component"
    );
}

#[test]
fn rust_project() {
    new_build_call("rust");
}

#[test]
fn python_project() {
    new_build_call("python");
}

#[test]
fn js_project() {
    new_build_call("js");
}

#[test]
fn new_refuses_a_bad_name_and_a_folder_in_use() {
    let temp = tempfile::tempdir().unwrap();
    let out = wasp(
        temp.path(),
        &["new", "python", "Greeter"],
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'Greeter' is not a project name"),
        "{}",
        text(&out)
    );
    assert!(!temp.path().join("Greeter").exists());

    std::fs::create_dir(temp.path().join("taken")).unwrap();
    std::fs::write(temp.path().join("taken/notes.txt"), "mine").unwrap();
    let out = wasp(
        temp.path(),
        &["new", "js", "greeter", "--dir", "taken"],
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists and is not empty"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_dir(temp.path().join("taken"))
            .unwrap()
            .count(),
        1
    );

    // An empty folder is fine.
    std::fs::create_dir(temp.path().join("empty")).unwrap();
    ok(wasp(
        temp.path(),
        &["new", "rust", "greeter", "--dir", "empty"],
        Duration::from_secs(30),
    ));
    assert!(temp.path().join("empty/src/lib.rs").is_file());

    // `wasp build` outside a project says what it needs.
    let out = wasp(temp.path(), &["build"], Duration::from_secs(30));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no wasp-plugin.toml"),
        "{}",
        text(&out)
    );
}
