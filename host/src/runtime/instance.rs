//! One instance: a `Store` with its `HostState`, and the component's
//! exports. A call gets an absolute deadline; a trapped or timed-out
//! instance can never be entered again, so the cluster throws it away.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, EspService, EspServicePre, LogLevel};

/// What every instance of one cluster shares: its limits, identity and
/// the capability grants of the cluster.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Cluster name, for logs.
    pub cluster: Arc<str>,
    /// Linear memory limit per instance, in bytes.
    pub memory_limit: usize,
    /// The cluster's `config` table, readable through `wasp:esp/config`.
    pub config: Arc<BTreeMap<String, String>>,
    /// The cluster's store, when granted.
    pub store: Option<crate::store::Store>,
    /// Hosts the cluster may call over HTTP (none: every request denied).
    pub http: Arc<super::http::HttpGrant>,
    /// The cluster's budget of log lines.
    pub log: Arc<super::log::LogLimit>,
    /// Where writes refused by a bound of the store are counted (`None`:
    /// not counted, outside a gateway).
    pub store_refused: Option<crate::admin::metrics::StoreRefusals>,
}

/// Per-store host state (Spin's and wasmtime's `HostState` shape): WASI
/// with nothing granted, the limiter, and this cluster's grants.
pub struct HostState {
    /// Built on the first WASI call: most ESP services make none, and a
    /// per-request instance would build it for every request.
    wasi: Option<WasiCtx>,
    http: wasmtime_wasi_http::WasiHttpCtx,
    hooks: super::http::Hooks,
    table: ResourceTable,
    limiter: MemoryLimiter,
    /// Shared by every instance of the cluster (one reference count per
    /// instance, not one per field).
    spec: Arc<InstanceSpec>,
    instance: usize,
    deadline: Instant,
    /// The tenant of the request being handled (scopes the store).
    tenant: Option<u32>,
}

/// Stops linear memory growth at the cluster's limit and remembers that it
/// did, so the fault can say why the instance died.
struct MemoryLimiter {
    limit: usize,
    exceeded: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = Some(desired);
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} MiB exceeded (asked for {} MiB)",
                self.limit >> 20,
                desired.div_ceil(1 << 20)
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(empty_wasi),
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl bindings::wasp::esp::types::Host for HostState {}

impl bindings::wasp::esp::log::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        let cluster = &*self.spec.cluster;
        let instance = self.instance;
        // The request's tenant, when the line comes from one.
        let tenant = self.tenant;
        let Some(dropped) = self.spec.log.admit() else {
            return;
        };
        if dropped > 0 {
            tracing::warn!(
                target: "wasp::plugin",
                cluster,
                dropped,
                "plugin log lines dropped: more than the cluster's log-per-second"
            );
        }
        let message = super::log::clip(&message, super::log::MAX_MESSAGE);
        let message = super::log::escape(&message);
        let fields = FieldList(&fields[..fields.len().min(super::log::MAX_FIELDS)]);
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "wasp::plugin", cluster, instance, tenant, fields = %fields, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "wasp::plugin", cluster, instance, tenant, fields = %fields, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "wasp::plugin", cluster, instance, tenant, fields = %fields, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "wasp::plugin", cluster, instance, tenant, fields = %fields, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "wasp::plugin", cluster, instance, tenant, fields = %fields, "{message}")
            }
        }
    }
}

struct FieldList<'a>(&'a [(String, String)]);

impl std::fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let k = super::log::clip(k, super::log::MAX_VALUE);
            let v = super::log::clip(v, super::log::MAX_VALUE);
            write!(f, "{}={v:?}", super::log::escape(&k))?;
        }
        Ok(())
    }
}

impl bindings::wasp::esp::config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.spec.config.get(&key).cloned()
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        self.spec
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl HostState {
    /// The store and the tenant it is scoped to, or why there is none.
    fn store(&self) -> Result<(&crate::store::Store, u32), String> {
        let store = self.spec.store.as_ref().ok_or_else(|| {
            format!(
                "store: not granted to cluster '{}' (add [clusters.{}.store] to the config)",
                self.spec.cluster, self.spec.cluster
            )
        })?;
        let tenant = self
            .tenant
            .ok_or_else(|| "store: only available while handling a request".to_string())?;
        Ok((store, tenant))
    }

    /// A store call's outcome as the component sees it; a write refused by
    /// a bound is counted.
    fn counted<T>(&self, outcome: Result<T, crate::store::Error>) -> Result<T, String> {
        outcome.map_err(|err| {
            if let Some(refused) = &self.spec.store_refused {
                refused.count(&err);
            }
            err.to_string()
        })
    }
}

