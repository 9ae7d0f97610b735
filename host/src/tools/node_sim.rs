//! node-sim: a reference Interaction Server node speaking the node
//! protocol (`wasp node-sim`). Tests, the demo and benchmarks use it.
//!
//! - Accepts operations and keeps interactions in memory: assigns ids on
//!   `Submit`, applies `Update`/`Hold`/`Resume`/`Stop`, answers `GetInfo`.
//! - Can emit notifications: `--stop-after-ms N` stops every submitted
//!   interaction after N ms and sends `Notify stopped`.
//! - As a load generator (`--load-cluster`), sends ESP requests over its
//!   session at a rate / concurrency and prints throughput and latency.
//! - With several `--connect` hosts it picks one at random and fails over
//!   to another when its host goes away (the Workspace N+1 model).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use rand::seq::IndexedRandom;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use crate::kv::{Kv, Value};
use crate::node::frames::{HostFrame, NodeFrame, OpFrame, frame_type};
use crate::tools::pace::Sends;

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Hosts to connect to, comma-separated: ws://HOST:PORT[,ws://HOST2:PORT].
    #[arg(long, value_delimiter = ',', required = true)]
    pub connect: Vec<String>,
    /// This node's id.
    #[arg(long)]
    pub node_id: String,
    /// Tenant ids served.
    #[arg(long, value_delimiter = ',', default_value = "101")]
    pub tenants: Vec<u32>,
    /// Media types served.
    #[arg(long = "media", value_delimiter = ',', default_value = "workitem")]
    pub media: Vec<String>,
    /// Operations / ESP requests outstanding at most (announced in Hello).
    #[arg(long, default_value_t = 100)]
    pub window: u32,
    /// Bearer token.
    #[arg(long)]
    pub token: Option<String>,
    /// Stop each submitted interaction after this many ms (Notify stopped).
    #[arg(long)]
    pub stop_after_ms: Option<u64>,
    /// Answer each operation only after this many ms.
    #[arg(long, default_value_t = 0)]
    pub answer_delay_ms: u64,
    /// Load generator: the cluster to send ESP requests to.
    #[arg(long)]
    pub load_cluster: Option<String>,
    #[arg(long, default_value = "Echo")]
    pub load_service: String,
    #[arg(long, default_value = "Echo")]
    pub load_method: String,
    /// Parameters of each request (a JSON object).
    #[arg(long, default_value = "{\"Text\":\"hello\"}")]
    pub load_params: String,
    /// Requests per second in all, evenly spaced, each one's latency
    /// counted from the moment it was due (0: as fast as the concurrency
    /// allows).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

impl SimArgs {
    /// A node (no load) connecting to `addr` as `node_id`, serving
    /// `tenants` for media type `workitem`, window 100.
    pub fn node(addr: impl std::fmt::Display, node_id: &str, tenants: &[u32]) -> SimArgs {
        SimArgs {
            connect: vec![format!("ws://{addr}")],
            node_id: node_id.into(),
            tenants: tenants.to_vec(),
            media: vec!["workitem".into()],
            window: 100,
            token: None,
            stop_after_ms: None,
            answer_delay_ms: 0,
            load_cluster: None,
            load_service: "Echo".into(),
            load_method: "Echo".into(),
            load_params: "{}".into(),
            rate: 0,
            concurrency: 1,
            duration: 0,
        }
    }
}

/// An interaction the node holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub id: String,
    pub tenant: u32,
    pub media_type: String,
    pub queue: Option<String>,
    pub external_id: Option<String>,
    pub capture_point: String,
    pub held: bool,
    pub properties: Kv,
}

/// Sessions [`SimState::sessions`] remembers.
pub const SESSIONS_KEPT: usize = 64;

/// What a running node-sim holds; tests read it.
#[derive(Debug, Default)]
pub struct SimState {
    pub interactions: Mutex<HashMap<String, Interaction>>,
    pub connected: AtomicBool,
    /// Hosts connected to, in order: the last [`SESSIONS_KEPT`] sessions
    /// (a node-sim that reconnects for months does not grow).
    pub sessions: Mutex<VecDeque<String>>,
    next_id: AtomicU64,
    /// Answers given, by CorrelationId (the last [`ANSWERS_KEPT`]): an
    /// operation sent again with the same CorrelationId — after a takeover,
    /// or by a capture point finishing a file after a restart — gets the
    /// same answer and is not applied twice.
    answers: Mutex<Answers>,
    /// Operations answered from [`SimState::answers`] instead of applied.
    pub repeated: AtomicU64,
    /// Operations received (counted before `answer_delay_ms`).
    pub received: AtomicU64,
}

