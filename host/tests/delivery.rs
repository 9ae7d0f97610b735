//! Fax and IM deliver through their configured gateways (the demo's mock
//! peers here) and keep fax job status in the store.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::json;
use wasp::demo::Mocks;

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