/// Each call passes the request's deadline: a store on Redis gives up
/// before it, so the plugin gets an error rather than its instance being
/// cut off.
impl bindings::wasp::esp::store::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        let (store, tenant) = self.store()?;
        let outcome = store.get(tenant, &key, self.deadline).await;
        self.counted(outcome)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        let (store, tenant) = self.store()?;
        let outcome = store.set(tenant, &key, &value, None, self.deadline).await;
        self.counted(outcome)
    }

    async fn delete(&mut self, key: String) -> Result<bool, String> {
        let (store, tenant) = self.store()?;
        let outcome = store.delete(tenant, &key, self.deadline).await;
        self.counted(outcome)
    }

    async fn keys(&mut self, prefix: String) -> Result<Vec<String>, String> {
        let (store, tenant) = self.store()?;
        let outcome = store.keys(tenant, &prefix, self.deadline).await;
        self.counted(outcome)
    }

    async fn set_with_ttl(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: u32,
    ) -> Result<(), String> {
        let (store, tenant) = self.store()?;
        let outcome = store
            .set(tenant, &key, &value, Some(ttl_seconds), self.deadline)
            .await;
        self.counted(outcome)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, String> {
        let (store, tenant) = self.store()?;
        let outcome = store.increment(tenant, &key, delta, self.deadline).await;
        self.counted(outcome)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, String> {
        let (store, tenant) = self.store()?;
        let outcome = store
            .compare_and_swap(tenant, &key, expected.as_deref(), &new, self.deadline)
            .await;
        self.counted(outcome)
    }
}

/// How long past its deadline a call blocked in a host function may take
/// before it is abandoned (a computing guest is stopped at the deadline).
pub(crate) const HOST_CALL_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Why a call did not produce an answer from the component.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The deadline passed while the component ran.
    #[error("no answer within the deadline")]
    Timeout,
    /// The component trapped (panic, unreachable ...).
    #[error("{0}")]
    Trapped(String),
    /// Linear memory would have grown past the cluster's `memory-mb`
    /// (while the request was lowered into it, or while it ran).
    #[error("{0}")]
    OutOfMemory(String),
}

/// One live instance of a component.
pub struct Instance {
    store: Store<HostState>,
    exports: EspService,
    calls: u64,
    /// Set while a call runs; still set if the call's future was dropped.
    in_call: bool,
}

impl Instance {
    /// Instantiates a fresh store from the pre-linked component.
    pub async fn new(
        pre: &EspServicePre<HostState>,
        spec: &Arc<InstanceSpec>,
        index: usize,
    ) -> Result<Instance> {
        let mut store = new_store(pre.engine(), spec, index);
        let exports = pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)
            .context("instantiate the component")?;
        Ok(Instance {
            store,
            exports,
            calls: 0,
            in_call: false,
        })
    }

    /// Whether a call was abandoned midway (its future dropped): such an
    /// instance must not be entered again.
    pub fn interrupted(&self) -> bool {
        self.in_call
    }

    /// Calls made on this instance so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Asks the component what it serves.
    pub async fn describe(&mut self) -> Result<bindings::ServiceInfo> {
        self.arm(Instant::now() + std::time::Duration::from_secs(10));
        self.exports
            .wasp_esp_service()
            .call_describe(&mut self.store)
            .await
            .map_err(anyhow::Error::from)
            .context("call describe")
    }

    /// Handles one request, stopping at `deadline`.
    pub async fn handle(
        &mut self,
        req: &bindings::Request<'_>,
        deadline: Instant,
    ) -> Result<Result<bindings::KvListResult, bindings::Fault>, CallError> {
        self.arm(deadline);
        self.calls += 1;
        self.in_call = true;
        self.store.data_mut().tenant = Some(req.tenant.id);
        // The epoch deadline stops a guest that computes; this one also
        // stops a guest blocked in a host call (e.g. waiting on HTTP). If
        // it fires, `in_call` stays set and the instance is replaced.
        let call = self
            .exports
            .wasp_esp_service()
            .call_handle(&mut self.store, req.clone());
        let result = match tokio::time::timeout_at((deadline + HOST_CALL_GRACE).into(), call).await
        {
            Ok(result) => result,
            Err(_) => return Err(CallError::Timeout),
        };
        self.in_call = false;
        self.store.data_mut().tenant = None;
        result.map_err(|err| self.explain(err))
    }

    fn arm(&mut self, deadline: Instant) {
        arm(&mut self.store, deadline);
    }

    fn explain(&self, err: wasmtime::Error) -> CallError {
        explain(&self.store, err)
    }
}

/// A fresh store with the hardening every instance gets, whatever world
/// its component serves: WASI with nothing granted, the memory limiter,
/// and the epoch callback that yields until the call's deadline, then
/// interrupts.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    spec: &Arc<InstanceSpec>,
    index: usize,
) -> Store<HostState> {
    let state = HostState {
        wasi: None,
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        hooks: super::http::Hooks { spec: spec.clone() },
        table: ResourceTable::new(),
        limiter: MemoryLimiter {
            limit: spec.memory_limit,
            exceeded: None,
        },
        spec: spec.clone(),
        instance: index,
        deadline: Instant::now() + std::time::Duration::from_secs(10),
        tenant: None,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_callback(|ctx| {
        if Instant::now() >= ctx.data().deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
    store
}

/// WASI with nothing granted: no sockets, name lookups, preopens,
/// environment or arguments.
fn empty_wasi() -> WasiCtx {
    WasiCtxBuilder::new()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Sets the deadline of the next call. Epoch deadlines are absolute:
/// re-arm before every call, or a long-lived instance would trap on its
/// next call.
pub(crate) fn arm(store: &mut Store<HostState>, deadline: Instant) {
    store.data_mut().deadline = deadline;
    store.set_epoch_deadline(1);
}

/// Why a call failed: the memory limit, the deadline, or a trap.
pub(crate) fn explain(store: &Store<HostState>, err: wasmtime::Error) -> CallError {
    if let Some(wanted) = store.data().limiter.exceeded {
        return CallError::OutOfMemory(format!(
            "memory limit of {} MiB exceeded (asked for {} MiB)",
            store.data().limiter.limit >> 20,
            wanted.div_ceil(1 << 20)
        ));
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout,
        Some(trap) => CallError::Trapped(format!("trapped: {trap}")),
        None => CallError::Trapped(format!("failed: {}", err.root_cause())),
    }
}
