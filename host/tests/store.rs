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
    let (_, answer) = s
        .esp("chaos", "Chaos", "Get", json!(102), json!({"Key": "job/1"}))
        .await;
    assert_eq!(
        answer["Result"].get("Value"),
        None,
        "tenant 102 never sees tenant 101's keys"
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
