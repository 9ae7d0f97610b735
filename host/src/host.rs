//! What lives as long as the process: the wasmtime runtime (engine,
//! linker, instance pool, component cache), node sessions and the node
//! router, metrics, the listener's settings and body budget — and the
//! current [`Generation`] behind one atomic pointer.
//!
//! Installing another generation swaps that pointer and nothing else: node
//! sessions stay connected, requests in flight finish on the generation
//! they started on. The instance pool is sized once, from `[runtime]`,
//! with room for a later generation (see [`pool_size`]).

use std::sync::Arc;

use anyhow::Result;
use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::admin::metrics::Metrics;
use crate::config::{Config, Policy, ServerConfig};
use crate::generation::Generation;
use crate::node;
use crate::runtime::{ComponentCache, PoolSize, Runtime};
use crate::store;

/// The process: everything that outlives one loaded config.
pub struct Host {
    pub runtime: Runtime,
    pub nodes: Arc<node::Nodes>,
    pub metrics: Metrics,
    /// `[server]` as the process started with it: the listener's bounds
    /// and timeouts.
    pub server: ServerConfig,
    /// Bytes of request bodies held now, all requests together
    /// (`server.max-inflight-body-mb`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the process stops: capture points stop taking items.
    pub stopping: CancellationToken,
    /// Reload source, history and the config to roll back to.
    pub reloads: crate::reload::Reloads,
    /// Room for dashboard streams (`admin::dashboard::MAX_STREAMS`).
    pub dashboards: Arc<tokio::sync::Semaphore>,
    current: ArcSwap<Generation>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("generation", &self.current.load())
            .finish()
    }
}

impl Host {
    /// Builds the runtime and the first generation from `config`, and
    /// starts its capture points.
    pub async fn start(config: Config) -> Result<Host> {
        let host = Host::start_with(config, store::Open::Persisted).await?;
        host.current().start_captures(&host.nodes, &host.stopping)?;
        Ok(host)
    }

    /// Builds everything as [`Host::start`] does but opens no persisted
    /// store (each cluster gets an empty store in memory) and starts no
    /// capture point, so it touches no file (`wasp check`).
    pub async fn start_for_check(config: Config) -> Result<Host> {
        Host::start_with(config, store::Open::MemoryOnly).await
    }

    async fn start_with(config: Config, stores: store::Open) -> Result<Host> {
        let runtime = runtime_for(&config)?;
        let metrics = Metrics::new();
        let nodes = Arc::new(node::Nodes::new(&config.nodes));
        metrics.register_counter(
            "notifications_dropped",
            "Node notifications dropped because a capture point's buffer was full",
            nodes.dropped_notifications.clone(),
        );
        let body_budget = Arc::new(tokio::sync::Semaphore::new(
            (config.server.max_inflight_body_mb << 20) as usize,
        ));
        let server = config.server.clone();
        let generation = Generation::build(config, &runtime, &metrics, stores).await?;
        Ok(Host {
            runtime,
            nodes,
            metrics,
            server,
            body_budget,
            stopping: CancellationToken::new(),
            reloads: crate::reload::Reloads::default(),
            dashboards: Arc::new(tokio::sync::Semaphore::new(
                crate::admin::dashboard::MAX_STREAMS,
            )),
            current: ArcSwap::from_pointee(generation),
        })
    }

    /// The generation serving now. A caller keeps it for the whole of one
    /// request, so the request sees one config from start to end.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Stops every capture point of the serving generation and waits, up
    /// to `bound` in all, until the items each had in flight are finished
    /// (answered, moved, committed) or back in their source. Whether all
    /// did within the bound.
    pub async fn drain_captures(&self, bound: std::time::Duration) -> bool {
        let now = self.current();
        let all = now.captures.values().map(|cp| cp.stop_and_wait(bound));
        futures_util::future::join_all(all)
            .await
            .into_iter()
            .all(|drained| drained)
    }

    /// Forgets the loaded components `generation` does not run (after a
    /// switch, or a reload that failed after loading some).
    pub fn keep_loaded_of(&self, generation: &Generation) {
        let used: std::collections::HashSet<&str> = generation
            .clusters
            .values()
            .map(|c| c.sha256.as_str())
            .chain(generation.captures.values().map(|cp| cp.codec.sha256()))
            .collect();
        self.runtime.keep_loaded(&used);
    }

    /// Makes `next` the serving generation and returns the one it
    /// replaces (still alive while requests hold it). The replaced one's
    /// capture points that `next` did not take over are told to stop.
    pub fn install(&self, next: Generation) -> Arc<Generation> {
        let old = self.current.swap(Arc::new(next));
        let now = self.current();
        for (name, cp) in &old.captures {
            if !now.captures.get(name).is_some_and(|n| Arc::ptr_eq(n, cp)) {
                cp.stop();
            }
            if !now.captures.contains_key(name) {
                self.metrics.forget_capture(name);
            }
        }
        self.keep_loaded_of(&now);
        // Series of what is gone go with it; a cluster that kept its name
        // keeps its counters (and drops the slots it no longer has).
        for (name, cluster) in &old.clusters {
            let slots = cluster.snapshot().instances.len();
            match now.clusters.get(name) {
                None => self.metrics.forget_cluster(name, slots),
                Some(next) => {
                    let kept = next.snapshot().instances.len();
                    if kept < slots {
                        self.metrics.forget_instances(name, kept..slots);
                    }
                }
            }
        }
        old
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stopping.cancel();
    }
}

