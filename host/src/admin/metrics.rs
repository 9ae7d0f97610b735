//! Prometheus metrics, in a registry owned by the gateway (not a global),
//! so several gateways in one process (tests) keep their own numbers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::fault::Fault;
use crate::store::Bound;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub cluster: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub cluster: String,
    pub reason: &'static str,
}

/// The writes each bound of one cluster's store refused, resolved once.
#[derive(Debug, Clone)]
pub struct StoreRefusals {
    counters: [Counter; Bound::ALL.len()],
}

impl StoreRefusals {
    /// Counts `err` when it is a write refused by a bound; any other
    /// error is not counted.
    pub fn count(&self, err: &crate::store::Error) {
        if let crate::store::Error::Full { bound, .. } = err {
            self.counters[*bound as usize].inc();
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaptureLabels {
    pub capture: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaptureOutcomeLabels {
    pub capture: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub cluster: String,
    pub instance: u32,
}

/// A bound of the HTTP listener that refused or closed a connection.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Limit {
    /// `server.max-connections`: a connection over it is refused.
    MaxConnections,
    /// `server.header-read-timeout-ms`.
    HeaderReadTimeout,
    /// `server.body-read-timeout-ms`.
    BodyReadTimeout,
    /// `server.idle-timeout-ms`.
    IdleTimeout,
    /// `server.write-timeout-ms`.
    WriteTimeout,
    /// A request URI over the fixed bound (answered 414).
    UriTooLong,
    /// A request head over the fixed bounds of fields and bytes (431).
    HeaderTooLarge,
    /// A request that is not HTTP/1.1 (400).
    BadRequest,
}

impl Limit {
    pub const ALL: [Limit; 8] = [
        Limit::MaxConnections,
        Limit::HeaderReadTimeout,
        Limit::BodyReadTimeout,
        Limit::IdleTimeout,
        Limit::WriteTimeout,
        Limit::UriTooLong,
        Limit::HeaderTooLarge,
        Limit::BadRequest,
    ];

    /// The metric label: the setting's name, or what a fixed bound
    /// refused.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max-connections",
            Limit::HeaderReadTimeout => "header-read-timeout",
            Limit::BodyReadTimeout => "body-read-timeout",
            Limit::IdleTimeout => "idle-timeout",
            Limit::WriteTimeout => "write-timeout",
            Limit::UriTooLong => "uri-too-long",
            Limit::HeaderTooLarge => "header-too-large",
            Limit::BadRequest => "bad-request",
        }
    }
}

impl EncodeLabelValue for Limit {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub reason: Limit,
}

/// What the HTTP listener's bounds did: open connections, and the
/// connections each bound refused or closed. When a bound bites it is also
/// logged, at most one line a second per bound (each line says how many
/// were not logged), so an attack does not flood the log.
pub struct HttpMetrics {
    pub open: Gauge,
    refused: Family<LimitLabels, Counter>,
    closed: Family<LimitLabels, Counter>,
    logs: [crate::runtime::log::LogLimit; Limit::ALL.len()],
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetrics")
    }
}

impl HttpMetrics {
    fn new() -> HttpMetrics {
        let refused = Family::<LimitLabels, Counter>::default();
        let closed = Family::<LimitLabels, Counter>::default();
        // Every series from the start, so a dashboard sees zeros.
        let _ = refused.get_or_create(&LimitLabels {
            reason: Limit::MaxConnections,
        });
        for reason in Limit::ALL
            .into_iter()
            .filter(|l| *l != Limit::MaxConnections)
        {
            let _ = closed.get_or_create(&LimitLabels { reason });
        }
        HttpMetrics {
            open: Gauge::default(),
            refused,
            closed,
            logs: Limit::ALL.map(|_| crate::runtime::log::LogLimit::unmetered(1)),
        }
    }

