//! The TOML config, validated as a whole before anything starts: every
//! problem is reported at once, each with its place (`clusters.fax.tenants`).
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//!
//! [[tenants]]
//! id = 101
//! name = "Environment"
//!
//! [clusters.fax]
//! service = "Fax"
//! component = "builtin:fax"   # or a path to any .wasm, relative to this file
//! tenants = [101]
//! instances = 4
//! policy = "pooled"           # or "per-request"
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::tenant::{TenantConfig, TenantRef};

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Capture points (`[captures.<name>]`, see `capture::config`).
    #[serde(default)]
    pub captures: BTreeMap<String, crate::capture::config::CaptureConfig>,
    /// Where capture points keep their folders and state: relative to the
    /// config file; `--data-dir` overrides it; default `./wasp-data`.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub nodes: NodesConfig,
    /// Bearer tokens. With none, wasp listens on loopback only.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// In-process node-sims that stand in for Interaction Server nodes, so
    /// a demo runs on a machine without one.
    #[serde(default)]
    pub embedded_nodes: Vec<EmbeddedNode>,
    /// Demo-only stand-ins started by `wasp run`.
    #[serde(default)]
    pub demo: DemoConfig,
    /// Directory of the config file: relative component paths start here.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file as TOML values, to tell which sections a reload changed.
    #[serde(skip)]
    pub raw: toml::Table,
    /// Brokers for kafka capture points that name none (`--kafka`).
    #[serde(skip)]
    pub kafka: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Address to listen on; `--listen` overrides it.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Bytes of request bodies the host holds at once, all requests
    /// together, in MiB: a body that would go beyond is refused with 3003
    /// (HTTP 503) while it is read, so many large requests at once cannot
    /// exhaust memory.
    #[serde(default = "default_max_inflight_body_mb")]
    pub max_inflight_body_mb: u64,
    /// Connections open at once (node sessions included); one more is
    /// answered 503 (fault 3003) and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a request's header: from the connection's
    /// start, or from the first byte of a later request on it. A client
    /// that sends nothing or trickles its header is disconnected.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a whole request body; beyond it the
    /// request is answered 408 (fault 3000) and the connection closed.
    #[serde(default = "default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// A connection whose client accepts no byte of an answer for this
    /// long is closed (node sessions too).
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
}

/// `127.0.0.1:8080`.
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// 16 MiB: a 10 MiB fax document, base64-encoded, fits.
fn default_max_body() -> usize {
    16 << 20
}

/// 256 MiB: sixteen requests of the largest size at once.
fn default_max_inflight_body_mb() -> u64 {
    256
}

/// 1 024 connections. Each is an open file: the process's open-files
/// limit (`ulimit -n`) must leave room for them and wasp's own files.
fn default_max_connections() -> usize {
    1_024
}

/// 30 s to send a request header.
fn default_header_read_timeout_ms() -> u64 {
    30_000
}

/// 60 s for a whole request body: the largest (16 MiB) needs 280 KB/s.
fn default_body_read_timeout_ms() -> u64 {
    60_000
}

/// 60 s idle between requests on a keep-alive connection.
fn default_idle_timeout_ms() -> u64 {
    60_000
}

/// 30 s without a byte of an answer accepted by the client.
fn default_write_timeout_ms() -> u64 {
    30_000
}

