//! Running operations, whatever the adapter: map the tenant, resolve
//! the ExternalId from the capture point's state, send the operation to
//! its node, and make the reply. The file pipeline, and the HTTP and
//! Kafka adapters to come, share it.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::CapturePoint;
use super::state::{CaptureState, Interaction};
use crate::fault::{Cause, Fault, FaultCode};
use crate::kv::Kv;
use crate::node::frames::OpKind;
use crate::node::{self, Nodes, Notification};
use crate::runtime::codec::{Entry, Operation, Reply, ReplyKind};
use crate::tenant::TenantConfig;

/// Everything running one capture point's operations needs (and nothing
/// of the generation or the host beyond it).
pub struct Runner {
    pub cp: Arc<CapturePoint>,
    nodes: Arc<Nodes>,
    tenants: Arc<[TenantConfig]>,
    pub state: Arc<CaptureState>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("capture", &self.cp.name)
            .finish()
    }
}

/// What one operation came to.
pub enum Step {
    /// Answered: the reply, and for a submit with an ExternalId what to
    /// remember of it.
    Answer(Box<Reply>, Option<(String, Interaction)>),
    /// No node can take it now; try the item again later.
    Wait(Fault),
}

impl Runner {
    pub fn new(
        cp: Arc<CapturePoint>,
        nodes: Arc<Nodes>,
        tenants: Arc<[TenantConfig]>,
        state: Arc<CaptureState>,
    ) -> Runner {
        Runner {
            cp,
            nodes,
            tenants,
            state,
        }
    }

    /// Runs one operation for a caller that waits for its answer (an
    /// HTTP capture request): no journal, a fresh CorrelationId, and a
    /// submit's ExternalId remembered. No node in time is the fault.
    pub async fn run_now(&self, entry: Entry) -> Result<Reply, Fault> {
        let correlation = format!("{}:now:{:016x}", self.cp.name, rand::random::<u64>());
        match self.run_op(entry, correlation).await {
            Step::Answer(reply, remember) => {
                if let Some((ext, interaction)) = remember {
                    self.blocking(move |s| s.remember(&ext, &interaction).map(drop))
                        .await
                        .map_err(|e| {
                            Fault::new(
                                FaultCode::LostConnection,
                                format!("the capture point's state cannot be written: {e:#}"),
                            )
                        })?;
                }
                if reply.kind == ReplyKind::Error {
                    self.cp.stats.failed_operations.inc();
                } else {
                    self.cp.stats.answered.inc();
                }
                Ok(*reply)
            }
            Step::Wait(fault) => {
                self.cp.stats.failed_operations.inc();
                Err(fault)
            }
        }
    }

    /// The reply that reports a node's notification, or `None` for a kind
    /// capture points do not know (logged).
    pub async fn notification_reply(&self, n: Notification) -> Option<Reply> {
        let kind = match n.notification.as_str() {
            "stopped" => ReplyKind::Stopped,
            "changed" => ReplyKind::Changed,
            "held" => ReplyKind::Held,
            "resumed" => ReplyKind::Resumed,
            other => {
                tracing::warn!(capture = %self.cp.name, node = %n.node_id, notification = %crate::runtime::log::escape(other),
                    "a notification of a kind capture points do not know; not written");
                return None;
            }
        };
        let tenant = match &n.external_id {
            Some(ext) => self.lookup(ext).await.ok().flatten().map(|k| k.tenant),
            None => None,
        };
        Some(Reply {
            interaction_id: Some(n.interaction_id),
            external_id: n.external_id,
            tenant_id: tenant,
            properties: n.properties,
            ..Reply::new(kind)
        })
    }

    /// Runs one operation read from an item: maps it, resolves its
    /// ExternalId, sends it to its node. `correlation` is its CorrelationId.
    pub async fn run_op(&self, entry: Entry, correlation: String) -> Step {
        match entry {
            Entry::Bad(bad) => {
                let fault = Fault::invalid(format!("{}: {}", bad.place, bad.description));
                Step::Answer(
                    Box::new(error_reply(&fault, bad.interaction_id, bad.external_id)),
                    None,
                )
            }
            Entry::Op(op) if op.kind == OpKind::Submit => self.submit(op, correlation).await,
            Entry::Op(op) => self.follow(op, correlation).await,
        }
    }