/// The runtime a config asks for: its component cache (`[runtime]
/// cache-dir`, `no-cache`, the cache's bound) and its pool sizes.
pub(crate) fn runtime_for(config: &Config) -> Result<Runtime> {
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
    Runtime::new(pool_size(config), cache)
}

/// Pool sizes for the process: `runtime.max-instances` and
/// `runtime.max-memory-mb` when set, else twice what the first config
/// needs (every pooled instance plus room for the `describe` probe,
/// per-request instances and replacements) plus 64, at least 256 slots
/// and 256 MiB, so a later generation with more or larger instances fits.
pub fn pool_size(config: &Config) -> PoolSize {
    let instances: usize = config.clusters.values().map(|c| c.instances).sum();
    let clusters = config.clusters.len();
    let per_request: usize = config
        .clusters
        .values()
        .filter(|c| c.policy == Policy::PerRequest)
        .map(|c| c.instances)
        .sum();
    // Each capture point's codec: two instances and a replacement.
    let codecs = config.captures.len() * 3;
    let needed = (instances + per_request + clusters * 2 + codecs + 16) as u32;
    let slots = config
        .runtime
        .max_instances
        .unwrap_or_else(|| (needed * 2 + 64).max(256));
    let largest = config
        .clusters
        .values()
        .map(|c| c.memory_mb)
        .chain(config.captures.values().map(|c| c.codec_memory_mb))
        .max()
        .unwrap_or(64);
    let max_memory_mb = config
        .runtime
        .max_memory_mb
        .unwrap_or_else(|| largest.max(256));
    PoolSize {
        instances: slots,
        concurrent_calls: slots,
        max_memory: max_memory_mb << 20,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp;

    fn echo_config(instances: usize) -> Config {
        let text = format!(
            "[runtime]\nno-cache = true\n[[tenants]]\nid = 101\nname = \"T\"\n\
             [clusters.echo]\nservice = \"Echo\"\ncomponent = \"builtin:echo\"\n\
             tenants = [101]\ninstances = {instances}\n"
        );
        Config::parse(&text, std::path::Path::new(".")).unwrap()
    }

    /// The pool is sized once, with room: a later generation with many
    /// more instances than the first config had still fits, and once
    /// installed it serves while the old one stays usable for whoever
    /// holds it.
    #[tokio::test]
    async fn a_larger_generation_fits_the_pool_and_swaps_in() {
        let host = Host::start(echo_config(1)).await.unwrap();
        let first = host.current();
        let next = Generation::build(
            echo_config(100),
            &host.runtime,
            &host.metrics,
            store::Open::MemoryOnly,
        )
        .await
        .expect("a generation with 100 instances fits the pool the first config sized");
        let old = host.install(next);
        assert!(Arc::ptr_eq(&old, &first));
        assert_eq!(host.current().clusters["echo"].live_instances(), 100);
        let req = esp::parse(
            br#"{"Request":{"Service":"Echo","Method":"Echo","TenantId":101,"Parameters":{"Text":"hi"}}}"#,
        )
        .unwrap();
        for generation in [host.current(), old] {
            let kv = esp::dispatch(&generation, &host.metrics, "echo", &req, None)
                .await
                .unwrap();
            assert!(kv.get("Text").is_some(), "{kv:?}");
        }
    }

    /// Replacing a generation stops its capture points (and so frees their
    /// state files for the next one), while the host and its node
    /// sessions go on.
    #[tokio::test]
    async fn a_replaced_generation_stops_its_capture_points() {
        let dir = tempfile::tempdir().unwrap();
        let text = "data-dir = \"data\"\n[runtime]\nno-cache = true\n\
                    [[tenants]]\nid = 101\nname = \"T\"\n\
                    [captures.orders]\nadapter = \"file\"\ndefault-values = { TenantId = 101 }\n";
        let config = Config::parse(text, dir.path()).unwrap();
        let host = Host::start(config).await.unwrap();
        let orders = host.current().captures["orders"].clone();
        assert!(dir.path().join("data/orders/inbound").is_dir());
        assert!(!orders.stopped().is_cancelled());
        let next = Generation::build(
            echo_config(1),
            &host.runtime,
            &host.metrics,
            store::Open::MemoryOnly,
        )
        .await
        .unwrap();
        drop(host.install(next));
        assert!(orders.stopped().is_cancelled());
    }
}
