//! What runs while a capture point is started: items from its source are
//! decoded in batches, each operation is mapped and sent to a node, each
//! answer is journaled, and an item whose every operation was answered is
//! finished (replies written, file moved to `processed/`).
//!
//! Crash safety, from the end backwards:
//! - an operation's answer is journaled (in the capture point's state
//!   file) before the next operation runs, and a submit's ExternalId in
//!   the same transaction;
//! - an item taken again (after a crash, or after waiting for a node)
//!   replays the answers journaled for it instead of running those
//!   operations again, so a node never sees an operation twice;
//! - the replies document is written before the journal says so, and the
//!   journal says so before the file leaves `inbound/`;
//! - so `kill -9` at any moment leaves every file in `inbound/` (to be
//!   finished on restart), `processed/` or `error/`, and at most one
//!   replies document per file.
//!
//! An operation no node can take now (none serves its tenant and media
//! type, its node is not connected, the waiting room is full) is not
//! answered: the item is put back in its source (the file stays in
//! `inbound/`) and taken again later, for at most `node-wait-ms` in all;
//! then the operation is answered with the fault.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::CapturePoint;
use super::file::{FileConfig, FileSource, Finalizer, Taken};
use super::runner::{Runner, Step, error_reply};
use super::state::{CaptureState, Interaction};
use crate::kv::Kv;
use crate::node::{Nodes, Notification};
use crate::runtime::codec::{Entry, RawItem, Reply, ReplyKind};
use crate::tenant::TenantConfig;

/// Where an item's journal keeps its attempt id (beyond any operation
/// index: an item holds at most 99 999 operations).
const ATTEMPT: usize = 1_000_000;

/// Items remembered with the time they first waited for a node; beyond
/// it, those that waited longer than `node-wait-ms` are forgotten.
const MAX_WAITS: usize = 10_000;

/// The adapter's side of the pipeline: what an item is, and where it
/// goes once it is finished, refused or released. The file adapter is one
/// outlet; a Kafka adapter is another.
pub(crate) trait Outlet: Send + Sync + 'static {
    type Item: Send + 'static;
    /// Whether an item waiting for a node stays with the pipeline and is
    /// tried again in place (a source that cannot take an item back) rather
    /// than given back to its source (a file stays in inbound/).
    const RETRY_IN_PLACE: bool;
    /// What the codec reads.
    fn raw(&self, item: &Self::Item) -> RawItem;
    /// The item's name in logs.
    fn name<'a>(&self, item: &'a Self::Item) -> &'a str;
    /// The item's key in the journal: the same item taken again after a
    /// restart has the same key.
    fn key(&self, item: &Self::Item) -> String;
    /// Whether answers are journaled per operation, so an item taken
    /// again after a crash replays them instead of asking the node again.
    /// An outlet whose source gives an item again under the same
    /// [`Outlet::attempt`] id (its operations then carry the same
    /// CorrelationIds, which a node recognises) may do without: only the
    /// ExternalIds its submits made are remembered, in one write per item.
    const JOURNAL: bool = true;
    /// The item's attempt id when its source names it for good (the same
    /// on every host that takes it); `None`: a random one is journaled.
    fn attempt(&self, _item: &Self::Item) -> Option<String> {
        None
    }
    /// Writes the replies document of a finished item. `replayed`: the item
    /// ran before (a restart), so the document may be there already.
    fn write_replies(
        &self,
        item: &Self::Item,
        doc: Vec<u8>,
        replayed: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The item is finished: every operation answered, replies written.
    fn complete(&self, item: Self::Item) -> impl Future<Output = Result<()>> + Send;
    /// The item cannot be read or is refused whole.
    fn refuse(&self, item: Self::Item, reason: String) -> impl Future<Output = Result<()>> + Send;
    /// Writes a node notification document.
    fn notify(&self, stem: String, doc: Vec<u8>) -> impl Future<Output = Result<()>> + Send;
}

