//! The file capture point end to end: the `wasp` binary runs as a process
//! on a config with a capture point; tests drop files into its inbound
//! folder and read what appears in processed/, error/ and notification/.
//! Nodes are node-sims, in the wasp process (`embedded-nodes`) or in this
//! test process (so they outlive a wasp that is killed).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{Wasp, files, until};
use wasp::tools::node_sim::{Sim, SimArgs};

/// How long a scenario may wait for files to move.
const PATIENCE: Duration = Duration::from_secs(120);

/// A config with tenants 101 and 102 and the capture point `orders`
/// (rule `Customer.Segment = gold` → 102, default tenant 101), plus
/// `extra` TOML.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[[tenants]]
id = 101
name = "Environment"

[[tenants]]
id = 102
name = "Premium"

[captures.orders]
adapter = "file"
codec = "builtin:genesys-xml"
rescan-ms = 200
settle-ms = 50
default-values = {{ TenantId = 101, Queue = "Inbound" }}
rules = [{{ property = "Customer.Segment", equals = "gold", tenant = 102 }}]
{extra}
"#
    );
    let path = dir.join("wasp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const EMBEDDED_NODE: &str = r#"
[[embedded-nodes]]
node-id = "embedded-1"
tenants = [101, 102]
media = ["workitem"]
"#;

/// The capture point's folders under the data directory.
struct Folders {
    inbound: PathBuf,
    processed: PathBuf,
    error: PathBuf,
    notification: PathBuf,
    staging: PathBuf,
}

impl Folders {
    fn of(data: &Path) -> Folders {
        let cp = data.join("orders");
        let staging = data.join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        Folders {
            inbound: cp.join("inbound"),
            processed: cp.join("processed"),
            error: cp.join("error"),
            notification: cp.join("notification"),
            staging,
        }
    }

    /// Drops a file into inbound/ as a careful writer does (see
    /// [`support::drop_file`]).
    fn drop_file(&self, name: &str, bytes: &[u8]) {
        support::drop_file(&self.staging, &self.inbound, name, bytes);
    }
}

/// A running wasp with its temp folders.
struct Scenario {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    wasp: Wasp,
    folders: Folders,
}

impl Scenario {
    async fn start(extra: &str) -> Scenario {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let config = config(tmp.path(), extra);
        let wasp = Wasp::start(&config, "127.0.0.1:0", &data)
            .await
            .expect("wasp starts");
        let folders = Folders::of(&data);
        until("the inbound folder exists", PATIENCE, || {
            folders.inbound.is_dir().then_some(())
        })
        .await
        .unwrap();
        Scenario {
            _tmp: tmp,
            data,
            config,
            wasp,
            folders,
        }
    }

    fn sim(&self, node_id: &str, tenants: &[u32]) -> Sim {
        Sim::spawn(sim_args(&self.wasp, node_id, tenants))
    }

    /// Waits until `name` moved to processed/ (there, and gone from
    /// inbound/: a move links first, then unlinks); fails with wasp's
    /// stderr.
    async fn processed(&self, name: &str) {
        let found = until(&format!("{name} in processed/"), PATIENCE, || {
            (self.folders.processed.join(name).is_file()
                && !self.folders.inbound.join(name).exists())
            .then_some(())
        })
        .await;
        if let Err(e) = found {
            panic!(
                "{e}\ninbound: {:?}\nerror: {:?}\nwasp stderr:\n{}",
                files(&self.folders.inbound),
                files(&self.folders.error),
                self.wasp.stderr()
            );
        }
    }

    async fn captures(&self) -> serde_json::Value {
        reqwest::get(format!("{}/v1/admin/captures", self.wasp.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn sim_args(wasp: &Wasp, node_id: &str, tenants: &[u32]) -> SimArgs {
    SimArgs::node(wasp.addr, node_id, tenants)
}

/// The replies in a notification document, as (operation, InteractionId,
/// ExternalId, TenantId).
fn replies(path: &Path) -> Vec<genesys_xml::wasp_codec_sdk::Reply> {
    let bytes = std::fs::read(path).unwrap();
    genesys_xml::decode_replies(&bytes).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\n{}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        )
    })
}

fn kinds(replies: &[genesys_xml::wasp_codec_sdk::Reply]) -> Vec<&'static str> {
    replies.iter().map(|r| r.kind.name()).collect()
}

const LIFECYCLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<messages>
  <interaction operation="submit" ExternalId="ord-90">
    <properties><Subject>Refund</Subject><Amount type="int">120</Amount></properties>
  </interaction>
  <interaction operation="update" ExternalId="ord-90">
    <properties><Amount type="int">95</Amount></properties>
  </interaction>
  <interaction operation="hold" ExternalId="ord-90"/>
  <interaction operation="resume" ExternalId="ord-90"/>
  <interaction operation="getinfo" ExternalId="ord-90"/>
  <interaction operation="stop" ExternalId="ord-90"/>
</messages>"#;

#[tokio::test(flavor = "multi_thread")]
async fn six_operations_get_six_replies_in_order_and_the_file_is_processed() {
    let s = Scenario::start(EMBEDDED_NODE).await;
    s.folders.drop_file("life.xml", LIFECYCLE.as_bytes());
    s.processed("life.xml").await;
    let life = replies(&s.folders.notification.join("life.xml"));
    assert_eq!(
        kinds(&life),
        ["submitted", "changed", "held", "resumed", "info", "stopped"]
    );
    let id = life[0].interaction_id.clone().expect("an InteractionId");
    for r in &life {
        assert_eq!(r.interaction_id.as_deref(), Some(id.as_str()));
        assert_eq!(r.external_id.as_deref(), Some("ord-90"));
        assert_eq!(r.tenant_id, Some(101));
    }
    // GetInfo carries the interaction's properties as updated.
    let amount = life[4].properties.get("Amount");
    assert_eq!(
        amount,
        Some(&genesys_xml::wasp_codec_sdk::Value::Int(95)),
        "{:?}",
        life[4].properties
    );
    assert!(files(&s.folders.inbound).is_empty());
    assert!(files(&s.folders.error).is_empty());
    let captures = s.captures().await;
    assert_eq!(captures[0]["Name"], "orders");
    assert_eq!(captures[0]["Processed"], 1);
    assert_eq!(captures[0]["Operations"], 6);

    // The same ExternalId submitted again: answered as already submitted,
    // naming the interaction it is; no second interaction.
    let again = r#"<interaction operation="submit" ExternalId="ord-90"><properties><Subject>Again</Subject></properties></interaction>"#;
    s.folders.drop_file("again.xml", again.as_bytes());
    s.processed("again.xml").await;
    let r = replies(&s.folders.notification.join("again.xml"));
    assert_eq!(kinds(&r), ["error"]);
    assert_eq!(r[0].code, Some(2004), "{r:?}");
    assert_eq!(r[0].interaction_id.as_deref(), Some(id.as_str()));
    assert!(
        r[0].description
            .as_deref()
            .unwrap_or_default()
            .contains("already submitted"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_the_endpoint_form_and_tenant_names_route_to_each_tenants_node() {
    let s = Scenario::start("").await;
    let standard = s.sim("is-101", &[101]);
    let premium = s.sim("is-102", &[102]);
    standard.connected(PATIENCE).await.unwrap();
    premium.connected(PATIENCE).await.unwrap();
    let doc = r#"<messages>
      <interaction operation="submit" ExternalId="gold-1">
        <properties><Customer type="kvlist"><Segment>gold</Segment></Customer></properties>
      </interaction>
      <interaction operation="submit" ExternalId="endpoint-1">
        <properties><Queue>102:VIP</Queue></properties>
      </interaction>
      <interaction operation="submit" ExternalId="named-1">
        <properties><TenantId>Premium</TenantId></properties>
      </interaction>
      <interaction operation="submit" ExternalId="default-1">
        <properties><Customer type="kvlist"><Segment>standard</Segment></Customer></properties>
      </interaction>
    </messages>"#;
    s.folders.drop_file("route.xml", doc.as_bytes());
    s.processed("route.xml").await;
    let held = |sim: &Sim| -> BTreeMap<String, (u32, Option<String>)> {
        sim.state
            .interactions
            .lock()
            .unwrap()
            .values()
            .map(|i| {
                (
                    i.external_id.clone().unwrap_or_default(),
                    (i.tenant, i.queue.clone()),
                )
            })
            .collect()
    };
    let on_101 = held(&standard);
    let on_102 = held(&premium);
    assert_eq!(
        on_101.keys().collect::<Vec<_>>(),
        ["default-1"],
        "{on_101:?}"
    );
    assert_eq!(
        on_102.keys().collect::<Vec<_>>(),
        ["endpoint-1", "gold-1", "named-1"],
        "{on_102:?}"
    );
    assert_eq!(on_102["endpoint-1"], (102, Some("VIP".into())));
    assert_eq!(on_102["gold-1"], (102, Some("Inbound".into())));
    assert_eq!(on_101["default-1"], (101, Some("Inbound".into())));
    let replies = replies(&s.folders.notification.join("route.xml"));
    let tenants: Vec<_> = replies.iter().map(|r| r.tenant_id).collect();
    assert_eq!(tenants, [Some(102), Some(102), Some(102), Some(101)]);
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_files_go_to_error_with_a_reason_memory_stays_bounded_and_the_next_file_runs() {
    let s = Scenario::start(EMBEDDED_NODE).await;
    // A first file warms everything up (codec instances, node session).
    s.folders.drop_file("warm.xml", LIFECYCLE.as_bytes());
    s.processed("warm.xml").await;
    let pid = s.wasp.child.id().expect("wasp runs");
    let before = peak_kib(pid);

    let malformed = "<messages><interaction operation=\"submit\"><properties><A>x</properties></interaction></messages>";
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<messages><interaction operation="submit"><properties><A>&lol9;</A></properties></interaction></messages>"#;
    let external = r#"<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<messages><interaction operation="submit"><properties><A>&xxe;</A></properties></interaction></messages>"#;
    let deep = format!(
        "<messages><interaction operation=\"submit\"><properties>{}{}</properties></interaction></messages>",
        "<A type=\"kvlist\">".repeat(10_000),
        "</A>".repeat(10_000)
    );
    s.folders.drop_file("malformed.xml", malformed.as_bytes());
    s.folders.drop_file("laughs.xml", laughs.as_bytes());
    s.folders.drop_file("external.xml", external.as_bytes());
    s.folders.drop_file("deep.xml", deep.as_bytes());
    // 50 MB: over the default max-file-bytes (16 MiB).
    {
        let staged = s.folders.staging.join("huge.xml");
        let mut big = b"<messages><interaction operation=\"submit\"><properties><A>".to_vec();
        big.resize(50_000_000, b'a');
        std::fs::write(&staged, &big).unwrap();
        std::fs::rename(&staged, s.folders.inbound.join("huge.xml")).unwrap();
    }
    s.folders.drop_file(
        "after.xml",
        LIFECYCLE.replace("ord-90", "ord-after").as_bytes(),
    );
    s.processed("after.xml").await;
    let refused = [
        "deep.xml",
        "external.xml",
        "huge.xml",
        "laughs.xml",
        "malformed.xml",
    ];
    let error_files = until("five files in error/ with reasons", PATIENCE, || {
        let names = files(&s.folders.error);
        (names.len() == 10 && files(&s.folders.inbound).is_empty()).then_some(names)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", files(&s.folders.error), s.wasp.stderr()));
    for name in refused {
        assert!(error_files.contains(&name.to_string()), "{error_files:?}");
        let reason =
            std::fs::read_to_string(s.folders.error.join(format!("{name}.reason"))).unwrap();
        assert!(!reason.trim().is_empty(), "{name}: empty reason");
        eprintln!("{name}: {reason}");
    }
    let huge = std::fs::read_to_string(s.folders.error.join("huge.xml.reason")).unwrap();
    assert!(huge.contains("50000000"), "{huge}");
    let laughs = std::fs::read_to_string(s.folders.error.join("laughs.xml.reason")).unwrap();
    assert!(
        laughs.to_lowercase().contains("dtd") || laughs.to_lowercase().contains("doctype"),
        "{laughs}"
    );
    assert!(files(&s.folders.inbound).is_empty());
    let after = peak_kib(pid);
    eprintln!("wasp peak RSS: {before} KiB before the hostile files, {after} KiB after");
    assert!(
        after < before + 64 * 1024,
        "peak memory grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_files_dropped_at_once_are_each_processed_exactly_once() {
    let s = Scenario::start("").await;
    let node = s.sim("is-bulk", &[101, 102]);
    node.connected(PATIENCE).await.unwrap();
    const N: usize = 1000;
    for i in 0..N {
        let doc = format!(
            r#"<interaction operation="submit" ExternalId="bulk-{i}"><properties><N type="int">{i}</N></properties></interaction>"#
        );
        std::fs::write(s.folders.staging.join(format!("bulk-{i:04}.xml")), doc).unwrap();
    }
    for i in 0..N {
        let name = format!("bulk-{i:04}.xml");
        std::fs::rename(s.folders.staging.join(&name), s.folders.inbound.join(&name)).unwrap();
    }
    let done = until("1000 files in processed/", PATIENCE, || {
        (files(&s.folders.processed).len() >= N && files(&s.folders.inbound).is_empty())
            .then_some(())
    })
    .await;
    if let Err(e) = done {
        panic!(
            "{e}: {} processed, {} in inbound, {} in error\n{}",
            files(&s.folders.processed).len(),
            files(&s.folders.inbound).len(),
            files(&s.folders.error).len(),
            s.wasp.stderr()
        );
    }
    let processed = files(&s.folders.processed);
    let expected: Vec<String> = (0..N).map(|i| format!("bulk-{i:04}.xml")).collect();
    assert_eq!(processed, expected, "each file once, under its own name");
    let notifications = files(&s.folders.notification);
    assert_eq!(notifications, expected);
    let held = node.state.interactions.lock().unwrap().len();
    assert_eq!(held, N, "one interaction per file at the node");
    assert!(files(&s.folders.inbound).is_empty());
    assert!(files(&s.folders.error).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_mid_stream_then_restart_loses_nothing_and_submits_nothing_twice() {
    let s = Scenario::start("").await;
    let mut args = sim_args(&s.wasp, "is-crash", &[101, 102]);
    args.answer_delay_ms = 3;
    let node = Sim::spawn(args);
    node.connected(PATIENCE).await.unwrap();
    const N: usize = 200;
    for i in 0..N {
        let doc = format!(
            r#"<messages>
  <interaction operation="submit" ExternalId="k-{i}"><properties><N type="int">{i}</N></properties></interaction>
  <interaction operation="update" ExternalId="k-{i}"><properties><Step type="int">2</Step></properties></interaction>
  <interaction operation="hold" ExternalId="k-{i}"/>
</messages>"#
        );
        std::fs::write(s.folders.staging.join(format!("k-{i:04}.xml")), doc).unwrap();
    }
    for i in 0..N {
        let name = format!("k-{i:04}.xml");
        std::fs::rename(s.folders.staging.join(&name), s.folders.inbound.join(&name)).unwrap();
    }
    until("some files processed", PATIENCE, || {
        (files(&s.folders.processed).len() >= 20).then_some(())
    })
    .await
    .unwrap();
    let mut wasp = s.wasp;
    wasp.kill9().await;
    let at_kill = files(&s.folders.processed).len();
    eprintln!("killed with {at_kill} of {N} files processed");
    assert!(at_kill < N, "the kill came too late to test anything");
    let listen = wasp.addr.to_string();
    let wasp = Wasp::start(&s.config, &listen, &s.data)
        .await
        .expect("wasp restarts on the same data directory");
    let done = until("every file processed after the restart", PATIENCE, || {
        (files(&s.folders.processed).len() >= N && files(&s.folders.inbound).is_empty())
            .then_some(())
    })
    .await;
    if let Err(e) = done {
        panic!(
            "{e}: {} processed, inbound {:?}\n{}",
            files(&s.folders.processed).len(),
            files(&s.folders.inbound),
            wasp.stderr()
        );
    }
    let expected: Vec<String> = (0..N).map(|i| format!("k-{i:04}.xml")).collect();
    assert_eq!(files(&s.folders.processed), expected);
    assert!(files(&s.folders.error).is_empty());
    assert_eq!(
        files(&s.folders.notification),
        expected,
        "one replies document per file"
    );
    for name in &expected {
        let r = replies(&s.folders.notification.join(name));
        assert_eq!(kinds(&r), ["submitted", "changed", "held"], "{name}");
    }
    let held = node.state.interactions.lock().unwrap();
    let mut externals: Vec<_> = held
        .values()
        .filter_map(|i| i.external_id.clone())
        .collect();
    externals.sort();
    externals.dedup();
    assert_eq!(
        held.len(),
        N,
        "one interaction per file at the node, none twice"
    );
    assert_eq!(externals.len(), N);
    assert!(
        held.values().all(|i| i.held),
        "every interaction was held once"
    );
    eprintln!(
        "operations the node was sent again and answered as before: {}",
        node.state.repeated.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_for_a_tenant_without_a_node_waits_then_finishes_once_one_connects() {
    let s = Scenario::start("[nodes]\nwait-for-node-ms = 300\n").await;
    let doc = r#"<interaction operation="submit" ExternalId="waits-1"><properties><Subject>x</Subject></properties></interaction>"#;
    s.folders.drop_file("waits.xml", doc.as_bytes());
    // It is taken, waits for a node, is put back, and taken again.
    until("the file waited for a node twice", PATIENCE, || {
        let released = released_count(&s);
        (released >= 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s.wasp.stderr()));
    assert_eq!(files(&s.folders.inbound), ["waits.xml"]);
    assert!(files(&s.folders.processed).is_empty());
    let node = s.sim("is-late", &[101]);
    node.connected(PATIENCE).await.unwrap();
    s.processed("waits.xml").await;
    let r = replies(&s.folders.notification.join("waits.xml"));
    assert_eq!(kinds(&r), ["submitted"]);
    assert_eq!(node.state.interactions.lock().unwrap().len(), 1);
}

/// The capture point's `Released` count, read from `/metrics` without an
/// async client (the closure of `until` is synchronous).
fn released_count(s: &Scenario) -> u64 {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(s.wasp.addr).unwrap();
    write!(
        conn,
        "GET /v1/admin/captures HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    json[0]["Released"].as_u64().unwrap_or(0)
}
