//! Stopping `wasp` as an operator does, with the binary running as a
//! process: SIGTERM finishes the work in flight (an HTTP capture request
//! waiting for its node, capture files being processed), closes node
//! sessions with a reason, logs no warning and exits 0; a second signal
//! exits at once.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{Wasp, files, until};
use wasp::tools::node_sim::{Sim, SimArgs};

const PATIENCE: Duration = Duration::from_secs(120);

fn config(dir: &Path) -> PathBuf {
    let text = r#"
[[tenants]]
id = 101
name = "Environment"

[captures.orders]
adapter = "file"
rescan-ms = 100
settle-ms = 20
default-values = { TenantId = 101, Queue = "Inbound" }

[captures.web]
adapter = "http"
default-values = { TenantId = 101, Queue = "Inbound" }
"#;
    let path = dir.join("wasp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn signal(wasp: &Wasp, sig: &str) {
    let pid = wasp.child.id().expect("running");
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts wasp and a node-sim that answers each operation after
/// `answer_delay_ms`.
async fn start(dir: &Path, answer_delay_ms: u64) -> (Wasp, Sim, PathBuf) {
    let data = dir.join("data");
    let wasp = Wasp::start(&config(dir), "127.0.0.1:0", &data)
        .await
        .expect("wasp starts");
    let mut args = SimArgs::node(wasp.addr, "is-1", &[101]);
    args.answer_delay_ms = answer_delay_ms;
    let node = Sim::spawn(args);
    node.connected(PATIENCE).await.unwrap();
    (wasp, node, data.join("orders"))
}

/// A JSON submit to the `web` capture point, answered once the node did.
fn submit(wasp: &Wasp, ext: &str) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let url = format!("{}/v1/capture/web/submit", wasp.url);
    let body = serde_json::json!({ "ExternalId": ext });
    tokio::spawn(async move { reqwest::Client::new().post(url).json(&body).send().await })
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_work_in_flight_closes_nodes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wasp, node, orders) = start(dir.path(), 1500).await;
    let inbound = orders.join("inbound");
    until("the inbound folder", PATIENCE, || {
        inbound.is_dir().then_some(())
    })
    .await
    .unwrap();
    let asked = submit(&wasp, "in-flight");
    for i in 0..3 {
        let doc = format!(r#"<interaction operation="submit" ExternalId="f-{i}"/>"#);
        std::fs::write(orders.join(format!("f-{i}.tmp")), doc).unwrap();
        std::fs::rename(
            orders.join(format!("f-{i}.tmp")),
            inbound.join(format!("f-{i}.xml")),
        )
        .unwrap();
    }
    // Four operations at the node, none answered yet (1.5 s each).
    until("the operations at the node", PATIENCE, || {
        (node.state.received.load(Ordering::Relaxed) >= 4).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", wasp.stderr()));

    signal(&wasp, "TERM");
    let answer = asked
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let status = tokio::time::timeout(PATIENCE, wasp.child.wait())
        .await
        .expect("wasp exits")
        .unwrap();
    let stderr = wasp.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // Every file finished: processed, with its notification; none refused.
    let names: Vec<String> = (0..3).map(|i| format!("f-{i}.xml")).collect();
    assert_eq!(files(&orders.join("processed")), names, "{stderr}");
    assert_eq!(files(&orders.join("notification")), names);
    assert!(files(&inbound).is_empty());
    assert!(files(&orders.join("error")).is_empty());
    // An orderly stop: the node was told, and nothing was worth a warning.
    assert!(stderr.contains("node session closed"), "{stderr}");
    for line in stderr.lines() {
        assert!(
            !line.contains("WARN") && !line.contains("ERROR"),
            "an orderly stop logged: {line}\n{stderr}"
        );
    }
    until("the node-sim sees the session end", PATIENCE, || {
        (!node.state.connected.load(Ordering::Relaxed)).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // The node never answers in time: the orderly stop would wait its
    // whole bound.
    let (mut wasp, node, _) = start(dir.path(), 600_000).await;
    let asked = submit(&wasp, "stuck");
    until("the operation at the node", PATIENCE, || {
        (node.state.received.load(Ordering::Relaxed) >= 1).then_some(())
    })
    .await
    .unwrap();
    signal(&wasp, "TERM");
    until("the stop announced", PATIENCE, || {
        wasp.stderr()
            .contains("a second signal exits at once")
            .then_some(())
    })
    .await
    .unwrap();
    let second = std::time::Instant::now();
    signal(&wasp, "INT");
    let status = tokio::time::timeout(Duration::from_secs(5), wasp.child.wait())
        .await
        .unwrap_or_else(|_| panic!("wasp did not exit at the second signal\n{}", wasp.stderr()))
        .unwrap();
    eprintln!("exited {:?} after the second signal", second.elapsed());
    assert_eq!(status.code(), Some(130), "{}", wasp.stderr());
    assert!(asked.await.unwrap().is_err(), "the stuck request was cut");
}
