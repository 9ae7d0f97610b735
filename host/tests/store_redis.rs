//! The store on a real Redis server (`backend = "redis"`): the same
//! promises as the embedded store, shared by several hosts. Each test
//! starts its own `redis-server` on a free loopback port
//! (`common/redis_server.rs`; installed by `scripts/ensure-redis` when
//! missing).

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use redis_server::RedisServer;
use serde_json::json;
use wasp::store::redis_backend::RedisStore;
use wasp::store::{Bound, ClusterStore, Error, Limits, MAX_LIST, MAX_VALUE, SWEEP, Usage};

/// A deadline far enough away never to be the bound.
fn later() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn open(redis: &RedisServer, limits: Limits) -> RedisStore {
    open_at(redis, "wasp:test:", limits)
}

/// A store under its own prefix: another cluster's, on the same Redis.
fn open_at(redis: &RedisServer, prefix: &str, limits: Limits) -> RedisStore {
    RedisStore::open(&redis.url(), prefix.into(), limits, Duration::from_secs(5)).unwrap()
}

/// Waits (polling: Redis tells no one) until the key's entry has expired.
async fn until_gone(store: &RedisStore, tenant: u32, key: &str) {
    for _ in 0..400 {
        if store.get(tenant, key, later()).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{key} never expired");
}

#[tokio::test]
async fn scopes_by_tenant_and_is_bounded_like_the_embedded_store() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = open(&redis, Limits::entries(3));
    let t = later();
    store.set(101, "fax/1", b"Queued", None, t).await.unwrap();
    store.set(101, "fax/2", b"Sent", None, t).await.unwrap();
    store
        .set(102, "fax/1", b"Other tenant", None, t)
        .await
        .unwrap();
    assert_eq!(
        store.get(101, "fax/1", t).await.unwrap().as_deref(),
        Some(&b"Queued"[..])
    );
    assert_eq!(
        store.get(102, "fax/1", t).await.unwrap().as_deref(),
        Some(&b"Other tenant"[..])
    );
    assert_eq!(store.get(103, "fax/1", t).await.unwrap(), None);
    assert_eq!(
        store.keys(101, "fax/", t).await.unwrap(),
        ["fax/1", "fax/2"]
    );
    assert_eq!(store.keys(102, "", t).await.unwrap(), ["fax/1"]);
    assert!(store.delete(101, "fax/2", t).await.unwrap());
    assert!(!store.delete(101, "fax/2", t).await.unwrap());
    store.set(101, "fax/3", b"x", None, t).await.unwrap();
    let full = store.set(101, "fax/4", b"x", None, t).await.unwrap_err();
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
    store
        .set(101, "fax/3", b"overwrite is fine", None, t)
        .await
        .unwrap();
    let big = store
        .set(101, "big", &vec![0; MAX_VALUE + 1], None, t)
        .await
        .unwrap_err();
    assert!(big.to_string().contains("at most"), "{big}");
    // The largest value fits (the bound is the same, not smaller).
    let limits = Limits {
        max_entries: 10,
        max_bytes: u64::MAX,
        max_entries_per_tenant: 10,
        max_bytes_per_tenant: u64::MAX,
    };
    let roomy = open(&redis, limits);
    roomy
        .set(104, "big", &vec![7; MAX_VALUE], None, t)
        .await
        .unwrap();
    assert_eq!(
        roomy.get(104, "big", t).await.unwrap().map(|v| v.len()),
        Some(MAX_VALUE)
    );
    let bad = store.get(101, "", t).await.unwrap_err();
    assert!(bad.to_string().contains("keys are"), "{bad}");
}

