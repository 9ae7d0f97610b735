//! Capture points: interactions that come in as files (and, next, Kafka
//! messages and web-service calls), read by a codec component, mapped to
//! a tenant, and handed to the Interaction Server node serving it.
//!
//! ```text
//!  inbound/x.xml ──► file::FileSource      bounded in-flight, settle, pattern
//!        │  (batch of items)
//!        ▼
//!  runtime::codec::Codec::decode           Wasm, sandboxed; bad items → error/
//!        │  operations, in document order
//!        ▼
//!  pipeline: journal replay (state)        an answered operation never runs twice
//!            tenant::TenantMapper          own TenantId → rules → id:queue → default
//!            ExternalId → interaction      (state, persisted)
//!            node::Nodes::operate          the node serving tenant + media type
//!        │  one reply per operation
//!        ▼
//!  Codec::encode ──► notification/x.xml, then x.xml ──► processed/
//!  node Notify ──► Codec::encode ──► notification/
//! ```
//!
//! - [`config`](mod@config): the `captures.<name>` sections.
//! - [`file`](mod@file): the file adapter (folders, watching, moves).
//! - [`kafka`]: the Kafka adapter (a consumer group, the finished-prefix
//!   commit, output topics).
//! - [`http`](mod@http): the http adapter (Genesys native SOAP and JSON
//!   on wasp's listener, answered once the node did).
//! - [`state`]: the capture point's persisted state: ExternalIds and the
//!   journal of answered operations.
//! - [`runner`]: running one operation, whatever the adapter: tenant,
//!   ExternalId, node, reply.
//! - [`pipeline`]: what runs while a file capture point is started.
//!
//! A capture point belongs to a [`Generation`](crate::Generation): it is
//! built (codec loaded, rules compiled) with it, started once that
//! generation serves, and stopped when it is dropped.

pub mod config;
pub mod file;
pub mod http;
pub mod kafka;
pub mod pipeline;
pub mod runner;
pub mod state;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::admin::metrics::{CaptureLabels, CaptureOutcomeLabels, Metrics};
use crate::config::Config;
use crate::node::Nodes;
use crate::runtime::Runtime;
use crate::runtime::codec::{Codec, CodecLimits};
use crate::tenant::{TenantConfig, TenantMapper};
use config::{Adapter, CaptureConfig};

/// One configured capture point, ready to start.
pub struct CapturePoint {
    pub name: Arc<str>,
    pub config: CaptureConfig,
    /// Where its codec came from (`builtin:genesys-xml`, a path).
    pub codec_source: String,
    pub codec: Arc<Codec>,
    pub mapper: TenantMapper,
    /// Its folder (state file, and by default its four directories).
    pub directory: PathBuf,
    /// The file names taken from inbound/.
    pub pattern: String,
    /// kafka: the brokers (the section's, else `--kafka`); `None`: the
    /// capture point is not started.
    pub brokers: Option<String>,
    pub stats: Stats,
    finalizer: Mutex<Option<file::Finalizer>>,
    runner: Mutex<Option<Arc<runner::Runner>>>,
    /// kafka: where to read the source's status.
    kafka: Mutex<Option<Arc<dyn Fn() -> kafka::KafkaStatus + Send + Sync>>>,
    /// The state file of the running pipeline: gone once every task that
    /// used it has ended (a stopped capture point's file is free).
    state: Mutex<std::sync::Weak<state::CaptureState>>,
    started: std::sync::atomic::AtomicBool,
    stop: CancellationToken,
}

impl std::fmt::Debug for CapturePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapturePoint")
            .field("name", &self.name)
            .field("codec", &self.codec_source)
            .finish()
    }
}

/// A capture point's counters, kept in its Prometheus series.
#[derive(Debug, Clone)]
pub struct Stats {
    pub taken: Counter,
    pub processed: Counter,
    pub errors: Counter,
    pub released: Counter,
    pub answered: Counter,
    pub failed_operations: Counter,
    pub notifications: Counter,
    pub waiting: Gauge,
    pub backlog: Gauge,
}

