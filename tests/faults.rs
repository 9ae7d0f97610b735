//! Faults injected into a running `wasp` (the binary, as a process), and
//! what the operator sees — with nothing lost:
//! - the notification folder cannot be written (as on a full disk: the
//!   folder is replaced by a plain file, so every write into it fails,
//!   without needing root to fill a file system): files stay in inbound/,
//!   nothing goes to error/, the node gets each operation once, and when
//!   the folder is back every file finishes with its replies;
//! - `kill -9` in the middle of a reload that compiles a new component
//!   while files flow: the restarted host serves the config on disk with
//!   the new component, and every file is processed, each interaction
//!   submitted once.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use support::{Wasp, drop_file, fax_tagged, files, replace, submit_doc, submitted_once};
use wasp::tools::node_sim::{Sim, SimArgs};

const PATIENCE: Duration = Duration::from_secs(180);

fn config_text(fax: &Path) -> String {
    format!(
        "[[tenants]]\nid = 101\nname = \"Environment\"\n\n\
         [clusters.fax]\nservice = \"Fax\"\ncomponent = {:?}\ntenants = [101]\ninstances = 2\n\n\
         [captures.orders]\nadapter = \"file\"\nrescan-ms = 200\nsettle-ms = 0\n\
         default-values = {{ TenantId = 101, Queue = \"Inbound\" }}\n",
        fax.display().to_string()
    )
}

/// A config file serving the bundled fax from a file and the capture
/// point `orders`, in a temp folder with a staging folder for drops.
struct Setup {
    _tmp: tempfile::TempDir,
    data: std::path::PathBuf,
    staging: std::path::PathBuf,
    fax: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let staging = dir.join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let fax = dir.join("fax.wasm");
        replace(&fax, wasp::builtin::get("fax").unwrap());
        let config = dir.join("wasp.toml");
        std::fs::write(&config, config_text(&fax)).unwrap();
        Setup {
            _tmp: tmp,
            data: dir.join("data"),
            staging,
            fax,
            config,
        }
    }
}

fn drop_files(staging: &Path, inbound: &Path, prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}-{i}.xml");
            drop_file(
                staging,
                inbound,
                &name,
                &submit_doc(&format!("{prefix}-{i}")),
            );
            name
        })
        .collect()
}

