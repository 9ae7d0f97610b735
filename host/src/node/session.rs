//! `GET /v1/nodes/connect`: one WebSocket per Interaction Server node.
//!
//! 1. The first frame must be `Hello` (within `nodes.hello-timeout-ms`); the host
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
//! `{"Type":"Error","Code":3000,"Description":…}` and the session goes on;
//! a frame over `server.max-body-bytes` is answered the same way and the
//! session is closed with code 1009 (message too big).
//!
//! Bounds: at most `nodes.max-sessions` sessions at once (one more: 3003
//! before the upgrade); frames are read into their own types, so a huge
//! value where a field belongs is skipped, not built; lists in a Hello
//! are bounded; an ESP answer holds its window place until it is handed
//! to the socket, and a frame the node does not take within
//! `nodes.write-timeout-ms` ends the session (a node that stops reading
//! cannot make the host hold answers for it without bound).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::frames::{HostFrame, PROTOCOL_VERSION};
use super::{OpDone, Outgoing, Session, SessionHello};
use crate::Host;
use crate::admin::metrics::ReasonLabels;
use crate::auth::Grant;
use crate::config::Role;
use crate::esp::{self, FaultBody, Refused, ResponseBody, Scalar};
use crate::fault::{Fault, FaultCode};
use crate::kv::Kv;

#[cfg(test)]
mod proptests;

pub async fn connect(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let grant = match host.current().auth.check(
        &headers,
        query.get("token").map(String::as_str),
        Role::Node,
    ) {
        Ok(grant) => grant,
        Err(fault) => {
            return Refused::new(fault).into_response();
        }
    };
    let Ok(place) = host.nodes.session_places.clone().try_acquire_owned() else {
        host.metrics
            .node_sessions_refused
            .get_or_create(&ReasonLabels {
                reason: "max-sessions",
            })
            .inc();
        tracing::warn!("node session refused: nodes.max-sessions sessions are open");
        return Refused::new(Fault::new(
            FaultCode::Overloaded,
            "too many node sessions are open (nodes.max-sessions)",
        ))
        .into_response();
    };
    upgrade
        .max_message_size(host.server.max_body_bytes)
        .on_upgrade(move |socket| run(host, socket, grant, place))
}