/// The pipeline of one capture point over its outlet.
struct Worker<O: Outlet> {
    runner: Runner,
    cp: Arc<CapturePoint>,
    outlet: O,
    /// Item key → when it first waited for a node.
    waits: Mutex<HashMap<String, Instant>>,
    /// Without a journal: writes the ExternalIds of many items at once.
    /// Set exactly when `!O::JOURNAL` (see [`Worker::new`]).
    remembering: Option<Remembering>,
}

impl<O: Outlet> Worker<O> {
    fn new(runner: Runner, cp: Arc<CapturePoint>, outlet: O) -> Arc<Self> {
        Arc::new(Worker {
            remembering: (!O::JOURNAL).then(|| Remembering::start(runner.state.clone())),
            runner,
            cp,
            outlet,
            waits: Mutex::new(HashMap::new()),
        })
    }
}

/// ExternalIds to remember and who waits for them to be written.
type RememberJob = (
    Vec<(String, Interaction)>,
    tokio::sync::oneshot::Sender<Result<()>>,
);

/// A task that writes the ExternalIds of items finished together in one
/// state transaction (a transaction per item cost more than the rest of
/// an item's way), so that an item completes only once they are written.
#[derive(Clone)]
struct Remembering {
    jobs: mpsc::Sender<RememberJob>,
}

/// Jobs one write takes at most.
const REMEMBER_BATCH: usize = 1024;

impl Remembering {
    fn start(state: Arc<CaptureState>) -> Remembering {
        let (jobs, mut rx) = mpsc::channel::<RememberJob>(REMEMBER_BATCH);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < REMEMBER_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let (pairs, waiting): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let pairs: Vec<(String, Interaction)> = pairs.into_iter().flatten().collect();
                let state = state.clone();
                let written = tokio::task::spawn_blocking(move || state.remember_all(&pairs))
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|r| r.map(drop));
                for w in waiting {
                    let _ = w.send(match &written {
                        Ok(()) => Ok(()),
                        Err(e) => Err(anyhow::anyhow!("{e:#}")),
                    });
                }
            }
        });
        Remembering { jobs }
    }

    async fn remember(&self, pairs: Vec<(String, Interaction)>) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send((pairs, tx))
            .await
            .map_err(|_| anyhow::anyhow!("the capture point stops"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the capture point stops"))?
    }
}

/// The file adapter as an outlet.
struct FileOutlet {
    finalizer: Finalizer,
    /// notification/
    notification: std::path::PathBuf,
    /// The codec's file name extension.
    extension: String,
}

impl Outlet for FileOutlet {
    type Item = Taken;
    const RETRY_IN_PLACE: bool = false;

    fn raw(&self, item: &Taken) -> RawItem {
        RawItem {
            name: item.name.clone(),
            headers: Vec::new(),
            body: item.bytes.clone(),
        }
    }

    fn name<'a>(&self, item: &'a Taken) -> &'a str {
        &item.name
    }

    fn key(&self, item: &Taken) -> String {
        item_key(&item.name, &item.bytes)
    }

    async fn write_replies(&self, item: &Taken, doc: Vec<u8>, replayed: bool) -> Result<()> {
        let (f, ext, dir) = (
            self.finalizer.clone(),
            self.extension.clone(),
            self.notification.clone(),
        );
        let stem = stem_of(&item.name);
        tokio::task::spawn_blocking(move || {
            if replayed && already_written(&dir, &stem, &ext, &doc) {
                return Ok(());
            }
            f.write_notification(&stem, &ext, &doc).map(drop)
        })
        .await
        .context("the notification writer failed")?
        .context("write the replies into notification/")
    }

    async fn complete(&self, item: Taken) -> Result<()> {
        let f = self.finalizer.clone();
        tokio::task::spawn_blocking(move || f.processed(item))
            .await
            .context("the mover failed")?
            .context("move the file to processed/")
            .map(drop)
    }

    async fn refuse(&self, item: Taken, reason: String) -> Result<()> {
        let f = self.finalizer.clone();
        tokio::task::spawn_blocking(move || f.failed(item, &reason))
            .await
            .context("the mover failed")?
            .context("move the file to error/")
            .map(drop)
    }

    async fn notify(&self, stem: String, doc: Vec<u8>) -> Result<()> {
        let (f, ext) = (self.finalizer.clone(), self.extension.clone());
        tokio::task::spawn_blocking(move || f.write_notification(&stem, &ext, &doc))
            .await
            .context("the notification writer failed")?
            .context("write a notification into notification/")
            .map(drop)
    }
}

