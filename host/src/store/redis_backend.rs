//! The store on a Redis server, so that several hosts serving a cluster
//! share its state (fax job status, classification training): whichever
//! host answers, it reads what another wrote.
//!
//! Everything the redb store promises holds here too, counted in Redis
//! itself so that hosts share it: the same key and value bounds, the
//! cluster's quotas per tenant and in all, TTLs, `keys` sorted and at most
//! [`MAX_LIST`]. Every write is one Lua script (`redis.lua`), which Redis
//! runs atomically: increments and compare-and-swaps from two hosts never
//! lose one, and two hosts cannot both take a quota's last place.
//!
//! Keys, under the cluster's prefix `P` (default `wasp:<cluster>:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P v:<tenant>:<key>` | string | the value, with a Redis expiry when it has a TTL |
//! | `P i:<tenant>` | sorted set | the tenant's keys (score 0: byte order), for `keys` |
//! | `P x` | sorted set | `<tenant>:<key>` of entries with a TTL, scored by expiry (seconds) |
//! | `P c` | hash | `<tenant>:<key>` → cost (key + value bytes) of entries with a TTL |
//! | `P u` | hash | `e:<tenant>`, `b:<tenant>`, `e:all`, `b:all`: entries and bytes in use |
//!
//! **Expiry.** Redis itself hides an expired value at once (its expiry is
//! set to the same second redb would use), but it cannot give the quota
//! back: Redis drops the value without telling anyone. So the entry stays
//! in `x` with its cost in `c` until a write reclaims it, exactly as in
//! the redb store: every write reclaims up to [`SWEEP`] due entries, a
//! write that would be refused as full up to [`SWEEP_WHEN_FULL`] more, and
//! a write to an expired key reclaims it. Time is the Redis server's, so
//! hosts whose clocks differ agree.
//!
//! **Failures.** Each call waits at most the store's `timeout-ms`, and
//! never past the request's own deadline; then it fails with
//! `store: unavailable: ...` (that call only: the plugin gets an error it
//! can turn into a fault, the instance and the host go on). The connection
//! manager reconnects by itself; the call that finds the connection broken
//! fails, the next ones use the new connection. A call that timed out may
//! still have been carried out by Redis later (as with any remote store).
//!
//! **What Redis must be.** One server (or a primary), not Redis Cluster:
//! a script touches keys it cannot declare in advance (other tenants'
//! expired entries). Redis must not evict keys on its own
//! (`maxmemory-policy noeviction`, the default): an evicted value would
//! still be counted. Every host must give a cluster the same bounds; each
//! host checks writes against its own config.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{ClusterStore, Error, Limits, MAX_LIST, SWEEP, SWEEP_WHEN_FULL, Usage};

/// Whether `url` names a Redis server wasp can use (parsed, not
/// connected): the reason when it does not.
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| format!("'{}' is not a Redis URL: {e}", redact(url)))
}

/// The URL without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Doubles in Lua hold integers exactly up to 2^53: larger bounds (the
/// tests' "no bound") are passed as 2^53, which no usage reaches.
fn lua_bound(n: u64) -> u64 {
    n.min(1 << 53)
}

static SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("redis.lua")));

/// A cluster's store on Redis.
pub struct RedisStore {
    conn: ConnectionManager,
    /// Where the server is, for messages (never the password).
    addr: String,
    prefix: String,
    limits: Limits,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.addr)
            .field("prefix", &self.prefix)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The answer of a write script.
enum Outcome {
    Ok(Vec<Vec<u8>>),
    Full { bound: String, used: u64, grow: u64 },
    NotInteger,
    Overflow(String),
}