#[tokio::test]
async fn each_tenant_has_its_own_quota_of_keys_and_bytes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let limits = Limits {
        max_entries: 5,
        max_bytes: 100,
        max_entries_per_tenant: 3,
        max_bytes_per_tenant: 60,
    };
    let store = open(&redis, limits);
    let t = later();
    for k in ["a", "b", "c"] {
        store.set(101, k, b"x", None, t).await.unwrap();
    }
    let e = store.set(101, "d", b"x", None, t).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "store: full: tenant 101 has 3 keys, its limit (store.max-entries-per-tenant)"
    );
    store.set(102, "a", b"x", None, t).await.unwrap();
    let e = store.set(102, "b", &[0; 58], None, t).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "store: full: tenant 102 uses 2 of its 60 bytes and this write needs 59 more \
         (store.max-bytes-per-tenant)"
    );
    store.set(102, "b", &[0; 57], None, t).await.unwrap();
    assert_eq!(
        store.usage(Some(102), t).await.unwrap(),
        Usage {
            entries: 2,
            bytes: 60
        }
    );
    let e = store.set(103, "a", b"x", None, t).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "store: full: the cluster's store has 5 keys, its limit (store.max-entries)"
    );
    store.set(102, "b", b"", None, t).await.unwrap();
    assert_eq!(
        store.usage(Some(102), t).await.unwrap(),
        Usage {
            entries: 2,
            bytes: 3
        }
    );
    assert!(store.delete(101, "a", t).await.unwrap());
    store.set(103, "a", &[0; 30], None, t).await.unwrap();
    assert_eq!(
        store.usage(None, t).await.unwrap(),
        Usage {
            entries: 5,
            bytes: 38
        }
    );
    store.set(103, "a", &[0; 59], None, t).await.unwrap();
    assert!(store.delete(101, "b", t).await.unwrap());
    let e = store.set(104, "x", &[0; 36], None, t).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "store: full: the cluster's store uses 65 of its 100 bytes and this write needs 37 \
         more (store.max-bytes)"
    );
}

/// The same calls on the embedded store and on Redis give the same
/// answers, errors word for word.
#[tokio::test]
async fn every_call_answers_as_the_embedded_store_does() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let limits = Limits {
        max_entries: 8,
        max_bytes: 200,
        max_entries_per_tenant: 6,
        max_bytes_per_tenant: 120,
    };
    let local = ClusterStore::memory(limits);
    let remote = open(&redis, limits);
    let t = later();
    let mut step = 0;
    macro_rules! same {
        ($call:ident ( $($arg:expr),* )) => {{
            step += 1;
            let a = format!("{:?}", local.$call($($arg),*));
            let b = format!("{:?}", remote.$call($($arg,)* t).await);
            assert_eq!(a, b, "step {step}: {}", stringify!($call($($arg),*)));
        }};
    }
    for value in [
        "+7",
        "007",
        "-0",
        "-007",
        " 1",
        "1.5",
        "",
        "x",
        "9223372036854775807",
        "99999999999999999999",
    ] {
        same!(set(101, "n", value.as_bytes(), None));
        same!(increment(101, "n", 1));
        same!(get(101, "n"));
    }
    same!(set(101, "n", b"-9223372036854775808", None));
    same!(increment(101, "n", -1));
    same!(increment(101, "n", i64::MAX));
    same!(increment(101, "fresh", -5));
    same!(increment(101, "fresh", i64::MIN));
    same!(compare_and_swap(101, "c", None, b"1"));
    same!(compare_and_swap(101, "c", None, b"2"));
    same!(compare_and_swap(101, "c", Some(b"2"), b"3"));
    same!(compare_and_swap(101, "c", Some(b"1"), b"3"));
    same!(compare_and_swap(101, "c", Some(b"3"), &[b'z'; 200]));
    same!(compare_and_swap(101, "gone", Some(b""), b"x"));
    same!(set(101, "z", b"", Some(0)));
    same!(set(101, "", b"", None));
    same!(get(101, &"k".repeat(1025)));
    same!(set(101, &"k".repeat(1024), b"", None));
    same!(set(101, "\u{0}odd\nkey é", b"\xff\x00", None));
    same!(get(101, "\u{0}odd\nkey é"));
    same!(keys(101, ""));
    same!(keys(101, "\u{0}"));
    same!(keys(101, "c"));
    for i in 0..4 {
        same!(set(102, &format!("k{i}"), &[1; 30], None));
    }
    same!(set(101, "over", b"x", None));
    same!(set(102, "k0", &[1; 60], None));
    same!(usage(Some(101)));
    same!(usage(Some(102)));
    same!(usage(None));
    same!(delete(101, "c"));
    same!(delete(101, "c"));
    same!(usage(None));
}