/// Opens the file adapter and the state of `cp` and starts its tasks: the
/// source, the batcher and the notification writer. They stop when `stop`
/// or the capture point's own token is cancelled.
pub(crate) fn start_file(
    cp: Arc<CapturePoint>,
    nodes: Arc<Nodes>,
    tenants: Arc<[TenantConfig]>,
    stop: &CancellationToken,
) -> Result<Finalizer> {
    let c = &cp.config;
    let dir = &cp.directory;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create the capture point folder {}", dir.display()))?;
    let at = |p: &Path| dir.join(p);
    let mut fc = FileConfig::under(dir);
    fc.inbound = at(&c.inbound);
    fc.processed = at(&c.processed);
    fc.error = at(&c.error);
    fc.notification = at(&c.notification);
    fc.pattern = cp.pattern.clone();
    fc.rescan = c.rescan();
    fc.settle = c.settle();
    fc.max_file_bytes = c.max_file_bytes;
    fc.max_in_flight = c.max_in_flight;
    let fc_notification = fc.notification.clone();
    let mut source = FileSource::open(fc)?;
    let state = Arc::new(CaptureState::open(dir, c.state)?);
    cp.started_with(&state);
    let finalizer = source.finalizer();
    let token = cp.stopped().clone();
    {
        let (outer, token) = (stop.clone(), token.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = outer.cancelled() => token.cancel(),
                () = token.cancelled() => {}
            }
        });
    }
    let notifications = nodes.subscribe(&cp.name);
    let batch = c.batch;
    let name = cp.name.clone();
    let outlet = FileOutlet {
        finalizer: finalizer.clone(),
        notification: fc_notification,
        extension: cp.codec.info().extension.clone(),
    };
    let worker = Worker::new(Runner::new(cp.clone(), nodes, tenants, state), cp, outlet);
    let (tx, rx) = mpsc::channel::<Taken>(batch);
    {
        let (token, stats) = (token.clone(), worker.cp.stats.clone());
        tokio::spawn(async move {
            while let Some(taken) = source.next(&token).await {
                stats.taken.inc();
                if tx.send(taken).await.is_err() {
                    break;
                }
            }
        });
    }
    tokio::spawn(batcher(worker.clone(), rx, batch, token.clone()));
    tokio::spawn(notifier(worker, notifications, token));
    tracing::info!(capture = %name, "capture point started");
    Ok(finalizer)
}

/// The Kafka adapter as an outlet: replies and notifications are produced
/// to the notification topic (keyed as the inbound message, with its
/// `correlation-id`), refused messages to the error topic; an offset is
/// committed once its message is finished.
struct KafkaOutlet {
    finisher: super::kafka::Finisher,
}

impl Outlet for KafkaOutlet {
    type Item = super::kafka::Message;
    const RETRY_IN_PLACE: bool = true;
    // A message not committed comes again with the same CorrelationIds;
    // a journal write per operation cost five times the rest of a
    // message's way (see BENCHMARKS.md).
    const JOURNAL: bool = false;

    fn raw(&self, m: &Self::Item) -> RawItem {
        RawItem {
            name: m
                .key
                .as_deref()
                .map(String::from_utf8_lossy)
                .map(|k| k.into_owned())
                .unwrap_or_else(|| m.correlation_id.clone()),
            headers: m.headers.clone(),
            body: m.payload.clone(),
        }
    }

