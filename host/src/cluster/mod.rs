//! Application Clusters: one service type, one component, a pool of
//! instances, the tenants served, and flow control.
//!
//! The balancer is two semaphores and power-of-two-choices:
//! - `capacity` holds `instances × window` permits: a request holding one
//!   is guaranteed a slot whose window has room;
//! - `queue` holds `queue` permits for requests waiting on `capacity`; when
//!   none is left the request is refused at once (3003) instead of growing
//!   memory. Waiters are served in arrival order (tokio's semaphores are
//!   fair) until the request's deadline (3002);
//! - among the slots with room, two are drawn at random and the one with
//!   fewer outstanding requests wins.
//!
//! This is tower's `p2c` + `ConcurrencyLimit` + `Buffer` + `LoadShed`
//! expressed without the `Buffer` task hop per request and without a
//! `Discover` stream for replacing instances: a slot keeps its identity
//! (and its counters) while the instance inside it is replaced.
//!
//! A request whose instance traps is retried once on another slot (2002 if
//! that traps too), unless the cluster says `retry = false` (a retry can
//! repeat a plugin's side effects) or the request ran out of memory on a
//! fresh instance (the retry would too: it failed because of its own
//! size). A timed-out request is not retried (3002). A trapped or
//! timed-out instance is thrown away and a fresh one takes its slot.
//!
//! Overload: a request is not started when it cannot finish in time. The
//! cluster keeps a moving average of how long its calls take; a request
//! that would wait longer than its deadline allows is refused at once
//! (3003), and one whose deadline is too close when its instance is free
//! is answered 3002 without being started — so an overloaded cluster
//! answers what it can and refuses the rest fast, instead of starting
//! calls that time out and take their instances down with them.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

use crate::admin::metrics::{ClusterMetrics, InstanceLabels, Metrics};
use crate::config::{Config, Policy, TenantConfig};
use crate::fault::{Fault, FaultCode};
use crate::kv::Kv;
use crate::runtime::bindings;
use crate::runtime::{CallError, Instance, InstanceSpec, LoadedComponent, Runtime};

/// What one KV pair costs inside a component, about: the lowered record,
/// the key's allocation and the guest SDK's own list entry.
pub const GUEST_BYTES_PER_PAIR: usize = 128;

/// One running Application Cluster.
pub struct Cluster {
    pub name: Arc<str>,
    pub service: String,
    pub version: String,
    pub methods: HashSet<String>,
    pub tenants: Vec<TenantConfig>,
    pub policy: Policy,
    pub timeout: Duration,
    pub window: usize,
    pub queue_capacity: usize,
    pub source: String,
    pub sha256: String,
    pub from_cache: bool,
    /// Request count and latency series of this cluster.
    pub metrics: ClusterMetrics,
    max_calls: u64,
    /// Most bytes of keys and values a result may carry (the request
    /// limit, `server.max-body-bytes`).
    result_bytes: usize,
    /// Retry once on another instance after a trap.
    retry: bool,
    /// Moving average of a completed call's duration, in microseconds
    /// (0: none completed yet).
    call_micros: AtomicU64,
    component: LoadedComponent,
    spec: Arc<InstanceSpec>,
    slots: Vec<Slot>,
    capacity: Semaphore,
    queue: Semaphore,
    queued: AtomicUsize,
}

/// A place for one instance, with counters that survive replacement.
struct Slot {
    index: usize,
    outstanding: AtomicUsize,
    handled: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    replaced: AtomicU64,
    live: AtomicBool,
    /// `wasp_instance_handled_total{cluster, instance}`.
    handled_metric: prometheus_client::metrics::counter::Counter,
    /// The live instance (pooled policy). `None` after it was thrown away
    /// and its replacement could not be made; the next request tries again.
    instance: Mutex<Option<Instance>>,
}

/// Counts a waiter for as long as it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One unit of a slot's window, reserved by `reserve_slot`.
struct Reserved<'a>(&'a AtomicUsize);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Why one attempt did not answer.
enum Failure {
    Fault(Fault),
    Trapped {
        slot: usize,
        reason: String,
        /// Whether another instance might answer (not when a fresh
        /// instance ran out of memory on this request).
        retry: bool,
    },
}

