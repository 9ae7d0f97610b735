//! Interaction Server nodes: their sessions, the node router and
//! interaction ownership — the part of wasp that plays Interaction Server
//! Proxy (seed 003).
//!
//! - A **session** is one WebSocket from a node (`session.rs`): `Hello`
//!   names its tenants, media types and window. A second session with the
//!   same `NodeId` replaces the first and takes over its in-flight
//!   operations (they are sent again on the new session, not lost).
//! - The **router** sends a new interaction (`Submit`) to a node serving its
//!   tenant and media type, round robin among them; with none connected it
//!   waits (bounded, `nodes.waiting`) up to `nodes.wait-for-node-ms`, then
//!   fails with 2001. Every later operation goes to the node that owns the
//!   interaction id: 2003 when that node is not connected, 2005 when a
//!   second node claims an id another node owns.
//! - **Ownership** (interaction id → node) is bounded by
//!   `nodes.max-interactions` and forgets an interaction when it stops.
//! - Flow control: a session has at most its `Window` operations
//!   unanswered; further operations wait for a place, which pauses whoever
//!   submits them (capture sources). The waiters share the `nodes.waiting`
//!   bound with submits waiting for a node: one more gets 3003 at once.

pub mod frames;
pub mod session;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The reason in the close frame of each session when the host stops.
pub const SHUTTING_DOWN: &str = "wasp is shutting down";
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::NodesConfig;
use crate::fault::{Cause, Fault, FaultCode};
use crate::kv::Kv;
use frames::{HostFrame, OpFrame, OpKind};

/// An operation a capture point asks of the node that serves (or will
/// serve) an interaction.
#[derive(Debug, Clone)]
pub struct Operation {
    pub kind: OpKind,
    pub capture_point: String,
    pub tenant: u32,
    pub media_type: String,
    pub queue: Option<String>,
    pub external_id: Option<String>,
    /// Required for every kind but `Submit` (or give `external_id`).
    pub interaction_id: Option<String>,
    /// The CorrelationId to send, when the caller needs it stable: a
    /// capture point that sends an operation again after a restart sends
    /// it with the same id, so a node can tell it already did it. Else
    /// the router makes a fresh one.
    pub correlation_id: Option<String>,
    /// The node that owned the interaction when the caller last knew
    /// (a capture point's persisted ExternalId map): after a restart the
    /// router has forgotten owners, and adopts this one for the
    /// interaction instead of answering 2003.
    pub node_hint: Option<String>,
    pub properties: Kv,
}

/// A node's answer to an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OpDone {
    pub node_id: String,
    pub interaction_id: String,
    pub properties: Kv,
}

/// A notification a node sent about an interaction a capture point
/// submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub node_id: String,
    pub capture_point: String,
    pub interaction_id: String,
    /// The ExternalId it was submitted with, if any.
    pub external_id: Option<String>,
    pub notification: String,
    pub properties: Kv,
}

/// Notifications buffered per capture point before new ones are dropped
/// (and counted).
pub const NOTIFICATION_BUFFER: usize = 1_024;

/// Who owns an interaction.
#[derive(Debug, Clone)]
struct Owner {
    node_id: String,
    capture_point: String,
    external_id: Option<String>,
}

#[derive(Debug, Default)]
struct Ownership {
    by_id: HashMap<String, Owner>,
    by_external: HashMap<String, String>,
}

impl Ownership {
    fn forget(&mut self, interaction_id: &str) {
        if let Some(owner) = self.by_id.remove(interaction_id)
            && let Some(ext) = owner.external_id
        {
            self.by_external.remove(&ext);
        }
    }
}