impl ServerConfig {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            max_inflight_body_mb: default_max_inflight_body_mb(),
            max_connections: default_max_connections(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            body_read_timeout_ms: default_body_read_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            write_timeout_ms: default_write_timeout_ms(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuntimeConfig {
    /// Where compiled components are cached. Default: `$WASP_CACHE_DIR`,
    /// else `$XDG_CACHE_HOME/wasp`, else `~/.cache/wasp`.
    pub cache_dir: Option<PathBuf>,
    /// Turn the compiled-component cache off.
    #[serde(default)]
    pub no_cache: bool,
    /// Largest size of the cache directory in MiB (default 2048): beyond
    /// it the least recently used compiled components are deleted.
    pub cache_max_mb: Option<u64>,
    /// Instance slots of the pooling allocator, for the whole process.
    /// Fixed at start, so that a later generation (a reload) fits: default
    /// twice what the first config needs plus 64, at least 256.
    pub max_instances: Option<u32>,
    /// The largest linear memory any instance may have, in MiB, fixed at
    /// start: default the largest `memory-mb` of the first config, at
    /// least 256.
    pub max_memory_mb: Option<u64>,
}

/// Where capture points keep their folders and state by default.
pub const DEFAULT_DATA_DIR: &str = "wasp-data";

/// 2 GiB of compiled components.
pub const DEFAULT_CACHE_MAX_MB: u64 = 2048;

impl RuntimeConfig {
    /// The cache's size bound in bytes.
    pub fn cache_max_bytes(&self) -> u64 {
        self.cache_max_mb.unwrap_or(DEFAULT_CACHE_MAX_MB) << 20
    }
}

/// Interaction Server node sessions and the node router.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodesConfig {
    /// The host pings every node this often; a node silent for three
    /// intervals is considered gone.
    #[serde(default = "default_ping_ms")]
    pub ping_interval_ms: u64,
    /// A new interaction for a tenant + media type no node serves waits this
    /// long for one to connect, then fails with 2001.
    #[serde(default = "default_wait_for_node_ms")]
    pub wait_for_node_ms: u64,
    /// Operations that may wait at once, for a node to connect or for a
    /// place in a node's full window; one more is refused with 3003.
    #[serde(default = "default_waiting")]
    pub waiting: usize,
    /// Interactions whose owning node wasp remembers; submits beyond are
    /// refused with 3003 until interactions stop.
    #[serde(default = "default_max_interactions")]
    pub max_interactions: usize,
    /// An operation unanswered by its node this long fails with 3002.
    #[serde(default = "default_op_timeout_ms")]
    pub op_timeout_ms: u64,
    /// Largest `Window` a node may announce.
    #[serde(default = "default_max_window")]
    pub max_window: u32,
    /// A frame the host cannot hand to a node's socket within this time
    /// ends the session (the node stopped reading): its unanswered
    /// operations fail with 2002.
    #[serde(default = "default_node_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// Node sessions at once (those still saying Hello included); one
    /// more is refused with 3003 (HTTP 503) before the upgrade.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// A new session must say `Hello` within this time, or it is refused
    /// (3000) and closed.
    #[serde(default = "default_hello_timeout_ms")]
    pub hello_timeout_ms: u64,
}

/// 10 s.
fn default_ping_ms() -> u64 {
    10_000
}
/// 5 s.
fn default_wait_for_node_ms() -> u64 {
    5_000
}
/// 1 024 waiting interactions.
fn default_waiting() -> usize {
    1_024
}
/// 1 000 000 interactions.
fn default_max_interactions() -> usize {
    1_000_000
}
/// 30 s.
fn default_op_timeout_ms() -> u64 {
    30_000
}
/// 10 000 outstanding frames per session.
fn default_max_window() -> u32 {
    10_000
}
/// 10 s.
fn default_node_write_timeout_ms() -> u64 {
    10_000
}
/// 1 000 sessions.
fn default_max_sessions() -> usize {
    1_000
}
/// 10 s.
fn default_hello_timeout_ms() -> u64 {
    10_000
}

impl Default for NodesConfig {
    fn default() -> Self {
        NodesConfig {
            ping_interval_ms: default_ping_ms(),
            wait_for_node_ms: default_wait_for_node_ms(),
            waiting: default_waiting(),
            max_interactions: default_max_interactions(),
            op_timeout_ms: default_op_timeout_ms(),
            max_window: default_max_window(),
            write_timeout_ms: default_node_write_timeout_ms(),
            max_sessions: default_max_sessions(),
            hello_timeout_ms: default_hello_timeout_ms(),
        }
    }
}

/// Demo-only stand-ins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DemoConfig {
    /// Serve mock SMS gateway and social APIs here (see `demo.rs`), so the
    /// demo's SMS and Social clusters work without a network.
    pub mock_peers: Option<SocketAddr>,
}

/// An in-process node-sim started by `wasp run` once it listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EmbeddedNode {
    pub node_id: String,
    pub tenants: Vec<u32>,
    #[serde(default = "default_media")]
    pub media: Vec<String>,
    /// Stop each interaction after this many ms (sends `Notify stopped`).
    pub stop_after_ms: Option<u64>,
    /// A node token, when tokens are configured.
    pub token: Option<String>,
}

/// `["workitem"]`.
fn default_media() -> Vec<String> {
    vec!["workitem".into()]
}

/// Roles a bearer token can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Interaction Server nodes: node sessions and ESP requests.
    Node,
    /// The admin API.
    Admin,
    /// Capture endpoints.
    Capture,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokenConfig {
    pub token: String,
    pub role: Role,
    /// For node tokens: the tenants the node may use (ids or names).
    #[serde(default)]
    pub tenants: Vec<TenantRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Long-lived instances that keep state between calls; retired after a
    /// trap, a timeout or `max-calls` calls.
    Pooled,
    /// A fresh instance from the pre-linked template for every request.
    PerRequest,
}