async fn run(
    host: Arc<Host>,
    socket: WebSocket,
    grant: Option<Grant>,
    _place: OwnedSemaphorePermit,
) {
    let (mut sink, mut stream) = socket.split();
    let write_timeout = host.nodes.write_timeout;
    let hello_timeout = host.nodes.hello_timeout;
    let first = tokio::time::timeout(hello_timeout, stream.next()).await;
    let hello = match first {
        Ok(Some(Ok(Message::Text(text)))) => read_hello(&host, &text, grant.as_ref()),
        Ok(Some(Ok(_))) => Err((
            FaultCode::InvalidRequest,
            "the first frame must be a Hello text frame".into(),
        )),
        Ok(_) => return,
        Err(_) => Err((
            FaultCode::InvalidRequest,
            format!("no Hello within {} ms", hello_timeout.as_millis()),
        )),
    };
    // Answers, operations and pings for this node, bounded by its window.
    let (out, outgoing) = mpsc::channel(hello.as_ref().map_or(1, |h| h.window) * 2 + 64);
    let session = hello.and_then(|hello| {
        host.nodes
            .register(hello, out)
            .map_err(|fault| (fault.code, fault.message))
    });
    let session = match session {
        Ok(session) => session,
        Err((code, description)) => {
            tracing::info!(code = code.as_u16(), "node refused: {description:?}");
            let refused = HostFrame::Refused {
                code: code.as_u16(),
                description,
            };
            let refusal = async {
                sink.send(Message::Text(refused.to_text().into())).await?;
                sink.send(Message::Close(None)).await
            };
            let _ = tokio::time::timeout(write_timeout, refusal).await;
            return;
        }
    };
    let welcome = HostFrame::Welcome {
        host_id: host.nodes.host_id.clone(),
        protocol_version: PROTOCOL_VERSION,
    };
    let welcomed = tokio::time::timeout(
        write_timeout,
        sink.send(Message::Text(welcome.to_text().into())),
    )
    .await;
    if !matches!(welcomed, Ok(Ok(()))) {
        host.nodes
            .unregister(&session, "the Welcome could not be written");
        return;
    }
    tracing::info!(node = %session.node_id, session = session.serial, window = session.window, "node connected");
    let ping = host.nodes.ping_interval();
    let stalled = host
        .metrics
        .node_sessions_closed
        .get_or_create(&ReasonLabels {
            reason: "write-timeout",
        })
        .clone();
    let mut writer = tokio::spawn(write_loop(
        sink,
        outgoing,
        session.clone(),
        ping,
        write_timeout,
        stalled,
    ));
    let ended = read_loop(&host, &session, &mut stream, ping).await;
    if let Ended::Closing(_) = &ended {
        // Let the writer send what was queued and the close frame.
        if tokio::time::timeout(write_timeout, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
    let why = match ended {
        Ended::Node(why) | Ended::Closing(why) => why,
    };
    let why = session.close_reason().unwrap_or(why);
    host.nodes.unregister(&session, &why);
    let _ = writer.await;
}

/// How a session's reading ended.
enum Ended {
    /// The node went away, fell silent or the session was closed.
    Node(String),
    /// The host queued a close frame: the writer ends the session.
    Closing(String),
}

/// Most tenants a Hello may name.
const MAX_HELLO_TENANTS: usize = 10_000;
/// Most media types a Hello may name.
const MAX_HELLO_MEDIA: usize = 100;
/// Longest `NodeId`, media type, `CorrelationId` or `InteractionId`.
const MAX_ID: usize = 128;

/// The `Type` of a frame, every other field skipped unread.
#[derive(Deserialize)]
struct FrameHead {
    #[serde(rename = "Type")]
    kind: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HelloFrame {
    node_id: String,
    #[serde(deserialize_with = "bounded::<_, _, MAX_HELLO_TENANTS>")]
    tenants: Vec<Scalar>,
    #[serde(deserialize_with = "bounded::<_, _, MAX_HELLO_MEDIA>")]
    media_types: Vec<String>,
    window: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DoneFrame {
    correlation_id: String,
    #[serde(default)]
    interaction_id: Option<String>,
    #[serde(default)]
    properties: Kv,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ErrorFrame {
    correlation_id: String,
    code: u16,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NotifyFrame {
    interaction_id: String,
    notification: String,
    #[serde(default)]
    properties: Kv,
}

/// A JSON array of at most `N` elements; more fail at the `N + 1`th.
fn bounded<'de, D, T, const N: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T, const N: usize>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for Bounded<T, N> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {N} elements")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(serde::de::Error::custom(format!("more than {N} elements")));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Bounded::<T, N>(std::marker::PhantomData))
}

/// A peer-given identifier: 1 to [`MAX_ID`] bytes, no control characters
/// (they would forge log lines).
fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_ID {
        return Err(format!("{field}: 1 to {MAX_ID} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field}: control characters are not allowed"));
    }
    Ok(())
}

/// The first frame's shape: a `Hello` with a well-formed `NodeId` (trimmed)
/// and at least one tenant; the tenants, media types and window are
/// checked against the host by [`read_hello`].
pub(crate) fn parse_hello(text: &str) -> Result<HelloFrame, String> {
    let head: FrameHead =
        serde_json::from_str(text).map_err(|e| format!("not a Hello frame: {e}"))?;
    if head.kind != Some(Scalar::Str("Hello".into())) {
        return Err("the first frame must be a Hello".into());
    }
    let mut hello: HelloFrame =
        serde_json::from_str(text).map_err(|e| format!("not a Hello frame: {e}"))?;
    hello.node_id = hello.node_id.trim().to_string();
    check_id("NodeId", &hello.node_id)?;
    if hello.tenants.is_empty() {
        return Err("Tenants: a node serves at least one tenant".into());
    }
    Ok(hello)
}

fn read_hello(
    host: &Host,
    text: &str,
    grant: Option<&Grant>,
) -> Result<SessionHello, (FaultCode, String)> {
    let invalid = |m: String| (FaultCode::InvalidRequest, m);
    let HelloFrame {
        node_id,
        tenants,
        media_types,
        window,
    } = parse_hello(text).map_err(invalid)?;
    let mut ids = Vec::new();
    let generation = host.current();
    for t in &tenants {
        let found = match t {
            Scalar::Int(id) => {
                crate::tenant::find(generation.tenants(), crate::tenant::Key::Id(*id))
            }
            Scalar::Str(name) => {
                crate::tenant::find(generation.tenants(), crate::tenant::Key::Name(name))
            }
            _ => None,
        };
        let Some(tenant) = found else {
            let shown = match t {
                Scalar::Int(id) => id.to_string(),
                Scalar::Str(name) => format!("{name:?}"),
                _ => "(not an id or a name)".into(),
            };
            return Err((
                FaultCode::Tenant,
                format!("Tenants: unknown tenant {shown}"),
            ));
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
    for media in &media_types {
        check_id("MediaTypes", media).map_err(invalid)?;
    }
    if window == 0 || window > host.nodes.max_window {
        return Err(invalid(format!("Window: 1 to {}", host.nodes.max_window)));
    }
    Ok(SessionHello {
        node_id,
        tenants: ids,
        media_types,
        window: window as usize,
        allowed: grant.and_then(|g| g.tenants.clone()),
    })
}

/// Writes the session's frames; a frame the node does not take within
/// `write_timeout` ends the session (counted in `stalled`).
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    session: Arc<Session>,
    ping: Duration,
    write_timeout: Duration,
    stalled: prometheus_client::metrics::counter::Counter,
) {
    let mut ticker = tokio::time::interval(ping);
    ticker.tick().await;
    let ping_text = HostFrame::Ping.to_text();
    loop {
        let (message, held) = tokio::select! {
            () = session.closed.cancelled() => {
                // Going away (the host stops): the node is told why, and
                // fails over in order.
                let frame = session
                    .going_away
                    .load(std::sync::atomic::Ordering::Acquire)
                    .then(|| CloseFrame {
                        code: axum::extract::ws::close_code::AWAY,
                        reason: super::SHUTTING_DOWN.into(),
                    });
                let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(frame))).await;
                break;
            }
            item = outgoing.recv() => match item {
                Some(Outgoing::Text { text, held }) => (Message::Text(text.into()), held),
                Some(Outgoing::Close { code, reason }) => {
                    let close = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
                    let _ = tokio::time::timeout(write_timeout, sink.send(close)).await;
                    break;
                }
                None => break,
            },
            _ = ticker.tick() => (Message::Text(ping_text.clone().into()), None),
        };
        match tokio::time::timeout(write_timeout, sink.send(message)).await {
            // Handed to the socket: the answer's window place is free.
            Ok(Ok(())) => drop(held),
            Ok(Err(_)) => break,
            Err(_) => {
                let why = format!(
                    "the node does not read its socket (a frame was not taken within {} ms)",
                    write_timeout.as_millis()
                );
                tracing::warn!(node = %session.node_id, session = session.serial, "{why}; disconnecting it");
                stalled.inc();
                session.end(why);
                break;
            }
        }
    }
    session.closed.cancel();
}

/// Reads frames until the node goes away or the session closes.
async fn read_loop(
    host: &Arc<Host>,
    session: &Arc<Session>,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    ping: Duration,
) -> Ended {
    let closed = |reason: &'static str| {
        host.metrics
            .node_sessions_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    };
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(ping * 3, stream.next()) => next,
            () = session.closed.cancelled() => return Ended::Node("session closed".into()),
        };
        match next {
            Err(_) => {
                closed("silent");
                return Ended::Node(format!(
                    "silent for {} ms (3 ping intervals)",
                    (ping * 3).as_millis()
                ));
            }
            Ok(None) => return Ended::Node("connection closed".into()),
            Ok(Some(Err(e))) if too_large(&e) => {
                closed("frame-too-large");
                let limit = host.server.max_body_bytes;
                let why = format!("a frame was larger than {limit} bytes (server.max-body-bytes)");
                send_error(session, None, why.clone()).await;
                session.close_with(1009, "frame too large".into()).await;
                return Ended::Closing(why);
            }
            Ok(Some(Err(e))) => return Ended::Node(format!("read error: {e}")),
            Ok(Some(Ok(Message::Close(_)))) => return Ended::Node("closed by the node".into()),
            Ok(Some(Ok(Message::Text(text)))) => handle_text(host, session, text.as_str()).await,
            Ok(Some(Ok(Message::Binary(_)))) => {
                send_error(session, None, "binary frames are not part of the protocol").await;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Whether a read failed because a frame was over the size limit.
fn too_large(error: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    let inner = std::error::Error::source(error);
    matches!(
        inner.and_then(|e| e.downcast_ref::<Error>()),
        Some(Error::Capacity(_))
    )
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

/// A frame a node sent after its `Hello`, read and checked; `Err` is the
/// description of the 3000 `Error` it is answered with.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// `Request3rdServer`, read by [`esp::parse`] from the same text.
    Esp,
    Ping,
    Pong,
    Done(DoneFrame),
    Error(ErrorFrame),
    Notify(NotifyFrame),
}

pub(crate) fn parse_frame(text: &str) -> Result<Incoming, String> {
    let head: FrameHead = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let kind = match &head.kind {
        Some(Scalar::Str(kind)) => kind.as_str(),
        _ => return Err("a frame needs a Type".into()),
    };
    /// Reads a frame of a known type; a wrong field is a 3000 `Error`.
    fn read<'a, T: Deserialize<'a>>(kind: &str, text: &'a str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| format!("unreadable {kind} frame: {e}"))
    }
    match kind {
        "Request3rdServer" => Ok(Incoming::Esp),
        "Ping" => Ok(Incoming::Ping),
        "Pong" => Ok(Incoming::Pong),
        "Done" => {
            let done = read::<DoneFrame>(kind, text)?;
            check_id("CorrelationId", &done.correlation_id)?;
            if let Some(id) = &done.interaction_id {
                check_id("InteractionId", id)?;
            }
            Ok(Incoming::Done(done))
        }
        "Error" => {
            let error = read::<ErrorFrame>(kind, text)?;
            check_id("CorrelationId", &error.correlation_id)?;
            Ok(Incoming::Error(error))
        }
        "Notify" => {
            let notify = read::<NotifyFrame>(kind, text)?;
            check_id("InteractionId", &notify.interaction_id)?;
            check_id("Notification", &notify.notification)?;
            Ok(Incoming::Notify(notify))
        }
        "Hello" => Err("Hello was already received".into()),
        other => Err(format!("unknown frame Type {other:?}")),
    }
}

async fn handle_text(host: &Arc<Host>, session: &Arc<Session>, text: &str) {
    let frame = match parse_frame(text) {
        Ok(frame) => frame,
        Err(why) => return send_error(session, None, why).await,
    };
    match frame {
        Incoming::Esp => esp_request(host, session, text).await,
        Incoming::Ping => {
            session.send_text(HostFrame::Pong.to_text()).await;
        }
        Incoming::Pong => {}
        Incoming::Done(done) => host.nodes.answered(
            session,
            &done.correlation_id,
            Ok(OpDone {
                node_id: session.node_id.clone(),
                interaction_id: done.interaction_id.unwrap_or_default(),
                properties: done.properties,
            }),
        ),
        Incoming::Error(error) => host.nodes.answered(
            session,
            &error.correlation_id,
            Err(Fault::from_code(error.code, error.description)),
        ),
        Incoming::Notify(notify) => host.nodes.notified(
            session,
            notify.interaction_id,
            notify.notification,
            notify.properties,
        ),
    }
}

/// An ESP request over the session: checked here, answered by a task of
/// its own so many run at once and finish in any order.
async fn esp_request(host: &Arc<Host>, session: &Arc<Session>, text: &str) {
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
    let place = match session.begin_esp(req.reference_id) {
        Ok(place) => place,
        Err(fault) => return send_refused(session, &refuse(req.reference_id, fault)).await,
    };
    let host = host.clone();
    let session = session.clone();
    tokio::spawn(async move {
        let result = esp::dispatch(
            &host.current(),
            &host.metrics,
            &cluster,
            &req,
            Some(&session.tenants),
        )
        .await;
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
        // may reuse it at once; the window place goes with the answer and
        // comes back when the answer is handed to the socket.
        session.end_esp(req.reference_id);
        if let Ok(text) = text {
            session.send_answer(text, place).await;
        }
    });
}

async fn send_refused(session: &Session, refused: &Refused) {
    if let Ok(text) = serde_json::to_string(&FaultBody::new(refused)) {
        session.send_text(text).await;
    }
}