#[tokio::test]
async fn keys_lists_at_most_a_thousand_in_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = open(&redis, Limits::entries(10_000));
    let t = later();
    for i in (0..MAX_LIST + 5).rev() {
        store
            .set(101, &format!("job/{i:05}"), b"v", None, t)
            .await
            .unwrap();
    }
    store.set(101, "other", b"v", None, t).await.unwrap();
    let keys = store.keys(101, "job/", t).await.unwrap();
    let expected: Vec<String> = (0..MAX_LIST).map(|i| format!("job/{i:05}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(store.keys(101, "job/01", t).await.unwrap().len(), 5);
    assert_eq!(store.keys(101, "ot", t).await.unwrap(), ["other"]);
}

#[tokio::test]
async fn expired_entries_are_invisible_and_their_room_is_given_back() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = open(&redis, Limits::entries(2));
    let t = later();
    // "keep" first: a write after "job/1" could already reclaim it.
    store.set(101, "keep", b"forever", None, t).await.unwrap();
    store
        .set(101, "job/1", b"Queued", Some(1), t)
        .await
        .unwrap();
    until_gone(&store, 101, "job/1").await;
    assert_eq!(store.keys(101, "", t).await.unwrap(), ["keep"]);
    assert_eq!(store.expires_at(101, "job/1", t).await.unwrap(), None);
    assert_eq!(
        store.usage(None, t).await.unwrap().entries,
        2,
        "not reclaimed yet: Redis dropped the value, the room is still counted"
    );
    // Full (2 keys) until this write reclaims the expired one.
    store
        .set(101, "job/2", b"Queued", Some(60), t)
        .await
        .unwrap();
    assert_eq!(store.usage(None, t).await.unwrap().entries, 2);
    assert_eq!(store.keys(101, "", t).await.unwrap(), ["job/2", "keep"]);
    // Set without a TTL drops it; increment keeps it.
    assert!(store.expires_at(101, "job/2", t).await.unwrap().is_some());
    store.set(101, "job/2", b"Sent", None, t).await.unwrap();
    assert_eq!(store.expires_at(101, "job/2", t).await.unwrap(), None);
    store.delete(101, "job/2", t).await.unwrap();
    store.set(101, "n", b"1", Some(60), t).await.unwrap();
    let at = store.expires_at(101, "n", t).await.unwrap().unwrap();
    assert_eq!(store.increment(101, "n", 1, t).await.unwrap(), 2);
    assert_eq!(store.expires_at(101, "n", t).await.unwrap(), Some(at));
    // An expired counter counts as absent.
    store.set(101, "n", b"41", Some(1), t).await.unwrap();
    until_gone(&store, 101, "n").await;
    assert_eq!(store.increment(101, "n", 1, t).await.unwrap(), 1);
    assert_eq!(store.usage(None, t).await.unwrap().entries, 2);
}

#[tokio::test]
async fn writes_reclaim_a_bounded_number_of_expired_entries_and_more_before_refusing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let limits = Limits {
        max_entries: 1_000,
        max_bytes: u64::MAX,
        max_entries_per_tenant: 100,
        max_bytes_per_tenant: u64::MAX,
    };
    let store = open(&redis, limits);
    let t = later();
    // A TTL of 2 s: the 100 writes end before any of them expires (a
    // write in the second an entry expires would reclaim it).
    for i in 0..100 {
        store
            .set(102, &format!("k{i}"), b"v", Some(2), t)
            .await
            .unwrap();
    }
    assert_eq!(store.usage(Some(102), t).await.unwrap().entries, 100);
    until_gone(&store, 102, "k99").await;
    // Any write reclaims SWEEP expired entries.
    store.set(103, "a", b"v", None, t).await.unwrap();
    assert_eq!(
        store.usage(Some(102), t).await.unwrap().entries,
        100 - SWEEP as u64
    );
    // Tenant 101 full of expired entries behind 100 of tenant 100's (same
    // expiry or earlier, and "100:" sorts first), in a store of its own.
    // A TTL of 3 s: the 200 writes end before any of them expires, so
    // none reclaims another.
    let store = open_at(&redis, "wasp:second:", limits);
    for tenant in [100, 101] {
        for i in 0..100 {
            store
                .set(tenant, &format!("k{i}"), b"v", Some(3), t)
                .await
                .unwrap();
        }
    }
    assert_eq!(store.usage(None, t).await.unwrap().entries, 200);
    until_gone(&store, 101, "k99").await;
    // The first SWEEP takes 64 of tenant 100's; tenant 101 is still at its
    // limit, so its write reclaims up to SWEEP_WHEN_FULL more first.
    store.set(101, "new", b"v", None, t).await.unwrap();
    assert_eq!(store.usage(Some(100), t).await.unwrap().entries, 0);
    assert_eq!(store.usage(Some(101), t).await.unwrap().entries, 1);
    assert_eq!(store.usage(None, t).await.unwrap().entries, 1);
}