/// One Application Cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterConfig {
    /// The service type the cluster serves, e.g. `Fax`. The component must
    /// declare the same.
    pub service: String,
    /// `builtin:<name>` or a path to a `.wasm` component.
    pub component: String,
    /// Tenants served (ids or names).
    pub tenants: Vec<TenantRef>,
    /// Instances (pooled) or concurrent instances at most (per-request).
    #[serde(default = "default_instances")]
    pub instances: usize,
    #[serde(default = "default_policy")]
    pub policy: Policy,
    /// Deadline of a request, queueing included, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests that may wait when every instance's window is full; one
    /// more is refused at once with fault 3003.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Requests assigned to one instance at once (running or waiting on it).
    /// Pooled only: a per-request instance serves one request.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Linear memory limit per instance, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Retire a pooled instance after this many calls (0: never).
    #[serde(default)]
    pub max_calls: u64,
    /// Retry a request once on another instance when its instance traps.
    /// A retry runs the plugin again: turn it off when a call's side
    /// effects (a fax sent, a message posted) must not happen twice.
    #[serde(default = "default_retry")]
    pub retry: bool,
    /// Lines per second the cluster's instances may write to the log
    /// together; lines beyond are dropped and counted.
    #[serde(default = "default_log_per_second")]
    pub log_per_second: u32,
    /// Values the component reads through `wasp:esp/config`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Example parameters per method (`Greet = { Name = "World" }`): what
    /// the start-up "try" line sends and `wasp call --describe` shows, so
    /// a pasted line succeeds. Each is checked as ESP parameters at load.
    #[serde(default)]
    pub examples: BTreeMap<String, toml::Value>,
    /// Grants the key-value store capability (`wasp:esp/store`).
    pub store: Option<StoreConfig>,
    /// Grants outbound HTTP to the listed hosts.
    pub http: Option<HttpConfig>,
}

impl ClusterConfig {
    /// The example parameters of `method` as ESP JSON parameters (`None`
    /// when it has none), or why they are not valid parameters: a table of
    /// strings, integers and tables (KV lists), as a request's `Parameters`.
    pub fn example(&self, method: &str) -> Option<Result<String, String>> {
        let value = self.examples.get(method)?;
        Some(if !value.is_table() {
            Err("must be a table of parameters, e.g. { Name = \"World\" }".to_string())
        } else {
            serde_json::to_string(value)
                .map_err(|e| e.to_string())
                .and_then(|json| {
                    crate::kv::Kv::from_json_text(&json, "Parameters")
                        .map(|_| json)
                        .map_err(|e| e.to_string())
                })
        })
    }
}

/// Outbound HTTP for a cluster's components.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpConfig {
    /// `host` (any port) or `host:port`; every other host is refused.
    pub allow: Vec<String>,
    /// Connect / first byte / between bytes timeout, in milliseconds.
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
}

/// 10 s.
fn default_http_timeout_ms() -> u64 {
    10_000
}

/// The cluster's key-value store: shared by its instances, scoped by tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreConfig {
    /// Where the store lives. Absent: in memory, or in the redb file
    /// `persist` names when it is given (one host's own state). `redis`:
    /// on a Redis server, so several hosts serving the cluster share it.
    pub backend: Option<StoreBackend>,
    /// A redb file (relative to the config file) that keeps the store
    /// across restarts. In memory when absent.
    pub persist: Option<PathBuf>,
    /// The Redis server (`backend = "redis"`), e.g.
    /// `redis://127.0.0.1:6379/0`; a password in it is never logged.
    pub url: Option<String>,
    /// What every Redis key of this store starts with (`backend =
    /// "redis"`); default `wasp:<cluster>:`. Hosts share a cluster's store
    /// when they use the same server, database and prefix.
    pub prefix: Option<String>,
    /// How long one store call may wait for Redis (connecting included)
    /// before it fails with `store: unavailable: ...` (`backend =
    /// "redis"`); default [`DEFAULT_STORE_TIMEOUT_MS`]. The request's own
    /// deadline cuts it shorter.
    pub timeout_ms: Option<u64>,
    /// Keys at most, all tenants together.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// Keys at most of one tenant; default `max-entries` divided by the
    /// number of tenants the cluster serves, so one tenant cannot take
    /// another's room.
    pub max_entries_per_tenant: Option<u64>,
    /// Bytes (keys plus values) at most, all tenants together.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Bytes at most of one tenant; default `max-bytes` divided by the
    /// number of tenants the cluster serves.
    pub max_bytes_per_tenant: Option<u64>,
}

/// Where a cluster's store lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// This process's memory: gone at exit.
    Memory,
    /// A redb file (`persist`): one host's, kept across restarts.
    Redb,
    /// A Redis server (`url`): shared by every host that names it.
    Redis,
}

/// A store call on Redis waits at most 1 s by default: long enough for a
/// busy server, short enough that a plugin gets its error well before a
/// default 5 s request deadline.
pub const DEFAULT_STORE_TIMEOUT_MS: u64 = 1000;

