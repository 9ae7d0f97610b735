//! Reloading a running host: a new generation built whole, then one
//! switch; what did not change keeps running untouched; what fails
//! changes nothing and says why; rollback; the file watcher.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{CHAOS, Served, TENANTS, cache_dir, serve_file};
use serde_json::{Value, json};

/// Writes the config file: tenants, the compile cache, then `body`.
fn write(path: &Path, body: &str) {
    let text = format!(
        "[runtime]\ncache-dir = {:?}\n{TENANTS}\n{body}",
        cache_dir().display().to_string()
    );
    std::fs::write(path, text).unwrap();
}

fn echo(name: &str, component: &str, instances: usize) -> String {
    format!(
        "[clusters.{name}]\nservice = \"Echo\"\ncomponent = {component:?}\ntenants = [101]\ninstances = {instances}\n"
    )
}

/// The echo component with a custom section appended: another SHA-256,
/// the same behaviour — "a new version of the component".
fn echo_v2(dir: &Path) -> PathBuf {
    let mut bytes = wasp::builtin::get("echo").unwrap().to_vec();
    let name = b"wasp-test-version";
    let payload = b"2";
    let size = 1 + name.len() + payload.len();
    bytes.push(0); // custom section
    bytes.push(size as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    let path = dir.join("echo-v2.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// One echo call; its answer and the `wasp-component` header.
async fn call(s: &Served, cluster: &str) -> (u16, Value, String) {
    let response = s
        .http
        .post(s.url(&format!("/v1/esp/{cluster}")))
        .header("content-type", "application/json")
        .body(r#"{"Request":{"Service":"Echo","Method":"Echo","TenantId":101,"Parameters":{"Text":"hi"}}}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let component = response
        .headers()
        .get("wasp-component")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, response.json().await.unwrap(), component)
}

async fn post(s: &Served, path: &str) -> (u16, Value) {
    let response = s
        .http
        .post(s.url(path))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_reload_restarts_only_what_changed_and_answers_show_the_new_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    write(
        &path,
        &(echo("a", "builtin:echo", 2) + &echo("b", "builtin:echo", 2)),
    );
    let s = serve_file(&path, false).await;
    let a_before = s.host.current().clusters["a"].clone();
    let (status, _, old_component) = call(&s, "b").await;
    assert_eq!(status, 200);
    assert_eq!(old_component.len(), 12, "a component id in the header");

    // b gets a new version of its component, a stays as it was.
    let v2 = echo_v2(dir.path());
    write(
        &path,
        &(echo("a", "builtin:echo", 2) + &echo("b", v2.to_str().unwrap(), 3)),
    );
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["Ok"], true);
    assert_eq!(report["Changes"]["Started"], json!(["clusters.b"]));
    assert_eq!(report["Changes"]["Kept"], json!(["clusters.a"]));
    assert!(
        Arc::ptr_eq(&a_before, &s.host.current().clusters["a"]),
        "the unchanged cluster is the same, its instances untouched"
    );
    let (status, body, new_component) = call(&s, "b").await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(new_component, old_component, "the new version answers");
    assert_eq!(s.host.current().clusters["b"].live_instances(), 3);
    let (status, _, a_component) = call(&s, "a").await;
    assert_eq!((status, a_component), (200, old_component.clone()));

    // Rollback: back to the config before the reload.
    let (status, report) = post(&s, "/v1/admin/rollback").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["Trigger"], "rollback");
    let (_, _, back) = call(&s, "b").await;
    assert_eq!(back, old_component);
    let history = s.get_json("/v1/admin/reloads").await;
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
}

#[tokio::test]
async fn a_failed_reload_changes_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    write(&path, &echo("a", "builtin:echo", 1));
    let s = serve_file(&path, false).await;
    let before = s.host.current();

    for (broken, says) in [
        ("[clusters.a\nservice = ", "invalid config"),
        (
            "[clusters.a]\nservice = \"Fax\"\ncomponent = \"builtin:echo\"\ntenants = [101]\n",
            "declares 'Echo'",
        ),
        (
            "[clusters.a]\nservice = \"Echo\"\ncomponent = \"missing.wasm\"\ntenants = [101]\n",
            "does not exist",
        ),
    ] {
        write(&path, broken);
        let (status, report) = post(&s, "/v1/admin/reload").await;
        assert_eq!(status, 422, "{report}");
        assert_eq!(report["Ok"], false);
        let reason = report["Reason"].as_str().unwrap();
        assert!(reason.contains(says), "{says:?} not in {reason}");
        assert!(
            Arc::ptr_eq(&before, &s.host.current()),
            "still the same generation"
        );
        let (status, _, _) = call(&s, "a").await;
        assert_eq!(status, 200, "the running config still serves");
    }

    // A process-level section is refused, naming it.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path).unwrap() + "\n[server]\nmax-connections = 10\n",
    )
    .unwrap();
    write(
        &path,
        &format!(
            "{}\n[server]\nmax-connections = 10\n",
            echo("a", "builtin:echo", 1)
        ),
    );
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(status, 422);
    assert!(
        report["Reason"].as_str().unwrap().contains("[server]"),
        "{report}"
    );
    assert_eq!(
        s.get_json("/v1/admin/reloads")
            .await
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn editing_the_config_file_reloads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    write(&path, &echo("a", "builtin:echo", 1));
    let s = serve_file(&path, true).await;
    // An editor replacing the file: written beside it, renamed over it.
    let next = dir.path().join(".wasp.toml.swp-new");
    let body = echo("a", "builtin:echo", 1) + &echo("c", "builtin:echo", 1);
    let text = format!(
        "[runtime]\ncache-dir = {:?}\n{TENANTS}\n{body}",
        cache_dir().display().to_string()
    );
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, &path).unwrap();
    for _ in 0..1000 {
        if s.host.current().clusters.contains_key("c") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let history = s.host.reload_history();
    assert!(
        s.host.current().clusters.contains_key("c"),
        "the edit was not picked up: {history:?}"
    );
    assert_eq!(format!("{:?}", history.last().unwrap().trigger), "File");
    let (status, _, _) = call(&s, "c").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_capture_point_is_added_changed_and_removed_by_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    let data = dir.path().join("data");
    let capture = |pattern: &str| {
        format!(
            "data-dir = {:?}\n[captures.orders]\nadapter = \"file\"\nrescan-ms = 100\nsettle-ms = 0\n\
             pattern = {pattern:?}\ndefault-values = {{ TenantId = 101 }}\n",
            data.display().to_string()
        )
    };
    // data-dir is a top-level key: it must come before any table.
    let config = |captures: &str| {
        let text = format!(
            "{captures}[runtime]\ncache-dir = {:?}\n{TENANTS}\n{}",
            cache_dir().display().to_string(),
            echo("a", "builtin:echo", 1)
        );
        std::fs::write(&path, text).unwrap();
    };
    config(&format!("data-dir = {:?}\n", data.display().to_string()));
    let s = serve_file(&path, false).await;
    assert!(s.host.current().captures.is_empty());

    config(&capture("*.xml"));
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["Changes"]["Started"], json!(["captures.orders"]));
    assert!(data.join("orders/inbound").is_dir());

    // Changed: the old one stops and frees its state file; the new starts.
    config(&capture("*.order"));
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(status, 200, "{report}");
    assert!(report.get("Warnings").is_none(), "{report}");
    let captures = s.get_json("/v1/admin/captures").await;
    assert_eq!(captures[0]["Pattern"], "*.order");

    config(&format!("data-dir = {:?}\n", data.display().to_string()));
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["Changes"]["Removed"], json!(["captures.orders"]));
    assert!(s.host.current().captures.is_empty());
    let metrics = s.metrics().await;
    assert!(
        !metrics.contains(r#"capture="orders""#),
        "a removed capture point's series are gone:\n{metrics}"
    );
    let _ = CHAOS;
}

