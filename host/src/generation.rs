//! One loaded config: its tenants, tokens and clusters (and, as capture
//! points land, its capture points), built whole before it serves.
//!
//! A [`Generation`] lives as long as something uses it: the [`Host`]
//! holds the current one behind one atomic pointer, and every request
//! takes its own reference at the start, so a request that began on one
//! generation finishes on it even if another is installed meanwhile (the
//! operations issue's hot-loading builds on this). What lives as long as
//! the process — the wasmtime engine, node sessions, metrics, the listener —
//! is not here but in [`crate::host`].
//!
//! [`Host`]: crate::host::Host

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;

use crate::admin::metrics::Metrics;
use crate::auth::Auth;
use crate::capture::CapturePoint;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::runtime::Runtime;
use crate::store;
use crate::tenant::TenantConfig;

/// One loaded configuration, ready to serve.
pub struct Generation {
    /// The config it was built from.
    pub config: Config,
    pub auth: Auth,
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    /// Capture points, built (codec loaded, rules compiled) but started
    /// only by [`Generation::start_captures`].
    pub captures: BTreeMap<String, Arc<CapturePoint>>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("clusters", &self.clusters.keys().collect::<Vec<_>>())
            .field("captures", &self.captures.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Generation {
    /// A generation that is no longer used stops its capture points (their
    /// tasks hold the capture point, not the generation).
    fn drop(&mut self) {
        for cp in self.captures.values() {
            cp.stop();
        }
    }
}

/// Every problem found while starting clusters, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct StartError {
    pub problems: Vec<String>,
}

impl Generation {
    /// Starts every cluster of `config` on `runtime` (compile or load from
    /// cache, instantiate, check the service type) and builds every capture
    /// point (loads its codec). All are tried so that every problem is
    /// reported at once.
    pub async fn build(
        config: Config,
        runtime: &Runtime,
        metrics: &Metrics,
        stores: store::Open,
    ) -> Result<Generation> {
        let mut clusters = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, cc) in &config.clusters {
            match Cluster::start(runtime, &config, name, metrics, stores).await {
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
        let mut captures = BTreeMap::new();
        for name in config.captures.keys() {
            let cc = &config.captures[name];
            match CapturePoint::build(name, cc, &config, runtime, metrics).await {
                Ok(cp) => {
                    tracing::info!(
                        capture = %name,
                        codec = %cp.codec_source,
                        directory = %cp.directory.display(),
                        "capture point built"
                    );
                    captures.insert(name.clone(), Arc::new(cp));
                }
                Err(err) => problems.push(format!("captures.{name}: {err:#}")),
            }
        }
        if !problems.is_empty() {
            return Err(StartError { problems }.into());
        }
        Ok(Generation {
            auth: Auth::from_config(&config),
            config,
            clusters,
            captures,
        })
    }

    /// Opens every capture point's folders and state and starts taking
    /// items, sending operations to `nodes`. Each stops when `stop` is
    /// cancelled or this generation is dropped. Every problem is reported
    /// at once; capture points that started keep running.
    pub fn start_captures(
        &self,
        nodes: &Arc<crate::node::Nodes>,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<()> {
        let tenants: Arc<[TenantConfig]> = Arc::from(self.config.tenants.clone());
        let mut problems = Vec::new();
        for (name, cp) in &self.captures {
            if let Err(err) = cp.start(nodes.clone(), tenants.clone(), stop) {
                problems.push(format!("captures.{name}: {err:#}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StartError { problems }.into())
        }
    }

    /// The tenants this generation knows.
    pub fn tenants(&self) -> &[TenantConfig] {
        &self.config.tenants
    }
}
