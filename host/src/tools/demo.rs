//! Mock peers for the demo: SMS, fax and IM gateways and Facebook-/Twitter-style
//! social APIs, served by wasp itself **only when the config asks for them**
//! (`[demo] mock-peers = "127.0.0.1:8091"`), so the demo's SMS and Social
//! clusters work on a machine with no network. They are stand-ins, clearly
//! labelled at start; they keep the last [`KEPT`] requests, at most
//! [`KEPT_BYTES`] of bodies, so tests can check what a component sent (a
//! demo left running for months, or sent large bodies, does not grow).
//!
//! - `POST /sms/send` → `{"id":"sms-N"}`; a `to` ending in 9 is refused
//!   (400 `{"error":"destination barred"}`).
//! - `POST /fax/send` → `{"id":job,"status":"Sending"}` (to ending in 9:
//!   400); `GET /fax/send/{job}` → `{"status":"Delivered"}`.
//! - `POST /im/send` → `{"id":"im-N"}`.
//! - `/facebook/...` Graph-API-shaped answers; object ids starting with
//!   `missing` are 404 `{"error":{"message":"Object does not exist"}}`.
//! - `/twitter/2/...` API-v2-shaped answers.
//! - SMS and social calls need `Authorization: Bearer <anything>` (401
//!   otherwise).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

/// One request a mock received; `body` is its JSON (`null` if it was not
/// JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Json,
}

/// Requests the mocks keep; older ones are forgotten.
pub const KEPT: usize = 1_000;
/// Bytes of request bodies the mocks keep, all together: bodies are kept
/// as they came (parsed only when asked for), the oldest dropped first,
/// and one body larger than this is counted but not kept.
pub const KEPT_BYTES: usize = 8 << 20;
/// Largest body a mock reads as JSON to answer; a larger one is answered
/// as if it had no fields. (Bodies over 2 MB are refused with 413 before
/// they reach a mock: axum's default body limit.)
const PARSED_BYTES: usize = 1 << 20;

/// A request as kept: its body as bytes.
#[derive(Debug)]
struct Kept {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Bytes,
}

/// What the mocks received: the last requests (at most [`KEPT`] and
/// [`KEPT_BYTES`] of bodies), and how many in all (ids in answers are
/// numbered by it).
#[derive(Debug, Default)]
pub struct Received {
    total: u64,
    bytes: usize,
    last: VecDeque<Kept>,
}

/// Running mock peers.
#[derive(Debug, Clone)]
pub struct Mocks {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl Mocks {
    /// Serves the mocks on `addr` (port 0 picks one).
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Mocks> {
        let received: Arc<Mutex<Received>> = Arc::default();
        let app = Router::new().fallback(handle).with_state(received.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Mocks { addr, received })
    }

    /// The last requests received (see [`Received`]), oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        let received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        received
            .last
            .iter()
            .map(|k| Recorded {
                method: k.method.clone(),
                path: k.path.clone(),
                authorization: k.authorization.clone(),
                body: serde_json::from_slice(&k.body).unwrap_or(Json::Null),
            })
            .collect()
    }

    /// Bytes of request bodies kept now.
    pub fn kept_bytes(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes
    }

    /// How many requests were received in all.
    pub fn total(&self) -> u64 {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .total
    }
}