impl Cluster {
    /// Loads the component, checks it serves the cluster's service type,
    /// and (pooled) starts every instance.
    pub async fn start(
        runtime: &Runtime,
        config: &Config,
        name: &str,
        metrics: &Metrics,
        stores: crate::store::Open,
    ) -> Result<Cluster> {
        Cluster::start_sharing(runtime, config, name, metrics, stores, None).await
    }

    /// [`Cluster::start`], taking over `store` (the store this cluster's
    /// previous version has open, on a reload) instead of opening its own.
    pub async fn start_sharing(
        runtime: &Runtime,
        config: &Config,
        name: &str,
        metrics: &Metrics,
        stores: crate::store::Open,
        shared: Option<crate::store::Store>,
    ) -> Result<Cluster> {
        let base_dir = &config.base_dir;
        let result_bytes = config.server.max_body_bytes;
        let tenants: Vec<TenantConfig> = config.clusters[name]
            .tenants
            .iter()
            .filter_map(|t| config.tenant(t).cloned())
            .collect();
        let source = config
            .component_source(&config.clusters[name].component)
            .map_err(anyhow::Error::msg)?;
        let config = &config.clusters[name];
        let bytes = source
            .bytes()
            .with_context(|| format!("read component {source}"))?;
        let source = source.to_string();
        let store = match (&config.store, shared) {
            (None, _) => None,
            (Some(_), Some(shared)) => Some(shared),
            (Some(sc), None) => {
                use crate::config::StoreBackend;
                use crate::store::{ClusterStore, Open, Store};
                let limits = sc.limits(tenants.len());
                Some(match (sc.backend(), &sc.persist, &sc.url, stores) {
                    (StoreBackend::Redb, Some(path), _, Open::Persisted) => Store::Local(Arc::new(
                        ClusterStore::file(&base_dir.join(path), limits).with_context(|| {
                            format!("open the store {}", base_dir.join(path).display())
                        })?,
                    )),
                    (StoreBackend::Redis, _, Some(url), Open::Persisted) => {
                        let redis = crate::store::redis_backend::RedisStore::open(
                            url,
                            sc.prefix(name),
                            limits,
                            sc.timeout(),
                        )
                        .with_context(|| format!("cluster '{name}': the store on Redis"))?;
                        Store::Redis(Arc::new(redis))
                    }
                    _ => Store::Local(Arc::new(ClusterStore::memory(limits))),
                })
            }
        };
        let spec = Arc::new(InstanceSpec {
            cluster: Arc::from(name),
            memory_limit: (config.memory_mb << 20) as usize,
            config: Arc::new(config.config.clone()),
            store,
            http: Arc::new(match &config.http {
                Some(h) => crate::runtime::http::HttpGrant {
                    allow: h.allow.clone(),
                    timeout: Duration::from_millis(h.timeout_ms),
                },
                None => crate::runtime::http::HttpGrant::default(),
            }),
            log: Arc::new(metrics.log_limit(name, config.log_per_second)),
            store_refused: Some(metrics.store_refusals(name)),
        });
        let component = runtime.load(&bytes, &spec).await?;
        if component.info.service_type != config.service {
            bail!(
                "cluster '{name}' serves service type '{}' but component {source} declares '{}': \
                 a cluster only takes components of its own service type",
                config.service,
                component.info.service_type
            );
        }
        let slots: Vec<Slot> = (0..config.instances)
            .map(|index| Slot {
                index,
                outstanding: AtomicUsize::new(0),
                handled: AtomicU64::new(0),
                traps: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                replaced: AtomicU64::new(0),
                live: AtomicBool::new(config.policy == Policy::PerRequest),
                handled_metric: metrics
                    .handled
                    .get_or_create(&InstanceLabels {
                        cluster: name.to_string(),
                        instance: index as u32,
                    })
                    .clone(),
                instance: Mutex::new(None),
            })
            .collect();
        if config.policy == Policy::Pooled {
            for slot in &slots {
                let instance = Instance::new(&component.pre, &spec, slot.index).await?;
                *slot.instance.lock().await = Some(instance);
                slot.live.store(true, Ordering::Relaxed);
            }
        }
        // A per-request instance serves exactly one request, so `instances`
        // bounds the requests running at once.
        let window = match config.policy {
            Policy::Pooled => config.window,
            Policy::PerRequest => 1,
        };
        Ok(Cluster {
            name: Arc::from(name),
            service: config.service.clone(),
            version: component.info.version.clone(),
            methods: component.info.methods.iter().cloned().collect(),
            tenants,
            policy: config.policy,
            timeout: Duration::from_millis(config.timeout_ms),
            window,
            queue_capacity: config.queue,
            source,
            sha256: component.sha256.clone(),
            from_cache: component.from_cache,
            metrics: metrics.cluster(name),
            max_calls: config.max_calls,
            result_bytes,
            retry: config.retry,
            call_micros: AtomicU64::new(0),
            capacity: Semaphore::new(config.instances * window),
            queue: Semaphore::new(config.queue),
            queued: AtomicUsize::new(0),
            component,
            spec,
            slots,
        })
    }

