//! `wasp call`: one request to a component from the command line, no
//! server, as a plugin author uses it.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

const WASP: &str = env!("CARGO_BIN_EXE_wasp");

/// Runs `wasp call ARGS` with the tests' compile cache (never the user's)
/// in a temp working directory; a call that hangs is killed and fails the
/// test with what it wrote.
fn call(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    common::finish_within(
        Command::new(WASP)
            .env("WASP_CACHE_DIR", common::cache_dir())
            .current_dir(dir.path())
            .arg("call")
            .args(args),
        Duration::from_secs(120),
    )
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON `wasp call` printed after a success; the child's output is in
/// the panic message otherwise.
fn succeeded(out: &Output) -> serde_json::Value {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "wasp call failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\nstderr:\n{stderr}"))
}

/// The fault JSON printed, with stderr, after a call that must fail.
fn faulted(out: &Output) -> (serde_json::Value, String) {
    let (stdout, stderr) = text(out);
    assert!(
        !out.status.success(),
        "wasp call succeeded but should not have:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout:\n{stdout}\nstderr:\n{stderr}"));
    (json, stderr)
}

#[test]
fn a_builtin_answers_its_result_as_json() {
    let out = call(&[
        "builtin:fax",
        "SendFax",
        "--tenant",
        "101",
        "--param",
        "To=+14155550100",
        "--param-json",
        r#"{"Document":"Hello from wasp"}"#,
    ]);
    let json = succeeded(&out);
    assert_eq!(json["Status"], "Queued", "{json}");
    assert_eq!(json["Bytes"], 15, "{json}");
    assert!(
        json["FaxJobId"].as_str().unwrap().starts_with("FAX-101-"),
        "{json}"
    );
}

#[test]
fn a_missing_parameter_prints_the_fault_and_fails() {
    let out = call(&["builtin:fax", "SendFax", "--param", "To=+14155550100"]);
    let (json, stderr) = faulted(&out);
    assert_eq!(json["FaultCode"], 3005, "{json}");
    assert_eq!(json["ComponentFaultCode"], 1, "{json}");
    assert_eq!(
        json["FaultString"], "missing parameter 'Document'",
        "{json}"
    );
    assert!(
        stderr.contains("fault 3005") && stderr.contains("missing parameter 'Document'"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_method_names_the_methods() {
    let out = call(&["builtin:fax", "SendPigeon"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("service Fax has no method 'SendPigeon' (methods: GetFaxStatus, SendFax"),
        "{stderr}"
    );
}

#[test]
fn without_a_method_the_methods_are_listed_with_example_calls() {
    for args in [
        &["builtin:fax"][..],
        &["builtin:fax", "SendFax", "--describe"],
    ] {
        let out = call(args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("service Fax 1.0, 2 method(s)"), "{stdout}");
        assert!(stdout.contains("GetFaxStatus"), "{stdout}");
        // The suggested line is the one the try line uses, and it works.
        assert!(
            stdout.contains(
                r#"wasp call builtin:fax SendFax --param-json '{"To":"+14155550100","Document":"Hello from wasp"}'"#
            ),
            "{stdout}"
        );
    }
}

/// A plugin built to a `.wasm` file runs with a cluster's capabilities:
/// its config values, a store, and the deadline.
#[test]
fn a_built_plugin_gets_config_a_store_and_a_deadline() {
    let json = succeeded(&call(&[
        common::CHAOS,
        "Peek",
        "--config",
        "Greeting=hello",
    ]));
    assert_eq!(json["Config"]["Greeting"], "hello", "{json}");
    assert!(
        json["File"].as_str().unwrap().starts_with("denied"),
        "{json}"
    );

    let json = succeeded(&call(&[
        common::CHAOS,
        "Incr",
        "--param",
        "Key=visits",
        "--param-json",
        r#"{"Delta":5}"#,
    ]));
    assert_eq!(json["Value"], 5, "{json}");

    let (json, _) = faulted(&call(&[common::CHAOS, "Put", "--param", "Key=k"]));
    assert_eq!(json["FaultString"], "missing parameter 'Value'", "{json}");

    let (json, stderr) = faulted(&call(&[common::CHAOS, "Loop", "--timeout-ms", "200"]));
    assert_eq!(json["FaultCode"], 3002, "{json}\n{stderr}");
}

#[test]
fn a_cluster_of_a_config_is_called_with_its_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n[clusters.greeter]\nservice = \"Chaos\"\ncomponent = {:?}\ntenants = [\"Premium\"]\n\
             config = {{ Greeting = \"hi\" }}\n[clusters.greeter.store]\npersist = \"state.redb\"\n",
            common::TENANTS,
            common::CHAOS
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let json = succeeded(&call(&[config, "greeter", "Peek"]));
    assert_eq!(json["Config"]["Greeting"], "hi", "{json}");
    let json = succeeded(&call(&[
        config, "greeter", "Put", "--tenant", "Premium", "--param", "Key=k", "--param", "Value=v",
    ]));
    assert_eq!(json["Calls"], 1, "{json}");
    // The configured store's file is not opened: a running wasp may hold it.
    assert!(!dir.path().join("state.redb").exists());

    let out = call(&[config, "greeter", "Peek", "--tenant", "101"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cluster 'greeter' does not serve tenant 101 (it serves 102)"),
        "{stderr}"
    );

    let out = call(&[config, "faxes", "SendFax"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("has no cluster 'faxes' (clusters: greeter)"),
        "{stderr}"
    );
}