    fn name<'a>(&self, m: &'a Self::Item) -> &'a str {
        &m.correlation_id
    }

    fn key(&self, m: &Self::Item) -> String {
        // A message delivered again (after a restart or a rebalance) is at
        // the same place.
        item_key(
            &format!("kafka:{}/{}/{}", m.topic, m.partition, m.offset),
            &m.payload,
        )
    }

    fn attempt(&self, m: &Self::Item) -> Option<String> {
        // A message is at one place for good, and another host of the
        // group that takes it over (its journal is elsewhere) sends its
        // operations with the same CorrelationIds: a node that already
        // did one can tell.
        Some(format!("{}/{}/{}", m.topic, m.partition, m.offset))
    }

    async fn write_replies(&self, m: &Self::Item, doc: Vec<u8>, _replayed: bool) -> Result<()> {
        self.finisher
            .notify(m.key.as_deref(), &m.correlation_id, &doc)
            .await
            .map_err(|_| {
                anyhow::anyhow!("the replies could not be produced (the capture point stops)")
            })
    }

    async fn complete(&self, m: Self::Item) -> Result<()> {
        self.finisher.processed(m, None).await.map_err(|_| {
            anyhow::anyhow!("the message could not be finished (the capture point stops)")
        })
    }

    async fn refuse(&self, m: Self::Item, reason: String) -> Result<()> {
        self.finisher.failed(m, &reason).await.map_err(|_| {
            anyhow::anyhow!(
                "the message could not be moved to the error topic (the capture point stops)"
            )
        })
    }

    async fn notify(&self, stem: String, doc: Vec<u8>) -> Result<()> {
        self.finisher.notify(None, &stem, &doc).await.map_err(|_| {
            anyhow::anyhow!("a notification could not be produced (the capture point stops)")
        })
    }
}

/// Opens the Kafka source and the state of `cp` and starts its tasks, as
/// [`start_file`] does for files. Returns a reader of the source's status.
pub(crate) fn start_kafka(
    cp: Arc<CapturePoint>,
    kc: super::kafka::KafkaConfig,
    nodes: Arc<Nodes>,
    tenants: Arc<[TenantConfig]>,
    stop: &CancellationToken,
) -> Result<Arc<dyn Fn() -> super::kafka::KafkaStatus + Send + Sync>> {
    let dir = &cp.directory;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create the capture point folder {}", dir.display()))?;
    let batch = kc.batch;
    let mut source = super::kafka::KafkaSource::open(kc)?;
    let status = source.status_reader();
    let state = Arc::new(CaptureState::open(dir, cp.config.state)?);
    // A message not committed comes again, so the journal need not be
    // durable per operation: it is made durable before each commit of
    // offsets (one fsync a second, not one per operation).
    state.defer_durability();
    let weak = Arc::downgrade(&state);
    source.before_commit(Box::new(move || match weak.upgrade() {
        Some(state) => state.sync(),
        // Closed (the capture point stopped before its source's last
        // commit): closing made every write durable.
        None => Ok(()),
    }));
    cp.started_with(&state);
    let token = link(cp.stopped(), stop);
    let notifications = nodes.subscribe(&cp.name);
    let name = cp.name.clone();
    let outlet = KafkaOutlet {
        finisher: source.finisher(),
    };
    let worker = Worker::new(Runner::new(cp.clone(), nodes, tenants, state), cp, outlet);
    let (tx, rx) = mpsc::channel(batch);
    {
        let (token, stats) = (token.clone(), worker.cp.stats.clone());
        tokio::spawn(async move {
            'taking: loop {
                let messages = source.next_batch(&token).await;
                if messages.is_empty() {
                    break;
                }
                for m in messages {
                    stats.taken.inc();
                    if tx.send(m).await.is_err() {
                        break 'taking;
                    }
                }
            }
            // Commits what is finished and leaves the group.
            source.close().await;
        });
    }
    tokio::spawn(batcher(worker.clone(), rx, batch, token.clone()));
    tokio::spawn(notifier(worker, notifications, token));
    tracing::info!(capture = %name, "kafka capture point started");
    Ok(status)
}