impl StoreConfig {
    /// The backend: as given, else redb with `persist`, else memory.
    pub fn backend(&self) -> StoreBackend {
        self.backend.unwrap_or(if self.persist.is_some() {
            StoreBackend::Redb
        } else {
            StoreBackend::Memory
        })
    }

    /// The Redis key prefix for cluster `name`.
    pub fn prefix(&self, name: &str) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| format!("wasp:{name}:"))
    }

    /// The bound of one store call on Redis.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(DEFAULT_STORE_TIMEOUT_MS))
    }

    /// Problems with the backend's own keys, each located under `at`
    /// (`clusters.<name>.store`). Parses the URL; never connects.
    fn validate_backend(&self, at: &str, problems: &mut Vec<String>) {
        let backend = self.backend();
        if backend != StoreBackend::Redis {
            for (key, given) in [
                ("url", self.url.is_some()),
                ("prefix", self.prefix.is_some()),
                ("timeout-ms", self.timeout_ms.is_some()),
            ] {
                if given {
                    problems.push(format!("{at}.{key}: only for backend = \"redis\""));
                }
            }
        }
        match backend {
            StoreBackend::Memory if self.persist.is_some() => problems.push(format!(
                "{at}.persist: a memory store keeps no file (use backend = \"redb\", or remove \
                 persist)"
            )),
            StoreBackend::Redb if self.persist.is_none() => problems.push(format!(
                "{at}.persist: backend = \"redb\" needs the file, e.g. persist = \"store.redb\""
            )),
            StoreBackend::Redis => {
                if self.persist.is_some() {
                    problems.push(format!(
                        "{at}.persist: a Redis store keeps no file (remove persist, or use \
                         backend = \"redb\")"
                    ));
                }
                match &self.url {
                    None => problems.push(format!(
                        "{at}.url: backend = \"redis\" needs the server, e.g. url = \
                         \"redis://127.0.0.1:6379/0\""
                    )),
                    Some(url) => {
                        if let Err(why) = crate::store::redis_backend::check_url(url) {
                            problems.push(format!("{at}.url: {why}"));
                        }
                    }
                }
                if self.prefix.as_deref() == Some("") {
                    problems.push(format!(
                        "{at}.prefix: must not be empty (the store's keys need a namespace of \
                         their own)"
                    ));
                }
                if let Some(ms) = self.timeout_ms {
                    check_range(problems, at, "timeout-ms", ms, 1, 60_000);
                }
            }
            _ => {}
        }
    }

    /// The store's bounds for a cluster serving `tenants` tenants.
    pub fn limits(&self, tenants: usize) -> crate::store::Limits {
        let tenants = tenants.max(1) as u64;
        let max_entries = self.max_entries as u64;
        crate::store::Limits {
            max_entries,
            max_bytes: self.max_bytes,
            max_entries_per_tenant: self
                .max_entries_per_tenant
                .unwrap_or((max_entries / tenants).max(1)),
            max_bytes_per_tenant: self
                .max_bytes_per_tenant
                .unwrap_or((self.max_bytes / tenants).max(1)),
        }
    }
}

/// 100 000 keys.
fn default_max_entries() -> usize {
    100_000
}

/// Retry after a trap.
fn default_retry() -> bool {
    true
}

/// 64 MiB.
fn default_max_bytes() -> u64 {
    64 << 20
}

/// 2 instances.
fn default_instances() -> usize {
    2
}
/// `pooled`.
fn default_policy() -> Policy {
    Policy::Pooled
}
/// 5 seconds.
fn default_timeout_ms() -> u64 {
    5_000
}
/// 256 waiting requests per cluster.
fn default_queue() -> usize {
    256
}
/// 4 requests per instance.
fn default_window() -> usize {
    4
}
/// 64 MiB per instance.
fn default_memory_mb() -> u64 {
    64
}
/// 100 plugin log lines per second per cluster.
fn default_log_per_second() -> u32 {
    100
}

/// Bounds that keep one config line from exhausting the host.
pub const MAX_INSTANCES: usize = 256;
pub const MAX_QUEUE: usize = 100_000;
pub const MAX_WINDOW: usize = 1_024;
pub const MAX_MEMORY_MB: u64 = 4_096;