    async fn submit(&self, op: Operation, correlation: String) -> Step {
        let Operation {
            interaction_id,
            external_id,
            properties,
            ..
        } = op;
        let mapped = match self.cp.mapper.map(&properties, &self.tenants) {
            Ok(mapped) => mapped,
            Err(fault) => {
                return Step::Answer(
                    Box::new(error_reply(&fault, interaction_id, external_id)),
                    None,
                );
            }
        };
        if let Some(ext) = &external_id {
            match self.lookup(ext).await {
                Ok(Some(known)) => {
                    let fault = Fault::new(
                        FaultCode::InProgress,
                        format!(
                            "ExternalId '{ext}' was already submitted, as interaction '{}'",
                            known.interaction_id
                        ),
                    );
                    let mut reply = error_reply(&fault, Some(known.interaction_id), external_id);
                    reply.tenant_id = Some(known.tenant);
                    return Step::Answer(Box::new(reply), None);
                }
                Ok(None) => {}
                Err(err) => {
                    return Step::Wait(Fault::new(
                        FaultCode::LostConnection,
                        format!("the capture point's state cannot be read: {err:#}"),
                    ));
                }
            }
        }
        let operation = node::Operation {
            kind: OpKind::Submit,
            capture_point: self.cp.name.to_string(),
            tenant: mapped.tenant,
            media_type: mapped.media_type.clone(),
            queue: mapped.queue.clone(),
            external_id: external_id.clone(),
            interaction_id: None,
            correlation_id: Some(correlation),
            node_hint: None,
            properties: mapped.properties,
        };
        match self.operate(operation).await {
            Ok(done) => {
                let remember = external_id.clone().map(|ext| {
                    (
                        ext,
                        Interaction {
                            interaction_id: done.interaction_id.clone(),
                            node_id: done.node_id.clone(),
                            tenant: mapped.tenant,
                        },
                    )
                });
                let reply = Reply {
                    interaction_id: Some(done.interaction_id),
                    external_id,
                    tenant_id: Some(mapped.tenant),
                    media_type: Some(mapped.media_type),
                    queue: mapped.queue,
                    ..Reply::new(ReplyKind::Submitted)
                };
                Step::Answer(Box::new(reply), remember)
            }
            Err(fault) if fault.cause == Cause::NodeUnavailable => Step::Wait(fault),
            Err(fault) => Step::Answer(Box::new(error_reply(&fault, None, external_id)), None),
        }
    }

    async fn follow(&self, op: Operation, correlation: String) -> Step {
        let Operation {
            kind,
            interaction_id,
            external_id,
            properties,
        } = op;
        let known = match &external_id {
            Some(ext) => match self.lookup(ext).await {
                Ok(known) => known,
                Err(err) => {
                    return Step::Wait(Fault::new(
                        FaultCode::LostConnection,
                        format!("the capture point's state cannot be read: {err:#}"),
                    ));
                }
            },
            None => None,
        };
        let id = match (&interaction_id, &known) {
            (Some(id), _) => id.clone(),
            (None, Some(known)) => known.interaction_id.clone(),
            (None, None) => {
                let fault = match &external_id {
                    Some(ext) => Fault::new(
                        FaultCode::NotAccessible,
                        format!(
                            "no interaction with ExternalId '{ext}' was submitted through capture point '{}'",
                            self.cp.name
                        ),
                    ),
                    None => Fault::invalid(format!(
                        "{} needs an InteractionId or an ExternalId",
                        kind.as_str()
                    )),
                };
                return Step::Answer(Box::new(error_reply(&fault, None, external_id)), None);
            }
        };
        let operation = node::Operation {
            kind,
            capture_point: self.cp.name.to_string(),
            tenant: known.as_ref().map_or(0, |k| k.tenant),
            media_type: String::new(),
            queue: None,
            external_id: external_id.clone(),
            interaction_id: Some(id.clone()),
            correlation_id: Some(correlation),
            node_hint: known.as_ref().map(|k| k.node_id.clone()),
            properties,
        };
        match self.operate(operation).await {
            Ok(done) => {
                let reply = Reply {
                    interaction_id: Some(done.interaction_id),
                    external_id,
                    tenant_id: known.map(|k| k.tenant),
                    properties: if kind == OpKind::GetInfo {
                        done.properties
                    } else {
                        Kv::new()
                    },
                    ..Reply::new(reply_kind(kind))
                };
                Step::Answer(Box::new(reply), None)
            }
            Err(fault) if fault.cause == Cause::NodeUnavailable => Step::Wait(fault),
            Err(fault) => Step::Answer(Box::new(error_reply(&fault, Some(id), external_id)), None),
        }
    }

    async fn operate(&self, op: node::Operation) -> Result<node::OpDone, Fault> {
        self.cp.stats.waiting.inc();
        let result = self.nodes.operate(op).await;
        self.cp.stats.waiting.dec();
        result
    }

    pub async fn lookup(&self, ext: &str) -> Result<Option<Interaction>> {
        let ext = ext.to_string();
        self.blocking(move |s| s.lookup(&ext)).await
    }

    /// Runs a state call off the async workers (redb blocks on fsync).
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CaptureState) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .context("the state task failed")?
    }

    pub async fn encode(&self, docs: Vec<Vec<Reply>>) -> Result<Vec<u8>, String> {
        match self.cp.codec.encode(docs).await {
            Ok(mut docs) => docs.pop().unwrap_or_else(|| Err("no document".into())),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// The reply for a fault.
pub fn error_reply(
    fault: &Fault,
    interaction_id: Option<String>,
    external_id: Option<String>,
) -> Reply {
    Reply {
        interaction_id,
        external_id,
        code: Some(i32::from(fault.code.as_u16())),
        description: Some(fault.message.clone()),
        ..Reply::new(ReplyKind::Error)
    }
}

fn reply_kind(kind: OpKind) -> ReplyKind {
    match kind {
        OpKind::Submit => ReplyKind::Submitted,
        OpKind::Update => ReplyKind::Changed,
        OpKind::Hold => ReplyKind::Held,
        OpKind::Resume => ReplyKind::Resumed,
        OpKind::Stop => ReplyKind::Stopped,
        OpKind::GetInfo => ReplyKind::Info,
    }
}