/// A reloaded config's clusters are pointed at the demo's mock peers
/// where they listen (`wasp run --mock-peers`, or port 0), as at start.
#[tokio::test]
async fn a_reload_points_the_clusters_at_the_demo_peers_where_they_listen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    write(
        &path,
        &format!(
            "[demo]\nmock-peers = \"127.0.0.1:8091\"\n[clusters.chaos]\nservice = \"Chaos\"\n\
             component = {CHAOS:?}\ntenants = [101]\n\
             config = {{ gateway-url = \"http://127.0.0.1:8091/fax/send\" }}\n\
             http = {{ allow = [\"127.0.0.1:8091\"] }}\n"
        ),
    );
    let s = serve_file(&path, false).await;
    s.host
        .reloads
        .set_demo_peers("127.0.0.1:40123".parse().unwrap());
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(status, 200, "{report}");
    let generation = s.host.current();
    let chaos = &generation.config.clusters["chaos"];
    assert_eq!(
        chaos.config["gateway-url"],
        "http://127.0.0.1:40123/fax/send"
    );
    assert_eq!(chaos.http.as_ref().unwrap().allow, ["127.0.0.1:40123"]);
}

#[tokio::test]
async fn metrics_show_what_serves_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    write(
        &path,
        &(echo("a", "builtin:echo", 3) + &echo("gone", "builtin:echo", 2)),
    );
    let s = serve_file(&path, false).await;
    for cluster in ["a", "gone"] {
        assert_eq!(call(&s, cluster).await.0, 200);
    }
    // A fault of `gone`: a method it does not have.
    let (status, _, _) = s
        .post_raw(
            "gone",
            r#"{"Request":{"Service":"Echo","Method":"Nope","TenantId":101,"Parameters":{}}}"#,
        )
        .await;
    assert_ne!(status, 200);
    let before = s.metrics().await;
    assert!(
        before.contains(r#"wasp_esp_faults_total{cluster="gone""#),
        "{before}"
    );
    assert!(
        before.contains(r#"wasp_instance_handled_total{cluster="a",instance="2"}"#),
        "{before}"
    );

    // `gone` is removed and `a` shrinks to one instance.
    write(&path, &echo("a", "builtin:echo", 1));
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(call(&s, "a").await.0, 200);
    let after = s.metrics().await;
    assert!(
        !after.contains(r#"cluster="gone""#),
        "no series of a removed cluster:\n{after}"
    );
    assert!(
        !after.contains(r#"cluster="a",instance="2""#),
        "no series of a removed slot:\n{after}"
    );
    assert!(
        after.contains(r#"wasp_esp_requests_total{cluster="a"} 2"#),
        "a kept cluster keeps counting:\n{after}"
    );
    assert!(
        after.contains(r#"wasp_cluster_instances{cluster="a"} 1"#),
        "{after}"
    );
}

#[tokio::test]
async fn a_replaced_cluster_is_dropped_after_the_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    write(&path, &echo("a", "builtin:echo", 2));
    let s = serve_file(&path, false).await;
    assert_eq!(call(&s, "a").await.0, 200);
    let old = Arc::downgrade(&s.host.current().clusters["a"]);
    write(&path, &echo("a", "builtin:echo", 3));
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(call(&s, "a").await.0, 200);
    for _ in 0..100 {
        if old.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the replaced cluster is still held: {} references",
        old.strong_count()
    );
}

#[tokio::test]
async fn a_kept_component_is_reused_and_a_swapped_one_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    write(&path, &echo("a", "builtin:echo", 2));
    let s = serve_file(&path, false).await;
    let sha = s.host.current().clusters["a"].sha256.clone();
    assert_eq!(
        s.host.runtime.loaded_components(),
        std::slice::from_ref(&sha)
    );
    // More instances, the same component: the loaded one is reused.
    for n in [3, 2, 3] {
        write(&path, &echo("a", "builtin:echo", n));
        let (status, report) = post(&s, "/v1/admin/reload").await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["Changes"]["Started"], json!(["clusters.a"]));
        assert_eq!(
            s.host.runtime.loaded_components(),
            std::slice::from_ref(&sha)
        );
    }
    // Another version: the old one is forgotten.
    let v2 = echo_v2(dir.path());
    write(&path, &echo("a", v2.to_str().unwrap(), 2));
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(status, 200, "{report}");
    let now = s.host.current().clusters["a"].sha256.clone();
    assert_ne!(now, sha);
    assert_eq!(
        s.host.runtime.loaded_components(),
        std::slice::from_ref(&now)
    );
    // A reload that fails after loading a component keeps only what serves.
    write(&path, &echo("a", CHAOS, 2));
    let (status, report) = post(&s, "/v1/admin/reload").await;
    assert_eq!(
        status, 422,
        "the chaos component declares another service: {report}"
    );
    assert_eq!(s.host.runtime.loaded_components(), [now]);
    assert_eq!(call(&s, "a").await.0, 200);
}