impl Stats {
    fn new(metrics: &Metrics, name: &str) -> Stats {
        let item = |outcome| {
            metrics
                .capture_items
                .get_or_create(&CaptureOutcomeLabels {
                    capture: name.to_string(),
                    outcome,
                })
                .clone()
        };
        let op = |outcome| {
            metrics
                .capture_operations
                .get_or_create(&CaptureOutcomeLabels {
                    capture: name.to_string(),
                    outcome,
                })
                .clone()
        };
        let labels = CaptureLabels {
            capture: name.to_string(),
        };
        Stats {
            taken: item("taken"),
            processed: item("processed"),
            errors: item("error"),
            released: item("released"),
            answered: op("answered"),
            failed_operations: op("error"),
            notifications: op("notification"),
            waiting: metrics.capture_waiting.get_or_create(&labels).clone(),
            backlog: metrics.capture_backlog.get_or_create(&labels).clone(),
        }
    }
}

/// What `/v1/admin/captures` shows of one capture point.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CaptureSnapshot {
    pub name: String,
    pub adapter: &'static str,
    pub codec: String,
    pub codec_name: String,
    pub codec_version: String,
    pub directory: String,
    pub pattern: String,
    /// Items taken from the source (a file taken again after waiting for a
    /// node counts again).
    pub taken: u64,
    /// Operations answered (by a node or with an error reply).
    pub operations: u64,
    pub operation_errors: u64,
    /// Items finished whole (file moved to processed/).
    pub processed: u64,
    /// Items refused whole (file moved to error/).
    pub errors: u64,
    /// Items put back to wait for a node.
    pub released: u64,
    /// Operations waiting for a node now.
    pub waiting_for_node: i64,
    /// Items waiting in the source (files in inbound/ not taken yet).
    pub backlog: u64,
    /// Items taken and not finished yet.
    pub in_flight: u64,
    pub notifications: u64,
    /// kafka: topics, group, broker state, lag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<kafka::KafkaStatus>,
}

impl CapturePoint {
    /// Builds a capture point of `config`: loads its codec (compiled once,
    /// cached) and compiles its tenant rules. Opens no file: `wasp check`
    /// builds capture points too.
    pub async fn build(
        name: &str,
        cc: &CaptureConfig,
        config: &Config,
        runtime: &Runtime,
        metrics: &Metrics,
    ) -> Result<CapturePoint> {
        let source = config
            .component_source(&cc.codec)
            .map_err(anyhow::Error::msg)
            .context("codec")?;
        let bytes = source
            .bytes()
            .with_context(|| format!("read codec {source}"))?;
        let limits = CodecLimits {
            instances: 2,
            memory_bytes: (cc.codec_memory_mb << 20) as usize,
            timeout: cc.codec_timeout(),
            max_item_bytes: (cc.max_file_bytes as usize).max(1 << 20) * 4,
        };
        let codec = Codec::load(runtime, &bytes, limits)
            .await
            .with_context(|| format!("codec {source}"))?;
        let mapper = cc
            .mapper(name, &config.tenants)
            .map_err(|problems| anyhow::anyhow!(problems.join("; ")))?;
        let pattern = cc
            .pattern
            .clone()
            .unwrap_or_else(|| format!("*.{}", codec.info().extension));
        Ok(CapturePoint {
            name: Arc::from(name),
            config: cc.clone(),
            codec_source: source.to_string(),
            codec: Arc::new(codec),
            mapper,
            directory: cc.directory(name, &config.data_dir()),
            pattern,
            brokers: cc.brokers.clone().or_else(|| config.kafka.clone()),
            stats: Stats::new(metrics, name),
            finalizer: Mutex::new(None),
            runner: Mutex::new(None),
            kafka: Mutex::new(None),
            state: Mutex::new(std::sync::Weak::new()),
            started: std::sync::atomic::AtomicBool::new(false),
            stop: CancellationToken::new(),
        })
    }