    /// Counts a connection `limit` refused (`max-connections`) or closed,
    /// and logs `what` happened (rate-limited). Closing an idle keep-alive
    /// connection is routine: it is counted and logged at debug level only.
    pub fn hit(&self, limit: Limit, what: std::fmt::Arguments<'_>) {
        self.counter(limit).inc();
        if limit == Limit::IdleTimeout {
            tracing::debug!(limit = limit.as_str(), "http: {what}");
            return;
        }
        let index = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        if let Some(unlogged) = self.logs[index].admit() {
            if unlogged > 0 {
                tracing::warn!(
                    limit = limit.as_str(),
                    "http: {what} ({unlogged} more like it since the last such line)"
                );
            } else {
                tracing::warn!(limit = limit.as_str(), "http: {what}");
            }
        }
    }

    /// Connections refused (`max-connections`) or closed by `limit` so far.
    pub fn count(&self, limit: Limit) -> u64 {
        self.counter(limit).get()
    }

    /// The series of `limit`: refused (`max-connections`) or closed.
    fn counter(&self, limit: Limit) -> Counter {
        let family = if limit == Limit::MaxConnections {
            &self.refused
        } else {
            &self.closed
        };
        family.get_or_create(&LimitLabels { reason: limit }).clone()
    }
}

/// Request count and latency of one cluster.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    requests: Counter,
    latency: Histogram,
}

impl ClusterMetrics {
    /// Counts a request that reached the cluster.
    pub fn observe(&self, elapsed: Duration) {
        self.requests.inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Requests that reached the cluster so far.
    pub fn requests(&self) -> u64 {
        self.requests.get()
    }
}

/// How many faults [`Metrics::recent_faults`] keeps.
pub const RECENT_FAULTS: usize = 50;

/// One of the last faults, for the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentFault {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// Empty unless it was a known cluster.
    pub cluster: String,
    pub code: u16,
    pub message: String,
}

