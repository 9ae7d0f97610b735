//! `GET /v1/nodes/connect`: one WebSocket per Interaction Server node.
//!
//! 1. The first frame must be `Hello` (within [`HELLO_TIMEOUT`]); the host
//!    answers `Welcome`, or `Refused` and closes: 3000 for a malformed
//!    Hello, 3001 for an unknown tenant, 3004 for a tenant the token does
//!    not allow.
//! 2. Then, in any order: ESP requests (`Request3rdServer` with `Cluster`),
//!    answered out of order by `ReferenceId`; answers (`Done`/`Error`) to
//!    the host's operations; `Notify`; `Ping`/`Pong`.
//! 3. The host pings every `nodes.ping-interval-ms`; a node silent for three
//!    intervals is gone.
//!
//! A frame the host cannot read is answered with
//! `{"Type":"Error","Code":3000,"Description":…}` and the session goes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frames::{HostFrame, NodeFrame, PROTOCOL_VERSION, frame_type};
use super::{OpDone, Session};
use crate::Gateway;
use crate::auth::Grant;
use crate::config::Role;
use crate::esp::fault::{Fault, FaultCode};
use crate::esp::{self, FaultBody, Refused, ResponseBody};

/// How long a new connection has to say `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let grant = match gw
        .auth
        .check(&headers, query.get("token").map(String::as_str), Role::Node)
    {
        Ok(grant) => grant,
        Err(fault) => {
            return Refused::new(fault).into_response();
        }
    };
    upgrade
        .max_message_size(gw.config.server.max_body_bytes)
        .on_upgrade(move |socket| run(gw, socket, grant))
}

/// What a valid `Hello` announced.
struct Hello {
    node_id: String,
    tenants: Vec<u32>,
    media_types: Vec<String>,
    window: usize,
}