    /// Opens the capture point's folders and state file and starts taking
    /// items. It runs until it is dropped or `stop` is cancelled.
    pub fn start(
        self: &Arc<Self>,
        nodes: Arc<Nodes>,
        tenants: Arc<[TenantConfig]>,
        stop: &CancellationToken,
    ) -> Result<()> {
        // A capture point a reload kept is running already.
        if self.started.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Ok(());
        }
        let started = self.start_adapter(nodes, tenants, stop);
        if started.is_err() {
            self.started
                .store(false, std::sync::atomic::Ordering::Release);
        }
        started
    }

    fn start_adapter(
        self: &Arc<Self>,
        nodes: Arc<Nodes>,
        tenants: Arc<[TenantConfig]>,
        stop: &CancellationToken,
    ) -> Result<()> {
        match self.config.adapter {
            Adapter::File => {
                let finalizer = pipeline::start_file(self.clone(), nodes, tenants, stop)?;
                *self.finalizer.lock().unwrap_or_else(|e| e.into_inner()) = Some(finalizer);
            }
            Adapter::Kafka => {
                let Some(brokers) = &self.brokers else {
                    tracing::warn!(capture = %self.name, "kafka capture point not started: no brokers (give `brokers` or --kafka HOST:PORT)");
                    return Ok(());
                };
                let status = pipeline::start_kafka(
                    self.clone(),
                    self.config.kafka(&self.name, brokers),
                    nodes,
                    tenants,
                    stop,
                )?;
                *self.kafka.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
            }
            Adapter::Http => {
                std::fs::create_dir_all(&self.directory).with_context(|| {
                    format!(
                        "create the capture point folder {}",
                        self.directory.display()
                    )
                })?;
                let state = Arc::new(state::CaptureState::open(
                    &self.directory,
                    self.config.state,
                )?);
                self.started_with(&state);
                let runner = runner::Runner::new(self.clone(), nodes, tenants, state);
                *self.runner.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(runner));
            }
        }
        Ok(())
    }

    /// What runs this capture point's operations for callers that wait for
    /// the answer (the `http` adapter); `None` before it is started or for
    /// another adapter.
    pub fn runner(&self) -> Option<Arc<runner::Runner>> {
        self.runner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Cancelled when the capture point stops.
    pub(crate) fn stopped(&self) -> &CancellationToken {
        &self.stop
    }

    /// Stops taking items; items in flight finish or stay in the source.
    /// Lets go of its runner, which holds the capture point (and its state
    /// file) while it is set.
    pub fn stop(&self) {
        self.stop.cancel();
        self.runner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// [`CapturePoint::stop`], then waits up to `bound` until every task
    /// that worked on its items has ended and its state file is closed
    /// (items in flight finish first). Whether it did within the bound.
    pub async fn stop_and_wait(&self, bound: std::time::Duration) -> bool {
        self.stop();
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let open = self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .strong_count()
                > 0;
            if !open {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Records the state file of the pipeline just started.
    pub(crate) fn started_with(&self, state: &Arc<state::CaptureState>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(state);
    }

    /// Its figures now.
    pub fn snapshot(&self) -> CaptureSnapshot {
        let finalizer = self
            .finalizer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (backlog, in_flight) = finalizer
            .map(|f| (f.backlog() as u64, f.in_flight() as u64))
            .unwrap_or_default();
        self.stats.backlog.set(backlog as i64);
        let s = &self.stats;
        CaptureSnapshot {
            name: self.name.to_string(),
            adapter: self.config.adapter.as_str(),
            codec: self.codec_source.clone(),
            codec_name: self.codec.info().name.clone(),
            codec_version: self.codec.info().version.clone(),
            directory: self.directory.display().to_string(),
            pattern: self.pattern.clone(),
            taken: s.taken.get(),
            operations: s.answered.get() + s.failed_operations.get(),
            operation_errors: s.failed_operations.get(),
            processed: s.processed.get(),
            errors: s.errors.get(),
            released: s.released.get(),
            waiting_for_node: s.waiting.get(),
            backlog,
            in_flight,
            notifications: s.notifications.get(),
            kafka: self
                .kafka
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|status| status()),
        }
    }
}