/// The last faults and the faults of each cluster so far. Touched only
/// when a fault is counted, never on a request that succeeds.
#[derive(Debug, Default)]
struct FaultLog {
    recent: VecDeque<RecentFault>,
    per_cluster: HashMap<String, u64>,
    /// The fault codes counted per cluster: the series to drop when the
    /// cluster goes.
    codes: HashMap<String, std::collections::BTreeSet<u16>>,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<ClusterLabels, Counter>,
    faults: Family<FaultLabels, Counter>,
    latency: Family<ClusterLabels, Histogram>,
    pub queue_depth: Family<ClusterLabels, Gauge>,
    pub instances: Family<ClusterLabels, Gauge>,
    pub handled: Family<InstanceLabels, Counter>,
    pub plugin_log_written: Family<ClusterLabels, Counter>,
    pub plugin_log_dropped: Family<ClusterLabels, Counter>,
    /// Requests refused by a bound (a body's, the dashboard streams'), by
    /// reason.
    pub requests_refused: Family<ReasonLabels, Counter>,
    /// Node sessions refused before they started, by reason.
    pub node_sessions_refused: Family<ReasonLabels, Counter>,
    /// Node sessions the host ended, by reason.
    pub node_sessions_closed: Family<ReasonLabels, Counter>,
    /// The HTTP listener; shared with every connection.
    pub http: Arc<HttpMetrics>,
    /// Store writes refused by a bound, per cluster and bound.
    pub store_writes_refused: Family<StoreLabels, Counter>,
    /// Capture points: items by outcome (taken, processed, error,
    /// released: put back to wait for a node).
    pub capture_items: Family<CaptureOutcomeLabels, Counter>,
    /// Capture points: operations by outcome (answered, error).
    pub capture_operations: Family<CaptureOutcomeLabels, Counter>,
    /// Capture points: items waiting in their source (files in inbound/).
    pub capture_backlog: Family<CaptureLabels, Gauge>,
    /// Capture points: operations waiting for a node now.
    pub capture_waiting: Family<CaptureLabels, Gauge>,
    faults_log: Mutex<FaultLog>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wasp");
        let requests = Family::<ClusterLabels, Counter>::default();
        let faults = Family::<FaultLabels, Counter>::default();
        let latency = Family::<ClusterLabels, Histogram>::new_with_constructor(|| {
            // 50 µs .. ~3.3 s
            Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
        });
        let queue_depth = Family::<ClusterLabels, Gauge>::default();
        let instances = Family::<ClusterLabels, Gauge>::default();
        let handled = Family::<InstanceLabels, Counter>::default();
        registry.register("esp_requests", "ESP requests per cluster", requests.clone());
        registry.register(
            "esp_faults",
            "ESP faults per cluster and fault code (cluster is empty when none was resolved)",
            faults.clone(),
        );
        registry.register_with_unit(
            "esp_request_duration",
            "Time from a parsed request to its answer",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "cluster_queue_depth",
            "Requests waiting for an instance",
            queue_depth.clone(),
        );
        registry.register(
            "cluster_instances",
            "Live instances per cluster",
            instances.clone(),
        );
        registry.register(
            "instance_handled",
            "Requests handled per instance slot",
            handled.clone(),
        );
        let plugin_log_written = Family::<ClusterLabels, Counter>::default();
        let plugin_log_dropped = Family::<ClusterLabels, Counter>::default();
        registry.register(
            "plugin_log_lines",
            "Lines plugins wrote to the log, per cluster",
            plugin_log_written.clone(),
        );
        registry.register(
            "plugin_log_dropped",
            "Plugin log lines dropped beyond the cluster's log-per-second",
            plugin_log_dropped.clone(),
        );
        let requests_refused = Family::<ReasonLabels, Counter>::default();
        for reason in [
            "max-body-bytes",
            "max-inflight-body-mb",
            "dashboard-streams",
        ] {
            drop(requests_refused.get_or_create(&ReasonLabels { reason }));
        }
        registry.register(
            "http_requests_refused",
            "Requests refused by a bound: while their body was read (reason: max-body-bytes, \
             max-inflight-body-mb), or a dashboard stream over the 16 open at once \
             (dashboard-streams)",
            requests_refused.clone(),
        );
        let node_sessions_refused = Family::<ReasonLabels, Counter>::default();
        let node_sessions_closed = Family::<ReasonLabels, Counter>::default();
        // Every reason is shown from the start, at 0.
        drop(node_sessions_refused.get_or_create(&ReasonLabels {
            reason: "max-sessions",
        }));
        for reason in ["write-timeout", "frame-too-large", "silent"] {
            drop(node_sessions_closed.get_or_create(&ReasonLabels { reason }));
        }
        registry.register(
            "node_sessions_refused",
            "Node sessions refused before they started (reason: max-sessions)",
            node_sessions_refused.clone(),
        );
        registry.register(
            "node_sessions_closed",
            "Node sessions the host ended (reason: write-timeout, frame-too-large, silent)",
            node_sessions_closed.clone(),
        );
        let http = Arc::new(HttpMetrics::new());
        registry.register(
            "http_connections_open",
            "HTTP connections open, node sessions included",
            http.open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections refused at once, by the bound that refused them",
            http.refused.clone(),
        );
        registry.register(
            "http_connections_closed",
            "HTTP connections closed by a timeout or by a request the HTTP stack could not read, by the reason",
            http.closed.clone(),
        );
        let store_writes_refused = Family::<StoreLabels, Counter>::default();
        registry.register(
            "store_writes_refused",
            "Store writes refused because they would pass a bound of the cluster's store \
             (reason: store.max-entries, store.max-entries-per-tenant, store.max-bytes, \
             store.max-bytes-per-tenant)",
            store_writes_refused.clone(),
        );
        let capture_items = Family::<CaptureOutcomeLabels, Counter>::default();
        let capture_operations = Family::<CaptureOutcomeLabels, Counter>::default();
        let capture_backlog = Family::<CaptureLabels, Gauge>::default();
        let capture_waiting = Family::<CaptureLabels, Gauge>::default();
        registry.register(
            "capture_items",
            "Items (files) of capture points by outcome: taken, processed, error, released \
             (put back to wait for a node)",
            capture_items.clone(),
        );
        registry.register(
            "capture_operations",
            "Operations of capture points by outcome: answered, error, notification (node notifications written)",
            capture_operations.clone(),
        );
        registry.register(
            "capture_backlog",
            "Items waiting in a capture point's source (files in inbound/)",
            capture_backlog.clone(),
        );
        registry.register(
            "capture_waiting",
            "Operations of a capture point waiting for a node now",
            capture_waiting.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            store_writes_refused,
            capture_items,
            capture_operations,
            capture_backlog,
            capture_waiting,
            requests_refused,
            node_sessions_refused,
            node_sessions_closed,
            http,
            requests,
            faults,
            latency,
            queue_depth,
            instances,
            handled,
            plugin_log_written,
            plugin_log_dropped,
            faults_log: Mutex::default(),
        }
    }

    /// Registers a counter kept elsewhere (e.g. by the node router).
    pub fn register_counter(&self, name: &str, help: &str, counter: Counter) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.register(name, help, counter);
    }

    /// The log budget of one cluster, counted in its series.
    pub fn log_limit(&self, cluster: &str, per_second: u32) -> crate::runtime::log::LogLimit {
        let labels = ClusterLabels {
            cluster: cluster.to_string(),
        };
        crate::runtime::log::LogLimit::new(
            per_second,
            self.plugin_log_written.get_or_create(&labels).clone(),
            self.plugin_log_dropped.get_or_create(&labels).clone(),
        )
    }

    /// Counts a request refused by a bound, `reason` naming it
    /// (`max-body-bytes`, `max-inflight-body-mb`, `dashboard-streams`).
    pub fn request_refused(&self, reason: &'static str) {
        self.requests_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The store-bound series of one cluster (every bound shown from the
    /// start, at 0).
    pub fn store_refusals(&self, cluster: &str) -> StoreRefusals {
        StoreRefusals {
            counters: Bound::ALL.map(|bound| {
                self.store_writes_refused
                    .get_or_create(&StoreLabels {
                        cluster: cluster.to_string(),
                        reason: bound.setting(),
                    })
                    .clone()
            }),
        }
    }

    /// The per-request series of one cluster, resolved once so the hot
    /// path neither allocates labels nor looks them up.
    pub fn cluster(&self, cluster: &str) -> ClusterMetrics {
        let labels = ClusterLabels {
            cluster: cluster.to_string(),
        };
        ClusterMetrics {
            requests: self.requests.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
        }
    }

    /// Counts a fault and keeps it among the last [`RECENT_FAULTS`].
    /// `cluster` is empty unless it was a known cluster.
    pub fn fault(&self, cluster: &str, fault: &Fault) {
        self.faults
            .get_or_create(&FaultLabels {
                cluster: cluster.to_string(),
                code: fault.code.as_u16(),
            })
            .inc();
        let mut message = fault.message.as_str();
        let long = message.len() > 300;
        if long {
            let mut end = 300;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message = &message[..end];
        }
        let message = if long {
            format!("{message}…")
        } else {
            message.to_string()
        };
        let recent = RecentFault {
            at: crate::store::Clock::System.now(),
            cluster: cluster.to_string(),
            code: fault.code.as_u16(),
            message,
        };
        let mut log = self.faults_log.lock().unwrap_or_else(|e| e.into_inner());
        if log.recent.len() == RECENT_FAULTS {
            log.recent.pop_front();
        }
        log.recent.push_back(recent);
        *log.per_cluster.entry(cluster.to_string()).or_default() += 1;
        log.codes
            .entry(cluster.to_string())
            .or_default()
            .insert(fault.code.as_u16());
    }

    /// Drops every series of a cluster that is gone (a reload removed
    /// it), so `/metrics` shows what serves, not what served once: a
    /// removed cluster's gauges would read as live. `slots` is how many
    /// instance slots it had. A cluster added again under the name starts
    /// its counters from 0, as after a restart.
    pub fn forget_cluster(&self, cluster: &str, slots: usize) {
        let labels = ClusterLabels {
            cluster: cluster.to_string(),
        };
        self.requests.remove(&labels);
        self.latency.remove(&labels);
        self.queue_depth.remove(&labels);
        self.instances.remove(&labels);
        self.plugin_log_written.remove(&labels);
        self.plugin_log_dropped.remove(&labels);
        for bound in Bound::ALL {
            self.store_writes_refused.remove(&StoreLabels {
                cluster: cluster.to_string(),
                reason: bound.setting(),
            });
        }
        self.forget_instances(cluster, 0..slots);
        let mut log = self.faults_log.lock().unwrap_or_else(|e| e.into_inner());
        log.per_cluster.remove(cluster);
        for code in log.codes.remove(cluster).unwrap_or_default() {
            self.faults.remove(&FaultLabels {
                cluster: cluster.to_string(),
                code,
            });
        }
    }

    /// Drops the per-instance series of `slots` of `cluster` (a cluster
    /// that a reload gave fewer instances).
    pub fn forget_instances(&self, cluster: &str, slots: std::ops::Range<usize>) {
        for instance in slots {
            self.handled.remove(&InstanceLabels {
                cluster: cluster.to_string(),
                instance: instance as u32,
            });
        }
    }

    /// Drops every series of a capture point that a reload removed.
    pub fn forget_capture(&self, capture: &str) {
        for outcome in ["taken", "processed", "error", "released"] {
            self.capture_items.remove(&CaptureOutcomeLabels {
                capture: capture.to_string(),
                outcome,
            });
        }
        for outcome in ["answered", "error", "notification"] {
            self.capture_operations.remove(&CaptureOutcomeLabels {
                capture: capture.to_string(),
                outcome,
            });
        }
        let labels = CaptureLabels {
            capture: capture.to_string(),
        };
        self.capture_backlog.remove(&labels);
        self.capture_waiting.remove(&labels);
    }

    /// The last faults, newest first.
    pub fn recent_faults(&self) -> Vec<RecentFault> {
        let log = self.faults_log.lock().unwrap_or_else(|e| e.into_inner());
        log.recent.iter().rev().cloned().collect()
    }

    /// Faults counted for `cluster` so far.
    pub fn cluster_faults(&self, cluster: &str) -> u64 {
        let log = self.faults_log.lock().unwrap_or_else(|e| e.into_inner());
        log.per_cluster.get(cluster).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultCode;

    /// The last faults are kept newest first and bounded; the per-cluster
    /// counts go on past the bound; a long message is cut.
    #[test]
    fn recent_faults_are_bounded_and_newest_first() {
        let metrics = Metrics::new();
        for i in 0..RECENT_FAULTS + 5 {
            metrics.fault("fax", &Fault::invalid(format!("bad {i}")));
        }
        metrics.fault("", &Fault::new(FaultCode::NoServer, "é".repeat(400)));
        let recent = metrics.recent_faults();
        assert_eq!(recent.len(), RECENT_FAULTS);
        assert_eq!(recent[0].cluster, "");
        assert_eq!(recent[0].code, 2001);
        assert!(recent[0].message.len() <= 300 + '…'.len_utf8());
        assert!(recent[0].message.ends_with('…'));
        assert_eq!(recent[1].message, format!("bad {}", RECENT_FAULTS + 4));
        assert_eq!(recent.last().unwrap().message, "bad 6");
        assert_eq!(metrics.cluster_faults("fax"), RECENT_FAULTS as u64 + 5);
        assert_eq!(metrics.cluster_faults("im"), 0);
        assert!(
            metrics
                .render()
                .contains("wasp_esp_faults_total{cluster=\"fax\",code=\"3000\"} 55")
        );
    }
}
