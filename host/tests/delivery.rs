//! Fax and IM deliver through their configured gateways (the demo's mock
//! peers here) and keep fax job status in the store.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::json;
use wasp::tools::demo::Mocks;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fax_and_im_deliver_through_their_gateways() {
    let mocks = Mocks::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = mocks.addr.port();
    let s = serve(&format!(
        r#"
[clusters.fax]
service = "Fax"
component = "builtin:fax"
tenants = [101]
instances = 2
[clusters.fax.http]
allow = ["127.0.0.1:{port}"]
[clusters.fax.config]
gateway-url = "http://127.0.0.1:{port}/fax/send"
[clusters.fax.store]

[clusters.im]
service = "IM"
component = "builtin:im"
tenants = [101]
[clusters.im.http]
allow = ["127.0.0.1:{port}"]
[clusters.im.config]
gateway-url = "http://127.0.0.1:{port}/im/send"
"#
    ))
    .await;
    let (status, answer) = s
        .esp("fax", "Fax", "SendFax", json!(101),
             json!({"To": "+14155550100", "From": "+14155550111", "Document": {"$binary": "JVBERi0xLjQK"}}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["Result"]["Status"], "Sending",
        "the gateway's status"
    );
    let job = answer["Result"]["FaxJobId"].as_str().unwrap().to_string();
    let sent = &mocks.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/fax/send")
    );
    assert_eq!(sent.body["job"], job.as_str());
    assert_eq!(sent.body["to"], "+14155550100");
    let document = base64::engine::general_purpose::STANDARD
        .decode(sent.body["document"].as_str().unwrap())
        .unwrap();
    assert_eq!(document, b"%PDF-1.4\n");

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
    assert_eq!(answer["Result"]["Status"], "Delivered");
    assert_eq!(mocks.requests()[1].path, format!("/fax/send/{job}"));

    let (status, answer) = s
        .esp(
            "fax",
            "Fax",
            "SendFax",
            json!(101),
            json!({"To": "+14155550109", "Document": "x"}),
        )
        .await;
    assert_fault_says(status, &answer, 422, 3005, "destination barred");

    let (status, answer) = s
        .esp(
            "im",
            "IM",
            "SendMessage",
            json!(101),
            json!({"To": "agent-7", "Text": "hello"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["Result"]["MessageId"]
            .as_str()
            .unwrap()
            .starts_with("im-"),
        "{answer}"
    );
    let sent = mocks.requests().last().unwrap().clone();
    assert_eq!(sent.path, "/im/send");
    assert_eq!(sent.body, json!({"to": "agent-7", "text": "hello"}));
}

/// A fax cluster delivering to the demo's mock gateway, with these lines
/// in its `[clusters.fax.store]` and `[clusters.fax.config]`.
fn fax_with_gateway(port: u16, tenants: &str, store: &str, config: &str) -> String {
    format!(
        r#"
[clusters.fax]
service = "Fax"
component = "builtin:fax"
tenants = {tenants}
instances = 2
[clusters.fax.http]
allow = ["127.0.0.1:{port}"]
[clusters.fax.config]
gateway-url = "http://127.0.0.1:{port}/fax/send"
{config}
[clusters.fax.store]
{store}
"#
    )
}

async fn send_fax(s: &Served, tenant: u64) -> (u16, serde_json::Value) {
    s.esp(
        "fax",
        "Fax",
        "SendFax",
        json!(tenant),
        json!({"To": "+14155550100", "Document": "x"}),
    )
    .await
}

fn faxes_sent(mocks: &Mocks) -> usize {
    mocks
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/fax/send")
        .count()
}

#[tokio::test]
async fn a_fax_whose_job_the_store_cannot_record_is_refused_and_not_sent() {
    let mocks = Mocks::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let s = serve(&fax_with_gateway(
        mocks.addr.port(),
        "[101]",
        "max-entries = 1",
        "",
    ))
    .await;
    let (status, answer) = send_fax(&s, 101).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(faxes_sent(&mocks), 1);
    let (status, answer) = send_fax(&s, 101).await;
    assert_fault_says(status, &answer, 422, 3005, "store: full");
    assert_eq!(answer["ComponentFaultCode"], 5, "LIMIT_REACHED: {answer}");
    assert_eq!(
        faxes_sent(&mocks),
        1,
        "a fax answered with a fault was not sent, so a retry cannot send it twice"
    );
}

#[tokio::test]
async fn one_tenants_faxes_do_not_fill_another_tenants_store() {
    let mocks = Mocks::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // Two tenants share 2 keys: one each.
    let s = serve(&fax_with_gateway(
        mocks.addr.port(),
        "[101, 102]",
        "max-entries = 2",
        "",
    ))
    .await;
    let (status, answer) = send_fax(&s, 101).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = send_fax(&s, 101).await;
    assert_fault_says(status, &answer, 422, 3005, "store.max-entries-per-tenant");
    let (status, answer) = send_fax(&s, 102).await;
    assert_eq!(status, 200, "tenant 102 still sends: {answer}");
    assert_eq!(faxes_sent(&mocks), 2);
}

#[tokio::test]
async fn a_sent_fax_is_a_success_even_when_its_new_status_cannot_be_kept() {
    let mocks = Mocks::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // The record "fax/FAX-101-<12 hex>-<4 hex>" (29 bytes) + "Queued" (6)
    // fits in 35 bytes; the gateway's "Sending" (7) does not.
    let s = serve(&fax_with_gateway(
        mocks.addr.port(),
        "[101]",
        "max-bytes = 35",
        "job-ttl-seconds = \"3600\"",
    ))
    .await;
    let before = now();
    let (status, answer) = send_fax(&s, 101).await;
    assert_eq!(status, 200, "the gateway took the fax: {answer}");
    assert_eq!(answer["Result"]["Status"], "Sending", "{answer}");
    assert_eq!(faxes_sent(&mocks), 1);
    let job = answer["Result"]["FaxJobId"].as_str().unwrap();
    let store = s.host.current().clusters["fax"].store().unwrap().clone();
    let record = format!("fax/{job}");
    assert_eq!(
        store.get(101, &record).unwrap().as_deref(),
        Some(&b"Queued"[..]),
        "the record written before delivery"
    );
    // It expires job-ttl-seconds after it was written.
    let at = store.expires_at(101, &record).unwrap().expect("a TTL");
    assert!((before + 3600..=now() + 3600).contains(&at), "{at}");
}

#[tokio::test]
async fn a_fax_the_gateway_refuses_leaves_no_job_record() {
    let mocks = Mocks::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let s = serve(&fax_with_gateway(mocks.addr.port(), "[101]", "", "")).await;
    let (status, answer) = s
        .esp(
            "fax",
            "Fax",
            "SendFax",
            json!(101),
            json!({"To": "+14155550109", "Document": "x"}),
        )
        .await;
    assert_fault_says(status, &answer, 422, 3005, "destination barred");
    let store = s.host.current().clusters["fax"].store().unwrap().clone();
    assert_eq!(store.keys(101, "fax/").unwrap(), Vec::<String>::new());
    assert_eq!(store.usage(None).unwrap().entries, 0);
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