/// Two hosts' stores on one Redis (two connections): increments never
/// lose one, compare-and-swap lets exactly one writer win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_and_swaps_from_two_hosts_are_atomic() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = Arc::new(open(&redis, Limits::entries(100)));
    let b = Arc::new(open(&redis, Limits::entries(100)));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..50 {
                    seen.push(store.increment(101, "n", 1, later()).await.unwrap());
                }
                seen
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    seen.sort();
    assert_eq!(seen, (1..=400).collect::<Vec<i64>>(), "each value once");
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                store
                    .compare_and_swap(101, "owner", None, format!("{i}").as_bytes(), later())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one swap from absent wins");
    // The last place of a quota: 8 racers for 2 remaining places.
    let limits = Limits::entries(3);
    let a = Arc::new(open_at(&redis, "wasp:quota:", limits));
    let b = Arc::new(open_at(&redis, "wasp:quota:", limits));
    a.set(202, "first", b"x", None, later()).await.unwrap();
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                store
                    .set(202, &format!("k{i}"), b"x", None, later())
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut placed = 0;
    for r in racers {
        placed += usize::from(r.await.unwrap());
    }
    assert_eq!(placed, 2);
    assert_eq!(a.usage(Some(202), later()).await.unwrap().entries, 3);
}

#[tokio::test]
async fn an_unreachable_redis_fails_the_call_with_a_clear_error() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::open(
        &redis.url(),
        "wasp:test:".into(),
        Limits::entries(10),
        Duration::from_millis(300),
    )
    .unwrap();
    store.set(101, "k", b"v", None, later()).await.unwrap();
    redis.pause();
    let e = store.get(101, "k", later()).await.unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "store: unavailable: redis at 127.0.0.1:{} did not answer within 300 ms",
            redis.port
        )),
        "{e}"
    );
    // The request's deadline cuts the wait shorter than timeout-ms.
    let e = store
        .set(
            101,
            "k",
            b"w",
            None,
            Instant::now() + Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("before the request's deadline"),
        "{e}"
    );
    redis.resume();
    let value = store.get(101, "k", later()).await.unwrap();
    // The write that timed out had reached Redis, which may carry it out
    // once it runs again (as with any remote store): either value.
    assert!(
        [Some(&b"v"[..]), Some(&b"w"[..])].contains(&value.as_deref()),
        "works again once Redis answers: {value:?}"
    );
    redis.kill();
    let e = store.get(101, "k", later()).await.unwrap_err();
    assert!(
        e.to_string().starts_with("store: unavailable: redis at"),
        "{e}"
    );
    redis.restart();
    let mut answer = store.get(101, "k", later()).await;
    if answer.is_err() {
        // The call that finds the old connection broken fails; the next
        // one reconnects.
        answer = store.get(101, "k", later()).await;
    }
    assert_eq!(answer.unwrap(), None, "a new, empty Redis");
}

// ---- Hosts ----

fn fax_on(redis: &RedisServer, extra: &str) -> String {
    format!(
        r#"
[clusters.fax]
service = "Fax"
component = "builtin:fax"
tenants = [101, 102]
instances = 2

[clusters.fax.store]
backend = "redis"
url = "{}"
{extra}

[clusters.chaos]
service = "Chaos"
component = "{CHAOS}"
tenants = [101, 102]
instances = 2

[clusters.chaos.store]
backend = "redis"
url = "{}"
max-entries-per-tenant = 3
timeout-ms = 300

[clusters.echo]
service = "Echo"
component = "builtin:echo"
tenants = [101]
"#,
        redis.url(),
        redis.url()
    )
}

