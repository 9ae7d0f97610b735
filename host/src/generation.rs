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
use tracing::Instrument as _;

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

/// The SHA-256 of a component a config names, if it can be read.
fn component_sha(config: &Config, component: &str) -> Option<String> {
    let source = config.component_source(component).ok()?;
    let bytes = source.bytes().ok()?;
    Some(crate::runtime::sha256_hex(&bytes))
}

/// Every problem found while starting clusters, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct StartError {
    pub problems: Vec<String>,
}

/// What a generation took over from the one before it unchanged, what it
/// started anew, and what it no longer has (`clusters.fax`,
/// `captures.orders`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Changes {
    pub started: Vec<String>,
    pub kept: Vec<String>,
    pub removed: Vec<String>,
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
        Generation::build_next(config, runtime, metrics, stores, None)
            .await
            .map(|(generation, _)| generation)
    }

    /// [`Generation::build`], taking over from `previous` every cluster and
    /// capture point whose section and component are unchanged (the same
    /// `Arc`: its instances are not restarted, its counters go on), as long
    /// as the tenants are unchanged too. A changed cluster whose store file
    /// the previous one has open takes that store over.
    pub async fn build_next(
        config: Config,
        runtime: &Runtime,
        metrics: &Metrics,
        stores: store::Open,
        previous: Option<&Generation>,
    ) -> Result<(Generation, Changes)> {
        let before = previous;
        let previous = previous.filter(|p| {
            p.config.section("tenants") == config.section("tenants")
                && p.config.base_dir == config.base_dir
                && p.config.server.max_body_bytes == config.server.max_body_bytes
                && p.config.data_dir() == config.data_dir()
        });
        let mut changes = Changes::default();
        let mut clusters = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, cc) in &config.clusters {
            let key = format!("clusters.{name}");
            let old = previous.and_then(|p| Some((p, p.clusters.get(name)?)));
            if let Some((p, old)) = old
                && p.config.section(&key) == config.section(&key)
                && component_sha(&config, &cc.component).as_deref() == Some(old.sha256.as_str())
            {
                clusters.insert(name.clone(), old.clone());
                changes.kept.push(key);
                continue;
            }
            // A store file the previous generation has open is taken over.
            let shared = previous.and_then(|p| {
                let path = cc.store.as_ref()?.persist.as_ref()?;
                p.clusters.iter().find_map(|(n, c)| {
                    let theirs = p.config.clusters.get(n)?.store.as_ref()?.persist.as_ref()?;
                    (theirs == path)
                        .then(|| c.store_handle().cloned())
                        .flatten()
                })
            });
            let starting = Cluster::start_sharing(runtime, &config, name, metrics, stores, shared)
                .instrument(tracing::info_span!("cluster", name = %name));
            match starting.await {
                Ok(cluster) => {
                    tracing::info!(
                        cluster = %name,
                        service = %cluster.service,
                        instances = cc.instances,
                        cached = cluster.from_cache,
                        "cluster started"
                    );
                    clusters.insert(name.clone(), Arc::new(cluster));
                    changes.started.push(key);
                }
                Err(err) => problems.push(format!("{key}: {err:#}")),
            }
        }
        let mut captures = BTreeMap::new();
        for (name, cc) in &config.captures {
            let key = format!("captures.{name}");
            let old = previous.and_then(|p| Some((p, p.captures.get(name)?)));
            if let Some((p, old)) = old
                && p.config.section(&key) == config.section(&key)
                && component_sha(&config, &cc.codec).as_deref() == Some(old.codec.sha256())
            {
                captures.insert(name.clone(), old.clone());
                changes.kept.push(key);
                continue;
            }
            let building = CapturePoint::build(name, cc, &config, runtime, metrics)
                .instrument(tracing::info_span!("capture", name = %name));
            match building.await {
                Ok(cp) => {
                    tracing::info!(
                        capture = %name,
                        codec = %cp.codec_source,
                        directory = %cp.directory.display(),
                        "capture point built"
                    );
                    captures.insert(name.clone(), Arc::new(cp));
                    changes.started.push(key);
                }
                Err(err) => problems.push(format!("{key}: {err:#}")),
            }
        }
        if !problems.is_empty() {
            return Err(StartError { problems }.into());
        }
        if let Some(p) = before {
            for name in p.clusters.keys().filter(|n| !clusters.contains_key(*n)) {
                changes.removed.push(format!("clusters.{name}"));
            }
            for name in p.captures.keys().filter(|n| !captures.contains_key(*n)) {
                changes.removed.push(format!("captures.{name}"));
            }
        }
        Ok((
            Generation {
                auth: Auth::from_config(&config),
                config,
                clusters,
                captures,
            },
            changes,
        ))
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
