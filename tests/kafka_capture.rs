//! The kafka capture point end to end, with `wasp` running as processes
//! and a real broker (installed and started by the test itself):
//! - two hosts with one config share the inbound topic's partitions
//!   through the consumer group; one is killed with `kill -9` mid-stream
//!   and the other finishes: nothing lost, no interaction submitted twice
//!   at the node;
//! - 100 000 messages go through one host while the broker is frozen for
//!   20 s mid-stream (SIGSTOP, SIGCONT): every one answered once at the
//!   node, replied on the notification topic, its offset committed.
//!
//! The node is a node-sim in this test process (it outlives the hosts),
//! connected to one host at a time and failing over to the other.

#[path = "../host/tests/common/kafka.rs"]
mod broker;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::{Broker, Record, committed, read};
use rdkafka::Offset;
use support::{Wasp, until};
use wasp::tools::node_sim::{Sim, SimArgs};

/// How long a scenario may wait for messages to go through.
const PATIENCE: Duration = Duration::from_secs(180);

/// A config with tenant 101 and the kafka capture point `orders` on
/// `broker`'s topic `orders`.
fn config(dir: &Path, broker: &Broker, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[[tenants]]
id = 101
name = "Environment"

[captures.orders]
adapter = "kafka"
brokers = "{}"
topic = "orders"
default-values = {{ TenantId = 101, Queue = "Inbound" }}
{extra}
"#,
        broker.addr
    );
    let path = dir.join("wasp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A broker with the topic `orders` of `partitions` partitions and its
/// notification and error topics.
async fn orders_broker(partitions: i32) -> Broker {
    let broker = Broker::start();
    broker.create_topic("orders", partitions).await;
    broker.create_topic("orders.notification", 1).await;
    broker.create_topic("orders.error", 1).await;
    broker
}

/// Submits with ExternalIds `<prefix>-<i>`, keyed `k-<i>`.
fn submits(prefix: &str, n: usize) -> Vec<Record<'static>> {
    (0..n)
        .map(|i| {
            (
                Some(format!("k-{i}").into_bytes()),
                format!(
                    r#"<interaction operation="submit" ExternalId="{prefix}-{i}"><properties><N type="int">{i}</N></properties></interaction>"#
                )
                .into_bytes(),
                vec![],
            )
        })
        .collect()
}

/// ExternalIds of the interactions the node holds; panics on one held
/// twice.
fn held_once(node: &Sim) -> BTreeSet<String> {
    let all = node.state.interactions.lock().unwrap();
    let mut ids = BTreeSet::new();
    for i in all.values() {
        let ext = i.external_id.clone().expect("an ExternalId");
        assert!(ids.insert(ext.clone()), "{ext} submitted twice at the node");
    }
    ids
}