/// Answers [`SimState`] remembers by CorrelationId.
pub const ANSWERS_KEPT: usize = 100_000;

#[derive(Debug, Default)]
struct Answers {
    by_id: HashMap<String, NodeFrame>,
    order: VecDeque<String>,
}

impl SimState {
    fn answered(&self, correlation: &str) -> Option<NodeFrame> {
        lock(&self.answers).by_id.get(correlation).cloned()
    }

    fn remember(&self, correlation: String, answer: NodeFrame) {
        let mut answers = lock(&self.answers);
        if answers.by_id.insert(correlation.clone(), answer).is_none() {
            answers.order.push_back(correlation);
        }
        while answers.order.len() > ANSWERS_KEPT {
            if let Some(old) = answers.order.pop_front() {
                answers.by_id.remove(&old);
            }
        }
    }
}

/// The outcome of a load run.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub ok: u64,
    pub faults: HashMap<u64, u64>,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Every answered request's latency, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

/// The `p` quantile (0..1) of sorted microsecond latencies, in ms.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    let i = ((sorted_us.len() as f64 * p) as usize).min(sorted_us.len().saturating_sub(1));
    sorted_us
        .get(i)
        .map(|us| *us as f64 / 1000.0)
        .unwrap_or(0.0)
}

impl LoadReport {
    /// Sorts the latencies and sets p50 and p99 from them.
    pub fn summarize(&mut self) {
        self.latencies_us.sort_unstable();
        self.p50_ms = percentile_ms(&self.latencies_us, 0.5);
        self.p99_ms = percentile_ms(&self.latencies_us, 0.99);
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests in {:.1} s: {:.0} req/s answered, p50 {:.3} ms, p99 {:.3} ms",
            self.sent,
            self.seconds,
            self.rate(),
            self.p50_ms,
            self.p99_ms
        )?;
        if !self.faults.is_empty() {
            let mut faults: Vec<_> = self.faults.iter().collect();
            faults.sort();
            write!(f, ", faults {faults:?}")?;
        }
        Ok(())
    }
}

/// A node-sim running in this process.
pub struct Sim {
    pub state: Arc<SimState>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<Option<LoadReport>>>,
}

impl Sim {
    /// Starts a node-sim; it runs until stopped, killed or refused.
    pub fn spawn(args: SimArgs) -> Sim {
        let state = Arc::new(SimState::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_with(args, state.clone(), shutdown.clone()));
        Sim {
            state,
            shutdown,
            task,
        }
    }

