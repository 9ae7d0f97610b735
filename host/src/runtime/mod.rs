//! The Wasm runtime: one wasmtime `Engine` + `Linker` per process, one
//! compiled `Component` + `InstancePre` per loaded component, one `Store`
//! per instance (the three lifetimes of Spin and `wasmtime serve`).
//!
//! - **Pooling allocator**, tuned for per-request instances: no
//!   copy-on-write or guard tricks, so resetting a slot is a memset rather
//!   than madvise and page faults that contend across threads.
//! - **Compile once**: compiled components are cached on disk by content
//!   hash and engine compatibility hash; a second start deserializes.
//! - **Deadlines by epoch**: a ticker thread bumps the engine epoch every
//!   `EPOCH_TICK`; each call sets an absolute deadline and the store's
//!   epoch callback yields to tokio until it passes, then interrupts.
//! - **Capabilities denied by default**: WASI is linked with an empty
//!   context (no preopens, env, args or sockets) because Rust's std on
//!   wasm32-wasip2 imports it even when unused.
//! - **Two worlds**: ESP services (`wasp:esp/service`, [`bindings`]) and
//!   capture codecs (`wasp:capture/codec`, [`codec`]) share the engine,
//!   the linker, the cache ([`Runtime::compile`]) and the store hardening.

pub mod bindings;
mod cache;
pub mod codec;
pub mod http;
mod instance;
pub mod log;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use cache::ComponentCache;

/// The SHA-256 (hex) a component's bytes are known by (cache key, admin API).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    cache::hex(&sha2::Sha256::digest(bytes))
}
pub use instance::{CallError, HostState, Instance, InstanceSpec};

/// How often the engine epoch advances. Deadlines are checked, and a
/// long-running guest yields to other tasks on its worker thread, at this
/// granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Sizes the instance pool needs; computed from the whole config.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Component instances alive at once (all clusters, plus headroom for
    /// replacements and the `describe` probe at load time).
    pub instances: u32,
    /// Calls in flight at once (each needs a fiber stack).
    pub concurrent_calls: u32,
    /// The largest linear memory any instance may have, in bytes.
    pub max_memory: u64,
}

/// The process-wide engine and linker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    /// Components loaded for the serving generation, by SHA-256: a reload
    /// that keeps a component (a cluster given more instances, a changed
    /// config value) reuses it instead of loading it again, so its
    /// instances keep their warm slots in the pool, and a reload neither
    /// reads the disk cache nor warms fresh slots for the same code.
    /// Pruned to what the serving generation uses at each switch.
    loaded: std::sync::Mutex<std::collections::HashMap<String, Component>>,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.cache)
            .finish()
    }
}

/// A component compiled and pre-linked, ready to instantiate, with what it
/// says it serves.
pub struct LoadedComponent {
    pub pre: bindings::EspServicePre<HostState>,
    pub info: bindings::ServiceInfo,
    pub sha256: String,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
}

