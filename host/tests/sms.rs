//! The bundled SMS service against a real local mock gateway: segmentation,
//! default reply addresses, delivery, gateway errors.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use serde_json::{Value, json};

type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A mock SMS gateway: records what it receives; refuses numbers ending in 9.
async fn gateway() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/send",
            post(|State(rx): State<Received>, headers: HeaderMap, Json(body): Json<Value>| async move {
                let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
                let to = body["to"].as_str().unwrap_or_default().to_string();
                rx.lock().unwrap().push((auth, body));
                if to.ends_with('9') {
                    return (StatusCode::BAD_REQUEST, Json(json!({"error": "destination barred"})));
                }
                let n = rx.lock().unwrap().len();
                (StatusCode::OK, Json(json!({"id": format!("host-{n}")})))
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

fn cluster(host: SocketAddr) -> String {
    format!(
        r#"
[clusters.sms]
service = "SMS"
component = "builtin:sms"
tenants = [101, 102]
[clusters.sms.http]
allow = ["127.0.0.1:{port}"]
[clusters.sms.config]
gateway-url = "http://127.0.0.1:{port}/send"
gateway-token = "secret-gateway-token"
"default-reply-address.101" = "+14155550000"
"#,
        port = host.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_splits_delivers_and_falls_back_to_the_default_reply_address() {
    let (host, received) = gateway().await;
    let s = serve(&cluster(host)).await;

    // 200 GSM-7 characters: two parts of at most 153.
    let text = "a".repeat(200);
    let (status, answer) = s
        .esp(
            "sms",
            "SMS",
            "SendMessage",
            json!(101),
            json!({"To": "+14155550100", "Text": text}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let r = &answer["Result"];
    assert_eq!(r["MessageId"], "host-1");
    assert_eq!(r["Segments"], 2);
    assert_eq!(r["Encoding"], "GSM-7");
    assert_eq!(
        r["From"], "+14155550000",
        "the tenant's default reply address"
    );
    {
        let got = received.lock().unwrap();
        let (auth, body) = &got[0];
        assert_eq!(auth.as_deref(), Some("Bearer secret-gateway-token"));
        assert_eq!(body["to"], "+14155550100");
        assert_eq!(body["from"], "+14155550000");
        assert_eq!(body["segments"][0].as_str().unwrap().len(), 153);
        assert_eq!(body["segments"][1].as_str().unwrap().len(), 47);
    }

    // Cyrillic needs UCS-2: 100 characters → two parts of at most 67.
    let text = "Привет".repeat(17)[..]
        .chars()
        .take(100)
        .collect::<String>();
    let (status, answer) = s
        .esp(
            "sms",
            "SMS",
            "SendMessage",
            json!(101),
            json!({"To": "+14155550100", "From": "+14155550111", "Text": text}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Result"]["Encoding"], "UCS-2");
    assert_eq!(answer["Result"]["Segments"], 2);
    assert_eq!(answer["Result"]["From"], "+14155550111");

    // Exactly 160 GSM-7 septets is one segment; an extension character
    // counts twice.
    let (_, answer) = s
        .esp(
            "sms",
            "SMS",
            "SendMessage",
            json!(101),
            json!({"To": "+14155550100", "Text": "b".repeat(160)}),
        )
        .await;
    assert_eq!(answer["Result"]["Segments"], 1);
    let (_, answer) = s
        .esp(
            "sms",
            "SMS",
            "SendMessage",
            json!(101),
            json!({"To": "+14155550100", "Text": format!("{}€", "b".repeat(159))}),
        )
        .await;
    assert_eq!(answer["Result"]["Segments"], 2, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_gateway_errors_are_component_faults() {
    let (host, received) = gateway().await;
    let s = serve(&cluster(host)).await;
    let cases = [
        (json!(101), json!({"To": "0800 123", "Text": "hi"}), "E.164"),
        (
            json!(101),
            json!({"To": "+14155550100"}),
            "missing parameter 'Text'",
        ),
        (
            json!(102),
            json!({"To": "+14155550100", "Text": "hi"}),
            "no default-reply-address is configured for tenant 102",
        ),
        (
            json!(101),
            json!({"To": "+14155550100", "Text": "x".repeat(2000)}),
            "more than the 10 allowed",
        ),
        (
            json!(101),
            json!({"To": "+14155550109", "Text": "hi"}),
            "the SMS gateway answered 400: destination barred",
        ),
    ];
    for (tenant, params, want) in cases {
        let (status, answer) = s
            .esp("sms", "SMS", "SendMessage", tenant, params.clone())
            .await;
        assert_fault(status, &answer, 422, 3005);
        let msg = answer["FaultString"].as_str().unwrap();
        assert!(
            msg.contains(want),
            "{params}: {msg:?} does not say {want:?}"
        );
    }
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "only the barred number reached the gateway"
    );
}
