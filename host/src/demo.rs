//! Mock peers for the demo: SMS, fax and IM gateways and Facebook-/Twitter-style
//! social APIs, served by wasp itself **only when the config asks for them**
//! (`[demo] mock-peers = "127.0.0.1:8091"`), so the demo's SMS and Social
//! clusters work on a machine with no network. They are stand-ins, clearly
//! labelled at start; they keep the last [`KEPT`] requests so tests can
//! check what a component sent (a demo left running for months does not
//! grow).
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

/// One request a mock received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Json,
}

/// Requests the mocks keep; older ones are forgotten.
pub const KEPT: usize = 1_000;

/// What the mocks received: the last [`KEPT`] requests, and how many in all
/// (ids in answers are numbered by it).
#[derive(Debug, Default)]
pub struct Received {
    total: u64,
    last: VecDeque<Recorded>,
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

    /// The last [`KEPT`] requests received, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        let received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        received.last.iter().cloned().collect()
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
    let body: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = uri.path().to_string();
    let n = {
        let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
        if received.last.len() == KEPT {
            received.last.pop_front();
        }
        received.last.push_back(Recorded {
            method: method.to_string(),
            path: path.clone(),
            authorization: authorization.clone(),
            body: body.clone(),
        });
        received.total += 1;
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
}