#[tokio::test]
async fn a_fax_sent_through_one_host_is_known_to_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = serve(&fax_on(&redis, "")).await;
    let b = serve(&fax_on(&redis, "")).await;
    let (status, answer) = a
        .esp(
            "fax",
            "Fax",
            "SendFax",
            json!(101),
            json!({"To": "+14155550100", "Document": "Invoice 4471"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let job = answer["Result"]["FaxJobId"].as_str().unwrap().to_string();
    let (status, answer) = b
        .esp(
            "fax",
            "Fax",
            "GetFaxStatus",
            json!(101),
            json!({"FaxJobId": job}),
        )
        .await;
    assert_eq!(status, 200, "host B answers host A's job: {answer}");
    assert_eq!(answer["Result"]["Status"], "Queued", "{answer}");
    // Still scoped by tenant: tenant 102 does not see tenant 101's job.
    let (status, answer) = b
        .esp(
            "fax",
            "Fax",
            "GetFaxStatus",
            json!(102),
            json!({"FaxJobId": job}),
        )
        .await;
    assert_fault(status, &answer, 422, 3005);
    // Each host opened its own connection to the one Redis.
    let store = b.host.current().clusters["fax"]
        .store_handle()
        .unwrap()
        .clone();
    let at = store
        .expires_at(101, &format!("fax/{job}"), later())
        .await
        .unwrap();
    assert!(at.is_some(), "the record has the fax's TTL");
}

#[tokio::test]
async fn training_through_either_host_teaches_the_same_model() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let config = format!(
        r#"
[clusters.classification]
service = "Classification"
component = "builtin:classification"
tenants = [101]

[clusters.classification.store]
backend = "redis"
url = "{}"
"#,
        redis.url()
    );
    let a = serve(&config).await;
    let b = serve(&config).await;
    let mut examples = Vec::new();
    for host in [&a, &b, &a] {
        let (status, answer) = host
            .esp(
                "classification",
                "Classification",
                "Train",
                json!(101),
                json!({"Category": "Zoo", "Text": "quokka wombat platypus"}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        examples.push(answer["Result"]["Examples"].as_i64().unwrap());
    }
    assert_eq!(examples, [1, 2, 3], "one count of the tenant's examples");
    let (status, answer) = b
        .esp(
            "classification",
            "Classification",
            "Classify",
            json!(101),
            json!({"Text": "a wombat and a quokka"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["Result"]["Categories"].get("Zoo").is_some(),
        "host B classifies with what was taught through A: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_counters_and_quotas() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = Arc::new(serve(&fax_on(&redis, "")).await);
    let b = Arc::new(serve(&fax_on(&redis, "")).await);
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let host = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let (status, answer) = host
                    .esp(
                        "chaos",
                        "Chaos",
                        "Incr",
                        json!(101),
                        json!({"Key": "n", "Delta": 1}),
                    )
                    .await;
                assert_eq!(status, 200, "{answer}");
                answer["Result"]["Value"].as_i64().unwrap()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for c in calls {
        seen.push(c.await.unwrap());
    }
    seen.sort();
    assert_eq!(seen, (1..=40).collect::<Vec<i64>>(), "no increment lost");
    // Tenant 101 has "n" and may keep 3 keys: one more through A, one
    // through B, and the fourth is refused by either.
    for (host, key) in [(&a, "x"), (&b, "y")] {
        let (status, answer) = host
            .esp(
                "chaos",
                "Chaos",
                "Put",
                json!(101),
                json!({"Key": key, "Value": "v"}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    for host in [&a, &b] {
        let (status, answer) = host
            .esp(
                "chaos",
                "Chaos",
                "Put",
                json!(101),
                json!({"Key": "z", "Value": "v"}),
            )
            .await;
        assert_fault_says(
            status,
            &answer,
            422,
            3005,
            "store: full: tenant 101 has 3 keys, its limit (store.max-entries-per-tenant)",
        );
        assert_eq!(answer["ComponentFaultCode"], 5, "{answer}");
    }
    // Tenant 102's room is its own.
    let (status, answer) = b
        .esp(
            "chaos",
            "Chaos",
            "Put",
            json!(102),
            json!({"Key": "z", "Value": "v"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn with_redis_stopped_a_store_call_fails_and_the_host_serves_on() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = serve(&fax_on(&redis, "")).await;
    let put = |value: &'static str| {
        s.esp(
            "chaos",
            "Chaos",
            "Put",
            json!(101),
            json!({"Key": "k", "Value": value}),
        )
    };
    let (status, answer) = put("before").await;
    assert_eq!(status, 200, "{answer}");
    redis.pause();
    let (status, answer) = put("during").await;
    assert_fault_says(
        status,
        &answer,
        422,
        3005,
        &format!(
            "store: unavailable: redis at 127.0.0.1:{} did not answer within 300 ms",
            redis.port
        ),
    );
    assert_eq!(
        answer["ComponentFaultCode"], 100,
        "the SDK's INTERNAL: {answer}"
    );
    // Other clusters serve meanwhile, and the instance was not replaced:
    // the call got an error, not a deadline.
    let (status, answer) = s
        .esp("echo", "Echo", "Echo", json!(101), json!({"Text": "hi"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(s.instance_sum("chaos", "replaced").await, 0);
    redis.resume();
    let (status, answer) = put("after").await;
    assert_eq!(status, 200, "{answer}");
    let (_, answer) = s
        .esp("chaos", "Chaos", "Get", json!(101), json!({"Key": "k"}))
        .await;
    assert!(
        ["after", "during"].contains(&answer["Result"]["Value"].as_str().unwrap()),
        "{answer}"
    );
}
