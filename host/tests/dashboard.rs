//! The dashboard at `/ui` in a real browser: headless Chromium (Debian's
//! package, installed by `scripts/ensure-chromium` when missing) opens the
//! page of a gateway served on 127.0.0.1:0 and the test reads the page it
//! rendered over the DevTools protocol (a WebSocket, as the browser's own
//! tools do). The page shows the clusters, the capture point and the node
//! session, and its figures change while ESP requests and a capture file
//! flow, without a reload of the page: the live stream updates it. Also,
//! without a browser: the admin token guards the page and its stream, the
//! streams are bounded and end when the host stops.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FAX_AND_IM, Served, TENANTS};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use wasp::config::Config;
use wasp::tools::node_sim::{Sim, SimArgs};

const PATIENCE: Duration = Duration::from_secs(30);

/// The path of chromium, installed when missing; `None` (and why) when it
/// cannot be.
fn chromium() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-chromium");
    let out = std::process::Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    match out.status.code() {
        Some(0) => Ok(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )),
        Some(3) => Err("chromium is not installed and cannot be (needs root)".into()),
        _ => panic!("ensure-chromium failed: {:?}", out.status),
    }
}

/// Headless Chromium with one page, driven over the DevTools protocol.
struct Browser {
    child: tokio::process::Child,
    stderr: Arc<Mutex<String>>,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromium and opens `url` in a new page.
    async fn open(chromium: &Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // Chromium writes its DevTools port and browser path here once it
        // listens.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + PATIENCE;
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&active)
                && let Some((port, path)) = text.split_once('\n')
                && !path.trim().is_empty()
            {
                break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "chromium exited ({status}) before it listened:\n{}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not listen within {PATIENCE:?}:\n{}",
                stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(&endpoint)
            .await
            .unwrap_or_else(|e| panic!("DevTools at {endpoint}: {e}"));
        let mut browser = Browser {
            child,
            stderr,
            ws,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": url}))
            .await;
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser
    }

    /// One DevTools command (on the page once attached); its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            command["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(command.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}\n{}", self.log()));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer\n{}", self.log()));
            let Some(Ok(Message::Text(text))) = message else {
                match message {
                    Some(Ok(_)) => continue,
                    other => panic!("{method}: DevTools closed: {other:?}\n{}", self.log()),
                }
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] != json!(id) {
                continue; // an event
            }
            if let Some(error) = answer.get("error") {
                panic!("{method}: {error}\n{}", self.log());
            }
            return answer["result"].clone();
        }
    }

    /// Evaluates `expression` in the page; its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// What the page shows now: each table's rows by their data
    /// attributes, the stream's state and how many snapshots it rendered.
    async fn page(&mut self) -> Value {
        self.eval(
            r#"(() => {
                const rows = (table, key) => [...document.querySelectorAll('#' + table + ' tbody tr')]
                    .filter(r => r.dataset[key] !== undefined)
                    .map(r => Object.assign({ text: r.innerText }, r.dataset));
                const status = document.getElementById('status');
                const updated = document.getElementById('updated');
                return {
                    state: status ? status.dataset.state : null,
                    updates: updated ? Number(updated.dataset.updates) : 0,
                    clusters: rows('clusters', 'cluster'),
                    captures: rows('captures', 'capture'),
                    nodes: rows('nodes', 'node'),
                    faults: rows('faults', 'fault'),
                    reloads: rows('reloads', 'reload'),
                };
            })()"#,
        )
        .await
    }

    /// Polls the page until `done` holds; panics with the page and
    /// chromium's log after [`PATIENCE`].
    async fn wait_for(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let page = self.page().await;
            if done(&page) {
                return page;
            }
            if Instant::now() > deadline {
                panic!(
                    "the page did not show {what} within {PATIENCE:?}; it shows:\n{page:#}\n\
                     chromium:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The end of chromium's stderr.
    fn log(&self) -> String {
        let text = self.stderr.lock().unwrap();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn row<'a>(page: &'a Value, table: &str, key: &str, name: &str) -> Option<&'a Value> {
    page[table]
        .as_array()?
        .iter()
        .find(|r| r[key].as_str() == Some(name))
}

/// A figure of a row, as the page shows it in its data attribute.
fn figure(page: &Value, table: &str, key: &str, name: &str, field: &str) -> Option<u64> {
    row(page, table, key, name)?[field].as_str()?.parse().ok()
}

/// The demo's fax and IM clusters and its file capture point, with data
/// under `data`; `extra` config lines.
async fn gateway(data: &Path, extra: &str) -> Served {
    let text = gateway_text(data, extra);
    let mut config =
        Config::parse(&text, Path::new(".")).unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    config.runtime.cache_dir = Some(common::cache_dir());
    common::serve_config(config).await
}

/// The config text of [`gateway`].
fn gateway_text(data: &Path, extra: &str) -> String {
    format!(
        r#"data-dir = "{}"
{TENANTS}
{extra}
{FAX_AND_IM}

[captures.orders]
adapter = "file"
codec = "builtin:genesys-xml"
default-values = {{ TenantId = 101, Queue = "Inbound" }}
rules = [{{ property = "Customer.Segment", equals = "gold", tenant = 102 }}]
"#,
        data.display()
    )
}

fn send_fax() -> String {
    json!({
        "ReferenceId": 7,
        "Request": {"Service": "Fax", "Method": "SendFax", "Version": "1.0", "TenantId": 101,
                    "Parameters": {"To": "+14155550100", "From": "+14155550199",
                                   "Document": {"$binary": "JVBERi0xLjQK"}}}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_gateway_and_follows_its_traffic_in_a_browser() {
    let chromium = match chromium() {
        Ok(path) => path,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let data = tempfile::tempdir().unwrap();
    // Served from a file, so that it can be reloaded.
    let file = data.path().join("wasp.toml");
    let cache = format!(
        "[runtime]\ncache-dir = {:?}\n",
        common::cache_dir().display().to_string()
    );
    let text = format!("{}\n{cache}", gateway_text(data.path(), ""));
    std::fs::write(&file, &text).unwrap();
    let s = common::serve_file(&file, false).await;
    let sim = Sim::spawn(SimArgs {
        connect: vec![format!("ws://{}", s.addr)],
        node_id: "is-dash".into(),
        tenants: vec![101, 102],
        media: vec!["workitem".into()],
        window: 100,
        token: None,
        stop_after_ms: None,
        answer_delay_ms: 0,
        load_cluster: None,
        load_service: "Echo".into(),
        load_method: "Echo".into(),
        load_params: "{}".into(),
        rate: 0,
        concurrency: 1,
        duration: 1,
    });
    sim.connected(PATIENCE).await.expect("node-sim welcomed");

    let mut browser = Browser::open(&chromium, &s.url("/ui")).await;
    let before = browser
        .wait_for("the clusters, the capture point and the node, live", |p| {
            p["state"] == "live"
                && p["updates"].as_u64() >= Some(1)
                && row(p, "clusters", "cluster", "fax").is_some()
                && row(p, "clusters", "cluster", "im").is_some()
                && row(p, "captures", "capture", "orders").is_some()
                && row(p, "nodes", "node", "is-dash").is_some()
        })
        .await;
    assert_eq!(
        figure(&before, "clusters", "cluster", "fax", "requests"),
        Some(0)
    );
    assert_eq!(
        figure(&before, "clusters", "cluster", "fax", "live"),
        Some(4)
    );
    assert_eq!(
        figure(&before, "captures", "capture", "orders", "processed"),
        Some(0)
    );
    let node = row(&before, "nodes", "node", "is-dash").unwrap();
    assert!(
        node["text"].as_str().unwrap().contains("Environment (101)"),
        "the node's tenants by name: {node}"
    );

    // Traffic: ESP requests (one refused), and a capture file.
    for _ in 0..12 {
        let (status, _, answer) = s.post_raw("fax", send_fax()).await;
        assert_eq!(status, 200, "{answer}");
    }
    let bad = json!({"Request": {"Service": "Fax", "Method": "Teleport", "TenantId": 101}});
    let (status, _, _) = s.post_raw("fax", bad.to_string()).await;
    assert_eq!(status, 400);
    let inbox = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/inbox/01-new-orders.xml");
    let inbound = data.path().join("orders/inbound");
    std::fs::copy(&inbox, inbound.join("01-new-orders.xml.part")).unwrap();
    std::fs::rename(
        inbound.join("01-new-orders.xml.part"),
        inbound.join("01-new-orders.xml"),
    )
    .unwrap();

    // The same page, not reloaded, follows.
    let after = browser
        .wait_for("the requests, the fault and the processed file", |p| {
            figure(p, "clusters", "cluster", "fax", "requests") == Some(13)
                && figure(p, "clusters", "cluster", "fax", "faults") == Some(1)
                && figure(p, "captures", "capture", "orders", "processed") == Some(1)
                && figure(p, "captures", "capture", "orders", "operations") == Some(2)
                && !p["faults"].as_array().unwrap().is_empty()
        })
        .await;
    let fault = &after["faults"][0];
    assert_eq!(fault["fault"], "2000", "{fault}");
    assert!(
        fault["text"]
            .as_str()
            .unwrap()
            .contains("no method 'Teleport'"),
        "the fault's message: {fault}"
    );
    assert_eq!(
        figure(&after, "clusters", "cluster", "im", "requests"),
        Some(0)
    );
    assert!(after["updates"].as_u64() > before["updates"].as_u64());

    // Reloads: one refused (a typo in the file), one that gives im a
    // third instance; the page lists both, the refused one with its
    // reason.
    let good = text.replace("instances = 2", "instances = 3");
    std::fs::write(&file, format!("{good}\n[clusters.im\n")).unwrap();
    let refused = s.http.post(s.url("/v1/admin/reload")).send().await.unwrap();
    assert_eq!(refused.status(), 422, "{:?}", refused.text().await);
    std::fs::write(&file, &good).unwrap();
    let served = s.http.post(s.url("/v1/admin/reload")).send().await.unwrap();
    assert_eq!(served.status(), 200, "{:?}", served.text().await);
    let page = browser
        .wait_for("both reloads, the refused one with its reason", |p| {
            p["reloads"].as_array().is_some_and(|r| r.len() == 2)
                && figure(p, "clusters", "cluster", "im", "live") == Some(3)
        })
        .await;
    let reloads = page["reloads"].as_array().unwrap();
    // Newest first.
    assert_eq!(reloads[0]["ok"], "true", "{page:#}");
    assert!(
        reloads[0]["text"]
            .as_str()
            .unwrap()
            .contains("started clusters.im"),
        "{page:#}"
    );
    assert_eq!(reloads[1]["ok"], "false", "{page:#}");
    let reason = reloads[1]["text"].as_str().unwrap();
    assert!(
        reason.contains("refused") && reason.contains("wasp.toml"),
        "{reason}"
    );
    drop(browser);
    let _ = sim.stop().await;
    s.stop().await;
}

/// The first event of a dashboard stream, as JSON.
async fn first_snapshot(response: &mut reqwest::Response) -> Value {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(end) = text.find("\n\n") {
            let event = &text[..end];
            assert!(event.contains("event: snapshot"), "{event}");
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("no data in {event}"));
            return serde_json::from_str(data).unwrap();
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("a snapshot in time")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn with_tokens_the_page_and_its_stream_need_the_admin_token() {
    let data = tempfile::tempdir().unwrap();
    let s = gateway(
        data.path(),
        "[[tokens]]\ntoken = \"the-admin-token-0001\"\nrole = \"admin\"\n\
         [[tokens]]\ntoken = \"a-node-token-000001\"\nrole = \"node\"\ntenants = [101]\n",
    )
    .await;
    let get = |path: &str| s.http.get(s.url(path)).send();
    for path in ["/ui", "/v1/admin/events"] {
        assert_eq!(get(path).await.unwrap().status(), 401, "{path}");
        let other = format!("{path}?token=a-node-token-000001");
        assert_eq!(get(&other).await.unwrap().status(), 403, "{other}");
        let wrong = format!("{path}?token=nope");
        assert_eq!(get(&wrong).await.unwrap().status(), 401, "{wrong}");
    }
    let page = get("/ui?token=the-admin-token-0001").await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("/ui/app.js"));
    // The Authorization header works too.
    let page = s
        .http
        .get(s.url("/ui"))
        .bearer_auth("the-admin-token-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // The script and the style sheet hold no data: anyone may load them.
    for (path, kind) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ] {
        let asset = get(path).await.unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(asset.headers()["content-type"], kind, "{path}");
    }
    let mut events = get("/v1/admin/events?token=the-admin-token-0001")
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let snapshot = first_snapshot(&mut events).await;
    let clusters: Vec<&str> = snapshot["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(clusters, ["fax", "im"]);
    assert_eq!(snapshot["captures"][0]["Name"], "orders");
    drop(events);
    // In a browser, the page passes its token on to its stream.
    match chromium() {
        Ok(chromium) => {
            let mut browser =
                Browser::open(&chromium, &s.url("/ui?token=the-admin-token-0001")).await;
            browser
                .wait_for("the clusters, live, with the token", |p| {
                    p["state"] == "live" && row(p, "clusters", "cluster", "fax").is_some()
                })
                .await;
        }
        Err(why) => eprintln!("the browser part is skipped: {why}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn dashboard_streams_are_bounded_and_end_when_the_host_stops() {
    let data = tempfile::tempdir().unwrap();
    let s = gateway(data.path(), "").await;
    let mut open = Vec::new();
    for _ in 0..wasp::admin::dashboard::MAX_STREAMS {
        let mut events = s.http.get(s.url("/v1/admin/events")).send().await.unwrap();
        assert_eq!(events.status(), 200);
        first_snapshot(&mut events).await;
        open.push(events);
    }
    let refused = s.http.get(s.url("/v1/admin/events")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let fault: Value = refused.json().await.unwrap();
    assert_eq!(fault["FaultCode"], 3003, "{fault}");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("wasp_http_requests_refused_total{reason=\"dashboard-streams\"} 1"),
        "{metrics}"
    );
    // A stream closed makes room for another.
    drop(open.pop());
    let deadline = Instant::now() + PATIENCE;
    let mut events = loop {
        let events = s.http.get(s.url("/v1/admin/events")).send().await.unwrap();
        if events.status() == 200 {
            break events;
        }
        assert!(Instant::now() < deadline, "no room after a stream closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first_snapshot(&mut events).await;
    open.push(events);
    // Stopping the host ends every stream, so the stop does not wait on
    // them.
    tokio::time::timeout(PATIENCE, s.stop())
        .await
        .expect("the host stops with dashboards open");
    for mut events in open {
        let rest = tokio::time::timeout(PATIENCE, async {
            while let Ok(Some(_)) = events.chunk().await {}
        });
        rest.await.expect("each stream ends");
    }
}
