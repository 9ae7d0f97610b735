//! Hot-swapping under load, with `wasp run` as a process: while clients
//! send a stream of ESP fax requests and a writer drops capture files,
//! the fax component is replaced three times (its file copied over, as an
//! operator deploys a build; once through a config edit and `wasp
//! reload`) and a second capture point is added and removed. Nothing
//! fails, no file is lost or submitted twice, and the answers name the
//! new component after each swap — and never an older one after a newer.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::{
    Wasp, component_id, drop_file, fax_tagged, files, replace, submit_doc, submitted_once,
};
use wasp::tools::node_sim::{Sim, SimArgs};

/// How long one step may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(180);
/// ESP requests at least, all clients together.
const REQUESTS: u64 = 10_000;
/// Clients sending at once, each one request after the other.
const CLIENTS: usize = 8;
/// Requests between two swaps.
const EVERY: u64 = 2_500;

const FAX: &str = r#"{"Request":{"Service":"Fax","Method":"SendFax","TenantId":101,"Parameters":{"To":"+14155550100","Document":"Hello"}}}"#;

/// Version `v` of the fax component.
fn fax_version(v: u8) -> Vec<u8> {
    fax_tagged(&[b'v', b'0' + v])
}

fn config(fax: &Path, extra_capture: bool) -> String {
    let capture = |name: &str| {
        format!(
            "[captures.{name}]\nadapter = \"file\"\nrescan-ms = 200\nsettle-ms = 0\n\
             default-values = {{ TenantId = 101, Queue = \"Inbound\" }}\n"
        )
    };
    let mut text = format!(
        "[[tenants]]\nid = 101\nname = \"Environment\"\n\n\
         [clusters.fax]\nservice = \"Fax\"\ncomponent = {:?}\ntenants = [101]\ninstances = 4\npolicy = \"pooled\"\n\n{}",
        fax.display().to_string(),
        capture("orders")
    );
    if extra_capture {
        text.push_str(&capture("extra"));
    }
    text
}

fn write_config(path: &Path, text: &str) {
    replace(path, text.as_bytes());
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    failed: std::sync::Mutex<Vec<String>>,
    /// Per client, the component ids of its answers in order (runs
    /// collapsed: id and count).
    per_client: std::sync::Mutex<Vec<Vec<(String, u64)>>>,
}

async fn client(url: String, seen: Arc<Seen>, stop: Arc<AtomicBool>, me: usize) {
    let http = reqwest::Client::new();
    let mut runs: Vec<(String, u64)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let answer = http
            .post(format!("{url}/v1/esp/fax"))
            .header("content-type", "application/json")
            .body(FAX)
            .send()
            .await;
        let response = match answer {
            Ok(r) => r,
            Err(e) => {
                seen.failed.lock().unwrap().push(format!("transport: {e}"));
                continue;
            }
        };
        let status = response.status().as_u16();
        let id = response
            .headers()
            .get(wasp::esp::http::COMPONENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.text().await.unwrap_or_default();
        if status != 200 || !body.contains("FaxJobId") {
            seen.failed
                .lock()
                .unwrap()
                .push(format!("{status} [{id}] {body}"));
            continue;
        }
        seen.ok.fetch_add(1, Ordering::Relaxed);
        match runs.last_mut() {
            Some((last, n)) if *last == id => *n += 1,
            _ => runs.push((id, 1)),
        }
    }
    seen.per_client.lock().unwrap()[me] = runs;
}