/// All node sessions and the router.
pub struct Nodes {
    pub host_id: String,
    ping_interval: Duration,
    wait_for_node: Duration,
    op_timeout: Duration,
    max_interactions: usize,
    pub max_window: u32,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    round_robin: AtomicUsize,
    owners: Mutex<Ownership>,
    submitting: Mutex<HashSet<String>>,
    arrived: Notify,
    waiting: Semaphore,
    waiting_bound: usize,
    next_correlation: AtomicU64,
    next_session: AtomicU64,
    sinks: Mutex<HashMap<String, mpsc::Sender<Notification>>>,
    /// Notifications dropped so far (`wasp_notifications_dropped_total`).
    pub dropped_notifications: prometheus_client::metrics::counter::Counter,
    /// A frame not written within this ends the session.
    pub write_timeout: Duration,
    /// A session that says no `Hello` within this is refused.
    pub hello_timeout: Duration,
    /// Places for sessions (`nodes.max-sessions`).
    pub(crate) session_places: Arc<Semaphore>,
    /// Set by [`Nodes::close_all`]: sessions ending now end in order.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes")
            .field("host_id", &self.host_id)
            .finish()
    }
}

/// One live node session.
pub struct Session {
    pub node_id: String,
    pub serial: u64,
    pub tenants: Vec<u32>,
    pub media_types: Vec<String>,
    pub window: usize,
    pub connected: Instant,
    /// The tenants the session's token allows (`None`: any, an admin token
    /// or no tokens configured); a session replacing this one must be
    /// allowed at least this session's tenants.
    pub allowed: Option<Vec<u32>>,
    out: mpsc::Sender<Outgoing>,
    ops_window: Arc<Semaphore>,
    pending: Mutex<HashMap<String, Pending>>,
    /// `ReferenceId`s of ESP requests not yet answered (duplicates: 2004).
    esp_outstanding: Mutex<HashSet<i64>>,
    /// The node's ESP window: a place is held from the request until its
    /// answer is handed to the socket, so a node that stops reading holds
    /// at most `window` answers in the host.
    esp_window: Arc<Semaphore>,
    pub closed: CancellationToken,
    /// Why the host ended the session, when it did (e.g. the node stopped
    /// reading).
    close_reason: Mutex<Option<String>>,
    /// Ended by [`Nodes::close_all`]: its close frame says "going away".
    pub(crate) going_away: std::sync::atomic::AtomicBool,
    ops_sent: AtomicU64,
    esp_handled: AtomicU64,
}

/// What the writer of a session sends.
pub(crate) enum Outgoing {
    /// A text frame; `held` (an ESP window place) is released once the
    /// frame is handed to the socket.
    Text {
        text: String,
        held: Option<OwnedSemaphorePermit>,
    },
    /// A close frame with a code (e.g. 1009, a frame too large), then the
    /// session ends.
    Close { code: u16, reason: String },
}

impl Outgoing {
    pub(crate) fn text(text: String) -> Outgoing {
        Outgoing::Text { text, held: None }
    }
}

struct Pending {
    frame: HostFrame,
    reply: oneshot::Sender<Result<OpDone, Fault>>,
    _place: OwnedSemaphorePermit,
}

/// What `GET /v1/admin/nodes` shows of a session.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSnapshot {
    pub node_id: String,
    pub session: u64,
    pub tenants: Vec<u32>,
    pub media_types: Vec<String>,
    pub window: usize,
    pub connected_seconds: u64,
    pub operations_outstanding: usize,
    pub operations_sent: u64,
    pub esp_outstanding: usize,
    pub esp_handled: u64,
    pub interactions: usize,
}