    /// Waits until the node has been welcomed (or fails after `within`).
    pub async fn connected(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while !self.state.connected.load(Ordering::Acquire) {
            if self.task.is_finished() {
                bail!("node-sim ended before it was welcomed");
            }
            if Instant::now() > deadline {
                bail!("node-sim not welcomed within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Closes the session cleanly and returns the load report, if any.
    pub async fn stop(self) -> Result<Option<LoadReport>> {
        self.shutdown.cancel();
        self.task.await?
    }

    /// Drops the connection without a word, like a crashed node.
    pub fn kill(self) {
        self.task.abort();
    }

    /// Waits for the load run (if any) to end.
    pub async fn finished(self) -> Result<Option<LoadReport>> {
        self.task.await?
    }
}

/// `wasp node-sim`: runs until Ctrl-C (or the load run ends).
pub async fn run(args: SimArgs) -> Result<()> {
    let load = args.load_cluster.is_some();
    let sim = Sim::spawn(args);
    let shutdown = sim.shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    });
    if let Some(report) = sim.finished().await? {
        println!("{report}");
    } else if load {
        bail!("the load run produced no report");
    }
    Ok(())
}

async fn run_with(
    args: SimArgs,
    state: Arc<SimState>,
    shutdown: CancellationToken,
) -> Result<Option<LoadReport>> {
    if args.connect.is_empty() {
        bail!("--connect needs at least one host");
    }
    let mut last: Option<String> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let url = {
            let others: Vec<&String> = args
                .connect
                .iter()
                .filter(|u| Some(*u) != last.as_ref())
                .collect();
            let pool: Vec<&String> = if others.is_empty() {
                args.connect.iter().collect()
            } else {
                others
            };
            (*pool.choose(&mut rand::rng()).expect("hosts")).clone()
        };
        last = Some(url.clone());
        match session(&args, &url, &state, &shutdown).await {
            Ok(Ended::Shutdown) => return Ok(None),
            Ok(Ended::LoadDone(report)) => return Ok(Some(report)),
            Ok(Ended::Refused(why)) => bail!("refused by {url}: {why}"),
            Ok(Ended::Lost(why)) => {
                tracing::warn!(node = %args.node_id, host = %url, "session lost ({why}); failing over");
                backoff = Duration::from_millis(100);
            }
            Ok(Ended::HostStopping(why)) => {
                tracing::info!(node = %args.node_id, host = %url, "the host closed the session ({why}); failing over");
                backoff = Duration::from_millis(100);
            }
            Err(err) => {
                tracing::warn!(node = %args.node_id, host = %url, "cannot connect: {err:#}");
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        state.connected.store(false, Ordering::Release);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
}

enum Ended {
    Shutdown,
    LoadDone(LoadReport),
    Refused(String),
    Lost(String),
    /// The host said it is going away (it stops): fail over, quietly.
    HostStopping(String),
}

fn endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/v1/nodes/connect") {
        url.to_string()
    } else {
        format!("{url}/v1/nodes/connect")
    }
}

type Waiters = Arc<Mutex<HashMap<i64, oneshot::Sender<Json>>>>;

async fn session(
    args: &SimArgs,
    url: &str,
    state: &Arc<SimState>,
    shutdown: &CancellationToken,
) -> Result<Ended> {
    let mut request = endpoint(url).into_client_request()?;
    if let Some(token) = &args.token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    // Without TCP_NODELAY an answer written while the previous one is
    // not acknowledged yet waits for the host's delayed ACK (tens of ms).
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
    let (mut sink, mut stream) = ws.split();
    let hello = NodeFrame::Hello {
        node_id: args.node_id.clone(),
        tenants: args.tenants.iter().map(|t| json!(t)).collect(),
        media_types: args.media.clone(),
        window: args.window,
    };
    sink.send(Message::Text(hello.to_text().into())).await?;
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .context("no answer to Hello")?
        .ok_or_else(|| anyhow!("closed before Welcome"))??;
    let first: HostFrame = serde_json::from_str(first.to_text()?)?;
    match first {
        HostFrame::Welcome { .. } => {}
        HostFrame::Refused { code, description } => {
            return Ok(Ended::Refused(format!("{code}: {description}")));
        }
        other => bail!("expected Welcome, got {other:?}"),
    }
    state.connected.store(true, Ordering::Release);
    {
        let mut sessions = lock(&state.sessions);
        if sessions.len() == SESSIONS_KEPT {
            sessions.pop_front();
        }
        sessions.push_back(url.to_string());
    }
    tracing::info!(node = %args.node_id, host = %url, "welcomed");

    let (out, mut outgoing) = mpsc::channel::<String>(args.window as usize * 2 + 64);
    let lost = CancellationToken::new();
    let writer = {
        let lost = lost.clone();
        tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.send(Message::Close(None)).await;
            lost.cancel();
        })
    };
    let waiters: Waiters = Arc::default();
    let mut load = args.load_cluster.as_ref().map(|cluster| {
        tokio::spawn(load_run(
            args.clone(),
            cluster.clone(),
            out.clone(),
            waiters.clone(),
        ))
    });
    let ended = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => on_frame(args, state, &out, &waiters, text.as_str()).await,
                Some(Ok(Message::Close(Some(frame)))) if frame.code == CloseCode::Away => {
                    break Ended::HostStopping(frame.reason.to_string());
                }
                Some(Ok(Message::Close(_))) | None => break Ended::Lost("closed by the host".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Ended::Lost(format!("read error: {e}")),
            },
            report = async { load.as_mut().expect("load").await }, if load.is_some() => {
                break Ended::LoadDone(report??);
            }
            () = lost.cancelled() => break Ended::Lost("write failed".into()),
            () = shutdown.cancelled() => break Ended::Shutdown,
        }
    };
    drop(out);
    if let Some(load) = load {
        load.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    Ok(ended)
}

