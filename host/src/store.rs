//! The key-value store capability (`wasp:esp/store`): one store per
//! cluster, shared by all its instances, keys scoped by tenant. In memory by
//! default; with `persist` in a redb file, so it survives a restart; with
//! `backend = "redis"` on a Redis server, so several hosts share it
//! ([`redis_backend`]). Instances reach any of them through [`Store`].
//!
//! Bounds: keys up to [`MAX_KEY`] bytes, values up to [`MAX_VALUE`] bytes,
//! and the cluster's [`Limits`]: keys and bytes (key + value) per tenant and
//! for the whole cluster. Usage is counted as entries are written and
//! removed (never by scanning), and kept in the file with the entries.
//!
//! An entry may expire (`set` with a TTL): from its expiry on, `get` and
//! `keys` no longer see it, and it no longer counts once reclaimed. Every
//! write reclaims up to [`SWEEP`] expired entries of any tenant, a write
//! over a bound first reclaims up to [`SWEEP_WHEN_FULL`] more, and a write
//! to an expired key reclaims it. Expiry is wall-clock time (seconds since
//! the Unix epoch), kept in the file, so it holds across restarts.
//!
//! `increment` and `compare-and-swap` are atomic: one lock (memory) or one
//! write transaction (redb) covers the read and the write, so instances of
//! the cluster racing on a key never lose an update.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

pub mod redis_backend;

/// Which stores starting a gateway opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Every store as configured: persisted ones from their files.
    Persisted,
    /// No file: every store is an empty one in memory with the configured
    /// bounds (`wasp check`, which must not touch a running host's state).
    MemoryOnly,
}

/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 1 << 20;
/// Most keys `keys` returns.
pub const MAX_LIST: usize = 1000;
/// Expired entries every write reclaims at most.
pub const SWEEP: usize = 64;
/// Expired entries reclaimed at most before a write is refused as full.
pub const SWEEP_WHEN_FULL: usize = 4096;

/// Scoped key (tenant, big-endian, then the key) → value.
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Scoped key → when it expires (seconds since the epoch); absent: never.
const TTL: TableDefinition<&[u8], u64> = TableDefinition::new("ttl");
/// Expiry (big-endian) then scoped key → (): the entries in expiry order.
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
/// Tenant (or [`TOTAL`]) → (entries, bytes).
const USAGE: TableDefinition<u64, (u64, u64)> = TableDefinition::new("usage");
/// The row of `USAGE` that counts the whole cluster.
const TOTAL: u64 = u64::MAX;

/// A bound of a cluster's store, named by its setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Entries,
    EntriesPerTenant,
    Bytes,
    BytesPerTenant,
}

impl Bound {
    /// Every bound, in the order of their discriminants.
    pub const ALL: [Bound; 4] = [
        Bound::Entries,
        Bound::EntriesPerTenant,
        Bound::Bytes,
        Bound::BytesPerTenant,
    ];

    /// The setting that sets it, as a refused write names it.
    pub fn setting(self) -> &'static str {
        match self {
            Bound::Entries => "store.max-entries",
            Bound::EntriesPerTenant => "store.max-entries-per-tenant",
            Bound::Bytes => "store.max-bytes",
            Bound::BytesPerTenant => "store.max-bytes-per-tenant",
        }
    }
}

/// Why a store call failed. The component sees [`Error`]'s text, which
/// always starts with `store: `; a bound that was hit starts with
/// `store: full:` and ends with the setting in brackets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A bound of the cluster's store was reached: which, and what the
    /// store holds against it.
    #[error("store: full: {message} ({})", .bound.setting())]
    Full { bound: Bound, message: String },
    /// A bad key, value, TTL or operation.
    #[error("store: {0}")]
    Invalid(String),
    /// The file failed.
    #[error("store: {0}")]
    Db(String),
    /// The Redis server did not answer in time, or the connection failed.
    #[error("store: unavailable: {0}")]
    Unavailable(String),
}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Db(e.to_string())
}

/// What a cluster's store may hold. Bytes are key plus value bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Keys, all tenants together.
    pub max_entries: u64,
    /// Bytes, all tenants together.
    pub max_bytes: u64,
    /// Keys of one tenant.
    pub max_entries_per_tenant: u64,
    /// Bytes of one tenant.
    pub max_bytes_per_tenant: u64,
}

impl Limits {
    /// The same bound for everything (tests).
    pub fn entries(max_entries: u64) -> Limits {
        Limits {
            max_entries,
            max_bytes: u64::MAX,
            max_entries_per_tenant: max_entries,
            max_bytes_per_tenant: u64::MAX,
        }
    }
}

/// Keys and bytes in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

/// Where the time comes from: the wall clock, or (tests) a number, in
/// seconds since the Unix epoch. Shared by the stores that expire things
/// (this one, capture points' journals).
#[derive(Debug)]
pub(crate) enum Clock {
    System,
    #[cfg_attr(not(test), allow(dead_code))]
    Manual(AtomicU64),
}

impl Clock {
    pub(crate) fn now(&self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

pub struct ClusterStore {
    backend: Backend,
    limits: Limits,
    clock: Clock,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("limits", &self.limits)
            .finish()
    }
}

enum Backend {
    Memory(Mutex<Mem>),
    File(redb::Database),
}

/// One stored value and when it expires.
#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    expires: Option<u64>,
}

