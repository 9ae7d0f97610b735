//! # wasp — a WebAssembly-pluggable ESP gateway
//!
//! Interaction Server nodes send ESP requests (`Request3rdServer`); wasp
//! routes each to a named **Application Cluster** whose instances are
//! sandboxed Wasm components of one service type, so fax and IM never mix.
//!
//! ```text
//!  POST /v1/esp/{cluster}          esp::http      thin handler
//!        │                         esp::parse     JSON → EspRequest (3000)
//!        ▼                         esp::dispatch  cluster, tenant, service,
//!  Gateway.clusters[cluster]                      method checks (2001/3001/2000)
//!        │                         cluster        queue + window + p2c
//!        ▼                                        (3003, 3002, retry → 2002)
//!  Instance (Store per instance)   runtime        wasmtime, pooling allocator,
//!        │                                        epoch deadlines, disk cache
//!        ▼
//!  Event3rdServerResponse / Event3rdServerFault
//! ```
//!
//! Module by module:
//! - [`config`]: TOML, validated as a whole before anything starts.
//! - [`kv`]: Genesys KV lists ⇄ JSON ⇄ the WIT arena.
//! - [`runtime`]: engine, linker, component cache, instances, limits.
//! - [`cluster`]: Application Clusters and the balancer.
//! - [`esp`]: the ESP ingress and the fault codes.
//! - [`admin`]: health, readiness, metrics, admin API.
//! - [`auth`]: bearer tokens and roles.
//! - [`tenant`]: tenants, the one lookup by id or name, capture points'
//!   tenant mapping.
//! - [`capture`]: capture points: their state across restarts.
//! - [`listener`]: the HTTP listener: connection cap and timeouts.
//! - [`loopback`]: without tokens, keeps web pages out (Host, Origin,
//!   Content-Type).
//! - [`node`]: Interaction Server node sessions, the node router.
//! - [`tools`]: clients outside the core: node-sim, the bench, the demo's
//!   mock peers.

pub mod admin;
pub mod auth;
pub mod builtin;
pub mod capture;
pub mod cluster;
pub mod config;
pub mod esp;
pub mod kv;
pub mod listener;
pub mod loopback;
pub mod node;
pub mod runtime;
pub mod store;
pub mod tenant;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use admin::metrics::Metrics;
use cluster::Cluster;
use config::{Config, Policy};
use runtime::{ComponentCache, PoolSize, Runtime};

/// One loaded configuration: the runtime and every cluster, ready to serve.
pub struct Gateway {
    pub config: Config,
    pub runtime: Runtime,
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    pub metrics: Metrics,
    pub nodes: node::Nodes,
    pub auth: auth::Auth,
    /// Bytes of request bodies held now, all requests together
    /// (`server.max-inflight-body-mb`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("clusters", &self.clusters.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Every problem found while starting clusters, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct StartError {
    pub problems: Vec<String>,
}

impl Gateway {
    /// Builds the runtime and starts every cluster (compile or load from
    /// cache, instantiate, check the service type). All clusters are tried
    /// so that every problem is reported at once.
    pub async fn start(config: Config) -> Result<Gateway> {
        Gateway::start_with(config, store::Open::Persisted).await
    }

    /// Starts everything as [`Gateway::start`] does but opens no persisted
    /// store: each cluster gets an empty store in memory (`wasp check`).
    pub async fn start_for_check(config: Config) -> Result<Gateway> {
        Gateway::start_with(config, store::Open::MemoryOnly).await
    }

    async fn start_with(config: Config, stores: store::Open) -> Result<Gateway> {
        let pool = pool_size(&config);
        let cache = if config.runtime.no_cache {
            ComponentCache::new(None)
        } else {
            ComponentCache::new(
                config
                    .runtime
                    .cache_dir
                    .clone()
                    .or_else(ComponentCache::default_dir),
            )
            .with_max_bytes(config.runtime.cache_max_bytes())
        };
        let runtime = Runtime::new(pool, cache)?;
        let metrics = Metrics::new();
        let mut clusters = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, cc) in &config.clusters {
            let started = Cluster::start(&runtime, &config, name, &metrics, stores).await;
            match started {
                Ok(cluster) => {
                    tracing::info!(
                        cluster = %name,
                        service = %cluster.service,
                        instances = cc.instances,
                        cached = cluster.from_cache,
                        "cluster started"
                    );
                    clusters.insert(name.clone(), Arc::new(cluster));
                }
                Err(err) => problems.push(format!("clusters.{name}: {err:#}")),
            }
        }
        if !problems.is_empty() {
            return Err(StartError { problems }.into());
        }
        let nodes = node::Nodes::new(&config.nodes);
        metrics.register_counter(
            "notifications_dropped",
            "Node notifications dropped because a capture point's buffer was full",
            nodes.dropped_notifications.clone(),
        );
        let body_budget = Arc::new(tokio::sync::Semaphore::new(
            (config.server.max_inflight_body_mb << 20) as usize,
        ));
        Ok(Gateway {
            body_budget,
            nodes,
            auth: auth::Auth::from_config(&config),
            config,
            runtime,
            clusters,
            metrics,
        })
    }
}

/// Pool sizes for the whole config: every pooled instance plus room for
/// the `describe` probe, per-request instances and replacements.
fn pool_size(config: &Config) -> PoolSize {
    let instances: usize = config.clusters.values().map(|c| c.instances).sum();
    let clusters = config.clusters.len();
    let per_request: usize = config
        .clusters
        .values()
        .filter(|c| c.policy == Policy::PerRequest)
        .map(|c| c.instances)
        .sum();
    let max_memory_mb = config
        .clusters
        .values()
        .map(|c| c.memory_mb)
        .max()
        .unwrap_or(64);
    PoolSize {
        instances: (instances + per_request + clusters * 2 + 16) as u32,
        concurrent_calls: (instances + clusters * 2 + 16) as u32,
        max_memory: max_memory_mb << 20,
    }
}

/// The HTTP surface. A function of the state, so tests serve it on
/// `127.0.0.1:0` and talk to it over real sockets.
pub fn app(gw: Arc<Gateway>) -> Router {
    let admin = Router::new()
        .route("/v1/admin/clusters", get(admin::clusters))
        .route("/v1/admin/nodes", get(admin::nodes))
        .route_layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            admin::require_admin,
        ));
    // The JSON check runs for POST only: another method is answered 405.
    let esp = post(esp::http::handle).route_layer(axum::middleware::from_fn_with_state(
        gw.clone(),
        loopback::require_json,
    ));
    Router::new()
        .route("/v1/esp/{cluster}", esp)
        .route("/v1/nodes/connect", get(node::session::connect))
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .merge(admin)
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            loopback::require_loopback,
        ))
        .layer(axum::middleware::from_fn(esp::http::fault_bodies))
        .with_state(gw)
}

/// Serves `app` until `shutdown` is cancelled, then closes node sessions
/// and drains in-flight requests; connections are bounded and timed as
/// `[server]` says (see [`listener`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    gw: Arc<Gateway>,
    shutdown: CancellationToken,
) -> Result<()> {
    listener::serve(listener, gw, shutdown)
        .await
        .context("serve HTTP")
}