    /// Refuses (3000) a request whose KV lists cannot fit in an instance:
    /// lowered into the component, every pair costs a record and an
    /// allocation and the SDK's own copy, about [`GUEST_BYTES_PER_PAIR`],
    /// and every byte of a key or value is held about twice. What needs
    /// more than half of `memory-mb` is refused before it is lowered,
    /// instead of trapping the instance (and the retry's).
    pub fn check_fits(&self, parameters: &Kv, user_data: Option<&Kv>) -> Result<(), Fault> {
        let mut pairs = 0;
        let mut bytes = 0;
        for kv in std::iter::once(parameters).chain(user_data) {
            let f = kv.footprint();
            pairs += f.pairs;
            bytes += f.bytes;
        }
        let need = pairs * GUEST_BYTES_PER_PAIR + bytes * 2;
        let room = self.spec.memory_limit / 2;
        if need > room {
            return Err(Fault::invalid(format!(
                "Request.Parameters and UserData ({pairs} pairs, {bytes} bytes) need about {} MiB \
                 inside the component, more than cluster '{}' allows a request ({} MiB, half of \
                 its memory-mb)",
                need.div_ceil(1 << 20),
                self.name,
                room >> 20
            )));
        }
        Ok(())
    }

    /// The cluster's own store (memory or redb), when granted; `None`
    /// for a store on Redis too (see [`Cluster::store_handle`]).
    pub fn store(&self) -> Option<&Arc<crate::store::ClusterStore>> {
        match &self.spec.store {
            Some(crate::store::Store::Local(s)) => Some(s),
            _ => None,
        }
    }

    /// The cluster's store as its instances use it, whatever the backend.
    pub fn store_handle(&self) -> Option<&crate::store::Store> {
        self.spec.store.as_ref()
    }

    /// Whether the cluster serves this tenant.
    pub fn serves(&self, tenant: u32) -> bool {
        self.tenants.iter().any(|t| t.id == tenant)
    }

    /// Requests waiting for an instance.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Marks every instance as lost, as when replacements cannot be made
    /// (tests of what readiness reports).
    #[cfg(test)]
    pub(crate) fn lose_all_instances(&self) {
        for slot in &self.slots {
            slot.live.store(false, Ordering::Relaxed);
        }
    }