/// One request now: the component id that answered.
async fn answered_by(url: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/esp/fax"))
        .header("content-type", "application/json")
        .body(FAX)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get(wasp::esp::http::COMPONENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Waits until a new request is answered by `id`; fails with wasp's stderr.
async fn until_answered_by(wasp: &Wasp, id: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if answered_by(&wasp.url).await == id {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "component {id} never answered; wasp stderr:\n{}",
            wasp.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_json(url: &str, path: &str) -> serde_json::Value {
    reqwest::get(format!("{url}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaps_and_capture_changes_under_load_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let fax = dir.join("fax.wasm");
    let versions: Vec<Vec<u8>> = (1..=4).map(fax_version).collect();
    let ids: Vec<String> = versions.iter().map(|b| component_id(b)).collect();
    replace(&fax, &versions[0]);
    let path = dir.join("wasp.toml");
    write_config(&path, &config(&fax, false));

    let wasp = Wasp::start(&path, "127.0.0.1:0", &data)
        .await
        .expect("wasp starts");
    let node = Sim::spawn(SimArgs::node(wasp.addr, "is-1", &[101]));
    node.connected(PATIENCE).await.unwrap();
    assert_eq!(answered_by(&wasp.url).await, ids[0]);
    let inbound = data.join("orders/inbound");
    wasp.until_ok("the orders inbound folder", PATIENCE, || {
        inbound.is_dir().then_some(())
    })
    .await;

    // The load: CLIENTS clients, and a writer dropping a file every 10 ms.
    let seen = Arc::new(Seen::default());
    seen.per_client.lock().unwrap().resize(CLIENTS, Vec::new());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client(wasp.url.clone(), seen.clone(), stop.clone(), i)))
        .collect();
    let dropped = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, dropped, staging, inbound) = (
            stop.clone(),
            dropped.clone(),
            staging.clone(),
            inbound.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = dropped.load(Ordering::Relaxed);
                drop_file(
                    &staging,
                    &inbound,
                    &format!("o-{i}.xml"),
                    &submit_doc(&format!("o-{i}")),
                );
                dropped.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let reached = |n: u64| {
        let seen = seen.clone();
        move || (seen.ok.load(Ordering::Relaxed) >= n).then_some(())
    };

    // Swap 1: the component's file replaced; the watcher reloads.
    wasp.until_ok("requests before swap 1", PATIENCE, reached(EVERY))
        .await;
    replace(&fax, &versions[1]);
    until_answered_by(&wasp, &ids[1]).await;

    // A capture point added, given files, and removed while files are
    // still coming: each is processed or still waits in its inbound
    // folder, none lost, none in error.
    write_config(&path, &config(&fax, true));
    let extra_inbound = data.join("extra/inbound");
    let extra_processed = data.join("extra/processed");
    wasp.until_ok("the extra capture point's inbound", PATIENCE, || {
        extra_inbound.is_dir().then_some(())
    })
    .await;
    let mut extra = BTreeSet::new();
    for i in 0..50 {
        let name = format!("x-{i}.xml");
        drop_file(
            &staging,
            &extra_inbound,
            &name,
            &submit_doc(&format!("x-{i}")),
        );
        extra.insert(name);
    }
    wasp.until_ok("the extra files processed", PATIENCE, || {
        (files(&extra_processed).len() == 50).then_some(())
    })
    .await;
    for i in 50..70 {
        let name = format!("x-{i}.xml");
        drop_file(
            &staging,
            &extra_inbound,
            &name,
            &submit_doc(&format!("x-{i}")),
        );
        extra.insert(name);
    }
    write_config(&path, &config(&fax, false));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while get_json(&wasp.url, "/v1/admin/captures")
        .await
        .as_array()
        .map(Vec::len)
        != Some(1)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the extra capture point was never removed; wasp stderr:\n{}",
            wasp.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Swap 2: the file replaced again.
    wasp.until_ok("requests before swap 2", PATIENCE, reached(2 * EVERY))
        .await;
    replace(&fax, &versions[2]);
    until_answered_by(&wasp, &ids[2]).await;

    // Swap 3: the config points at another file, and `wasp reload` asks
    // for it (the watcher may be first; either way one switch).
    wasp.until_ok("requests before swap 3", PATIENCE, reached(3 * EVERY))
        .await;
    let fax4 = dir.join("fax-4.wasm");
    replace(&fax4, &versions[3]);
    write_config(&path, &config(&fax4, false));
    let out = tokio::process::Command::new(support::wasp_bin())
        .args(["reload", "--url", &wasp.url])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "wasp reload: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    until_answered_by(&wasp, &ids[3]).await;
    wasp.until_ok(
        "all the requests",
        PATIENCE,
        reached(REQUESTS.max(3 * EVERY + 1000)),
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    writer.await.unwrap();
    let dropped = dropped.load(Ordering::Relaxed);

    // No request failed.
    let failed = seen.failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} failed requests, the first: {:?}\nwasp stderr:\n{}",
        failed.len(),
        &failed[..failed.len().min(5)],
        wasp.stderr()
    );
    let ok = seen.ok.load(Ordering::Relaxed);
    assert!(ok >= REQUESTS, "{ok} requests");
    // Every answer came from a version, each version answered, and no
    // client saw an older version after a newer one.
    let order: BTreeMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut per_version = [0u64; 4];
    for runs in seen.per_client.lock().unwrap().iter() {
        let mut last = 0;
        for (id, n) in runs {
            let v = *order
                .get(id.as_str())
                .unwrap_or_else(|| panic!("an answer from component {id:?}, not a version"));
            assert!(
                v >= last,
                "a client saw version {} after {}: {runs:?}",
                v + 1,
                last + 1
            );
            last = v;
            per_version[v] += n;
        }
    }
    assert!(
        per_version.iter().all(|n| *n > 0),
        "every version answered: {per_version:?}"
    );

    // Every orders file processed once, none in error; the extra files
    // processed or waiting in their inbound folder.
    let processed = data.join("orders/processed");
    wasp.until_ok("every orders file processed", PATIENCE, || {
        (files(&processed).len() as u64 == dropped && files(&inbound).is_empty()).then_some(())
    })
    .await;
    assert!(files(&data.join("orders/error")).is_empty());
    assert!(files(&data.join("extra/error")).is_empty());
    let extra_done: BTreeSet<String> = files(&extra_processed).into_iter().collect();
    let extra_waiting: BTreeSet<String> = files(&extra_inbound).into_iter().collect();
    assert!(extra_done.is_disjoint(&extra_waiting));
    let extra_seen: BTreeSet<String> = extra_done.union(&extra_waiting).cloned().collect();
    assert_eq!(extra_seen, extra, "every extra file processed or waiting");

    // At the node: one interaction per processed file, none twice.
    let external = submitted_once(&node);
    assert_eq!(
        external.len() as u64,
        dropped + extra_done.len() as u64,
        "one interaction per processed file"
    );

    // Every reload went through.
    let reloads = get_json(&wasp.url, "/v1/admin/reloads").await;
    for r in reloads.as_array().unwrap() {
        assert_eq!(r["Ok"], true, "a reload failed: {r}");
    }
    eprintln!(
        "{ok} requests ({per_version:?} per version), {dropped} orders files and {} extra files processed, {} reloads",
        extra_done.len(),
        reloads.as_array().unwrap().len()
    );
}