/// A token cancelled when either `own` or `outer` is.
fn link(own: &CancellationToken, outer: &CancellationToken) -> CancellationToken {
    let (outer, token) = (outer.clone(), own.clone());
    let linked = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = outer.cancelled() => token.cancel(),
            () = token.cancelled() => {}
        }
    });
    linked
}

/// Hands the codec what is ready, up to `batch` items per call.
async fn batcher<O: Outlet>(
    worker: Arc<Worker<O>>,
    mut rx: mpsc::Receiver<O::Item>,
    batch: usize,
    token: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            taken = rx.recv() => taken,
            () = token.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut items = vec![first];
        while items.len() < batch {
            match rx.try_recv() {
                Ok(t) => items.push(t),
                Err(_) => break,
            }
        }
        // Each item holds one of the source's in-flight places, so the
        // batches running at once are bounded by `max-in-flight`.
        tokio::spawn(worker.clone().run_batch(items));
    }
}

/// Writes node notifications about interactions this capture point
/// submitted into its notification output.
async fn notifier<O: Outlet>(
    worker: Arc<Worker<O>>,
    mut rx: mpsc::Receiver<Notification>,
    token: CancellationToken,
) {
    loop {
        let n = tokio::select! {
            n = rx.recv() => n,
            () = token.cancelled() => None,
        };
        let Some(n) = n else { break };
        worker.notification(n).await;
    }
}