    /// Instances alive now.
    pub fn live_instances(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.live.load(Ordering::Relaxed))
            .count()
    }

    /// Handles one request: balance, run, retry once after a trap.
    pub async fn call(&self, req: &bindings::Request<'_>) -> Result<Kv, Fault> {
        let deadline = Instant::now() + self.timeout;
        match self.attempt(req, deadline, None).await {
            Ok(kv) => Ok(kv),
            Err(Failure::Fault(fault)) => Err(fault),
            Err(Failure::Trapped {
                slot,
                reason,
                retry,
            }) if !(retry && self.retry) => {
                let why = if retry {
                    "not retried: the cluster says retry = false"
                } else {
                    "not retried: a fresh instance ran out of memory on this request"
                };
                Err(Fault::new(
                    FaultCode::LostConnection,
                    format!("instance {}#{slot} {reason}; {why}", self.name),
                ))
            }
            Err(Failure::Trapped { slot, reason, .. }) => {
                tracing::warn!(
                    cluster = %self.name,
                    tenant = req.tenant.id,
                    instance = slot,
                    "instance trapped, retrying once: {reason}"
                );
                match self.attempt(req, deadline, Some(slot)).await {
                    Ok(kv) => Ok(kv),
                    Err(Failure::Fault(fault)) => Err(fault),
                    Err(Failure::Trapped {
                        slot: again,
                        reason: why,
                        ..
                    }) => Err(Fault::new(
                        FaultCode::LostConnection,
                        format!(
                            "instance {name}#{slot} {reason}; the retry on {name}#{again} {why}",
                            name = self.name
                        ),
                    )),
                }
            }
        }
    }

    async fn attempt(
        &self,
        req: &bindings::Request<'_>,
        deadline: Instant,
        avoid: Option<usize>,
    ) -> Result<Kv, Failure> {
        let _permit = match self.capacity.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                // Every instance's window is full: a place in the queue is
                // only worth taking if the request can still finish.
                let per_instance = (self.queue_depth() + 1).div_ceil(self.slots.len()) as u32;
                self.admit(per_instance + self.window as u32 - 1, deadline)
                    .map_err(Failure::Fault)?;
                let Ok(_place) = self.queue.try_acquire() else {
                    return Err(Failure::Fault(Fault::new(
                        FaultCode::Overloaded,
                        format!(
                            "cluster '{}' is overloaded: {} requests already wait",
                            self.name, self.queue_capacity
                        ),
                    )));
                };
                let waited = {
                    let _counted = Counted::enter(&self.queued);
                    tokio::time::timeout_at(deadline.into(), self.capacity.acquire()).await
                };
                match waited {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        return Err(Failure::Fault(
                            self.timeout_fault("waiting for a free instance"),
                        ));
                    }
                }
            }
        };
        let (slot, ahead) = self.reserve_slot(avoid);
        // Released on every path, including this future being dropped
        // (the client went away): a leaked window would shrink the slot.
        let _reserved = Reserved(&slot.outstanding);
        self.admit(ahead as u32, deadline).map_err(Failure::Fault)?;
        tracing::Span::current().record("instance", slot.index);
        self.run_on(slot, req, deadline).await
    }

    /// How long a call takes, on average (zero before the first).
    fn call_estimate(&self) -> Duration {
        Duration::from_micros(self.call_micros.load(Ordering::Relaxed))
    }

    /// Folds a completed call's duration into the average (weight 1/8).
    fn observe_call(&self, took: Duration) {
        let took = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let _ = self
            .call_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| {
                Some(if avg == 0 {
                    took.max(1)
                } else {
                    (avg - avg / 8 + took / 8).max(1)
                })
            });
    }

    /// 3003 for a request that would wait for `calls_ahead` calls and then
    /// its own and not finish by `deadline` (nothing is refused before a
    /// call's length is known).
    fn admit(&self, calls_ahead: u32, deadline: Instant) -> Result<(), Fault> {
        let call = self.call_estimate();
        let wait = call * calls_ahead;
        if call.is_zero() || Instant::now() + wait + call <= deadline {
            return Ok(());
        }
        Err(Fault::new(
            FaultCode::Overloaded,
            format!(
                "cluster '{}' is overloaded: the request would wait about {} ms and calls \
                 take about {} ms, more than its {} ms allow",
                self.name,
                wait.as_millis(),
                call.as_millis(),
                self.timeout.as_millis()
            ),
        ))
    }

    /// Runs the call on `instance`, folding its duration into the average
    /// when the component answered.
    async fn timed_handle(
        &self,
        instance: &mut Instance,
        req: &bindings::Request<'_>,
        deadline: Instant,
    ) -> Result<Result<bindings::KvListResult, bindings::Fault>, CallError> {
        let started = Instant::now();
        let outcome = instance.handle(req, deadline).await;
        if outcome.is_ok() {
            self.observe_call(started.elapsed());
        }
        outcome
    }

    /// Power of two choices among slots with room in their window; falls
    /// back to a scan. Holding a capacity permit guarantees one has room.
    /// Returns the slot and how many requests it already had.
    fn reserve_slot(&self, avoid: Option<usize>) -> (&Slot, usize) {
        let n = self.slots.len();
        let mut rng = rand::rng();
        loop {
            let a = rng.random_range(0..n);
            let b = if n > 1 {
                (a + rng.random_range(1..n)) % n
            } else {
                a
            };
            let key = |i: usize| {
                (
                    Some(i) == avoid,
                    self.slots[i].outstanding.load(Ordering::Acquire),
                )
            };
            let (first, second) = if key(b) < key(a) { (b, a) } else { (a, b) };
            let start = rng.random_range(0..n);
            let scan = (0..n).map(|k| (start + k) % n);
            let order = [first, second]
                .into_iter()
                .chain(scan.clone().filter(|i| Some(*i) != avoid))
                .chain(scan.filter(|i| Some(*i) == avoid));
            for i in order {
                let slot = &self.slots[i];
                let reserved =
                    slot.outstanding
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                            (o < self.window).then_some(o + 1)
                        });
                if let Ok(ahead) = reserved {
                    return (slot, ahead);
                }
            }
            std::hint::spin_loop();
        }
    }

    async fn run_on(
        &self,
        slot: &Slot,
        req: &bindings::Request<'_>,
        deadline: Instant,
    ) -> Result<Kv, Failure> {
        match self.policy {
            Policy::PerRequest => {
                let mut instance = Instance::new(&self.component.pre, &self.spec, slot.index)
                    .await
                    .map_err(|e| Failure::Trapped {
                        slot: slot.index,
                        reason: format!("could not be instantiated: {e:#}"),
                        retry: true,
                    })?;
                let outcome = self.timed_handle(&mut instance, req, deadline).await;
                self.settle(slot, outcome, true)
            }
            Policy::Pooled => {
                let Ok(mut guard) =
                    tokio::time::timeout_at(deadline.into(), slot.instance.lock()).await
                else {
                    return Err(Failure::Fault(
                        self.timeout_fault("waiting for its instance"),
                    ));
                };
                if guard.as_ref().is_some_and(Instance::interrupted) {
                    // A call on it was abandoned midway (its request was
                    // dropped): the instance cannot be entered again.
                    slot.replaced.fetch_add(1, Ordering::Relaxed);
                    *guard = None;
                }
                if guard.is_none() {
                    *guard = self.instantiate(slot).await;
                }
                let Some(instance) = guard.as_mut() else {
                    return Err(Failure::Trapped {
                        slot: slot.index,
                        reason: "could not be instantiated".into(),
                        retry: true,
                    });
                };
                // Its turn came, but too late to finish: not started, so
                // the instance is not interrupted midway and replaced.
                let left = deadline.saturating_duration_since(Instant::now());
                if left < self.call_estimate() {
                    return Err(Failure::Fault(Fault::new(
                        FaultCode::Timeout,
                        format!(
                            "no answer from cluster '{}' within {} ms: {} ms were left when an \
                             instance was free and calls take about {} ms, so it was not started",
                            self.name,
                            self.timeout.as_millis(),
                            left.as_millis(),
                            self.call_estimate().as_millis()
                        ),
                    )));
                }
                let fresh = instance.calls() == 0;
                let outcome = self.timed_handle(instance, req, deadline).await;
                let retire = match &outcome {
                    Ok(_) => self.max_calls > 0 && instance.calls() >= self.max_calls,
                    Err(_) => true,
                };
                if retire {
                    slot.replaced.fetch_add(1, Ordering::Relaxed);
                    *guard = None;
                    *guard = self.instantiate(slot).await;
                }
                self.settle(slot, outcome, fresh)
            }
        }
    }

    /// A fresh instance for a slot, or `None` (logged) if that fails.
    async fn instantiate(&self, slot: &Slot) -> Option<Instance> {
        match Instance::new(&self.component.pre, &self.spec, slot.index).await {
            Ok(instance) => {
                slot.live.store(true, Ordering::Relaxed);
                Some(instance)
            }
            Err(err) => {
                slot.live.store(false, Ordering::Relaxed);
                tracing::error!(instance = slot.index, "cannot instantiate: {err:#}");
                None
            }
        }
    }

    /// What an attempt's outcome means; `fresh`: the instance had served
    /// no call before this one.
    fn settle(
        &self,
        slot: &Slot,
        outcome: Result<Result<bindings::KvListResult, bindings::Fault>, CallError>,
        fresh: bool,
    ) -> Result<Kv, Failure> {
        match outcome {
            Ok(Ok(list)) => {
                slot.handled.fetch_add(1, Ordering::Relaxed);
                slot.handled_metric.inc();
                // Held to the limits of a request; the instance answered and
                // stays, and the same call would answer the same again, so
                // it is not retried.
                Kv::from_wit(list, self.result_bytes).map_err(|why| {
                    Failure::Fault(Fault::new(
                        FaultCode::LostConnection,
                        format!(
                            "instance {}#{} returned a result wasp does not pass on: {why}",
                            self.name, slot.index
                        ),
                    ))
                })
            }
            Ok(Err(fault)) => {
                slot.handled.fetch_add(1, Ordering::Relaxed);
                slot.handled_metric.inc();
                Err(Failure::Fault(Fault::component(fault.code, fault.message)))
            }
            Err(CallError::Timeout) => {
                slot.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(Failure::Fault(
                    self.timeout_fault("running; the instance was replaced"),
                ))
            }
            Err(CallError::Trapped(reason)) => {
                slot.traps.fetch_add(1, Ordering::Relaxed);
                Err(Failure::Trapped {
                    slot: slot.index,
                    reason,
                    retry: true,
                })
            }
            Err(CallError::OutOfMemory(reason)) => {
                slot.traps.fetch_add(1, Ordering::Relaxed);
                Err(Failure::Trapped {
                    slot: slot.index,
                    reason,
                    retry: !fresh,
                })
            }
        }
    }

    fn timeout_fault(&self, doing: &str) -> Fault {
        Fault::new(
            FaultCode::Timeout,
            format!(
                "no answer from cluster '{}' within {} ms ({doing})",
                self.name,
                self.timeout.as_millis()
            ),
        )
    }

    /// What operators see in `GET /v1/admin/clusters`.
    pub fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            name: self.name.to_string(),
            service: self.service.clone(),
            version: self.version.clone(),
            methods: {
                let mut m: Vec<_> = self.methods.iter().cloned().collect();
                m.sort();
                m
            },
            component: self.source.clone(),
            sha256: self.sha256.clone(),
            policy: self.policy,
            tenants: self
                .tenants
                .iter()
                .map(|t| TenantSnapshot {
                    id: t.id,
                    name: t.name.clone(),
                })
                .collect(),
            timeout_ms: self.timeout.as_millis() as u64,
            window: self.window,
            queue: QueueSnapshot {
                depth: self.queue_depth(),
                capacity: self.queue_capacity,
            },
            instances: self
                .slots
                .iter()
                .map(|s| InstanceSnapshot {
                    index: s.index,
                    live: s.live.load(Ordering::Relaxed),
                    outstanding: s.outstanding.load(Ordering::Relaxed),
                    handled: s.handled.load(Ordering::Relaxed),
                    traps: s.traps.load(Ordering::Relaxed),
                    timeouts: s.timeouts.load(Ordering::Relaxed),
                    replaced: s.replaced.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterSnapshot {
    pub name: String,
    pub service: String,
    pub version: String,
    pub methods: Vec<String>,
    pub component: String,
    pub sha256: String,
    pub policy: Policy,
    pub tenants: Vec<TenantSnapshot>,
    pub timeout_ms: u64,
    pub window: usize,
    pub queue: QueueSnapshot,
    pub instances: Vec<InstanceSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantSnapshot {
    pub id: u32,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueSnapshot {
    pub depth: usize,
    pub capacity: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceSnapshot {
    pub index: usize,
    pub live: bool,
    pub outstanding: usize,
    pub handled: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub replaced: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::runtime::{ComponentCache, PoolSize};

    async fn chaos_cluster(extra: &str) -> (Runtime, Cluster) {
        let text = format!(
            "[[tenants]]\nid = 101\nname = \"T\"\n[clusters.chaos]\nservice = \"Chaos\"\ncomponent = {:?}\ntenants = [101]\n{extra}\n",
            env!("WASP_FIXTURE_CHAOS")
        );
        let config = Config::parse(&text, std::path::Path::new(".")).unwrap();
        let runtime = Runtime::new(
            PoolSize {
                instances: 32,
                concurrent_calls: 32,
                max_memory: 64 << 20,
            },
            ComponentCache::new(None),
        )
        .unwrap();
        let cluster = Cluster::start(
            &runtime,
            &config,
            "chaos",
            &Metrics::new(),
            crate::store::Open::Persisted,
        )
        .await
        .unwrap();
        (runtime, cluster)
    }

    async fn call(cluster: &Cluster, method: &str, params: &Kv) -> Result<Kv, Fault> {
        let lists = params.to_wit();
        let lists = lists.lists();
        let req = bindings::Request {
            service: "Chaos",
            method,
            version: "",
            tenant: bindings::Tenant { id: 101, name: "T" },
            media_type: None,
            parameters: bindings::KvListParam { lists: &lists },
            user_data: bindings::KvListParam { lists: &[] },
        };
        cluster.call(&req).await
    }

    #[tokio::test]
    async fn a_dropped_call_releases_its_window_and_its_instance_is_replaced() {
        let (_rt, cluster) = chaos_cluster("instances = 1\nwindow = 1\nqueue = 0").await;
        let spin = Kv::new().with("Millis", crate::kv::Value::Int(300));
        // Drop the call while the component runs.
        let dropped =
            tokio::time::timeout(Duration::from_millis(50), call(&cluster, "Spin", &spin)).await;
        assert!(dropped.is_err(), "the call was still running");
        let snap = cluster.snapshot();
        assert_eq!(
            snap.instances[0].outstanding, 0,
            "the window place came back"
        );
        assert_eq!(snap.queue.depth, 0);
        // The next call is served, by a fresh instance.
        let kv = call(&cluster, "Echo", &Kv::new()).await.unwrap();
        assert_eq!(kv.get("Calls"), Some(&crate::kv::Value::Int(1)));
        assert_eq!(cluster.snapshot().instances[0].replaced, 1);
    }

    #[tokio::test]
    async fn per_request_instances_bound_the_requests_running_at_once() {
        // A window of 4 does not let 4 requests share a per-request slot.
        let (_rt, cluster) =
            chaos_cluster("instances = 1\nwindow = 4\nqueue = 0\npolicy = \"per-request\"").await;
        let spin = Kv::new().with("Millis", crate::kv::Value::Int(200));
        let empty = Kv::new();
        let (running, refused) = tokio::join!(call(&cluster, "Spin", &spin), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            call(&cluster, "Echo", &empty).await
        });
        assert!(running.is_ok());
        assert_eq!(refused.unwrap_err().code, FaultCode::Overloaded);
        assert_eq!(cluster.snapshot().window, 1);
    }

    #[tokio::test]
    async fn a_per_request_instance_builds_its_empty_wasi_when_first_used() {
        // WASI is built on a store's first WASI call: a fresh instance that
        // uses it still sees nothing granted, request after request.
        let (_rt, cluster) = chaos_cluster("instances = 2\npolicy = \"per-request\"").await;
        for _ in 0..3 {
            let kv = call(&cluster, "Peek", &Kv::new()).await.unwrap();
            assert_eq!(kv.get("Env"), Some(&crate::kv::Value::Int(0)));
            for what in ["File", "Socket"] {
                let Some(crate::kv::Value::Str(seen)) = kv.get(what) else {
                    panic!("no {what} in {kv:?}");
                };
                assert!(seen.starts_with("denied"), "{what}: {seen}");
            }
            let kv = call(&cluster, "Echo", &Kv::new()).await.unwrap();
            assert_eq!(kv.get("Calls"), Some(&crate::kv::Value::Int(1)));
        }
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue() {
        let (_rt, cluster) = chaos_cluster("instances = 1\nwindow = 1\nqueue = 1").await;
        let spin = Kv::new().with("Millis", crate::kv::Value::Int(300));
        let empty = Kv::new();
        let (running, waiting) = tokio::join!(
            call(&cluster, "Spin", &spin),
            tokio::time::timeout(Duration::from_millis(50), call(&cluster, "Echo", &empty))
        );
        assert!(running.is_ok());
        assert!(waiting.is_err(), "the waiter was dropped while queued");
        assert_eq!(cluster.queue_depth(), 0);
        assert!(call(&cluster, "Echo", &Kv::new()).await.is_ok());
    }
}
