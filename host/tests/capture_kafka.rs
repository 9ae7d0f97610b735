//! A kafka capture point end to end, in one process with a real broker:
//! messages on the inbound topic become interactions at a node-sim, each
//! answered on the notification topic with its key and correlation id; a
//! malformed one is refused (to the error topic); offsets are committed; a
//! re-submitted ExternalId makes no second interaction.

#[path = "common/kafka.rs"]
mod broker;
mod common;

use std::time::Duration;

use broker::{Broker, committed, read};
use common::{TENANTS, cache_dir, serve_file};
use rdkafka::Offset;
use wasp::tools::node_sim::{Sim, SimArgs};

fn sim(addr: std::net::SocketAddr) -> Sim {
    Sim::spawn(SimArgs::node(addr, "is-kafka", &[101]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_become_interactions_replies_and_commits() {
    let broker = Broker::start();
    broker.create_topic("orders", 2).await;
    broker.create_topic("orders.notification", 1).await;
    broker.create_topic("orders.error", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasp.toml");
    std::fs::write(
        &path,
        format!(
            "data-dir = \"data\"\n[runtime]\ncache-dir = {:?}\n{TENANTS}\n\
             [captures.orders-kafka]\nadapter = \"kafka\"\nbrokers = {:?}\ntopic = \"orders\"\n\
             default-values = {{ TenantId = 101, Queue = \"Inbound\" }}\n",
            cache_dir().display().to_string(),
            broker.addr
        ),
    )
    .unwrap();
    let s = serve_file(&path, false).await;
    let node = sim(s.addr);
    node.connected(Duration::from_secs(30)).await.unwrap();

    const N: usize = 200;
    let docs: Vec<(Vec<u8>, Vec<u8>)> = (0..N)
        .map(|i| {
            (
                format!("k-{i}").into_bytes(),
                format!(
                    r#"<interaction operation="submit" ExternalId="kafka-{i}"><properties><N type="int">{i}</N></properties></interaction>"#
                )
                .into_bytes(),
            )
        })
        .collect();
    let mut records: Vec<broker::Record<'_>> = docs
        .iter()
        .map(|(k, v)| {
            (
                Some(k.clone()),
                v.clone(),
                vec![("correlation-id", k.as_slice())],
            )
        })
        .collect();
    records.push((
        Some(b"bad".to_vec()),
        b"<interaction operation=".to_vec(),
        vec![],
    ));
    // The same ExternalId again: answered, no second interaction.
    records.push((
        Some(b"again".to_vec()),
        br#"<interaction operation="submit" ExternalId="kafka-0"/>"#.to_vec(),
        vec![],
    ));
    broker.produce("orders", None, &records).await;

    let replies = read(&broker, "orders.notification", N + 1).await;
    for (key, headers, payload) in &replies {
        let text = String::from_utf8_lossy(payload);
        let key = String::from_utf8_lossy(key.as_deref().unwrap_or_default()).into_owned();
        if key == "again" {
            assert!(text.contains(r#"code="2004""#), "{text}");
            continue;
        }
        assert!(text.contains(r#"operation="submitted""#), "{key}: {text}");
        let id = headers
            .iter()
            .find(|(k, _)| k == "correlation-id")
            .and_then(|(_, v)| v.clone());
        assert_eq!(id.as_deref(), Some(key.as_bytes()), "{key}: {headers:?}");
    }
    // The malformed one went to the error topic (what lands there, key and
    // reason header, is the adapter's test in kafka.rs).
    let captures = s.get_json("/v1/admin/captures").await;
    assert_eq!(captures[0]["Errors"], 1, "{captures}");
    let held = node.state.interactions.lock().unwrap().len();
    assert_eq!(held, N, "one interaction per ExternalId");
    // Every offset committed (both partitions together).
    let mut total = 0;
    for _ in 0..600 {
        total = (0..2)
            .map(
                |p| match committed(&broker, "wasp-orders-kafka", "orders", p) {
                    Offset::Offset(o) => o,
                    _ => 0,
                },
            )
            .sum::<i64>();
        if total == (N + 2) as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(total, (N + 2) as i64, "committed offsets");
    let captures = s.get_json("/v1/admin/captures").await;
    assert_eq!(captures[0]["Adapter"], "kafka");
    assert_eq!(captures[0]["Kafka"]["Group"], "wasp-orders-kafka");
    assert_eq!(captures[0]["Errors"], 1);
    // Stopped before the broker goes (it is dropped last).
    drop(node);
    s.stop().await;
}