impl Entry {
    fn expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

/// What an entry counts against the byte bounds.
fn cost(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

fn scoped(tenant: u32, key: &str) -> Vec<u8> {
    let mut k = tenant.to_be_bytes().to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

fn unscoped(k: &[u8]) -> Option<(u32, String)> {
    let tenant = u32::from_be_bytes(k.get(..4)?.try_into().ok()?);
    Some((tenant, String::from_utf8_lossy(&k[4..]).into_owned()))
}

fn expiry_key(at: u64, scoped: &[u8]) -> Vec<u8> {
    let mut k = at.to_be_bytes().to_vec();
    k.extend_from_slice(scoped);
    k
}

/// The entry under a scoped key in the `KV` and `TTL` tables of a read or
/// a write transaction, expired or not.
fn read_entry(
    kv: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ttl: &impl ReadableTable<&'static [u8], u64>,
    k: &[u8],
) -> Result<Option<Entry>, Error> {
    let Some(value) = kv.get(k).map_err(db_err)? else {
        return Ok(None);
    };
    let value = value.value().to_vec();
    let expires = ttl.get(k).map_err(db_err)?.map(|v| v.value());
    Ok(Some(Entry { value, expires }))
}

/// A tenant's usage (`None`: the cluster's) in the `USAGE` table of a read
/// or a write transaction.
fn read_usage(
    usage: &impl ReadableTable<u64, (u64, u64)>,
    tenant: Option<u32>,
) -> Result<Usage, Error> {
    let row = tenant.map_or(TOTAL, u64::from);
    Ok(usage
        .get(row)
        .map_err(db_err)?
        .map(|v| {
            let (entries, bytes) = v.value();
            Usage { entries, bytes }
        })
        .unwrap_or_default())
}

/// The storage operations the store's logic ([`Writer`]) is written
/// against, one implementation per backend, inside one lock or
/// transaction.
trait Txn {
    /// The entry under the key, expired or not.
    fn entry(&mut self, tenant: u32, key: &str) -> Result<Option<Entry>, Error>;
    /// Writes the entry; `old` is the expiry of the entry it replaces.
    fn put(
        &mut self,
        tenant: u32,
        key: &str,
        value: &[u8],
        expires: Option<u64>,
        old: Option<Option<u64>>,
    ) -> Result<(), Error>;
    /// Removes the entry, which expires at `expires`.
    fn remove(&mut self, tenant: u32, key: &str, expires: Option<u64>) -> Result<(), Error>;
    /// A tenant's usage, or the cluster's (`None`).
    fn usage(&mut self, tenant: Option<u32>) -> Result<Usage, Error>;
    fn set_usage(&mut self, tenant: Option<u32>, usage: Usage) -> Result<(), Error>;
    /// Up to `limit` entries expired at `now`, the oldest first.
    fn expired(&mut self, now: u64, limit: usize) -> Result<Vec<(u32, String)>, Error>;
}

/// The store's logic over one backend's lock or transaction: bounds,
/// expiry and usage counting.
struct Writer<'a> {
    tx: &'a mut dyn Txn,
    now: u64,
    limits: Limits,
}

impl Writer<'_> {
    /// The entry under the key unless it expired (then it is reclaimed).
    fn live(&mut self, tenant: u32, key: &str) -> Result<Option<Entry>, Error> {
        match self.tx.entry(tenant, key)? {
            Some(e) if e.expired(self.now) => {
                self.remove(tenant, key, &e)?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    fn remove(&mut self, tenant: u32, key: &str, e: &Entry) -> Result<(), Error> {
        self.tx.remove(tenant, key, e.expires)?;
        self.account(tenant, Some(cost(key, &e.value)), None)
    }

    /// Counts, for the tenant and for the cluster, an entry of `old` bytes
    /// (`None`: there was none) replaced by one of `new` bytes (`None`:
    /// removed).
    fn account(&mut self, tenant: u32, old: Option<u64>, new: Option<u64>) -> Result<(), Error> {
        for who in [Some(tenant), None] {
            let mut u = self.tx.usage(who)?;
            u.entries =
                (u.entries + u64::from(new.is_some())).saturating_sub(u64::from(old.is_some()));
            u.bytes = u.bytes.saturating_sub(old.unwrap_or(0)) + new.unwrap_or(0);
            self.tx.set_usage(who, u)?;
        }
        Ok(())
    }

    /// Reclaims up to `limit` expired entries; returns how many.
    fn sweep(&mut self, limit: usize) -> Result<usize, Error> {
        let due = self.tx.expired(self.now, limit)?;
        let mut n = 0;
        for (tenant, key) in due {
            if let Some(e) = self.tx.entry(tenant, &key)?
                && e.expired(self.now)
            {
                self.remove(tenant, &key, &e)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Why writing `new` bytes in place of `old` (`None`: a new key) would
    /// break a bound, if it would.
    fn over(&mut self, tenant: u32, old: Option<u64>, new: u64) -> Result<Option<Error>, Error> {
        let l = self.limits;
        let t = self.tx.usage(Some(tenant))?;
        let c = self.tx.usage(None)?;
        if old.is_none() {
            if t.entries >= l.max_entries_per_tenant {
                return Ok(Some(full_entries_per_tenant(tenant, t.entries)));
            }
            if c.entries >= l.max_entries {
                return Ok(Some(full_entries(c.entries)));
            }
        }
        let grow = new.saturating_sub(old.unwrap_or(0));
        if grow > 0 {
            if t.bytes.saturating_add(grow) > l.max_bytes_per_tenant {
                return Ok(Some(full_bytes_per_tenant(
                    tenant,
                    t.bytes,
                    l.max_bytes_per_tenant,
                    grow,
                )));
            }
            if c.bytes.saturating_add(grow) > l.max_bytes {
                return Ok(Some(full_bytes(c.bytes, l.max_bytes, grow)));
            }
        }
        Ok(None)
    }

    /// Writes `value` under the key in place of `old` (the live entry
    /// there, if any), within the bounds.
    fn put(
        &mut self,
        tenant: u32,
        key: &str,
        old: Option<&Entry>,
        value: &[u8],
        expires: Option<u64>,
    ) -> Result<(), Error> {
        let old_cost = old.map(|e| cost(key, &e.value));
        let new_cost = cost(key, value);
        if let Some(full) = self.over(tenant, old_cost, new_cost)? {
            // Expired entries count until reclaimed: reclaim more, look again.
            if self.sweep(SWEEP_WHEN_FULL)? == 0 {
                return Err(full);
            }
            if let Some(full) = self.over(tenant, old_cost, new_cost)? {
                return Err(full);
            }
        }
        self.tx
            .put(tenant, key, value, expires, old.map(|e| e.expires))?;
        self.account(tenant, old_cost, Some(new_cost))
    }
}

// What a write over each bound says; shared with the Redis store, so the
// plugin reads the same words whichever backend the cluster uses.

fn full_entries_per_tenant(tenant: u32, entries: u64) -> Error {
    Error::Full {
        bound: Bound::EntriesPerTenant,
        message: format!("tenant {tenant} has {entries} keys, its limit"),
    }
}

fn full_entries(entries: u64) -> Error {
    Error::Full {
        bound: Bound::Entries,
        message: format!("the cluster's store has {entries} keys, its limit"),
    }
}

fn full_bytes_per_tenant(tenant: u32, bytes: u64, limit: u64, grow: u64) -> Error {
    Error::Full {
        bound: Bound::BytesPerTenant,
        message: format!(
            "tenant {tenant} uses {bytes} of its {limit} bytes and this write needs {grow} more"
        ),
    }
}

fn full_bytes(bytes: u64, limit: u64, grow: u64) -> Error {
    Error::Full {
        bound: Bound::Bytes,
        message: format!(
            "the cluster's store uses {bytes} of its {limit} bytes and this write needs {grow} more"
        ),
    }
}

/// The memory backend.
#[derive(Default)]
struct Mem {
    map: BTreeMap<(u32, String), Entry>,
    expiry: BTreeSet<(u64, u32, String)>,
    usage: HashMap<u32, Usage>,
    total: Usage,
}

impl Txn for Mem {
    fn entry(&mut self, tenant: u32, key: &str) -> Result<Option<Entry>, Error> {
        Ok(self.map.get(&(tenant, key.to_string())).cloned())
    }

    fn put(
        &mut self,
        tenant: u32,
        key: &str,
        value: &[u8],
        expires: Option<u64>,
        old: Option<Option<u64>>,
    ) -> Result<(), Error> {
        if let Some(Some(at)) = old {
            self.expiry.remove(&(at, tenant, key.to_string()));
        }
        if let Some(at) = expires {
            self.expiry.insert((at, tenant, key.to_string()));
        }
        self.map.insert(
            (tenant, key.to_string()),
            Entry {
                value: value.to_vec(),
                expires,
            },
        );
        Ok(())
    }

    fn remove(&mut self, tenant: u32, key: &str, expires: Option<u64>) -> Result<(), Error> {
        if let Some(at) = expires {
            self.expiry.remove(&(at, tenant, key.to_string()));
        }
        self.map.remove(&(tenant, key.to_string()));
        Ok(())
    }

    fn usage(&mut self, tenant: Option<u32>) -> Result<Usage, Error> {
        Ok(match tenant {
            Some(t) => self.usage.get(&t).copied().unwrap_or_default(),
            None => self.total,
        })
    }

    fn set_usage(&mut self, tenant: Option<u32>, usage: Usage) -> Result<(), Error> {
        match tenant {
            Some(t) if usage == Usage::default() => {
                self.usage.remove(&t);
            }
            Some(t) => {
                self.usage.insert(t, usage);
            }
            None => self.total = usage,
        }
        Ok(())
    }

    fn expired(&mut self, now: u64, limit: usize) -> Result<Vec<(u32, String)>, Error> {
        Ok(self
            .expiry
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .take(limit)
            .map(|(_, t, k)| (*t, k.clone()))
            .collect())
    }
}

/// The redb backend: the tables of one write transaction.
struct FileTxn<'t> {
    kv: redb::Table<'t, &'static [u8], &'static [u8]>,
    ttl: redb::Table<'t, &'static [u8], u64>,
    expiry: redb::Table<'t, &'static [u8], ()>,
    usage: redb::Table<'t, u64, (u64, u64)>,
}

impl<'t> FileTxn<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<FileTxn<'t>, Error> {
        Ok(FileTxn {
            kv: tx.open_table(KV).map_err(db_err)?,
            ttl: tx.open_table(TTL).map_err(db_err)?,
            expiry: tx.open_table(EXPIRY).map_err(db_err)?,
            usage: tx.open_table(USAGE).map_err(db_err)?,
        })
    }

    /// Counts every entry again (a file written before usage was kept).
    fn recount(&mut self) -> Result<(), Error> {
        let mut tenants: BTreeMap<u64, Usage> = BTreeMap::new();
        let mut total = Usage::default();
        for entry in self.kv.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let (k, v) = (k.value(), v.value());
            let Some((tenant, _)) = unscoped(k) else {
                continue;
            };
            let bytes = (k.len() - 4 + v.len()) as u64;
            let u = tenants.entry(u64::from(tenant)).or_default();
            u.entries += 1;
            u.bytes += bytes;
            total.entries += 1;
            total.bytes += bytes;
        }
        for (tenant, u) in tenants.into_iter().chain([(TOTAL, total)]) {
            self.usage
                .insert(tenant, (u.entries, u.bytes))
                .map_err(db_err)?;
        }
        Ok(())
    }
}

impl Txn for FileTxn<'_> {
    fn entry(&mut self, tenant: u32, key: &str) -> Result<Option<Entry>, Error> {
        read_entry(&self.kv, &self.ttl, &scoped(tenant, key))
    }

    fn put(
        &mut self,
        tenant: u32,
        key: &str,
        value: &[u8],
        expires: Option<u64>,
        old: Option<Option<u64>>,
    ) -> Result<(), Error> {
        let k = scoped(tenant, key);
        if let Some(Some(at)) = old {
            self.expiry
                .remove(expiry_key(at, &k).as_slice())
                .map_err(db_err)?;
        }
        match expires {
            Some(at) => {
                self.ttl.insert(k.as_slice(), at).map_err(db_err)?;
                self.expiry
                    .insert(expiry_key(at, &k).as_slice(), ())
                    .map_err(db_err)?;
            }
            None => {
                if matches!(old, Some(Some(_))) {
                    self.ttl.remove(k.as_slice()).map_err(db_err)?;
                }
            }
        }
        self.kv.insert(k.as_slice(), value).map_err(db_err)?;
        Ok(())
    }

    fn remove(&mut self, tenant: u32, key: &str, expires: Option<u64>) -> Result<(), Error> {
        let k = scoped(tenant, key);
        if let Some(at) = expires {
            self.expiry
                .remove(expiry_key(at, &k).as_slice())
                .map_err(db_err)?;
            self.ttl.remove(k.as_slice()).map_err(db_err)?;
        }
        self.kv.remove(k.as_slice()).map_err(db_err)?;
        Ok(())
    }

    fn usage(&mut self, tenant: Option<u32>) -> Result<Usage, Error> {
        read_usage(&self.usage, tenant)
    }

    fn set_usage(&mut self, tenant: Option<u32>, usage: Usage) -> Result<(), Error> {
        let row = tenant.map_or(TOTAL, u64::from);
        if tenant.is_some() && usage == Usage::default() {
            self.usage.remove(row).map_err(db_err)?;
        } else {
            self.usage
                .insert(row, (usage.entries, usage.bytes))
                .map_err(db_err)?;
        }
        Ok(())
    }

    fn expired(&mut self, now: u64, limit: usize) -> Result<Vec<(u32, String)>, Error> {
        let mut out = Vec::new();
        for entry in self.expiry.iter().map_err(db_err)? {
            let (k, _) = entry.map_err(db_err)?;
            let k = k.value();
            let at = u64::from_be_bytes(k[..8].try_into().map_err(db_err)?);
            if at > now || out.len() >= limit {
                break;
            }
            if let Some(found) = unscoped(&k[8..]) {
                out.push(found);
            }
        }
        Ok(out)
    }
}

impl ClusterStore {
    pub fn memory(limits: Limits) -> ClusterStore {
        ClusterStore {
            backend: Backend::Memory(Mutex::new(Mem::default())),
            limits,
            clock: Clock::System,
        }
    }

    /// Opens (or creates) the redb file. A file written before usage was
    /// counted is counted once, here.
    pub fn file(path: &Path, limits: Limits) -> anyhow::Result<ClusterStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = redb::Database::create(path)?;
        let tx = db.begin_write()?;
        {
            let mut t = FileTxn::open(&tx)?;
            if t.usage.get(TOTAL)?.is_none() {
                t.recount()?;
            }
        }
        tx.commit()?;
        Ok(ClusterStore {
            backend: Backend::File(db),
            limits,
            clock: Clock::System,
        })
    }

    #[cfg(test)]
    fn with_clock(mut self, now: u64) -> ClusterStore {
        self.clock = Clock::Manual(AtomicU64::new(now));
        self
    }

    #[cfg(test)]
    fn set_now(&self, now: u64) {
        if let Clock::Manual(t) = &self.clock {
            t.store(now, Ordering::Relaxed);
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn check_key(key: &str) -> Result<(), Error> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(Error::Invalid(format!("keys are 1 to {MAX_KEY} bytes")));
        }
        Ok(())
    }

    fn check_value(value: &[u8]) -> Result<(), Error> {
        if value.len() > MAX_VALUE {
            return Err(Error::Invalid(format!(
                "values are at most {MAX_VALUE} bytes, this one is {}",
                value.len()
            )));
        }
        Ok(())
    }

    /// Runs `f` over one lock (memory) or one write transaction (redb),
    /// after reclaiming up to [`SWEEP`] expired entries. `f` checks before
    /// it changes anything, so when it fails on a bound or a bad argument
    /// only reclaimed entries are written; a file error writes nothing.
    fn write<R>(&self, f: impl FnOnce(&mut Writer<'_>) -> Result<R, Error>) -> Result<R, Error> {
        let now = self.clock.now();
        let run = |tx: &mut dyn Txn| {
            let mut w = Writer {
                tx,
                now,
                limits: self.limits,
            };
            w.sweep(SWEEP)?;
            f(&mut w)
        };
        match &self.backend {
            Backend::Memory(mem) => run(&mut *lock(mem)),
            Backend::File(db) => {
                let tx = db.begin_write().map_err(db_err)?;
                let result = {
                    let mut t = FileTxn::open(&tx)?;
                    run(&mut t)
                };
                match result {
                    Err(e @ Error::Db(_)) => Err(e),
                    result => {
                        tx.commit().map_err(db_err)?;
                        result
                    }
                }
            }
        }
    }

    pub fn get(&self, tenant: u32, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Self::check_key(key)?;
        let now = self.clock.now();
        let entry = match &self.backend {
            Backend::Memory(mem) => lock(mem).entry(tenant, key)?,
            Backend::File(db) => {
                let tx = db.begin_read().map_err(db_err)?;
                let kv = tx.open_table(KV).map_err(db_err)?;
                let ttl = tx.open_table(TTL).map_err(db_err)?;
                read_entry(&kv, &ttl, &scoped(tenant, key))?
            }
        };
        Ok(entry.filter(|e| !e.expired(now)).map(|e| e.value))
    }

    /// Sets the value; with `ttl` (seconds, at least 1) it expires then,
    /// without it it stays until deleted (a TTL it had is dropped).
    pub fn set(&self, tenant: u32, key: &str, value: &[u8], ttl: Option<u32>) -> Result<(), Error> {
        Self::check_key(key)?;
        Self::check_value(value)?;
        if ttl == Some(0) {
            return Err(Error::Invalid("a TTL is at least 1 second".into()));
        }
        self.write(|w| {
            let expires = ttl.map(|s| w.now.saturating_add(u64::from(s)));
            let old = w.live(tenant, key)?;
            w.put(tenant, key, old.as_ref(), value, expires)
        })
    }

    /// Whether the key existed.
    pub fn delete(&self, tenant: u32, key: &str) -> Result<bool, Error> {
        Self::check_key(key)?;
        self.write(|w| match w.live(tenant, key)? {
            Some(e) => w.remove(tenant, key, &e).map(|()| true),
            None => Ok(false),
        })
    }

    /// Adds `delta` to the integer under the key (decimal text; a missing
    /// key counts as 0) and returns the new value. The entry keeps its TTL.
    pub fn increment(&self, tenant: u32, key: &str, delta: i64) -> Result<i64, Error> {
        Self::check_key(key)?;
        self.write(|w| {
            let old = w.live(tenant, key)?;
            let current = match &old {
                None => 0,
                Some(e) => std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| {
                        Error::Invalid(format!("'{key}' does not hold an integer (decimal text)"))
                    })?,
            };
            let new = current
                .checked_add(delta)
                .ok_or_else(|| Error::Invalid(format!("'{key}': {current} + {delta} overflows")))?;
            let expires = old.as_ref().and_then(|e| e.expires);
            w.put(
                tenant,
                key,
                old.as_ref(),
                new.to_string().as_bytes(),
                expires,
            )?;
            Ok(new)
        })
    }

    /// Sets the key to `new` if its value is `expected` (`None`: the key
    /// is absent); returns whether it did. The new value has no TTL.
    pub fn compare_and_swap(
        &self,
        tenant: u32,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, Error> {
        Self::check_key(key)?;
        Self::check_value(new)?;
        self.write(|w| {
            let old = w.live(tenant, key)?;
            if old.as_ref().map(|e| e.value.as_slice()) != expected {
                return Ok(false);
            }
            w.put(tenant, key, old.as_ref(), new, None)?;
            Ok(true)
        })
    }

    /// Live keys starting with `prefix`, sorted, at most [`MAX_LIST`].
    pub fn keys(&self, tenant: u32, prefix: &str) -> Result<Vec<String>, Error> {
        let now = self.clock.now();
        match &self.backend {
            Backend::Memory(mem) => Ok(lock(mem)
                .map
                .range((tenant, prefix.to_string())..)
                .take_while(|((t, k), _)| *t == tenant && k.starts_with(prefix))
                .filter(|(_, e)| !e.expired(now))
                .take(MAX_LIST)
                .map(|((_, k), _)| k.clone())
                .collect()),
            Backend::File(db) => {
                let tx = db.begin_read().map_err(db_err)?;
                let kv = tx.open_table(KV).map_err(db_err)?;
                let ttl = tx.open_table(TTL).map_err(db_err)?;
                let start = scoped(tenant, prefix);
                let mut out = Vec::new();
                for entry in kv.range(start.as_slice()..).map_err(db_err)? {
                    let (k, _) = entry.map_err(db_err)?;
                    let k = k.value();
                    if !k.starts_with(&start) || out.len() >= MAX_LIST {
                        break;
                    }
                    let expired = ttl
                        .get(k)
                        .map_err(db_err)?
                        .is_some_and(|at| at.value() <= now);
                    if !expired {
                        out.push(String::from_utf8_lossy(&k[4..]).into_owned());
                    }
                }
                Ok(out)
            }
        }
    }

    /// When the key's entry expires (seconds since the Unix epoch); `None`
    /// when it does not, or there is no live entry.
    pub fn expires_at(&self, tenant: u32, key: &str) -> Result<Option<u64>, Error> {
        Self::check_key(key)?;
        let now = self.clock.now();
        let at = match &self.backend {
            Backend::Memory(mem) => lock(mem).entry(tenant, key)?.and_then(|e| e.expires),
            Backend::File(db) => {
                let tx = db.begin_read().map_err(db_err)?;
                let ttl = tx.open_table(TTL).map_err(db_err)?;
                ttl.get(scoped(tenant, key).as_slice())
                    .map_err(db_err)?
                    .map(|a| a.value())
            }
        };
        Ok(at.filter(|at| *at > now))
    }

    /// Keys and bytes a tenant uses (`None`: the whole cluster), expired
    /// entries not yet reclaimed included.
    pub fn usage(&self, tenant: Option<u32>) -> Result<Usage, Error> {
        match &self.backend {
            Backend::Memory(mem) => lock(mem).usage(tenant),
            Backend::File(db) => {
                let tx = db.begin_read().map_err(db_err)?;
                read_usage(&tx.open_table(USAGE).map_err(db_err)?, tenant)
            }
        }
    }
}

/// A cluster's store as its instances use it: this process's own (memory
/// or redb), or one on Redis that several hosts share. The local store's
/// calls are quick and need no deadline; a Redis call gives up at its
/// `timeout-ms` or at `deadline` (the request's), whichever comes first.
#[derive(Debug, Clone)]
pub enum Store {
    Local(std::sync::Arc<ClusterStore>),
    Redis(std::sync::Arc<redis_backend::RedisStore>),
}

impl Store {
    pub fn limits(&self) -> Limits {
        match self {
            Store::Local(s) => s.limits(),
            Store::Redis(r) => r.limits(),
        }
    }

    pub async fn get(
        &self,
        tenant: u32,
        key: &str,
        deadline: std::time::Instant,
    ) -> Result<Option<Vec<u8>>, Error> {
        match self {
            Store::Local(s) => s.get(tenant, key),
            Store::Redis(r) => r.get(tenant, key, deadline).await,
        }
    }

    pub async fn set(
        &self,
        tenant: u32,
        key: &str,
        value: &[u8],
        ttl: Option<u32>,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        match self {
            Store::Local(s) => s.set(tenant, key, value, ttl),
            Store::Redis(r) => r.set(tenant, key, value, ttl, deadline).await,
        }
    }

    pub async fn delete(
        &self,
        tenant: u32,
        key: &str,
        deadline: std::time::Instant,
    ) -> Result<bool, Error> {
        match self {
            Store::Local(s) => s.delete(tenant, key),
            Store::Redis(r) => r.delete(tenant, key, deadline).await,
        }
    }

    pub async fn increment(
        &self,
        tenant: u32,
        key: &str,
        delta: i64,
        deadline: std::time::Instant,
    ) -> Result<i64, Error> {
        match self {
            Store::Local(s) => s.increment(tenant, key, delta),
            Store::Redis(r) => r.increment(tenant, key, delta, deadline).await,
        }
    }

    pub async fn compare_and_swap(
        &self,
        tenant: u32,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        deadline: std::time::Instant,
    ) -> Result<bool, Error> {
        match self {
            Store::Local(s) => s.compare_and_swap(tenant, key, expected, new),
            Store::Redis(r) => {
                r.compare_and_swap(tenant, key, expected, new, deadline)
                    .await
            }
        }
    }

    pub async fn keys(
        &self,
        tenant: u32,
        prefix: &str,
        deadline: std::time::Instant,
    ) -> Result<Vec<String>, Error> {
        match self {
            Store::Local(s) => s.keys(tenant, prefix),
            Store::Redis(r) => r.keys(tenant, prefix, deadline).await,
        }
    }

    pub async fn expires_at(
        &self,
        tenant: u32,
        key: &str,
        deadline: std::time::Instant,
    ) -> Result<Option<u64>, Error> {
        match self {
            Store::Local(s) => s.expires_at(tenant, key),
            Store::Redis(r) => r.expires_at(tenant, key, deadline).await,
        }
    }

    pub async fn usage(
        &self,
        tenant: Option<u32>,
        deadline: std::time::Instant,
    ) -> Result<Usage, Error> {
        match self {
            Store::Local(s) => s.usage(tenant),
            Store::Redis(r) => r.usage(tenant, deadline).await,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_sits_at_its_own_index_and_names_its_setting() {
        for (i, bound) in Bound::ALL.into_iter().enumerate() {
            assert_eq!(bound as usize, i);
            let full = Error::Full {
                bound,
                message: "x".into(),
            };
            assert_eq!(
                full.to_string(),
                format!("store: full: x ({})", bound.setting())
            );
        }
    }

    fn exercise(store: &ClusterStore) {
        store.set(101, "fax/1", b"Queued", None).unwrap();
        store.set(101, "fax/2", b"Sent", None).unwrap();
        store.set(102, "fax/1", b"Other tenant", None).unwrap();
        assert_eq!(
            store.get(101, "fax/1").unwrap().as_deref(),
            Some(&b"Queued"[..])
        );
        assert_eq!(
            store.get(102, "fax/1").unwrap().as_deref(),
            Some(&b"Other tenant"[..])
        );
        assert_eq!(store.get(103, "fax/1").unwrap(), None);
        assert_eq!(store.keys(101, "fax/").unwrap(), ["fax/1", "fax/2"]);
        assert_eq!(store.keys(102, "").unwrap(), ["fax/1"]);
        assert!(store.delete(101, "fax/2").unwrap());
        assert!(!store.delete(101, "fax/2").unwrap());
        // Bounds: 3 entries at most here.
        store.set(101, "fax/3", b"x", None).unwrap();
        let full = store.set(101, "fax/4", b"x", None).unwrap_err();
        assert!(
            matches!(
                &full,
                Error::Full {
                    bound: Bound::Entries,
                    ..
                }
            ),
            "{full}"
        );
        assert!(full.to_string().starts_with("store: full: "), "{full}");
        store.set(101, "fax/3", b"overwrite is fine", None).unwrap();
        let big = store
            .set(101, "big", &vec![0; MAX_VALUE + 1], None)
            .unwrap_err();
        assert!(big.to_string().contains("at most"), "{big}");
        let bad = store.get(101, "").unwrap_err();
        assert!(bad.to_string().contains("keys are"), "{bad}");
    }

    fn stores(limits: Limits) -> Vec<(ClusterStore, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let file = ClusterStore::file(&dir.path().join("s.redb"), limits).unwrap();
        vec![(ClusterStore::memory(limits), None), (file, Some(dir))]
    }

    #[test]
    fn memory_store_scopes_by_tenant_and_is_bounded() {
        exercise(&ClusterStore::memory(Limits::entries(3)));
    }

    #[test]
    fn file_store_scopes_by_tenant_is_bounded_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        exercise(&ClusterStore::file(&path, Limits::entries(3)).unwrap());
        let again = ClusterStore::file(&path, Limits::entries(3)).unwrap();
        assert_eq!(
            again.get(101, "fax/1").unwrap().as_deref(),
            Some(&b"Queued"[..])
        );
        assert_eq!(again.usage(None).unwrap().entries, 3, "usage is kept");
    }

    #[test]
    fn each_tenant_has_its_own_quota_of_keys_and_bytes() {
        let limits = Limits {
            max_entries: 5,
            max_bytes: 100,
            max_entries_per_tenant: 3,
            max_bytes_per_tenant: 60,
        };
        for (store, _dir) in stores(limits) {
            for k in ["a", "b", "c"] {
                store.set(101, k, b"x", None).unwrap();
            }
            let e = store.set(101, "d", b"x", None).unwrap_err();
            assert_eq!(
                e.to_string(),
                "store: full: tenant 101 has 3 keys, its limit (store.max-entries-per-tenant)"
            );
            // Tenant 101 being full does not stop tenant 102.
            store.set(102, "a", b"x", None).unwrap();
            // Bytes (key + value): 102 has 2 of 60; 59 more is one too many.
            let e = store.set(102, "b", &[0; 58], None).unwrap_err();
            assert!(e.to_string().contains("store.max-bytes-per-tenant"), "{e}");
            store.set(102, "b", &[0; 57], None).unwrap();
            assert_eq!(
                store.usage(Some(102)).unwrap(),
                Usage {
                    entries: 2,
                    bytes: 60
                }
            );
            // The cluster: 3 + 2 = 5 keys.
            let e = store.set(103, "a", b"x", None).unwrap_err();
            assert!(e.to_string().contains("(store.max-entries)"), "{e}");
            // Shrinking and deleting give room back.
            store.set(102, "b", b"", None).unwrap();
            assert_eq!(
                store.usage(Some(102)).unwrap(),
                Usage {
                    entries: 2,
                    bytes: 3
                }
            );
            assert!(store.delete(101, "a").unwrap());
            store.set(103, "a", &[0; 30], None).unwrap();
            assert_eq!(
                store.usage(None).unwrap(),
                Usage {
                    entries: 5,
                    bytes: 38
                }
            );
            // The cluster's bytes: tenant 103 grows to its 60, a key goes:
            // 4 keys, 65 bytes; tenant 104's 37 would make 102.
            store.set(103, "a", &[0; 59], None).unwrap();
            assert!(store.delete(101, "b").unwrap());
            assert_eq!(
                store.usage(None).unwrap(),
                Usage {
                    entries: 4,
                    bytes: 65
                }
            );
            let e = store.set(104, "x", &[0; 36], None).unwrap_err();
            assert!(e.to_string().contains("(store.max-bytes)"), "{e}");
        }
    }

    #[test]
    fn expired_entries_are_invisible_and_reclaimed() {
        for (store, _dir) in stores(Limits::entries(2)) {
            let store = store.with_clock(1_000);
            store.set(101, "job/1", b"Queued", Some(10)).unwrap();
            store.set(101, "keep", b"forever", None).unwrap();
            store.set_now(1_009);
            assert_eq!(
                store.get(101, "job/1").unwrap().as_deref(),
                Some(&b"Queued"[..])
            );
            store.set_now(1_010);
            assert_eq!(store.get(101, "job/1").unwrap(), None);
            assert_eq!(store.keys(101, "").unwrap(), ["keep"]);
            assert_eq!(store.usage(None).unwrap().entries, 2, "not reclaimed yet");
            // Full (2 keys) until a write reclaims the expired one.
            store.set(101, "job/2", b"Queued", Some(10)).unwrap();
            assert_eq!(store.usage(None).unwrap().entries, 2);
            assert_eq!(store.keys(101, "").unwrap(), ["job/2", "keep"]);
            // Set without a TTL drops it; increment keeps it.
            store.set(101, "job/2", b"Sent", None).unwrap();
            store.set_now(5_000);
            assert_eq!(
                store.get(101, "job/2").unwrap().as_deref(),
                Some(&b"Sent"[..])
            );
            store.delete(101, "job/2").unwrap();
            store.set(101, "n", b"1", Some(5)).unwrap();
            assert_eq!(store.increment(101, "n", 1).unwrap(), 2);
            store.set_now(5_005);
            assert_eq!(store.get(101, "n").unwrap(), None, "increment kept the TTL");
            assert_eq!(
                store.increment(101, "n", 1).unwrap(),
                1,
                "expired counts as absent"
            );
            assert!(store.set(101, "z", b"", Some(0)).is_err());
        }
    }

    #[test]
    fn writes_reclaim_a_bounded_number_of_expired_entries_and_more_before_refusing() {
        let limits = Limits {
            max_entries: 1_000,
            max_bytes: u64::MAX,
            max_entries_per_tenant: 100,
            max_bytes_per_tenant: u64::MAX,
        };
        for (store, _dir) in stores(limits) {
            let store = store.with_clock(100);
            for i in 0..100 {
                store.set(102, &format!("k{i}"), b"v", Some(1)).unwrap();
            }
            store.set_now(101);
            // Any write reclaims SWEEP expired entries, the oldest first.
            store.set(103, "a", b"v", None).unwrap();
            assert_eq!(store.usage(Some(102)).unwrap().entries, 100 - SWEEP as u64);
        }
        for (store, _dir) in stores(limits) {
            let store = store.with_clock(100);
            // Tenant 102's entries expire first, then tenant 101's.
            for i in 0..100 {
                store.set(102, &format!("k{i}"), b"v", Some(1)).unwrap();
            }
            for i in 0..100 {
                store.set(101, &format!("k{i}"), b"v", Some(2)).unwrap();
            }
            store.set_now(102);
            // Tenant 101 is at its limit after the first SWEEP (all of
            // tenant 102's): its write reclaims up to SWEEP_WHEN_FULL more.
            store.set(101, "new", b"v", None).unwrap();
            assert_eq!(store.usage(Some(102)).unwrap().entries, 0);
            assert_eq!(store.usage(Some(101)).unwrap().entries, 1);
            assert_eq!(store.usage(None).unwrap().entries, 1);
        }
    }

    #[test]
    fn expiry_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let store = ClusterStore::file(&path, Limits::entries(10))
                .unwrap()
                .with_clock(1_000);
            store.set(101, "job", b"Queued", Some(60)).unwrap();
        }
        let store = ClusterStore::file(&path, Limits::entries(10))
            .unwrap()
            .with_clock(1_059);
        assert!(store.get(101, "job").unwrap().is_some());
        store.set_now(1_060);
        assert_eq!(store.get(101, "job").unwrap(), None);
        store.set(101, "other", b"x", None).unwrap();
        assert_eq!(store.usage(Some(101)).unwrap().entries, 1, "reclaimed");
    }

    #[test]
    fn increment_and_compare_and_swap_are_atomic() {
        for (store, _dir) in stores(Limits::entries(100)) {
            let store = std::sync::Arc::new(store);
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        (0..50)
                            .map(|_| store.increment(101, "n", 1).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut seen: Vec<i64> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            seen.sort();
            assert_eq!(seen, (1..=400).collect::<Vec<_>>(), "each value once");
            assert_eq!(store.get(101, "n").unwrap().as_deref(), Some(&b"400"[..]));

            assert!(store.compare_and_swap(101, "c", None, b"1").unwrap());
            assert!(!store.compare_and_swap(101, "c", None, b"2").unwrap());
            assert!(!store.compare_and_swap(101, "c", Some(b"2"), b"3").unwrap());
            assert!(store.compare_and_swap(101, "c", Some(b"1"), b"3").unwrap());
            assert_eq!(store.get(101, "c").unwrap().as_deref(), Some(&b"3"[..]));
            let e = store.increment(101, "c", i64::MAX).unwrap_err();
            assert!(e.to_string().contains("overflows"), "{e}");
            store.set(101, "t", b"text", None).unwrap();
            let e = store.increment(101, "t", 1).unwrap_err();
            assert!(e.to_string().contains("does not hold an integer"), "{e}");
        }
    }

    #[test]
    fn a_file_from_before_usage_was_kept_is_counted_once_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut kv = tx.open_table(KV).unwrap();
                kv.insert(scoped(101, "a").as_slice(), &b"12345"[..])
                    .unwrap();
                kv.insert(scoped(102, "bb").as_slice(), &b"1"[..]).unwrap();
            }
            tx.commit().unwrap();
        }
        let store = ClusterStore::file(&path, Limits::entries(10)).unwrap();
        assert_eq!(
            store.usage(Some(101)).unwrap(),
            Usage {
                entries: 1,
                bytes: 6
            }
        );
        assert_eq!(
            store.usage(None).unwrap(),
            Usage {
                entries: 2,
                bytes: 9
            }
        );
        assert_eq!(store.get(102, "bb").unwrap().as_deref(), Some(&b"1"[..]));
    }
}