/// Everything wrong with a config file, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!("{}: cannot read: {e}", path.display())],
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &base).map_err(|mut e| {
            for p in &mut e.problems {
                *p = format!("{}: {p}", path.display());
            }
            e
        })
    }

    /// Parses and validates config text; `base_dir` anchors relative paths.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![e.to_string().trim_end().to_string()],
        })?;
        config.base_dir = base_dir.to_path_buf();
        config.raw = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![e.to_string().trim_end().to_string()],
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything that can be checked without loading components.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if !ids.insert(t.id) {
                problems.push(format!(
                    "tenants[{i}].id: tenant id {} is declared twice",
                    t.id
                ));
            }
            if t.name.trim().is_empty() {
                problems.push(format!("tenants[{i}].name: is empty"));
            } else if !names.insert(t.name.as_str()) {
                problems.push(format!(
                    "tenants[{i}].name: tenant name '{}' is declared twice",
                    t.name
                ));
            }
        }
        let mut seen = HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if t.token.len() < 16 {
                problems.push(format!("tokens[{i}].token: at least 16 characters"));
            }
            if !seen.insert(t.token.as_str()) {
                problems.push(format!("tokens[{i}].token: declared twice"));
            }
            if t.role == Role::Node && t.tenants.is_empty() {
                problems.push(format!(
                    "tokens[{i}].tenants: a node token must name the tenants it may use"
                ));
            }
            if t.role != Role::Node && !t.tenants.is_empty() {
                problems.push(format!(
                    "tokens[{i}].tenants: only node tokens are limited to tenants"
                ));
            }
            for (j, r) in t.tenants.iter().enumerate() {
                if self.tenant(r).is_none() {
                    problems.push(format!(
                        "tokens[{i}].tenants[{j}]: tenant {r} is not declared in [[tenants]]"
                    ));
                }
            }
        }
        for (i, e) in self.embedded_nodes.iter().enumerate() {
            if e.node_id.trim().is_empty() {
                problems.push(format!("embedded-nodes[{i}].node-id: is empty"));
            }
            if e.tenants.is_empty() {
                problems.push(format!("embedded-nodes[{i}].tenants: at least one"));
            }
            for (j, t) in e.tenants.iter().enumerate() {
                if self.tenant(&TenantRef::Id(*t)).is_none() {
                    problems.push(format!("embedded-nodes[{i}].tenants[{j}]: tenant {t} is not declared in [[tenants]]"));
                }
            }
            if !self.tokens.is_empty() && e.token.is_none() {
                problems.push(format!(
                    "embedded-nodes[{i}].token: tokens are configured, so the node needs one"
                ));
            }
        }
        let n = &self.nodes;
        check_range(
            &mut problems,
            "nodes",
            "ping-interval-ms",
            n.ping_interval_ms,
            10,
            600_000,
        );
        check_range(
            &mut problems,
            "nodes",
            "wait-for-node-ms",
            n.wait_for_node_ms,
            0,
            3_600_000,
        );
        check_range(
            &mut problems,
            "nodes",
            "waiting",
            n.waiting as u64,
            0,
            1_000_000,
        );
        check_range(
            &mut problems,
            "nodes",
            "max-interactions",
            n.max_interactions as u64,
            1,
            100_000_000,
        );
        check_range(
            &mut problems,
            "nodes",
            "op-timeout-ms",
            n.op_timeout_ms,
            1,
            3_600_000,
        );
        check_range(
            &mut problems,
            "nodes",
            "max-window",
            u64::from(n.max_window),
            1,
            1_000_000,
        );
        check_range(
            &mut problems,
            "nodes",
            "write-timeout-ms",
            n.write_timeout_ms,
            1,
            3_600_000,
        );
        check_range(
            &mut problems,
            "nodes",
            "hello-timeout-ms",
            n.hello_timeout_ms,
            1,
            600_000,
        );
        check_range(
            &mut problems,
            "nodes",
            "max-sessions",
            n.max_sessions as u64,
            1,
            1_000_000,
        );
        if let Some(mb) = self.runtime.cache_max_mb {
            check_range(&mut problems, "runtime", "cache-max-mb", mb, 1, 1 << 20);
        }
        if self.server.max_body_bytes < 1024 {
            problems.push("server.max-body-bytes: must be at least 1024".into());
        }
        check_range(
            &mut problems,
            "server",
            "max-inflight-body-mb",
            self.server.max_inflight_body_mb,
            1,
            1 << 20,
        );
        if (self.server.max_inflight_body_mb << 20) < self.server.max_body_bytes as u64 {
            problems.push(format!(
                "server.max-inflight-body-mb: {} MiB is less than one request of \
                 server.max-body-bytes ({} bytes)",
                self.server.max_inflight_body_mb, self.server.max_body_bytes
            ));
        }
        let server = &self.server;
        check_range(
            &mut problems,
            "server",
            "max-connections",
            server.max_connections as u64,
            1,
            1_000_000,
        );
        for (field, value) in [
            ("header-read-timeout-ms", server.header_read_timeout_ms),
            ("body-read-timeout-ms", server.body_read_timeout_ms),
            ("idle-timeout-ms", server.idle_timeout_ms),
            ("write-timeout-ms", server.write_timeout_ms),
        ] {
            check_range(&mut problems, "server", field, value, 1, 3_600_000);
        }
        for (name, c) in &self.clusters {
            let at = format!("clusters.{name}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                problems.push(format!(
                    "{at}: cluster names may use letters, digits, '-' and '_' only (they appear in URLs)"
                ));
            }
            if c.service.trim().is_empty() {
                problems.push(format!("{at}.service: is empty"));
            }
            if let Err(e) = self.component_source(&c.component) {
                problems.push(format!("{at}.component: {e}"));
            }
            if c.tenants.is_empty() {
                problems.push(format!(
                    "{at}.tenants: a cluster must serve at least one tenant"
                ));
            }
            for method in c.examples.keys() {
                if let Err(e) = c.example(method).expect("a key of examples") {
                    problems.push(format!("{at}.examples.{method}: {e}"));
                }
            }
            for (i, t) in c.tenants.iter().enumerate() {
                if self.tenant(t).is_none() {
                    problems.push(format!(
                        "{at}.tenants[{i}]: tenant {t} is not declared in [[tenants]]"
                    ));
                }
            }
            check_range(
                &mut problems,
                &at,
                "instances",
                c.instances as u64,
                1,
                MAX_INSTANCES as u64,
            );
            check_range(
                &mut problems,
                &at,
                "window",
                c.window as u64,
                1,
                MAX_WINDOW as u64,
            );
            check_range(
                &mut problems,
                &at,
                "queue",
                c.queue as u64,
                0,
                MAX_QUEUE as u64,
            );
            check_range(
                &mut problems,
                &at,
                "memory-mb",
                c.memory_mb,
                1,
                MAX_MEMORY_MB,
            );
            check_range(&mut problems, &at, "timeout-ms", c.timeout_ms, 1, 3_600_000);
            check_range(
                &mut problems,
                &at,
                "log-per-second",
                u64::from(c.log_per_second),
                1,
                1_000_000,
            );
            if let Some(http) = &c.http {
                check_range(
                    &mut problems,
                    &at,
                    "http.timeout-ms",
                    http.timeout_ms,
                    1,
                    600_000,
                );
                for (i, host) in http.allow.iter().enumerate() {
                    if let Err(why) = crate::runtime::http::check_allow_entry(host) {
                        problems.push(format!("{at}.http.allow[{i}]: {why}"));
                    }
                }
            }
            if let Some(store) = &c.store {
                store.validate_backend(&format!("{at}.store"), &mut problems);
                check_range(
                    &mut problems,
                    &at,
                    "store.max-entries",
                    store.max_entries as u64,
                    1,
                    100_000_000,
                );
                if let Some(n) = store.max_entries_per_tenant {
                    check_range(
                        &mut problems,
                        &at,
                        "store.max-entries-per-tenant",
                        n,
                        1,
                        100_000_000,
                    );
                }
                check_range(
                    &mut problems,
                    &at,
                    "store.max-bytes",
                    store.max_bytes,
                    1,
                    1 << 40,
                );
                if let Some(n) = store.max_bytes_per_tenant {
                    check_range(
                        &mut problems,
                        &at,
                        "store.max-bytes-per-tenant",
                        n,
                        1,
                        1 << 40,
                    );
                }
            }
        }
        for (name, c) in &self.captures {
            c.validate(
                name,
                &self.tenants,
                |codec| self.component_source(codec).map(drop),
                &mut problems,
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The section `key` (`clusters.fax`: a dotted path) as written, for
    /// comparing two configs; `None` when absent.
    pub fn section(&self, key: &str) -> Option<&toml::Value> {
        let mut parts = key.split('.');
        let mut value = self.raw.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(value)
    }

    /// Where capture points keep their folders and state.
    pub fn data_dir(&self) -> PathBuf {
        match &self.data_dir {
            Some(dir) => self.base_dir.join(dir),
            None => PathBuf::from(DEFAULT_DATA_DIR),
        }
    }

    /// Points the clusters at the demo's mock peers where they listen,
    /// `at`: every cluster `config` value and `http.allow` entry naming
    /// the address `[demo] mock-peers` was written with (as
    /// `127.0.0.1:8091`, or `127.0.0.1:0` for a port picked at start)
    /// names `at` instead. Nothing changes when they are the same.
    pub fn point_demo_peers_at(&mut self, at: SocketAddr) {
        let Some(written) = self.demo.mock_peers else {
            return;
        };
        if written == at {
            return;
        }
        let (from, to) = (written.to_string(), at.to_string());
        for cluster in self.clusters.values_mut() {
            for value in cluster.config.values_mut() {
                *value = replace_address(value, &from, &to);
            }
            if let Some(http) = &mut cluster.http {
                for host in &mut http.allow {
                    if *host == from {
                        host.clone_from(&to);
                    }
                }
            }
        }
    }

    /// The declared tenant a reference names.
    pub fn tenant(&self, r: &TenantRef) -> Option<&TenantConfig> {
        crate::tenant::find(&self.tenants, r.key())
    }

    /// Where a cluster's component comes from: `builtin:<name>`, or a
    /// path relative to the config file.
    pub fn component_source(&self, component: &str) -> Result<ComponentSource, String> {
        if let Some(name) = component.strip_prefix("builtin:") {
            return if crate::builtin::get(name).is_some() {
                Ok(ComponentSource::Builtin(name.to_string()))
            } else {
                Err(format!(
                    "no builtin component '{name}' (builtins: {})",
                    crate::builtin::names().join(", ")
                ))
            };
        }
        let path = self.base_dir.join(component);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(ComponentSource::File(path)),
            Ok(meta) if meta.is_dir() => Err(format!(
                "component {} is a directory, not a .wasm file",
                path.display()
            )),
            Ok(_) => Err(format!(
                "component {} is not a regular file (a device, socket or pipe?)",
                path.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(format!("component file {} does not exist", path.display()))
            }
            Err(e) => Err(format!("component file {}: {e}", path.display())),
        }
    }
}

/// `text` with each `from` (a `host:port`) that is not followed by
/// another digit of a port replaced by `to`.
fn replace_address(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn check_range(problems: &mut Vec<String>, at: &str, field: &str, value: u64, min: u64, max: u64) {
    if value < min || value > max {
        problems.push(format!("{at}.{field}: {value} is outside {min}..={max}"));
    }
}

/// A component's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    Builtin(String),
    File(PathBuf),
}

impl ComponentSource {
    pub fn bytes(&self) -> std::io::Result<std::borrow::Cow<'static, [u8]>> {
        match self {
            ComponentSource::Builtin(name) => Ok(std::borrow::Cow::Borrowed(
                crate::builtin::get(name).expect("validated builtin name"),
            )),
            ComponentSource::File(path) => std::fs::read(path).map(std::borrow::Cow::Owned),
        }
    }
}