async fn handle(
    State(received): State<Arc<Mutex<Received>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kept = body.clone();
    let body: Json = if body.len() <= PARSED_BYTES {
        serde_json::from_slice(&body).unwrap_or(Json::Null)
    } else {
        Json::Null
    };
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = uri.path().to_string();
    let n = {
        let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
        received.total += 1;
        if kept.len() <= KEPT_BYTES {
            while received.last.len() >= KEPT || received.bytes + kept.len() > KEPT_BYTES {
                let Some(old) = received.last.pop_front() else {
                    break;
                };
                received.bytes -= old.body.len();
            }
            received.bytes += kept.len();
            received.last.push_back(Kept {
                method: method.to_string(),
                path: path.clone(),
                authorization: authorization.clone(),
                body: kept,
            });
        }
        received.total
    };
    let needs_token = ["/facebook", "/twitter", "/sms"]
        .iter()
        .any(|p| path.starts_with(p));
    if needs_token
        && !authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer "))
    {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"message": "invalid token"}}),
        );
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["sms", "send"]) => {
            if body["to"].as_str().is_some_and(|to| to.ends_with('9')) {
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "destination barred"}),
                )
            } else {
                reply(StatusCode::OK, json!({"id": format!("sms-{n}")}))
            }
        }
        ("POST", ["fax", "send"]) => {
            if body["to"].as_str().is_some_and(|to| to.ends_with('9')) {
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "destination barred"}),
                )
            } else {
                reply(
                    StatusCode::OK,
                    json!({"id": body["job"], "status": "Sending"}),
                )
            }
        }
        ("GET", ["fax", "send", job]) => {
            reply(StatusCode::OK, json!({"id": job, "status": "Delivered"}))
        }
        ("POST", ["im", "send"]) => reply(StatusCode::OK, json!({"id": format!("im-{n}")})),
        (_, ["facebook", id, ..]) if id.starts_with("missing") => reply(
            StatusCode::NOT_FOUND,
            json!({"error": {"message": "Object does not exist"}}),
        ),
        ("POST", ["facebook", "me", "messages"]) => reply(
            StatusCode::OK,
            json!({"recipient_id": body["recipient"]["id"], "message_id": format!("m_{n}")}),
        ),
        ("POST", ["facebook", id, "feed"]) => {
            reply(StatusCode::OK, json!({"id": format!("{id}_{n}")}))
        }
        ("POST", ["facebook", id, "comments"]) => {
            reply(StatusCode::OK, json!({"id": format!("{id}_c{n}")}))
        }
        ("POST", ["facebook", _, "likes"]) | ("DELETE", ["facebook", _]) => {
            reply(StatusCode::OK, json!({"success": true}))
        }
        ("POST", ["twitter", "2", "dm_conversations", "with", _, "messages"]) => reply(
            StatusCode::CREATED,
            json!({"data": {"dm_conversation_id": "c1", "dm_event_id": format!("{n}")}}),
        ),
        ("POST", ["twitter", "2", "users", _, "retweets"]) => {
            reply(StatusCode::OK, json!({"data": {"retweeted": true}}))
        }
        ("POST", ["twitter", "2", "users", _, "following"]) => reply(
            StatusCode::OK,
            json!({"data": {"following": true, "pending_follow": false}}),
        ),
        ("GET", ["twitter", "2", "users", id]) => reply(
            StatusCode::OK,
            json!({"data": {"id": id, "name": format!("User {id}"), "username": format!("user{id}"),
                "public_metrics": {"followers_count": 42}}}),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"error": {"message": format!("no such endpoint: {method} {path}")}}),
        ),
    }
}

fn reply(status: StatusCode, body: Json) -> Response {
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_mocks_keep_only_the_last_requests() {
        let mocks = Mocks::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let url = format!("http://{}/im/send", mocks.addr);
        let mut last_id = String::new();
        for i in 0..KEPT + 5 {
            let answer: Json = client
                .post(&url)
                .json(&json!({"to": "alice", "n": i}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            last_id = answer["id"].as_str().unwrap().to_string();
        }
        assert_eq!(mocks.total(), (KEPT + 5) as u64);
        assert_eq!(last_id, format!("im-{}", KEPT + 5));
        let kept = mocks.requests();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].body["n"], 5);
        assert_eq!(kept[KEPT - 1].body["n"], KEPT + 4);
    }

    #[tokio::test]
    async fn the_mocks_keep_a_bounded_number_of_bytes() {
        let mocks = Mocks::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let url = format!("http://{}/im/send", mocks.addr);
        // Ten bodies of almost 2 MB of small values: kept as parsed JSON,
        // they took about 950 MB.
        let numbers = vec![1; 950_000];
        for i in 0..10 {
            let status = client
                .post(&url)
                .json(&json!({"to": "alice", "n": i, "pad": numbers}))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
        assert_eq!(mocks.total(), 10);
        assert!(mocks.kept_bytes() <= KEPT_BYTES, "{}", mocks.kept_bytes());
        let kept = mocks.requests();
        assert!(kept.len() < 10 && !kept.is_empty(), "{}", kept.len());
        assert_eq!(kept.last().unwrap().body["n"], 9, "the newest are kept");
    }
}