async fn on_frame(
    args: &SimArgs,
    state: &Arc<SimState>,
    out: &mpsc::Sender<String>,
    waiters: &Waiters,
    text: &str,
) {
    let Ok(json) = serde_json::from_str::<Json>(text) else {
        tracing::warn!("unreadable frame from host: {text}");
        return;
    };
    if matches!(
        frame_type(&json),
        Some("Event3rdServerResponse" | "Event3rdServerFault")
    ) {
        let reference = json["ReferenceId"].as_i64().unwrap_or_default();
        if let Some(waiter) = lock(waiters).remove(&reference) {
            let _ = waiter.send(json);
        }
        return;
    }
    let frame: HostFrame = match serde_json::from_value(json) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!("unexpected frame from host ({e}): {text}");
            return;
        }
    };
    if let HostFrame::Ping = frame {
        let _ = out.send(NodeFrame::Pong.to_text()).await;
        return;
    }
    let correlation = match &frame {
        HostFrame::Submit { correlation_id, .. } => Some(correlation_id.clone()),
        HostFrame::Update(op)
        | HostFrame::Hold(op)
        | HostFrame::Resume(op)
        | HostFrame::GetInfo(op)
        | HostFrame::Stop(op) => Some(op.correlation_id.clone()),
        _ => None,
    };
    if correlation.is_some() {
        state.received.fetch_add(1, Ordering::Relaxed);
    }
    let repeated = correlation.as_deref().and_then(|c| state.answered(c));
    if repeated.is_some() {
        state.repeated.fetch_add(1, Ordering::Relaxed);
    }
    let answer = repeated.or_else(|| {
        let answer = apply(args, state, out, frame)?;
        if let Some(c) = correlation {
            state.remember(c, answer.clone());
        }
        Some(answer)
    });
    if let Some(answer) = answer {
        let out = out.clone();
        let delay = Duration::from_millis(args.answer_delay_ms);
        if delay.is_zero() {
            let _ = out.send(answer.to_text()).await;
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = out.send(answer.to_text()).await;
            });
        }
    }
}

/// Applies an operation to the interactions held; returns the answer.
fn apply(
    args: &SimArgs,
    state: &Arc<SimState>,
    out: &mpsc::Sender<String>,
    frame: HostFrame,
) -> Option<NodeFrame> {
    let not_found = |correlation_id: String, id: &str| NodeFrame::Error {
        correlation_id,
        code: 2003,
        description: format!("no interaction '{id}' on node {}", args.node_id),
    };
    match frame {
        HostFrame::Submit {
            correlation_id,
            capture_point,
            tenant_id,
            media_type,
            queue,
            external_id,
            properties,
        } => {
            let serial = state.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            let id = format!("{:04X}{serial:08X}", node_salt(&args.node_id));
            let interaction = Interaction {
                id: id.clone(),
                tenant: tenant_id,
                media_type,
                queue,
                external_id,
                capture_point,
                held: false,
                properties: properties.clone(),
            };
            lock(&state.interactions).insert(id.clone(), interaction);
            if let Some(ms) = args.stop_after_ms {
                let (state, out, id) = (state.clone(), out.clone(), id.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let removed = lock(&state.interactions).remove(&id);
                    if let Some(i) = removed {
                        let notify = NodeFrame::Notify {
                            interaction_id: id,
                            notification: "stopped".into(),
                            properties: i.properties,
                        };
                        let _ = out.send(notify.to_text()).await;
                    }
                });
            }
            Some(NodeFrame::Done {
                correlation_id,
                interaction_id: Some(id),
                properties,
            })
        }
        HostFrame::Update(op)
        | HostFrame::Hold(op)
        | HostFrame::Resume(op)
        | HostFrame::GetInfo(op)
        | HostFrame::Stop(op)
            if !lock(&state.interactions).contains_key(&op.interaction_id) =>
        {
            Some(not_found(op.correlation_id, &op.interaction_id))
        }
        HostFrame::Update(OpFrame {
            correlation_id,
            interaction_id,
            properties,
        }) => {
            let mut all = lock(&state.interactions);
            let i = all.get_mut(&interaction_id)?;
            for (k, v) in properties.0 {
                match i.properties.0.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => i.properties.0.push((k, v)),
                }
            }
            Some(done(correlation_id, interaction_id, i.properties.clone()))
        }
        HostFrame::Hold(op) => hold(state, op, true),
        HostFrame::Resume(op) => hold(state, op, false),
        HostFrame::Stop(op) => {
            lock(&state.interactions).remove(&op.interaction_id);
            Some(done(op.correlation_id, op.interaction_id, Kv::new()))
        }
        HostFrame::GetInfo(op) => {
            let all = lock(&state.interactions);
            let i = all.get(&op.interaction_id)?;
            let mut props = i.properties.clone();
            let mut set = |key: &str, value: Value| match props.0.iter_mut().find(|(k, _)| k == key)
            {
                Some(slot) => slot.1 = value,
                None => props.0.push((key.into(), value)),
            };
            set(
                "State",
                Value::Str(if i.held { "held" } else { "queued" }.into()),
            );
            set("TenantId", Value::Int(i.tenant.into()));
            if let Some(q) = &i.queue {
                set("Queue", Value::Str(q.clone()));
            }
            Some(done(op.correlation_id, op.interaction_id, props))
        }
        HostFrame::Error {
            code, description, ..
        } => {
            tracing::warn!(node = %args.node_id, code, "host says: {description}");
            None
        }
        HostFrame::Welcome { .. }
        | HostFrame::Refused { .. }
        | HostFrame::Ping
        | HostFrame::Pong => None,
    }
}