impl std::fmt::Display for ComponentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComponentSource::Builtin(name) => write!(f, "builtin:{name}"),
            ComponentSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [[tenants]]
        id = 101
        name = "Environment"

        [clusters.fax]
        service = "Fax"
        component = "builtin:fax"
        tenants = [101, "Environment"]
    "#;

    #[test]
    fn clusters_follow_the_demo_peers_where_they_listen() {
        let text = format!(
            "{GOOD}\nconfig = {{ gateway-url = \"http://127.0.0.1:8091/fax/send\", other = \"127.0.0.1:80911\" }}\n\
             http = {{ allow = [\"127.0.0.1:8091\", \"example.com\"] }}\n\
             [demo]\nmock-peers = \"127.0.0.1:8091\"\n"
        );
        let mut c = Config::parse(&text, Path::new(".")).unwrap();
        c.point_demo_peers_at("127.0.0.1:8091".parse().unwrap());
        assert_eq!(
            c.clusters["fax"].config["gateway-url"],
            "http://127.0.0.1:8091/fax/send"
        );
        c.point_demo_peers_at("127.0.0.1:40123".parse().unwrap());
        let fax = &c.clusters["fax"];
        assert_eq!(fax.config["gateway-url"], "http://127.0.0.1:40123/fax/send");
        assert_eq!(
            fax.http.as_ref().unwrap().allow,
            ["127.0.0.1:40123", "example.com"]
        );
        // A longer port that starts the same is another address.
        assert_eq!(fax.config["other"], "127.0.0.1:80911");
    }

    #[test]
    fn examples_are_esp_parameters_or_a_problem_naming_the_method() {
        let text = format!(
            "{GOOD}\n[clusters.fax.examples]\nSendFax = {{ To = \"+14155550100\", Pages = 2, Cover = {{ Title = \"a\" }} }}\n"
        );
        let c = Config::parse(&text, Path::new(".")).unwrap();
        assert_eq!(
            c.clusters["fax"].example("SendFax"),
            Some(Ok(
                r#"{"To":"+14155550100","Pages":2,"Cover":{"Title":"a"}}"#.to_string()
            ))
        );
        assert_eq!(c.clusters["fax"].example("Other"), None);
        let text = format!(
            "{GOOD}\n[clusters.fax.examples]\nSendFax = {{ Ratio = 0.5 }}\nGetFaxStatus = \"x\"\n"
        );
        let problems = Config::parse(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            problems.contains("clusters.fax.examples.SendFax: "),
            "{problems}"
        );
        assert!(
            problems.contains("clusters.fax.examples.GetFaxStatus: must be a table"),
            "{problems}"
        );
    }

    #[test]
    fn a_good_config_gets_its_defaults() {
        let c = Config::parse(GOOD, Path::new(".")).unwrap();
        let fax = &c.clusters["fax"];
        assert_eq!(fax.instances, 2);
        assert_eq!(fax.policy, Policy::Pooled);
        assert_eq!(c.server.listen, default_listen());
        assert_eq!(c.runtime.cache_max_bytes(), 2048 << 20);
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(c.server.header_read_timeout(), Duration::from_secs(30));
        assert_eq!(c.server.body_read_timeout(), Duration::from_secs(60));
        assert_eq!(c.server.idle_timeout(), Duration::from_secs(60));
        assert_eq!(c.server.write_timeout(), Duration::from_secs(30));
    }

    #[test]
    fn a_store_backend_is_chosen_and_checked_with_its_place() {
        let with = |store: &str| {
            Config::parse(
                &format!("{GOOD}\n[clusters.fax.store]\n{store}"),
                Path::new("."),
            )
        };
        let c = with("").unwrap();
        let s = c.clusters["fax"].store.as_ref().unwrap();
        assert_eq!(s.backend(), StoreBackend::Memory);
        let c = with("persist = \"f.redb\"").unwrap();
        let s = c.clusters["fax"].store.as_ref().unwrap();
        assert_eq!(s.backend(), StoreBackend::Redb);
        let c = with("backend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"").unwrap();
        let s = c.clusters["fax"].store.as_ref().unwrap();
        assert_eq!(s.backend(), StoreBackend::Redis);
        assert_eq!(s.prefix("fax"), "wasp:fax:");
        assert_eq!(s.timeout(), Duration::from_millis(DEFAULT_STORE_TIMEOUT_MS));
        for (store, problem) in [
            (
                "backend = \"redis\"",
                "clusters.fax.store.url: backend = \"redis\" needs the server",
            ),
            (
                "backend = \"redis\"\nurl = \"http://x\"",
                "clusters.fax.store.url: 'http://x' is not a Redis URL",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://u:secret@h:1/0\"\nprefix = \"\"\n\
                 timeout-ms = 0\npersist = \"f.redb\"",
                "clusters.fax.store.prefix: must not be empty",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1/0\"\ntimeout-ms = 0",
                "clusters.fax.store.timeout-ms: 0 is outside 1..=60000",
            ),
            (
                "backend = \"redis\"\nurl = \"redis://h:1/0\"\npersist = \"f.redb\"",
                "clusters.fax.store.persist: a Redis store keeps no file",
            ),
            (
                "url = \"redis://h:1/0\"",
                "clusters.fax.store.url: only for backend = \"redis\"",
            ),
            (
                "backend = \"redb\"",
                "clusters.fax.store.persist: backend = \"redb\" needs the file",
            ),
            (
                "backend = \"memory\"\npersist = \"f.redb\"",
                "clusters.fax.store.persist: a memory store keeps no file",
            ),
        ] {
            let e = with(store).unwrap_err().to_string();
            assert!(e.contains(problem), "{store}: {e}");
            assert!(!e.contains("secret"), "a password in a message: {e}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = r#"
            [runtime]
            cache-max-mb = 0

            [server]
            max-connections = 0
            header-read-timeout-ms = 0

            [[tenants]]
            id = 101
            name = "A"
            [[tenants]]
            id = 101
            name = "A"

            [clusters."bad name"]
            service = ""
            component = "builtin:nope"
            tenants = [103]
            instances = 0
            [clusters."bad name".http]
            allow = ["::1", "h:99999", "*"]
        "#;
        let err = Config::parse(text, Path::new(".")).unwrap_err();
        let all = err.to_string();
        for want in [
            "tenants[1].id: tenant id 101 is declared twice",
            "tenants[1].name: tenant name 'A' is declared twice",
            "clusters.bad name: cluster names may use",
            "clusters.bad name.service: is empty",
            "clusters.bad name.component: no builtin component 'nope'",
            "clusters.bad name.tenants[0]: tenant 103 is not declared",
            "clusters.bad name.instances: 0 is outside 1..=256",
            "runtime.cache-max-mb: 0 is outside 1..=1048576",
            "clusters.bad name.http.allow[0]: '::1': write IPv6 addresses in brackets",
            "clusters.bad name.http.allow[1]: 'h:99999': port",
            "clusters.bad name.http.allow[2]: '*': wildcards",
            "server.max-connections: 0 is outside 1..=1000000",
            "server.header-read-timeout-ms: 0 is outside 1..=3600000",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn a_component_path_that_is_no_file_says_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            base_dir: dir.path().to_path_buf(),
            ..Config::parse(GOOD, Path::new(".")).unwrap()
        };
        let err = config.component_source(".").unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        let err = config.component_source("/dev/null").unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        let err = config.component_source("missing.wasm").unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let err = Config::parse(&format!("{GOOD}\nwindoww = 3\n"), Path::new(".")).unwrap_err();
        let all = err.to_string();
        assert!(all.contains("windoww"), "{all}");
        assert!(all.contains("line"), "{all}");
    }
}