async fn run(gw: Arc<Gateway>, socket: WebSocket, grant: Option<Grant>) {
    let (mut sink, mut stream) = socket.split();
    let first = tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await;
    let hello = match first {
        Ok(Some(Ok(Message::Text(text)))) => read_hello(&gw, &text, grant.as_ref()),
        Ok(Some(Ok(_))) => Err((
            FaultCode::InvalidRequest,
            "the first frame must be a Hello text frame".into(),
        )),
        Ok(_) => return,
        Err(_) => Err((
            FaultCode::InvalidRequest,
            format!("no Hello within {} s", HELLO_TIMEOUT.as_secs()),
        )),
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err((code, description)) => {
            tracing::info!(code = code.as_u16(), "node refused: {description}");
            let refused = HostFrame::Refused {
                code: code.as_u16(),
                description,
            };
            let _ = sink.send(Message::Text(refused.to_text().into())).await;
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    };
    let welcome = HostFrame::Welcome {
        host_id: gw.nodes.host_id.clone(),
        protocol_version: PROTOCOL_VERSION,
    };
    if sink
        .send(Message::Text(welcome.to_text().into()))
        .await
        .is_err()
    {
        return;
    }
    // Answers, operations and pings for this node, bounded by its window.
    let (out, outgoing) = mpsc::channel(hello.window * 2 + 64);
    let session = gw.nodes.register(
        hello.node_id,
        hello.tenants,
        hello.media_types,
        hello.window,
        out,
    );
    tracing::info!(node = %session.node_id, session = session.serial, window = session.window, "node connected");
    let ping = gw.nodes.ping_interval();
    let writer = tokio::spawn(write_loop(sink, outgoing, session.closed.clone(), ping));
    let why = read_loop(&gw, &session, &mut stream, ping).await;
    gw.nodes.unregister(&session, &why);
    let _ = writer.await;
}

fn read_hello(
    gw: &Gateway,
    text: &str,
    grant: Option<&Grant>,
) -> Result<Hello, (FaultCode, String)> {
    let invalid = |m: String| (FaultCode::InvalidRequest, m);
    let frame: NodeFrame =
        serde_json::from_str(text).map_err(|e| invalid(format!("not a Hello frame: {e}")))?;
    let NodeFrame::Hello {
        node_id,
        tenants,
        media_types,
        window,
    } = frame
    else {
        return Err(invalid("the first frame must be a Hello".into()));
    };
    let node_id = node_id.trim().to_string();
    if node_id.is_empty() || node_id.len() > 128 {
        return Err(invalid("NodeId: 1 to 128 characters".into()));
    }
    if tenants.is_empty() {
        return Err(invalid("Tenants: a node serves at least one tenant".into()));
    }
    let mut ids = Vec::new();
    for t in &tenants {
        let found = match t {
            Json::Number(n) => n
                .as_u64()
                .and_then(|id| gw.config.tenants.iter().find(|c| u64::from(c.id) == id)),
            Json::String(name) => gw.config.tenants.iter().find(|c| &c.name == name),
            _ => None,
        };
        let Some(tenant) = found else {
            return Err((FaultCode::Tenant, format!("Tenants: unknown tenant {t}")));
        };
        if let Some(allowed) = grant.and_then(|g| g.tenants.as_ref())
            && !allowed.contains(&tenant.id)
        {
            return Err((
                FaultCode::Unauthorized,
                format!("the token does not allow tenant {}", tenant.id),
            ));
        }
        if !ids.contains(&tenant.id) {
            ids.push(tenant.id);
        }
    }
    if media_types.is_empty() || media_types.iter().any(|m| m.trim().is_empty()) {
        return Err(invalid("MediaTypes: at least one, none empty".into()));
    }
    if window == 0 || window > gw.nodes.max_window {
        return Err(invalid(format!("Window: 1 to {}", gw.nodes.max_window)));
    }
    Ok(Hello {
        node_id,
        tenants: ids,
        media_types,
        window: window as usize,
    })
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut outgoing: mpsc::Receiver<String>,
    closed: CancellationToken,
    ping: Duration,
) {
    let mut ticker = tokio::time::interval(ping);
    ticker.tick().await;
    let ping_text = HostFrame::Ping.to_text();
    loop {
        tokio::select! {
            text = outgoing.recv() => match text {
                Some(text) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = ticker.tick() => {
                if sink.send(Message::Text(ping_text.clone().into())).await.is_err() {
                    break;
                }
            }
            () = closed.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
        }
    }
    closed.cancel();
}

/// Reads frames until the node goes away; returns why.
async fn read_loop(
    gw: &Arc<Gateway>,
    session: &Arc<Session>,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    ping: Duration,
) -> String {
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(ping * 3, stream.next()) => next,
            () = session.closed.cancelled() => return "session closed".into(),
        };
        match next {
            Err(_) => {
                return format!(
                    "silent for {} ms (3 ping intervals)",
                    (ping * 3).as_millis()
                );
            }
            Ok(None) => return "connection closed".into(),
            Ok(Some(Err(e))) => return format!("read error: {e}"),
            Ok(Some(Ok(Message::Close(_)))) => return "closed by the node".into(),
            Ok(Some(Ok(Message::Text(text)))) => handle_text(gw, session, text.as_str()).await,
            Ok(Some(Ok(Message::Binary(_)))) => {
                send_error(session, None, "binary frames are not part of the protocol").await;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn send_error(
    session: &Session,
    correlation_id: Option<String>,
    description: impl Into<String>,
) {
    let frame = HostFrame::Error {
        correlation_id,
        code: FaultCode::InvalidRequest.as_u16(),
        description: description.into(),
    };
    session.send_text(frame.to_text()).await;
}

async fn handle_text(gw: &Arc<Gateway>, session: &Arc<Session>, text: &str) {
    let json: Json = match serde_json::from_str(text) {
        Ok(json) => json,
        Err(e) => return send_error(session, None, format!("malformed JSON: {e}")).await,
    };
    match frame_type(&json) {
        Some("Request3rdServer") => esp_request(gw, session, text).await,
        Some("Ping") => {
            session.send_text(HostFrame::Pong.to_text()).await;
        }
        Some("Pong") => {}
        Some(_) => match serde_json::from_value::<NodeFrame>(json) {
            Ok(NodeFrame::Done {
                correlation_id,
                interaction_id,
                properties,
            }) => gw.nodes.answered(
                session,
                &correlation_id,
                Ok(OpDone {
                    node_id: session.node_id.clone(),
                    interaction_id: interaction_id.unwrap_or_default(),
                    properties,
                }),
            ),
            Ok(NodeFrame::Error {
                correlation_id,
                code,
                description,
            }) => gw.nodes.answered(
                session,
                &correlation_id,
                Err(Fault::from_code(code, description)),
            ),
            Ok(NodeFrame::Notify {
                interaction_id,
                notification,
                properties,
            }) => gw
                .nodes
                .notified(session, interaction_id, notification, properties),
            Ok(NodeFrame::Hello { .. }) => {
                send_error(session, None, "Hello was already received").await
            }
            Ok(NodeFrame::Ping | NodeFrame::Pong) => {}
            Err(e) => send_error(session, None, format!("unreadable frame: {e}")).await,
        },
        None => send_error(session, None, "a frame needs a Type").await,
    }
}

/// An ESP request over the session: checked here, answered by a task of
/// its own so many run at once and finish in any order.
async fn esp_request(gw: &Arc<Gateway>, session: &Arc<Session>, text: &str) {
    let refuse = |reference_id, fault| Refused {
        reference_id,
        user_data: None,
        fault,
    };
    let req = match esp::parse(text.as_bytes()) {
        Ok(req) => req,
        Err(refused) => return send_refused(session, &refused).await,
    };
    let Some(cluster) = req.cluster.clone() else {
        let fault = Fault::invalid("Cluster: is required on a node session");
        return send_refused(session, &refuse(req.reference_id, fault)).await;
    };
    if let Err(fault) = session.begin_esp(req.reference_id) {
        return send_refused(session, &refuse(req.reference_id, fault)).await;
    }
    let gw = gw.clone();
    let session = session.clone();
    tokio::spawn(async move {
        let result = esp::dispatch(&gw, &cluster, &req, Some(&session.tenants)).await;
        let text = match result {
            Ok(kv) => serde_json::to_string(&ResponseBody::new(
                req.reference_id,
                &kv,
                req.user_data.as_ref(),
            )),
            Err(fault) => serde_json::to_string(&FaultBody::new(&Refused {
                reference_id: req.reference_id,
                user_data: req.user_data.clone(),
                fault,
            })),
        };
        // Free the ReferenceId before the answer can reach the node, so it
        // may reuse it at once.
        session.end_esp(req.reference_id);
        if let Ok(text) = text {
            session.send_text(text).await;
        }
    });
}

async fn send_refused(session: &Session, refused: &Refused) {
    if let Ok(text) = serde_json::to_string(&FaultBody::new(refused)) {
        session.send_text(text).await;
    }
}