/// The group's committed offsets, all partitions of `orders` together.
fn committed_total(broker: &Broker, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| match committed(broker, "wasp-orders", "orders", p) {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

async fn wait_committed(broker: &Broker, partitions: i32, n: i64, stderr: &dyn Fn() -> String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let total = committed_total(broker, partitions);
        if total == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{total} of {n} offsets committed\n{}",
            stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_share_the_topic_and_one_killed_loses_nothing() {
    const N: usize = 3000;
    const PARTITIONS: i32 = 4;
    let broker = orders_broker(PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &broker, "");
    let mut a = Wasp::start(&path, "127.0.0.1:0", &dir.path().join("a"))
        .await
        .expect("host a starts");
    let b = Wasp::start(&path, "127.0.0.1:0", &dir.path().join("b"))
        .await
        .expect("host b starts");
    // The node is on host a first (host b's operations wait for it) and
    // fails over to host b.
    let mut args = SimArgs::node(a.addr, "is-1", &[101]);
    args.connect.push(format!("ws://{}", b.addr));
    args.answer_delay_ms = 1;
    let node = Sim::spawn(args);
    node.connected(PATIENCE).await.unwrap();

    let started = std::time::Instant::now();
    broker.produce("orders", None, &submits("two", N)).await;
    let stderr = || format!("host a:\n{}\nhost b:\n{}", a.stderr(), b.stderr());
    until("a third submitted", PATIENCE, || {
        (node.state.interactions.lock().unwrap().len() >= N / 3).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", stderr()));
    a.kill9().await;
    let at_kill = node.state.interactions.lock().unwrap().len();
    eprintln!(
        "host a killed after {:?} with {at_kill} of {N} submitted",
        started.elapsed()
    );
    assert!(at_kill < N, "the kill came too late to test anything");

    let b_err = || b.stderr();
    until("every message submitted", PATIENCE, || {
        (node.state.interactions.lock().unwrap().len() >= N).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b_err()));
    eprintln!("all submitted after {:?}", started.elapsed());
    let held = held_once(&node);
    assert_eq!(held.len(), N, "one interaction per ExternalId");
    let replies = read(&broker, "orders.notification", N).await;
    assert!(replies.len() >= N);
    wait_committed(&broker, PARTITIONS, N as i64, &b_err).await;
    eprintln!(
        "{} operations were sent again after the kill and recognised by the node",
        node.state.repeated.load(Ordering::Relaxed)
    );
    drop(node);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_thousand_messages_through_a_frozen_broker() {
    const N: usize = 100_000;
    const PARTITIONS: i32 = 4;
    let broker = orders_broker(PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &broker, "batch = 64\nmax-in-flight = 1024\n");
    let wasp = Wasp::start(&path, "127.0.0.1:0", &dir.path().join("data"))
        .await
        .expect("wasp starts");
    let mut args = SimArgs::node(wasp.addr, "is-1", &[101]);
    args.window = 1000;
    let node = Sim::spawn(args);
    node.connected(PATIENCE).await.unwrap();
    let started = std::time::Instant::now();
    broker.produce("orders", None, &submits("big", N)).await;
    let stderr = || wasp.stderr();
    until("a third submitted", PATIENCE, || {
        (node.state.interactions.lock().unwrap().len() >= N / 3).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", stderr()));
    broker.pause();
    let frozen_at = node.state.interactions.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(20)).await;
    broker.resume();
    eprintln!("the broker was frozen for 20 s with {frozen_at} of {N} submitted");
    let done = until("every message submitted", PATIENCE, || {
        (node.state.interactions.lock().unwrap().len() >= N).then_some(())
    })
    .await;
    if let Err(e) = done {
        let captures = reqwest::get(format!("{}/v1/admin/captures", wasp.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        panic!(
            "{e}: {} submitted; captures: {captures}\n{}",
            node.state.interactions.lock().unwrap().len(),
            stderr()
        );
    }
    let held = held_once(&node);
    assert_eq!(held.len(), N, "one interaction per message");
    wait_committed(&broker, PARTITIONS, N as i64, &stderr).await;
    eprintln!(
        "{N} messages submitted and committed in {:?} (20 s of it frozen)",
        started.elapsed()
    );
    let replies = read(&broker, "orders.notification", N).await;
    assert!(replies.len() >= N);
    let captures: serde_json::Value = reqwest::get(format!("{}/v1/admin/captures", wasp.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(captures[0]["Errors"], 0, "{captures}");
    drop(node);
    drop(wasp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasp_kafka_produce_and_consume_put_a_file_on_a_topic_and_print_it() {
    let broker = Broker::start();
    broker.create_topic("try", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order.xml");
    std::fs::write(
        &file,
        r#"<interaction operation="submit" ExternalId="t-1"/>"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(support::wasp_bin())
            .args(["kafka"])
            .args(args)
            .args(["--brokers", &broker.addr, "--topic", "try"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "wasp kafka {args:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let produced = run(&["produce", "--key", "t-1", file.to_str().unwrap()]);
    assert_eq!(produced.trim(), "try/0/0");
    let printed = run(&["consume", "--count", "1"]);
    assert!(printed.starts_with("try/0/0 key=t-1"), "{printed}");
    assert!(printed.contains(r#"ExternalId="t-1""#), "{printed}");
}
