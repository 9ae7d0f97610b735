//! The key-value store capability: shared by a cluster's instances, scoped
//! by tenant, denied unless granted, and optionally persisted.

mod common;

use common::*;
use serde_json::json;

fn chaos_with_store(store: &str) -> String {
    format!(
        r#"
[clusters.chaos]
service = "Chaos"
component = "{CHAOS}"
tenants = [101, 102]
instances = 2
{store}
"#
    )
}

#[tokio::test]
async fn the_store_is_shared_by_instances_and_scoped_by_tenant() {
    let s = serve(&chaos_with_store("[clusters.chaos.store]")).await;
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Put",
            json!(101),
            json!({"Key": "job/1", "Value": "Queued"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    for _ in 0..10 {
        let (status, answer) = s
            .esp("chaos", "Chaos", "Get", json!(101), json!({"Key": "job/1"}))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["Result"]["Value"], "Queued",
            "every instance sees it"
        );
    }
    let c = s.admin_cluster("chaos").await;
    assert!(
        c["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["handled"].as_u64().unwrap() > 0),
        "both instances answered: {c}"
    );
    let (status, answer) = s
        .esp("chaos", "Chaos", "Get", json!(102), json!({"Key": "job/1"}))
        .await;
    assert_eq!(status, 200, "the Get itself succeeds: {answer}");
    assert_eq!(answer["Event"], "Event3rdServerResponse", "{answer}");
    assert!(answer["Result"]["Calls"].is_i64(), "{answer}");
    assert_eq!(
        answer["Result"].get("Value"),
        None,
        "tenant 102 never sees tenant 101's keys: {answer}"
    );
}

#[tokio::test]
async fn without_a_grant_the_store_refuses_with_a_clear_fault() {
    let s = serve(&chaos_with_store("")).await;
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Put",
            json!(101),
            json!({"Key": "k", "Value": "v"}),
        )
        .await;
    assert_fault(status, &answer, 422, 3005);
    let msg = answer["FaultString"].as_str().unwrap();
    assert!(
        msg.contains("not granted") && msg.contains("[clusters.chaos.store]"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_persisted_store_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chaos.redb");
    let grant = format!(
        "[clusters.chaos.store]\npersist = {:?}",
        path.display().to_string()
    );
    {
        let s = serve(&chaos_with_store(&grant)).await;
        let (status, _) = s
            .esp(
                "chaos",
                "Chaos",
                "Put",
                json!(101),
                json!({"Key": "k", "Value": "kept"}),
            )
            .await;
        assert_eq!(status, 200);
        s.stop().await;
    }
    let s = serve(&chaos_with_store(&grant)).await;
    let (_, answer) = s
        .esp("chaos", "Chaos", "Get", json!(101), json!({"Key": "k"}))
        .await;
    assert_eq!(answer["Result"]["Value"], "kept", "{answer}");
}

#[tokio::test]
async fn fax_jobs_live_in_the_store_when_it_is_granted() {
    let s = serve(
        r#"
[clusters.fax]
service = "Fax"
component = "builtin:fax"
tenants = [101, 102]
instances = 4
[clusters.fax.store]
"#,
    )
    .await;
    let (status, answer) = s
        .esp(
            "fax",
            "Fax",
            "SendFax",
            json!(101),
            json!({"To": "+14155550100", "Document": "x"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let job = answer["Result"]["FaxJobId"].as_str().unwrap().to_string();
    for _ in 0..8 {
        let (status, answer) = s
            .esp(
                "fax",
                "Fax",
                "GetFaxStatus",
                json!(101),
                json!({"FaxJobId": job}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["Result"]["Status"], "Queued");
    }
    let (status, answer) = s
        .esp(
            "fax",
            "Fax",
            "GetFaxStatus",
            json!(102),
            json!({"FaxJobId": job}),
        )
        .await;
    assert_fault(status, &answer, 422, 3005);
    assert_eq!(answer["ComponentFaultCode"], 4);
}

/// A chaos `Put` of `bytes` bytes; returns the status and answer.
async fn put(s: &Served, tenant: u64, key: &str, bytes: usize) -> (u16, serde_json::Value) {
    s.esp(
        "chaos",
        "Chaos",
        "Put",
        json!(tenant),
        json!({"Key": key, "Value": "x".repeat(bytes)}),
    )
    .await
}

#[tokio::test]
async fn each_tenant_has_its_own_room_and_a_full_store_says_which_bound() {
    // Bytes are key + value: "a" + 599 = 600.
    let s = serve(&chaos_with_store(
        "[clusters.chaos.store]\nmax-bytes = 1500\nmax-bytes-per-tenant = 1000\nmax-entries-per-tenant = 3",
    ))
    .await;
    let (status, answer) = put(&s, 101, "a", 599).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = put(&s, 101, "b", 599).await;
    assert_fault_says(
        status,
        &answer,
        422,
        3005,
        "store: full: tenant 101 uses 600 of its 1000 bytes",
    );
    assert_eq!(answer["ComponentFaultCode"], 5, "LIMIT_REACHED: {answer}");
    assert!(
        answer["FaultString"]
            .as_str()
            .unwrap()
            .contains("store.max-bytes-per-tenant"),
        "{answer}"
    );
    // Tenant 101 being full leaves tenant 102 its own room ...
    let (status, answer) = put(&s, 102, "a", 599).await;
    assert_eq!(status, 200, "{answer}");
    // ... up to the cluster's bytes: 1200 used, 400 more would be 1600.
    let (status, answer) = put(&s, 102, "b", 399).await;
    assert_fault_says(status, &answer, 422, 3005, "(store.max-bytes)");
    // Small keys: the tenant's key count is the bound.
    for k in ["b", "c"] {
        let (status, answer) = put(&s, 101, k, 1).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = put(&s, 101, "d", 1).await;
    assert_fault_says(status, &answer, 422, 3005, "(store.max-entries-per-tenant)");
    // Nothing was lost: what fit is there.
    let (_, answer) = s
        .esp("chaos", "Chaos", "Get", json!(101), json!({"Key": "a"}))
        .await;
    assert_eq!(answer["Result"]["Value"].as_str().unwrap().len(), 599);
    let store = s.host.current().clusters["chaos"].store().unwrap().clone();
    assert_eq!(store.usage(Some(101)).unwrap().entries, 3);
    assert_eq!(store.usage(None).unwrap().bytes, 600 + 2 * 2 + 600);
    // Each refused write is counted under the bound that refused it.
    let metrics = s.metrics().await;
    for (bound, refused) in [
        ("store.max-bytes-per-tenant", 1),
        ("store.max-bytes", 1),
        ("store.max-entries-per-tenant", 1),
        ("store.max-entries", 0),
    ] {
        assert_eq!(
            store_refused(&metrics, bound),
            Some(refused),
            "{bound}: {metrics}"
        );
    }
}

/// `wasp_store_writes_refused_total` of the chaos cluster for `bound`.
fn store_refused(metrics: &str, bound: &str) -> Option<u64> {
    let series =
        format!("wasp_store_writes_refused_total{{cluster=\"chaos\",reason=\"{bound}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn a_write_past_the_clusters_key_count_is_counted_under_its_bound() {
    let s = serve(&chaos_with_store(
        "[clusters.chaos.store]\nmax-entries = 2\nmax-entries-per-tenant = 2",
    ))
    .await;
    assert_eq!(
        store_refused(&s.metrics().await, "store.max-entries"),
        Some(0)
    );
    for (tenant, key) in [(101, "a"), (102, "a")] {
        let (status, answer) = put(&s, tenant, key, 1).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = put(&s, 102, "b", 1).await;
    assert_fault_says(status, &answer, 422, 3005, "(store.max-entries)");
    let metrics = s.metrics().await;
    assert_eq!(
        store_refused(&metrics, "store.max-entries"),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        store_refused(&metrics, "store.max-entries-per-tenant"),
        Some(0),
        "{metrics}"
    );
}

#[tokio::test]
async fn by_default_each_tenant_gets_its_share_of_the_cluster() {
    let s = serve(&chaos_with_store("[clusters.chaos.store]\nmax-entries = 4")).await;
    // Two tenants: two keys each.
    for k in ["a", "b"] {
        let (status, answer) = put(&s, 101, k, 1).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = put(&s, 101, "c", 1).await;
    assert_fault_says(status, &answer, 422, 3005, "tenant 101 has 2 keys");
    for k in ["a", "b"] {
        let (status, answer) = put(&s, 102, k, 1).await;
        assert_eq!(status, 200, "tenant 102 keeps its room: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_and_compare_and_swap_are_atomic_across_instances() {
    let s = serve(
        &chaos_with_store("[clusters.chaos.store]").replace("instances = 2", "instances = 4"),
    )
    .await;
    let calls = (0..40).map(|_| {
        s.esp(
            "chaos",
            "Chaos",
            "Incr",
            json!(101),
            json!({"Key": "n", "Delta": 1}),
        )
    });
    let mut values: Vec<i64> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|(status, answer)| {
            assert_eq!(status, 200, "{answer}");
            answer["Result"]["Value"].as_i64().unwrap()
        })
        .collect();
    values.sort();
    assert_eq!(
        values,
        (1..=40).collect::<Vec<_>>(),
        "every increment counted once"
    );

    let cas = |expected: Option<&str>, value: &str| {
        let mut params = json!({"Key": "owner", "Value": value});
        if let Some(e) = expected {
            params["Expected"] = json!(e);
        }
        s.esp("chaos", "Chaos", "Cas", json!(101), params)
    };
    let (status, answer) = cas(None, "is-1").await;
    assert_eq!(
        (status, &answer["Result"]["Swapped"]),
        (200, &json!(1)),
        "{answer}"
    );
    let (_, answer) = cas(None, "is-2").await;
    assert_eq!(answer["Result"]["Swapped"], 0, "the key exists: {answer}");
    let (_, answer) = cas(Some("is-2"), "is-3").await;
    assert_eq!(answer["Result"]["Swapped"], 0, "{answer}");
    let (_, answer) = cas(Some("is-1"), "is-3").await;
    assert_eq!(answer["Result"]["Swapped"], 1, "{answer}");
    let (_, answer) = s
        .esp("chaos", "Chaos", "Get", json!(101), json!({"Key": "owner"}))
        .await;
    assert_eq!(answer["Result"]["Value"], "is-3");

    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Incr",
            json!(101),
            json!({"Key": "owner", "Delta": 1}),
        )
        .await;
    assert_fault_says(status, &answer, 422, 3005, "does not hold an integer");
    assert_eq!(answer["ComponentFaultCode"], 100);
}

#[tokio::test]
async fn a_value_set_with_a_ttl_gets_its_expiry_and_a_ttl_of_zero_is_refused() {
    let s = serve(&chaos_with_store("[clusters.chaos.store]")).await;
    let before = now();
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Put",
            json!(101),
            json!({"Key": "job", "Value": "Queued", "Seconds": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let at = s.host.current().clusters["chaos"]
        .store()
        .unwrap()
        .expires_at(101, "job")
        .unwrap()
        .expect("the entry expires");
    assert!((before + 3600..=now() + 3600).contains(&at), "{at}");
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Put",
            json!(101),
            json!({"Key": "job", "Value": "Queued", "Seconds": 0}),
        )
        .await;
    assert_fault_says(status, &answer, 422, 3005, "TTL is at least 1 second");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