fn hold(state: &SimState, op: OpFrame, held: bool) -> Option<NodeFrame> {
    let mut all = lock(&state.interactions);
    all.get_mut(&op.interaction_id)?.held = held;
    Some(done(op.correlation_id, op.interaction_id, Kv::new()))
}

fn done(correlation_id: String, interaction_id: String, properties: Kv) -> NodeFrame {
    NodeFrame::Done {
        correlation_id,
        interaction_id: Some(interaction_id),
        properties,
    }
}

/// A per-node prefix for interaction ids, so two nodes do not mint the same.
fn node_salt(node_id: &str) -> u16 {
    node_id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    }) as u16
}

static REFERENCE: AtomicI64 = AtomicI64::new(1);

/// Sends ESP requests over the session; reports throughput and latency.
async fn load_run(
    args: SimArgs,
    cluster: String,
    out: mpsc::Sender<String>,
    waiters: Waiters,
) -> Result<LoadReport> {
    let params: Json =
        serde_json::from_str(&args.load_params).context("--load-params is not JSON")?;
    let tenant = *args.tenants.first().context("no tenant")?;
    let start = Instant::now();
    let stop = start + Duration::from_secs(args.duration);
    let rate = (args.rate > 0).then_some(args.rate as f64);
    let sends = Sends::new(start, stop, rate, args.concurrency.max(1));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let sends = sends.clone();
        let (out, waiters, cluster, params) = (
            out.clone(),
            waiters.clone(),
            cluster.clone(),
            params.clone(),
        );
        let (service, method) = (args.load_service.clone(), args.load_method.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut faults: HashMap<u64, u64> = HashMap::new();
            let mut sent = 0u64;
            while let Some(sent_at) = sends.next().await {
                let reference = REFERENCE.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                lock(&waiters).insert(reference, tx);
                let frame = json!({"Type": "Request3rdServer", "Cluster": cluster, "ReferenceId": reference,
                    "Request": {"Service": service, "Method": method, "TenantId": tenant, "Parameters": params}});
                if out.send(frame.to_string()).await.is_err() {
                    break;
                }
                sent += 1;
                let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(30), rx).await else {
                    *faults.entry(0).or_default() += 1;
                    continue;
                };
                if answer["ReferenceId"] != reference {
                    *faults.entry(1).or_default() += 1;
                } else if answer["Event"] == "Event3rdServerResponse" {
                    latencies.push(sent_at.elapsed().as_micros() as u64);
                } else {
                    *faults.entry(answer["FaultCode"].as_u64().unwrap_or(0)).or_default() += 1;
                }
            }
            (latencies, faults, sent)
        }));
    }
    let mut report = LoadReport::default();
    let mut latencies = Vec::new();
    for w in workers {
        let (lat, faults, sent) = w.await?;
        latencies.extend(lat);
        for (code, n) in faults {
            *report.faults.entry(code).or_default() += n;
        }
        report.sent += sent;
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.ok = latencies.len() as u64;
    latencies.sort_unstable();
    report.latencies_us = latencies;
    report.summarize();
    Ok(report)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