fn stems(names: &BTreeSet<String>) -> BTreeSet<String> {
    names
        .iter()
        .map(|n| n.trim_end_matches(".xml").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_notification_folder_holds_files_in_inbound_until_it_is_back() {
    let setup = Setup::new();
    let (data, staging, path) = (
        setup.data.clone(),
        setup.staging.clone(),
        setup.config.clone(),
    );
    let wasp = Wasp::start(&path, "127.0.0.1:0", &data).await.unwrap();
    let node = Sim::spawn(SimArgs::node(wasp.addr, "is-1", &[101]));
    node.connected(PATIENCE).await.unwrap();
    let cp = data.join("orders");
    let (inbound, processed, notification) = (
        cp.join("inbound"),
        cp.join("processed"),
        cp.join("notification"),
    );
    wasp.until_ok("inbound/", PATIENCE, || inbound.is_dir().then_some(()))
        .await;

    // The folder goes: every write into notification/ fails.
    std::fs::remove_dir(&notification).unwrap();
    std::fs::write(&notification, b"not a folder").unwrap();
    let names = drop_files(&staging, &inbound, "full", 20);
    // Each file's submit reached the node (once), and its replies could
    // not be written: it was released back to inbound/, never moved.
    wasp.until_ok("the node got every submit", PATIENCE, || {
        (submitted_once(&node).len() == names.len()).then_some(())
    })
    .await;
    wasp.until_ok(
        "files released for lack of a notification folder",
        PATIENCE,
        || {
            let c = captures(&wasp);
            (c["Released"].as_u64()? >= names.len() as u64).then_some(())
        },
    )
    .await;
    assert!(files(&processed).is_empty(), "{:?}", files(&processed));
    assert!(files(&cp.join("error")).is_empty());
    let inbound_now: BTreeSet<String> = files(&inbound).into_iter().collect();
    assert_eq!(inbound_now, names, "every file waits in inbound/");
    let stderr = wasp.stderr();
    assert!(
        stderr.contains("notification/") && stderr.contains("taken again later"),
        "the log says why and what happens next:\n{stderr}"
    );

    // The folder is back: every file finishes, with its replies, and no
    // operation was sent twice.
    std::fs::remove_file(&notification).unwrap();
    std::fs::create_dir(&notification).unwrap();
    wasp.until_ok("every file processed", PATIENCE, || {
        (files(&processed).len() == names.len() && files(&inbound).is_empty()).then_some(())
    })
    .await;
    let written: BTreeSet<String> = files(&notification).into_iter().collect();
    assert_eq!(written, names, "each file's replies, under its name");
    assert_eq!(submitted_once(&node), stems(&names));
    // The answers were journaled: taking the files again sent nothing.
    assert_eq!(
        node.state
            .received
            .load(std::sync::atomic::Ordering::Relaxed),
        names.len() as u64,
        "operations the node received"
    );
}

/// `/v1/admin/captures`' one capture point, read without async.
fn captures(wasp: &Wasp) -> serde_json::Value {
    let url = format!("{}/v1/admin/captures", wasp.url);
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                reqwest::get(url)
                    .await
                    .ok()?
                    .json::<serde_json::Value>()
                    .await
                    .ok()
            })
    })
    .join()
    .unwrap()
    .and_then(|v| v.get(0).cloned())
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_reload_loses_nothing_and_the_restart_serves_the_new_config() {
    let setup = Setup::new();
    let (data, staging, fax, path) = (
        setup.data.clone(),
        setup.staging.clone(),
        setup.fax.clone(),
        setup.config.clone(),
    );
    // One port for both runs: the node reconnects where it was.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut wasp = Wasp::start(&path, &listen, &data).await.unwrap();
    let node = Sim::spawn(SimArgs::node(wasp.addr, "is-1", &[101]));
    node.connected(PATIENCE).await.unwrap();
    let inbound = data.join("orders/inbound");
    let processed = data.join("orders/processed");
    wasp.until_ok("inbound/", PATIENCE, || inbound.is_dir().then_some(()))
        .await;
    let mut names = drop_files(&staging, &inbound, "a", 100);

    // A new component (never compiled before: a fresh tag) and a reload
    // asked for while files are in flight; killed before it can finish.
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let v2 = fax_tagged(tag.as_bytes());
    let id2 = wasp::runtime::sha256_hex(&v2)[..wasp::esp::http::COMPONENT_ID_LEN].to_string();
    replace(&fax, &v2);
    let url = wasp.url.clone();
    let reload = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/v1/admin/reload"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    wasp.kill9().await;
    let answered = reload.await.unwrap();
    eprintln!("the reload asked before the kill: {answered:?}");
    names.extend(drop_files(&staging, &inbound, "b", 20));

    // Restarted on the same folders and config file.
    let wasp = Wasp::start(&path, &listen, &data).await.unwrap();
    node.connected(PATIENCE).await.unwrap();
    wasp.until_ok("every file processed after the restart", PATIENCE, || {
        (files(&processed).len() == names.len() && files(&inbound).is_empty()).then_some(())
    })
    .await;
    assert!(files(&data.join("orders/error")).is_empty());
    assert_eq!(submitted_once(&node), stems(&names));
    let response = reqwest::Client::new()
        .post(format!("{}/v1/esp/fax", wasp.url))
        .header("content-type", "application/json")
        .body(r#"{"Request":{"Service":"Fax","Method":"SendFax","TenantId":101,"Parameters":{"To":"+14155550100","Document":"Hi"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[wasp::esp::http::COMPONENT_HEADER]
            .to_str()
            .unwrap(),
        id2,
        "the restart serves the component on disk (the reload was answered: {answered:?})"
    );
}