impl RedisStore {
    /// A store on the server at `url` under `prefix`. Does not connect:
    /// the first call does (a host starts while Redis is away, and its
    /// store calls fail until Redis is back). Needs a Tokio runtime.
    pub fn open(
        url: &str,
        prefix: String,
        limits: Limits,
        timeout: Duration,
    ) -> anyhow::Result<RedisStore> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("'{}' is not a Redis URL: {e}", redact(url)))?;
        let addr = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // One attempt per call: the call's own bound decides, and the
            // next call tries again.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("redis at {addr}: {e}"))?;
        Ok(RedisStore {
            conn,
            addr,
            prefix,
            limits,
            timeout,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Where the server is (`host:port`), for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Runs one request, within the store's timeout and before `deadline`.
    async fn run<T>(
        &self,
        deadline: Instant,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        let bound = self.timeout.min(left);
        match tokio::time::timeout(bound, request).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) if e.is_timeout() => Err(self.timed_out(bound)),
            Ok(Err(e)) => Err(Error::Unavailable(format!("redis at {}: {e}", self.addr))),
            Err(_) => Err(self.timed_out(bound)),
        }
    }

    fn timed_out(&self, bound: Duration) -> Error {
        let why = if bound < self.timeout {
            "before the request's deadline"
        } else {
            "(store.timeout-ms)"
        };
        Error::Unavailable(format!(
            "redis at {} did not answer within {} ms {why}",
            self.addr,
            bound.as_millis()
        ))
    }

    /// Invokes the script: `op` on the tenant's `key`, then `extra`.
    async fn script(
        &self,
        deadline: Instant,
        op: &str,
        tenant: &str,
        key: &str,
        extra: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>, Error> {
        let l = self.limits;
        let mut call = SCRIPT.prepare_invoke();
        call.arg(&self.prefix)
            .arg(op)
            .arg(tenant)
            .arg(key)
            .arg(lua_bound(l.max_entries))
            .arg(lua_bound(l.max_bytes))
            .arg(lua_bound(l.max_entries_per_tenant))
            .arg(lua_bound(l.max_bytes_per_tenant))
            .arg(SWEEP)
            .arg(SWEEP_WHEN_FULL);
        for a in extra {
            call.arg(*a);
        }
        let mut conn = self.conn.clone();
        self.run(deadline, call.invoke_async(&mut conn)).await
    }

    /// A write: the script's answer read as an outcome.
    async fn write(
        &self,
        deadline: Instant,
        op: &str,
        tenant: u32,
        key: &str,
        extra: &[&[u8]],
    ) -> Result<Outcome, Error> {
        let answer = self
            .script(deadline, op, &tenant.to_string(), key, extra)
            .await?;
        let text = |i: usize| {
            answer
                .get(i)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let number = |i: usize| text(i).parse::<u64>().unwrap_or(0);
        Ok(match text(0).as_str() {
            "ok" => Outcome::Ok(answer[1..].to_vec()),
            "full" => Outcome::Full {
                bound: text(1),
                used: number(2),
                grow: number(3),
            },
            "not-integer" => Outcome::NotInteger,
            "overflow" => Outcome::Overflow(text(1)),
            other => {
                return Err(Error::Db(format!(
                    "redis at {}: unexpected answer '{other}'",
                    self.addr
                )));
            }
        })
    }

    /// The error for a bound the script found reached: the same words as
    /// the redb store's.
    fn full(&self, tenant: u32, bound: &str, used: u64, grow: u64) -> Error {
        let l = self.limits;
        match bound {
            "max-entries-per-tenant" => super::full_entries_per_tenant(tenant, used),
            "max-entries" => super::full_entries(used),
            "max-bytes-per-tenant" => {
                super::full_bytes_per_tenant(tenant, used, l.max_bytes_per_tenant, grow)
            }
            _ => super::full_bytes(used, l.max_bytes, grow),
        }
    }

    fn flag(&self, answer: &[Vec<u8>]) -> bool {
        answer.first().is_some_and(|v| v == b"1")
    }

    pub async fn get(
        &self,
        tenant: u32,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, Error> {
        ClusterStore::check_key(key)?;
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(format!("{}v:{tenant}:{key}", self.prefix));
        self.run(deadline, cmd.query_async::<Option<Vec<u8>>>(&mut conn))
            .await
    }

    /// Sets the value; with `ttl` (seconds, at least 1) it expires then,
    /// without it it stays until deleted (a TTL it had is dropped).
    pub async fn set(
        &self,
        tenant: u32,
        key: &str,
        value: &[u8],
        ttl: Option<u32>,
        deadline: Instant,
    ) -> Result<(), Error> {
        ClusterStore::check_key(key)?;
        ClusterStore::check_value(value)?;
        if ttl == Some(0) {
            return Err(Error::Invalid("a TTL is at least 1 second".into()));
        }
        let ttl = ttl.map(|s| s.to_string()).unwrap_or_default();
        match self
            .write(deadline, "set", tenant, key, &[ttl.as_bytes(), value])
            .await?
        {
            Outcome::Full { bound, used, grow } => Err(self.full(tenant, &bound, used, grow)),
            _ => Ok(()),
        }
    }

    /// Whether the key existed.
    pub async fn delete(&self, tenant: u32, key: &str, deadline: Instant) -> Result<bool, Error> {
        ClusterStore::check_key(key)?;
        match self.write(deadline, "delete", tenant, key, &[]).await? {
            Outcome::Ok(answer) => Ok(self.flag(&answer)),
            _ => Ok(false),
        }
    }

    /// Adds `delta` to the integer under the key (decimal text; a missing
    /// key counts as 0) and returns the new value. The entry keeps its TTL.
    pub async fn increment(
        &self,
        tenant: u32,
        key: &str,
        delta: i64,
        deadline: Instant,
    ) -> Result<i64, Error> {
        ClusterStore::check_key(key)?;
        let d = delta.to_string();
        match self
            .write(deadline, "increment", tenant, key, &[d.as_bytes()])
            .await?
        {
            Outcome::Ok(answer) => answer
                .first()
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .ok_or_else(|| Error::Db(format!("redis at {}: no new value", self.addr))),
            Outcome::Full { bound, used, grow } => Err(self.full(tenant, &bound, used, grow)),
            Outcome::NotInteger => Err(Error::Invalid(format!(
                "'{key}' does not hold an integer (decimal text)"
            ))),
            Outcome::Overflow(current) => Err(Error::Invalid(format!(
                "'{key}': {current} + {delta} overflows"
            ))),
        }
    }

    /// Sets the key to `new` if its value is `expected` (`None`: the key
    /// is absent); returns whether it did. The new value has no TTL.
    pub async fn compare_and_swap(
        &self,
        tenant: u32,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        deadline: Instant,
    ) -> Result<bool, Error> {
        ClusterStore::check_key(key)?;
        ClusterStore::check_value(new)?;
        let (given, expected): (&[u8], &[u8]) = match expected {
            Some(v) => (b"1", v),
            None => (b"0", b""),
        };
        match self
            .write(deadline, "cas", tenant, key, &[given, expected, new])
            .await?
        {
            Outcome::Ok(answer) => Ok(self.flag(&answer)),
            Outcome::Full { bound, used, grow } => Err(self.full(tenant, &bound, used, grow)),
            _ => Ok(false),
        }
    }

    /// Live keys starting with `prefix`, sorted, at most [`MAX_LIST`].
    pub async fn keys(
        &self,
        tenant: u32,
        prefix: &str,
        deadline: Instant,
    ) -> Result<Vec<String>, Error> {
        let limit = MAX_LIST.to_string();
        let keys = self
            .script(
                deadline,
                "keys",
                &tenant.to_string(),
                prefix,
                &[limit.as_bytes()],
            )
            .await?;
        Ok(keys
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }

    /// When the key's entry expires (seconds since the Unix epoch, by the
    /// Redis server's clock); `None` when it does not, or there is no live
    /// entry.
    pub async fn expires_at(
        &self,
        tenant: u32,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<u64>, Error> {
        ClusterStore::check_key(key)?;
        let answer = self
            .script(deadline, "expires", &tenant.to_string(), key, &[])
            .await?;
        Ok(answer
            .first()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()))
    }

    /// Keys and bytes a tenant uses (`None`: the whole cluster), expired
    /// entries not yet reclaimed included.
    pub async fn usage(&self, tenant: Option<u32>, deadline: Instant) -> Result<Usage, Error> {
        let who = tenant.map_or("all".to_string(), |t| t.to_string());
        let answer = self.script(deadline, "usage", "", &who, &[]).await?;
        let n = |i: usize| {
            answer
                .get(i)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(0)
        };
        Ok(Usage {
            entries: n(0),
            bytes: n(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_carry_the_password() {
        assert_eq!(redact("redis://u:secret@h:6379/0"), "redis://…@h:6379/0");
        assert_eq!(redact("redis://h:6379/0"), "redis://h:6379/0");
        let e = check_url("rediss://:secret@h:6379/0?bogus=%zz");
        assert!(
            e.as_ref().map_or_else(|e| !e.contains("secret"), |_| true),
            "{e:?}"
        );
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn bounds_beyond_what_lua_holds_exactly_are_clamped() {
        assert_eq!(lua_bound(u64::MAX), 1 << 53);
        assert_eq!(lua_bound(1 << 40), 1 << 40);
    }
}
