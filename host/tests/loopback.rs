//! Without tokens wasp is for this machine only: a web page in a browser
//! on it must not be able to drive it (cross-site requests, DNS
//! rebinding, WebSockets). With tokens the token decides.

mod common;

use common::raw::*;
use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FAX_BODY: &str = r#"{"Request":{"Service":"Fax","Method":"SendFax","TenantId":101,"Parameters":{"To":"+14155550100","Document":"x"}}}"#;

fn post(host: &str, content_type: Option<&str>, body: &str) -> String {
    let content_type = content_type
        .map(|c| format!("content-type: {c}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /v1/esp/fax HTTP/1.1\r\nHost: {host}\r\n{content_type}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

#[tokio::test]
async fn without_tokens_only_json_bodies_are_taken() {
    let s = serve(FAX_AND_IM).await;
    // What a web page can send anywhere: text/plain, a form, no type.
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let answer = once(s.addr, &post("127.0.0.1", content_type, FAX_BODY)).await;
        assert_fault_says(
            answer.status,
            &answer.json(),
            415,
            3000,
            "Content-Type must be application/json",
        );
    }
    assert_eq!(
        s.instance_sum("fax", "handled").await,
        0,
        "nothing was sent"
    );
    for content_type in ["application/json", "application/json; charset=utf-8"] {
        let answer = once(s.addr, &post("127.0.0.1", Some(content_type), FAX_BODY)).await;
        assert_eq!(answer.status, 200, "{content_type}: {answer:?}");
        assert_eq!(answer.json()["Event"], "Event3rdServerResponse");
    }
}

#[tokio::test]
async fn without_tokens_only_loopback_host_names_are_answered() {
    let s = serve(FAX_AND_IM).await;
    let port = s.addr.port();
    let foreign = format!("rebound.example:{port}");
    for request in [
        get(&foreign, "/healthz"),
        get(&foreign, "/readyz"),
        get(&foreign, "/metrics"),
        get(&foreign, "/v1/admin/clusters"),
        get(&foreign, "/v1/admin/nodes"),
        get(&foreign, "/nowhere"),
        post(&foreign, Some("application/json"), FAX_BODY),
        get("10.0.0.1", "/healthz"),
        // An absolute URI names the host too.
        "GET http://rebound.example/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".into(),
        // No Host at all.
        "GET /healthz HTTP/1.0\r\n\r\n".into(),
    ] {
        let answer = once(s.addr, &request).await;
        assert_fault_says(answer.status, &answer.json(), 403, 3004, "loopback");
    }
    assert_eq!(
        s.instance_sum("fax", "handled").await,
        0,
        "nothing was sent"
    );
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.1.2.3:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".into(),
    ] {
        assert_eq!(
            once(s.addr, &get(&host, "/healthz")).await.status,
            200,
            "{host}"
        );
    }
    // The WebSocket upgrade too.
    let mut request = format!("ws://{}/v1/nodes/connect", s.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("host", foreign.parse().unwrap());
    let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn without_tokens_a_web_page_cannot_open_a_node_session() {
    let s = serve(FAX_AND_IM).await;
    // Browsers send Origin on every WebSocket handshake, and no CORS rule
    // stops a page from opening one to 127.0.0.1.
    for origin in ["https://attacker.example", "null"] {
        let mut request = format!("ws://{}/v1/nodes/connect", s.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
        assert!(err.to_string().contains("403"), "{origin}: {err}");
    }
    // Nor post to it.
    let request = format!(
        "POST /v1/esp/fax HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://attacker.example\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{FAX_BODY}",
        FAX_BODY.len()
    );
    let answer = once(s.addr, &request).await;
    assert_fault_says(answer.status, &answer.json(), 403, 3004, "web page");
    // A tool on this machine sends no Origin and is served.
    let hello = json!({"Type":"Hello","NodeId":"is-1","Tenants":[101],"MediaTypes":["workitem"],"Window":5});
    let (_session, answer) = ws::hello(s.addr, None, hello).await;
    assert_eq!(answer["Type"], "Welcome");
}

#[tokio::test]
async fn with_tokens_the_token_decides() {
    let s = serve(&format!(
        "{FAX_AND_IM}\n[[tokens]]\ntoken = \"node-token-for-101-only\"\nrole = \"node\"\ntenants = [101]\n"
    ))
    .await;
    let with_token = |request: String| {
        request.replacen(
            "\r\n",
            "\r\nAuthorization: Bearer node-token-for-101-only\r\n",
            1,
        )
    };
    let answer = once(
        s.addr,
        &with_token(post("wasp.example.com", Some("text/plain"), FAX_BODY)),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        once(s.addr, &get("wasp.example.com", "/healthz"))
            .await
            .status,
        200
    );
    // Without the token: 401, whatever the host.
    let answer = once(
        s.addr,
        &post("127.0.0.1", Some("application/json"), FAX_BODY),
    )
    .await;
    assert_fault(answer.status, &answer.json(), 401, 3004);
}