impl Runtime {
    pub fn new(pool: PoolSize, cache: ComponentCache) -> Result<Runtime> {
        let mut pooling = PoolingAllocationConfig::new();
        let instances = pool.instances.max(8);
        // A Rust wasip2 component has a handful of core instances, memories
        // and tables (the guest plus WASI adapter shims); other languages
        // have a few more.
        pooling
            .total_component_instances(instances)
            .total_core_instances(instances * 16)
            .max_core_instances_per_component(32)
            .total_memories(instances * 4)
            .max_memories_per_component(8)
            .total_tables(instances * 8)
            .max_tables_per_component(16)
            .total_stacks(pool.concurrent_calls.max(8) + instances)
            .max_memory_size(pool.max_memory as usize)
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .max_unused_warm_slots(instances);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(false)
            .memory_guard_size(0)
            .memory_reservation(pool.max_memory)
            .memory_reservation_for_growth(0)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&config)
            .map_err(|e| anyhow!("{e:?}"))
            .context("create the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("{e:?}"))
            .context("link WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("{e:?}"))
            .context("link WASI HTTP")?;
        bindings::EspService::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| anyhow!("{e:?}"))
        .context("link wasp host imports")?;
        codec::bindings::CaptureCodec::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| anyhow!("{e:?}"))
        .context("link the capture codec world's types")?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());

        Ok(Runtime {
            engine,
            linker,
            cache,
            loaded: std::sync::Mutex::default(),
            ticker_stop,
        })
    }

    /// Compiles a component, or loads it from the cache: the part of
    /// loading that does not depend on the world the component serves.
    /// Returns the component, its SHA-256 and whether it came from the
    /// cache. Compiling takes seconds of CPU: it runs on tokio's blocking
    /// pool, so the runtime's workers keep serving requests and node
    /// sessions meanwhile.
    pub async fn compile(&self, bytes: &[u8]) -> Result<(Component, String, bool)> {
        let sha = sha256_hex(bytes);
        if let Some(component) = self.loaded().get(&sha) {
            return Ok((component.clone(), sha, true));
        }
        let (engine, cache, bytes) = (self.engine.clone(), self.cache.clone(), bytes.to_vec());
        // The caller's span (which cluster or capture point) goes along.
        let span = tracing::Span::current();
        let (component, sha, from_cache) = tokio::task::spawn_blocking(move || {
            span.in_scope(|| cache.get_or_compile_hashed(&engine, &bytes, sha))
        })
        .await
        .context("the compile task failed")??;
        self.loaded().insert(sha.clone(), component.clone());
        Ok((component, sha, from_cache))
    }

    /// Forgets the loaded components whose SHA-256 is not in `used` (what
    /// the serving generation runs): their code goes once the last
    /// generation that ran them is dropped.
    pub fn keep_loaded(&self, used: &std::collections::HashSet<&str>) {
        self.loaded().retain(|sha, _| used.contains(sha.as_str()));
    }

    /// The SHA-256 of each component loaded for reuse, sorted.
    pub fn loaded_components(&self) -> Vec<String> {
        let mut shas: Vec<String> = self.loaded().keys().cloned().collect();
        shas.sort();
        shas
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Component>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pre-links a compiled component against the host's imports (WASI,
    /// WASI HTTP, the `wasp:esp` interfaces, the `wasp:kv` types).
    pub(crate) fn instantiate_pre(
        &self,
        component: &Component,
    ) -> Result<wasmtime::component::InstancePre<HostState>> {
        self.linker
            .instantiate_pre(component)
            .map_err(|e| anyhow!("{e}"))
            .context("the component imports something wasp does not provide")
    }

    /// The engine, for checking what a component imports and exports.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (or loads from the cache) and pre-links an ESP service
    /// component, then instantiates it once to ask `describe` what it
    /// serves.
    pub async fn load(&self, bytes: &[u8], spec: &Arc<InstanceSpec>) -> Result<LoadedComponent> {
        let (component, sha256, from_cache) = self.compile(bytes).await?;
        let pre = self.instantiate_pre(&component)?;
        let pre = bindings::EspServicePre::new(pre)
            .map_err(|e| anyhow!("{e}"))
            .context("the component does not export wasp:esp/service")?;
        let mut probe = Instance::new(&pre, spec, usize::MAX).await?;
        let info = probe.describe().await?;
        Ok(LoadedComponent {
            pre,
            info,
            sha256,
            from_cache,
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    let weak = engine.weak();
    drop(engine);
    std::thread::Builder::new()
        .name("wasp-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawn the epoch ticker thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn compiling_a_component_does_not_block_the_runtime() {
        // One worker thread: if compiling ran on it, nothing else would run
        // until the compile was done.
        let runtime = Runtime::new(
            PoolSize {
                instances: 8,
                concurrent_calls: 8,
                max_memory: 64 << 20,
            },
            ComponentCache::new(None),
        )
        .unwrap();
        let spec = InstanceSpec {
            cluster: Arc::from("fax"),
            memory_limit: 64 << 20,
            config: Arc::default(),
            store: None,
            http: Arc::default(),
            log: Arc::new(log::LogLimit::unmetered(10)),
            store_refused: None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
        let spec = Arc::new(spec);
        let load = runtime.load(crate::builtin::get("fax").unwrap(), &spec);
        tokio::pin!(load);
        let mut ticks = 0;
        let loaded = loop {
            tokio::select! {
                biased;
                loaded = &mut load => break loaded,
                Some(()) = rx.recv() => ticks += 1,
            }
        };
        ticker.abort();
        assert_eq!(loaded.unwrap().info.service_type, "Fax");
        // Compiling takes about 100 ms here (about 60 ticks); on the worker,
        // the ticker could not run during it (0 ticks, measured).
        assert!(
            ticks >= 5,
            "the runtime ticked only {ticks} times while compiling"
        );
    }
}