/// The journal's key of an item: its name and bytes, so a different file
/// under the same name is a different item.
fn item_key(name: &str, bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl<O: Outlet> Worker<O> {
    async fn run_batch(self: Arc<Self>, batch: Vec<O::Item>) {
        let items: Vec<RawItem> = batch.iter().map(|t| self.outlet.raw(t)).collect();
        let decoded = match self.cp.codec.decode(items.clone()).await {
            Ok(decoded) => decoded,
            Err(err) if items.len() > 1 => {
                // One item may have made the codec fail: try each alone so
                // only that one is refused.
                tracing::warn!(capture = %self.cp.name, error = %err, "a codec batch failed; decoding its items one by one");
                let mut each = Vec::with_capacity(items.len());
                for item in items {
                    each.push(match self.cp.codec.decode(vec![item]).await {
                        Ok(mut one) => one.pop().unwrap_or_else(|| Err("no result".into())),
                        Err(err) => Err(format!("the codec failed on this item: {err}")),
                    });
                }
                each
            }
            Err(err) => vec![Err(format!("the codec failed on this item: {err}"))],
        };
        let runs = batch
            .into_iter()
            .zip(decoded)
            .map(|(taken, decoded)| self.clone().run_item(taken, decoded));
        futures_util::future::join_all(runs).await;
    }

    async fn run_item(self: Arc<Self>, taken: O::Item, decoded: Result<Vec<Entry>, String>) {
        let name = self.outlet.name(&taken).to_string();
        if let Err(err) = self.try_item(taken, decoded).await {
            tracing::warn!(capture = %self.cp.name, file = %name, error = %format!("{err:#}"), "the item stays in its source and is taken again later");
            self.cp.stats.released.inc();
        }
    }

    async fn try_item(&self, taken: O::Item, decoded: Result<Vec<Entry>, String>) -> Result<()> {
        let entries = match decoded {
            Ok(entries) if entries.len() > self.cp.config.max_operations => {
                return self
                    .refuse(
                        taken,
                        format!(
                            "it holds {} operations, more than captures.{}.max-operations ({})",
                            entries.len(),
                            self.cp.name,
                            self.cp.config.max_operations
                        ),
                    )
                    .await;
            }
            Ok(entries) => entries,
            Err(reason) => return self.refuse(taken, reason).await,
        };
        let key = self.outlet.key(&taken);
        // Journaled after the replies were written: the item only needs
        // to leave its source.
        let done_marker = entries.len();
        let k = key.clone();
        let recorded = if O::JOURNAL {
            self.runner.blocking(move |s| s.recorded(&k)).await?
        } else {
            BTreeMap::new()
        };
        let mut remembered = Vec::new();
        // The item's attempt id makes its operations' CorrelationIds: the
        // same after a restart (a node that already did an operation can
        // tell), different for the same file dropped again later.
        let attempt = match (recorded.get(&ATTEMPT), self.outlet.attempt(&taken)) {
            (_, Some(id)) => id,
            (Some(id), None) => String::from_utf8_lossy(id).into_owned(),
            (None, None) => {
                let id = format!("{:016x}", rand::random::<u64>());
                let (k, bytes) = (key.clone(), id.clone().into_bytes());
                self.runner
                    .blocking(move |s| s.record(&k, ATTEMPT, &bytes))
                    .await?;
                id
            }
        };
        if !recorded.contains_key(&done_marker) {
            let mut replies = Vec::with_capacity(entries.len());
            for (i, entry) in entries.into_iter().enumerate() {
                if let Some(saved) = recorded.get(&i) {
                    replies.push(Saved::read(saved)?);
                    continue;
                }
                let correlation = format!("{}:{attempt}:{i}", self.cp.name);
                let (reply, remember) = loop {
                    match self.runner.run_op(entry.clone(), correlation.clone()).await {
                        Step::Answer(reply, remember) => break (*reply, remember),
                        Step::Wait(fault) if self.waited_enough(&key) => {
                            break (error_reply(&fault, None, None), None);
                        }
                        Step::Wait(fault) if O::RETRY_IN_PLACE => {
                            tracing::info!(capture = %self.cp.name, item = %self.outlet.name(&taken), reason = %fault.message, "waiting for a node");
                            tokio::time::sleep(self.cp.config.rescan()).await;
                        }
                        Step::Wait(fault) => {
                            tracing::info!(capture = %self.cp.name, item = %self.outlet.name(&taken), reason = %fault.message, "waiting for a node; the item goes back to its source");
                            self.cp.stats.released.inc();
                            return Ok(());
                        }
                    }
                };
                if reply.kind == ReplyKind::Error {
                    self.cp.stats.failed_operations.inc();
                } else {
                    self.cp.stats.answered.inc();
                }
                if O::JOURNAL {
                    let bytes = Saved::write(&reply)?;
                    let k = key.clone();
                    self.runner
                        .blocking(move |s| match &remember {
                            Some((ext, interaction)) => {
                                s.record_submit(&k, i, &bytes, ext, interaction).map(drop)
                            }
                            None => s.record(&k, i, &bytes),
                        })
                        .await?;
                } else if let Some(pair) = remember {
                    remembered.push(pair);
                }
                replies.push(reply);
            }
            self.forget_wait(&key);
            // Taken again after a crash: its replies document may have been
            // written just before the crash; the same replies encode to the
            // same bytes, so the outlet can tell.
            let replayed = recorded.keys().any(|&i| i < done_marker);
            match self.runner.encode(vec![replies]).await {
                Ok(doc) => self.outlet.write_replies(&taken, doc, replayed).await?,
                Err(why) => {
                    tracing::error!(capture = %self.cp.name, item = %self.outlet.name(&taken), error = %why,
                    "the replies could not be encoded; the item is finished without them")
                }
            }
            if O::JOURNAL {
                let k = key.clone();
                self.runner
                    .blocking(move |s| s.record(&k, done_marker, b"done"))
                    .await?;
            } else if let Some(r) = &self.remembering
                && !remembered.is_empty()
            {
                r.remember(remembered).await?;
            }
        }
        self.outlet.complete(taken).await?;
        self.cp.stats.processed.inc();
        if O::JOURNAL {
            self.runner.blocking(move |s| s.finish(&key)).await?;
        }
        Ok(())
    }

    /// Moves an item that cannot be read (or is refused whole) aside with
    /// its reason.
    async fn refuse(&self, taken: O::Item, reason: String) -> Result<()> {
        tracing::warn!(capture = %self.cp.name, item = %self.outlet.name(&taken), reason = %reason, "item refused");
        self.outlet.refuse(taken, reason).await?;
        self.cp.stats.errors.inc();
        Ok(())
    }

    /// Whether the item first waited for a node `node-wait-ms` ago or
    /// longer (remembering now as its first wait if it never waited).
    fn waited_enough(&self, key: &str) -> bool {
        let mut waits = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.cp.config.node_wait();
        if waits.len() >= MAX_WAITS {
            waits.retain(|_, since| since.elapsed() < limit);
        }
        if waits.len() >= MAX_WAITS {
            // Every remembered item waits still; this one has waited its
            // share as far as anyone knows.
            return true;
        }
        let since = waits.entry(key.to_string()).or_insert_with(Instant::now);
        since.elapsed() >= limit
    }

    fn forget_wait(&self, key: &str) {
        self.waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    async fn notification(&self, n: Notification) {
        let stem = format!("{}-{}", safe_name(&n.interaction_id), n.notification);
        let Some(reply) = self.runner.notification_reply(n).await else {
            return;
        };
        let doc = match self.runner.encode(vec![vec![reply]]).await {
            Ok(doc) => doc,
            Err(why) => {
                tracing::error!(capture = %self.cp.name, error = %why, "a notification could not be encoded; not written");
                return;
            }
        };
        match self.outlet.notify(stem, doc).await {
            Ok(()) => {
                self.cp.stats.notifications.inc();
            }
            Err(err) => {
                tracing::error!(capture = %self.cp.name, error = %format!("{err:#}"), "a notification could not be written")
            }
        }
    }
}

/// The file name without its last extension: the replies to `order.xml`
/// are written as `order.<codec extension>`.
fn stem_of(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => name.to_string(),
    }
}

/// Whether `dir` holds `stem.ext` (or `stem.N.ext`, as the file adapter
/// names them) with exactly `doc` in it.
fn already_written(dir: &Path, stem: &str, ext: &str, doc: &[u8]) -> bool {
    (0..100).any(|n| {
        let name = if n == 0 {
            format!("{stem}.{ext}")
        } else {
            format!("{stem}.{n}.{ext}")
        };
        std::fs::read(dir.join(name)).is_ok_and(|bytes| bytes == doc)
    })
}

/// A node's interaction id made safe as part of a file name.
fn safe_name(text: &str) -> String {
    text.chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A reply as the journal keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    properties: Kv,
}

const KINDS: [(ReplyKind, &str); 7] = [
    (ReplyKind::Submitted, "submitted"),
    (ReplyKind::Changed, "changed"),
    (ReplyKind::Held, "held"),
    (ReplyKind::Resumed, "resumed"),
    (ReplyKind::Stopped, "stopped"),
    (ReplyKind::Info, "info"),
    (ReplyKind::Error, "error"),
];

impl Saved {
    fn write(reply: &Reply) -> Result<Vec<u8>> {
        let kind = KINDS
            .iter()
            .find(|(k, _)| *k == reply.kind)
            .map(|(_, n)| n.to_string())
            .unwrap_or_default();
        let saved = Saved {
            kind,
            interaction_id: reply.interaction_id.clone(),
            external_id: reply.external_id.clone(),
            tenant_id: reply.tenant_id,
            media_type: reply.media_type.clone(),
            queue: reply.queue.clone(),
            code: reply.code,
            description: reply.description.clone(),
            properties: reply.properties.clone(),
        };
        Ok(serde_json::to_vec(&saved)?)
    }

    fn read(bytes: &[u8]) -> Result<Reply> {
        let saved: Saved = serde_json::from_slice(bytes).context("a journaled reply")?;
        let kind = KINDS
            .iter()
            .find(|(_, n)| *n == saved.kind)
            .map(|(k, _)| *k)
            .with_context(|| format!("a journaled reply of unknown kind '{}'", saved.kind))?;
        Ok(Reply {
            kind,
            interaction_id: saved.interaction_id,
            external_id: saved.external_id,
            tenant_id: saved.tenant_id,
            media_type: saved.media_type,
            queue: saved.queue,
            code: saved.code,
            description: saved.description,
            properties: saved.properties,
        })
    }
}