impl Nodes {
    pub fn new(config: &NodesConfig) -> Nodes {
        Nodes {
            host_id: format!("wasp-{}-{:x}", std::process::id(), rand::random::<u32>()),
            ping_interval: Duration::from_millis(config.ping_interval_ms),
            wait_for_node: Duration::from_millis(config.wait_for_node_ms),
            op_timeout: Duration::from_millis(config.op_timeout_ms),
            max_interactions: config.max_interactions,
            max_window: config.max_window,
            sessions: Mutex::new(HashMap::new()),
            round_robin: AtomicUsize::new(0),
            owners: Mutex::new(Ownership::default()),
            submitting: Mutex::new(HashSet::new()),
            arrived: Notify::new(),
            waiting: Semaphore::new(config.waiting),
            waiting_bound: config.waiting,
            next_correlation: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            sinks: Mutex::new(HashMap::new()),
            dropped_notifications: Default::default(),
            write_timeout: Duration::from_millis(config.write_timeout_ms),
            hello_timeout: Duration::from_millis(config.hello_timeout_ms),
            session_places: Arc::new(Semaphore::new(config.max_sessions)),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }

    /// Notifications for interactions `capture_point` submitted. A second
    /// subscription replaces the first.
    pub fn subscribe(&self, capture_point: &str) -> mpsc::Receiver<Notification> {
        let (tx, rx) = mpsc::channel(NOTIFICATION_BUFFER);
        lock(&self.sinks).insert(capture_point.to_string(), tx);
        rx
    }

    /// Registers a session after its `Hello`; replaces (and closes) a live
    /// session of the same node, re-sending its in-flight operations. A
    /// replacement whose token does not allow every tenant of the live
    /// session is refused (3004) and the live session stays.
    pub(crate) fn register(
        &self,
        hello: SessionHello,
        out: mpsc::Sender<Outgoing>,
    ) -> Result<Arc<Session>, Fault> {
        let SessionHello {
            node_id,
            tenants,
            media_types,
            window,
            allowed,
        } = hello;
        let session = Arc::new(Session {
            node_id: node_id.clone(),
            serial: self.next_session.fetch_add(1, Ordering::Relaxed),
            tenants,
            media_types,
            window,
            connected: Instant::now(),
            allowed,
            out,
            ops_window: Arc::new(Semaphore::new(window)),
            pending: Mutex::new(HashMap::new()),
            esp_outstanding: Mutex::new(HashSet::new()),
            esp_window: Arc::new(Semaphore::new(window)),
            closed: CancellationToken::new(),
            close_reason: Mutex::new(None),
            going_away: std::sync::atomic::AtomicBool::new(false),
            ops_sent: AtomicU64::new(0),
            esp_handled: AtomicU64::new(0),
        });
        let old = {
            let mut sessions = lock(&self.sessions);
            if let Some(live) = sessions.get(&node_id)
                && !live.closed.is_cancelled()
                && let Some(allowed) = &session.allowed
                && let Some(missing) = live.tenants.iter().find(|t| !allowed.contains(t))
            {
                return Err(Fault::forbidden(format!(
                    "node '{}' is connected serving tenant {missing}, which this token does not \
                     allow: a session may only replace one whose tenants its token allows",
                    node_id.escape_debug()
                )));
            }
            sessions.insert(node_id.clone(), session.clone())
        };
        if let Some(old) = old {
            let moved: Vec<(String, Pending)> = lock(&old.pending).drain().collect();
            tracing::info!(
                node = %node_id,
                resent = moved.len(),
                "node reconnected: the new session replaces the old one"
            );
            old.closed.cancel();
            for (correlation, pending) in moved {
                // The frame goes out again; its reply channel is unchanged,
                // so whoever waits for the answer keeps waiting.
                let _ = session
                    .out
                    .try_send(Outgoing::text(pending.frame.to_text()));
                lock(&session.pending).insert(correlation, pending);
            }
        }
        self.arrived.notify_waiters();
        Ok(session)
    }

    /// Called when a session's socket ends. If it was not replaced, its
    /// operations in flight fail with 2002 (their outcome is unknown).
    pub(crate) fn unregister(&self, session: &Arc<Session>, why: &str) {
        session.closed.cancel();
        let current = {
            let mut sessions = lock(&self.sessions);
            let current = sessions
                .get(&session.node_id)
                .is_some_and(|s| Arc::ptr_eq(s, session));
            if current {
                sessions.remove(&session.node_id);
            }
            current
        };
        if !current {
            return;
        }
        let pending: Vec<Pending> = lock(&session.pending).drain().map(|(_, p)| p).collect();
        if self.shutting_down.load(Ordering::Acquire) && pending.is_empty() {
            tracing::info!(node = %session.node_id, "node session closed: {}", crate::runtime::log::escape(why));
        } else {
            tracing::warn!(
                node = %session.node_id,
                failed = pending.len(),
                "node gone: {}",
                crate::runtime::log::escape(why)
            );
        }
        for p in pending {
            let _ = p.reply.send(Err(Fault::new(
                FaultCode::LostConnection,
                format!(
                    "node '{}' went away ({why}) before answering",
                    session.node_id
                ),
            )));
        }
    }

    /// Closes every session because the host is shutting down: each node
    /// gets a close frame "going away" (1001) with the reason, and fails
    /// over to another host.
    pub fn close_all(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for session in lock(&self.sessions).values() {
            session.going_away.store(true, Ordering::Release);
            session.end(SHUTTING_DOWN.into());
        }
    }

    /// Waits, up to `bound`, until every session has ended.
    pub async fn wait_closed(&self, bound: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        while !lock(&self.sessions).is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Sessions now, for the admin API.
    pub fn snapshot(&self) -> Vec<NodeSnapshot> {
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        let owners = lock(&self.owners);
        let mut out: Vec<NodeSnapshot> = sessions
            .iter()
            .map(|s| NodeSnapshot {
                node_id: s.node_id.clone(),
                session: s.serial,
                tenants: s.tenants.clone(),
                media_types: s.media_types.clone(),
                window: s.window,
                connected_seconds: s.connected.elapsed().as_secs(),
                operations_outstanding: lock(&s.pending).len(),
                operations_sent: s.ops_sent.load(Ordering::Relaxed),
                esp_outstanding: s.window - s.esp_window.available_permits(),
                esp_handled: s.esp_handled.load(Ordering::Relaxed),
                interactions: owners
                    .by_id
                    .values()
                    .filter(|o| o.node_id == s.node_id)
                    .count(),
            })
            .collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }

    /// Operations waiting now, for a node or for a place in a node's
    /// window (bounded by `nodes.waiting`).
    pub fn waiting(&self) -> usize {
        self.waiting_bound - self.waiting.available_permits()
    }

    /// Interactions whose owner wasp remembers.
    pub fn interactions(&self) -> usize {
        lock(&self.owners).by_id.len()
    }

    /// A live session serving `tenant` and `media`, round robin.
    fn pick(&self, tenant: u32, media: &str) -> Option<Arc<Session>> {
        let sessions = lock(&self.sessions);
        let mut candidates: Vec<&Arc<Session>> = sessions
            .values()
            .filter(|s| {
                !s.closed.is_cancelled()
                    && s.tenants.contains(&tenant)
                    && s.media_types.iter().any(|m| m == media)
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        candidates.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % candidates.len();
        Some(candidates[i].clone())
    }

    /// Runs one operation on the right node and waits for its answer.
    pub async fn operate(&self, op: Operation) -> Result<OpDone, Fault> {
        match op.kind {
            OpKind::Submit => self.submit(op).await,
            _ => self.follow_up(op).await,
        }
    }

    async fn submit(&self, op: Operation) -> Result<OpDone, Fault> {
        let _in_flight = match &op.external_id {
            Some(ext) => {
                if lock(&self.owners).by_external.contains_key(ext) {
                    return Err(Fault::new(
                        FaultCode::InProgress,
                        format!("an interaction with ExternalId '{ext}' already exists"),
                    ));
                }
                if !lock(&self.submitting).insert(ext.clone()) {
                    return Err(Fault::new(
                        FaultCode::InProgress,
                        format!("a Submit with ExternalId '{ext}' is already in flight"),
                    ));
                }
                Some(InFlight(&self.submitting, ext.clone()))
            }
            None => None,
        };
        if lock(&self.owners).by_id.len() >= self.max_interactions {
            return Err(Fault::new(
                FaultCode::Overloaded,
                format!(
                    "wasp already tracks {} interactions (nodes.max-interactions)",
                    self.max_interactions
                ),
            )
            .because(Cause::NodeUnavailable));
        }
        let session = self.wait_for_node(op.tenant, &op.media_type).await?;
        let correlation = op
            .correlation_id
            .clone()
            .unwrap_or_else(|| self.correlation());
        let frame = HostFrame::Submit {
            correlation_id: correlation.clone(),
            capture_point: op.capture_point.clone(),
            tenant_id: op.tenant,
            media_type: op.media_type.clone(),
            queue: op.queue.clone(),
            external_id: op.external_id.clone(),
            properties: op.properties,
        };
        let done = self.send(&session, correlation, frame).await?;
        let mut owners = lock(&self.owners);
        if let Some(existing) = owners.by_id.get(&done.interaction_id)
            && existing.node_id != done.node_id
        {
            return Err(Fault::new(
                FaultCode::MultipleOwners,
                format!(
                    "nodes '{}' and '{}' both claim interaction '{}'",
                    existing.node_id, done.node_id, done.interaction_id
                ),
            ));
        }
        if let Some(ext) = &op.external_id {
            owners
                .by_external
                .insert(ext.clone(), done.interaction_id.clone());
        }
        owners.by_id.insert(
            done.interaction_id.clone(),
            Owner {
                node_id: done.node_id.clone(),
                capture_point: op.capture_point,
                external_id: op.external_id,
            },
        );
        Ok(done)
    }

    async fn wait_for_node(&self, tenant: u32, media: &str) -> Result<Arc<Session>, Fault> {
        if let Some(s) = self.pick(tenant, media) {
            return Ok(s);
        }
        let no_node = || {
            Fault::new(
                FaultCode::NoServer,
                format!(
                    "no node serves tenant {tenant} and media type '{media}' (waited {} ms for one)",
                    self.wait_for_node.as_millis()
                ),
            ).because(Cause::NodeUnavailable)
        };
        let Ok(_place) = self.waiting.try_acquire() else {
            return Err(Fault::new(
                FaultCode::Overloaded,
                "too many interactions already wait for a node (nodes.waiting)",
            )
            .because(Cause::NodeUnavailable));
        };
        let deadline = tokio::time::Instant::now() + self.wait_for_node;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(s) = self.pick(tenant, media) {
                return Ok(s);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.pick(tenant, media).ok_or_else(no_node);
            }
        }
    }

    async fn follow_up(&self, op: Operation) -> Result<OpDone, Fault> {
        let interaction_id = {
            let owners = lock(&self.owners);
            match (&op.interaction_id, &op.external_id) {
                (Some(id), _) => id.clone(),
                (None, Some(ext)) => owners.by_external.get(ext).cloned().ok_or_else(|| {
                    Fault::new(
                        FaultCode::NotAccessible,
                        format!("no interaction with ExternalId '{ext}' is known"),
                    )
                })?,
                (None, None) => {
                    return Err(Fault::invalid(format!(
                        "{} needs an InteractionId or an ExternalId",
                        op.kind.as_str()
                    )));
                }
            }
        };
        let owner = {
            let mut owners = lock(&self.owners);
            match (owners.by_id.get(&interaction_id).cloned(), &op.node_hint) {
                (Some(owner), _) => Some(owner),
                (None, Some(node)) if owners.by_id.len() < self.max_interactions => {
                    let owner = Owner {
                        node_id: node.clone(),
                        capture_point: op.capture_point.clone(),
                        external_id: op.external_id.clone(),
                    };
                    if let Some(ext) = &op.external_id {
                        owners
                            .by_external
                            .insert(ext.clone(), interaction_id.clone());
                    }
                    owners.by_id.insert(interaction_id.clone(), owner.clone());
                    Some(owner)
                }
                (None, _) => None,
            }
        };
        let Some(owner) = owner else {
            return Err(Fault::new(
                FaultCode::NotAccessible,
                format!("interaction '{interaction_id}' is not owned by any node wasp knows"),
            ));
        };
        let session = lock(&self.sessions).get(&owner.node_id).cloned();
        let Some(session) = session.filter(|s| !s.closed.is_cancelled()) else {
            return Err(Fault::new(
                FaultCode::NotAccessible,
                format!(
                    "interaction '{interaction_id}' is on node '{}', which is not connected",
                    owner.node_id
                ),
            )
            .because(Cause::NodeUnavailable));
        };
        let correlation = op
            .correlation_id
            .clone()
            .unwrap_or_else(|| self.correlation());
        let frame = HostFrame::op(
            op.kind,
            OpFrame {
                correlation_id: correlation.clone(),
                interaction_id: interaction_id.clone(),
                properties: op.properties,
            },
        );
        let mut done = self.send(&session, correlation, frame).await?;
        if done.interaction_id.is_empty() {
            done.interaction_id = interaction_id.clone();
        }
        if op.kind == OpKind::Stop {
            lock(&self.owners).forget(&interaction_id);
        }
        Ok(done)
    }

    /// A CorrelationId no other operation of any wasp process has: the
    /// host id is unique per process.
    fn correlation(&self) -> String {
        format!(
            "{}-{}",
            self.host_id,
            self.next_correlation.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Sends a frame within the session's window and waits for the answer.
    async fn send(
        &self,
        session: &Arc<Session>,
        correlation: String,
        frame: HostFrame,
    ) -> Result<OpDone, Fault> {
        let gone = || {
            Fault::new(
                FaultCode::NotAccessible,
                format!("node '{}' is not connected", session.node_id),
            )
            .because(Cause::NodeUnavailable)
        };
        let place = match session.ops_window.clone().try_acquire_owned() {
            Ok(place) => place,
            Err(TryAcquireError::Closed) => return Err(gone()),
            Err(TryAcquireError::NoPermits) => {
                // The node's window is full: wait for a place, counted
                // against the same bound as waiting for a node.
                let Ok(_waiting) = self.waiting.try_acquire() else {
                    return Err(Fault::new(
                        FaultCode::Overloaded,
                        format!(
                            "node '{}' has its window of {} full and too many operations \
                             already wait (nodes.waiting)",
                            session.node_id, session.window
                        ),
                    )
                    .because(Cause::NodeUnavailable));
                };
                tokio::select! {
                    place = session.ops_window.clone().acquire_owned() => place.map_err(|_| gone())?,
                    () = session.closed.cancelled() => return Err(gone()),
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        let text = frame.to_text();
        lock(&session.pending).insert(
            correlation.clone(),
            Pending {
                frame,
                reply,
                _place: place,
            },
        );
        session.ops_sent.fetch_add(1, Ordering::Relaxed);
        if session.out.send(Outgoing::text(text)).await.is_err() {
            lock(&session.pending).remove(&correlation);
            return Err(gone());
        }
        match tokio::time::timeout(self.op_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Fault::new(
                FaultCode::LostConnection,
                format!("node '{}' went away before answering", session.node_id),
            )),
            Err(_) => {
                // Forget it wherever it is now (it may have moved to a
                // replacing session).
                for s in lock(&self.sessions).values() {
                    lock(&s.pending).remove(&correlation);
                }
                lock(&session.pending).remove(&correlation);
                Err(Fault::new(
                    FaultCode::Timeout,
                    format!(
                        "node '{}' did not answer within {} ms",
                        session.node_id,
                        self.op_timeout.as_millis()
                    ),
                ))
            }
        }
    }

    /// A node answered an operation.
    pub(crate) fn answered(
        &self,
        session: &Session,
        correlation: &str,
        result: Result<OpDone, Fault>,
    ) {
        let pending = lock(&session.pending).remove(correlation);
        match pending {
            Some(p) => {
                let _ = p.reply.send(result);
            }
            None => tracing::debug!(
                node = %session.node_id,
                correlation,
                "answer to an operation nobody waits for (timed out or unknown)"
            ),
        }
    }

    /// A node sent a notification.
    pub(crate) fn notified(
        &self,
        session: &Session,
        interaction_id: String,
        notification: String,
        properties: Kv,
    ) {
        let owner = {
            let mut owners = lock(&self.owners);
            let owner = owners.by_id.get(&interaction_id).cloned();
            if notification == "stopped"
                && owner.as_ref().is_some_and(|o| o.node_id == session.node_id)
            {
                owners.forget(&interaction_id);
            }
            owner
        };
        let Some(owner) = owner else {
            tracing::debug!(node = %session.node_id, interaction = %interaction_id, "notification for an interaction no capture point submitted");
            return;
        };
        if owner.node_id != session.node_id {
            tracing::warn!(
                node = %session.node_id,
                owner = %owner.node_id,
                interaction = %interaction_id,
                "notification from a node that does not own the interaction (2005)"
            );
            return;
        }
        let sink = lock(&self.sinks).get(&owner.capture_point).cloned();
        let Some(sink) = sink else {
            tracing::debug!(capture = %owner.capture_point, "no notification output for this capture point");
            return;
        };
        let sent = sink.try_send(Notification {
            node_id: session.node_id.clone(),
            capture_point: owner.capture_point.clone(),
            external_id: owner.external_id.clone(),
            interaction_id,
            notification,
            properties,
        });
        if sent.is_err() {
            let n = self.dropped_notifications.inc() + 1;
            tracing::warn!(capture = %owner.capture_point, dropped = n, "notification output full or closed; notification dropped");
        }
    }
}

/// What a valid `Hello` announced, and what its token allows.
#[derive(Debug, Clone)]
pub(crate) struct SessionHello {
    pub node_id: String,
    pub tenants: Vec<u32>,
    pub media_types: Vec<String>,
    pub window: usize,
    pub allowed: Option<Vec<u32>>,
}

impl Session {
    /// Queues a text frame to the node; `false` if the session is gone.
    pub(crate) async fn send_text(&self, text: String) -> bool {
        self.out.send(Outgoing::text(text)).await.is_ok()
    }

    /// Queues an ESP answer with its window place, released once the
    /// answer is handed to the socket.
    pub(crate) async fn send_answer(&self, text: String, place: OwnedSemaphorePermit) -> bool {
        let frame = Outgoing::Text {
            text,
            held: Some(place),
        };
        self.out.send(frame).await.is_ok()
    }

    /// Queues a close frame; the session ends once it is written.
    pub(crate) async fn close_with(&self, code: u16, reason: String) {
        let _ = self.out.send(Outgoing::Close { code, reason }).await;
    }

    /// Ends the session because of the host's own decision.
    pub(crate) fn end(&self, why: String) {
        lock(&self.close_reason).get_or_insert(why);
        self.closed.cancel();
    }

    /// Why the host ended the session, if it did.
    pub(crate) fn close_reason(&self) -> Option<String> {
        lock(&self.close_reason).clone()
    }

    /// Starts an ESP request; refuses a duplicate `ReferenceId` (2004) or
    /// one beyond the node's window (3003). The place returned is held
    /// until the answer is written to the node.
    pub(crate) fn begin_esp(&self, reference_id: i64) -> Result<OwnedSemaphorePermit, Fault> {
        let mut outstanding = lock(&self.esp_outstanding);
        if outstanding.contains(&reference_id) {
            return Err(Fault::new(
                FaultCode::InProgress,
                format!("ReferenceId {reference_id} is already outstanding on this session"),
            ));
        }
        let Ok(place) = self.esp_window.clone().try_acquire_owned() else {
            return Err(Fault::new(
                FaultCode::Overloaded,
                format!(
                    "node '{}' already has its window of {} requests outstanding (answers it \
                     has not read yet included)",
                    self.node_id, self.window
                ),
            ));
        };
        outstanding.insert(reference_id);
        Ok(place)
    }

    /// The request is answered: its `ReferenceId` may be used again (its
    /// window place goes with the answer).
    pub(crate) fn end_esp(&self, reference_id: i64) {
        lock(&self.esp_outstanding).remove(&reference_id);
        self.esp_handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// Removes an ExternalId from the in-flight submits when dropped.
struct InFlight<'a>(&'a Mutex<HashSet<String>>, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(&self.1);
    }
}

/// Locks a std mutex; a poisoned lock (a panic elsewhere) still yields its
/// data, which every critical section here leaves consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
