//! Shared by the integration tests: a gateway from TOML text, served on
//! `127.0.0.1:0`, and a client speaking the wire protocol over real sockets.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wasp::Host;
use wasp::config::Config;

/// The misbehaving test component, built from `plugins/chaos` by build.rs.
pub const CHAOS: &str = env!("WASP_FIXTURE_CHAOS");

/// Tenants every test config declares.
pub const TENANTS: &str = r#"
[[tenants]]
id = 101
name = "Environment"

[[tenants]]
id = 102
name = "Premium"
"#;

/// A served gateway; stops serving when dropped.
pub struct Served {
    pub addr: SocketAddr,
    pub host: Arc<Host>,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A chaos cluster section with the given extra lines.
pub fn chaos_cluster(name: &str, extra: &str) -> String {
    format!(
        r#"
[clusters.{name}]
service = "Chaos"
component = "{CHAOS}"
tenants = [101]
{extra}
"#
    )
}

/// The compile cache of the tests: under the build's own temp folder, never
/// the user's.
pub fn cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasp-cache")
}

pub async fn serve(clusters: &str) -> Served {
    let text = format!("{TENANTS}\n{clusters}");
    let mut config = Config::parse(&text, std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    if config.runtime.cache_dir.is_none() {
        config.runtime.cache_dir = Some(cache_dir());
    }
    serve_config(config).await
}

/// Serves a gateway of `config` as it is.
pub async fn serve_config(config: Config) -> Served {
    let host = Arc::new(Host::start(config).await.expect("gateway starts"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(wasp::serve(listener, host.clone(), shutdown.clone()));
    Served {
        addr,
        host,
        http: reqwest::Client::new(),
        shutdown,
        task: Some(task),
    }
}

/// Serves the config file at `path` as `wasp run` does: reloads read it
/// again (`POST /v1/admin/reload`), and it is watched when `watch`.
pub async fn serve_file(path: &std::path::Path, watch: bool) -> Served {
    let mut config = Config::load(path).unwrap_or_else(|e| panic!("config: {e}"));
    // Never the user's compile cache.
    if config.runtime.cache_dir.is_none() {
        config.runtime.cache_dir = Some(cache_dir());
    }
    let host = Arc::new(Host::start(config).await.expect("gateway starts"));
    host.reloads.set_source(path.to_path_buf(), None, None);
    if watch {
        wasp::reload::watch(host.clone());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(wasp::serve(listener, host.clone(), shutdown.clone()));
    Served {
        addr,
        host,
        http: reqwest::Client::new(),
        shutdown,
        task: Some(task),
    }
}

/// The demo's fax and IM clusters.
pub const FAX_AND_IM: &str = r#"
[clusters.fax]
service = "Fax"
component = "builtin:fax"
tenants = [101]
instances = 4
policy = "pooled"

[clusters.im]
service = "IM"
component = "builtin:im"
tenants = [101, 102]
instances = 2
policy = "per-request"
"#;

impl Served {
    /// Stops serving and waits until the gateway is dropped (its files
    /// closed), as a process exit would.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let mut host = self.host.clone();
        drop(self);
        for _ in 0..200 {
            match Arc::try_unwrap(host) {
                Ok(host) => {
                    drop(host);
                    return;
                }
                Err(still) => host = still,
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the gateway is still in use after stopping");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a raw body to a cluster; returns status, Retry-After, JSON.
    pub async fn post_raw(
        &self,
        cluster: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Option<String>, Value) {
        let resp = self
            .http
            .post(self.url(&format!("/v1/esp/{cluster}")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let json = resp.json().await.expect("JSON answer");
        (status, retry, json)
    }

    /// One ESP request; returns the HTTP status and the answer.
    pub async fn esp(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        tenant: Value,
        params: Value,
    ) -> (u16, Value) {
        let body = json!({
            "ReferenceId": 42,
            "Request": {"Service": service, "Method": method, "Version": "1.0", "TenantId": tenant, "Parameters": params},
        });
        let (status, _, json) = self.post_raw(cluster, body.to_string()).await;
        (status, json)
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// `GET path`, answered with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// `GET /v1/admin/nodes`: the connected nodes.
    pub async fn admin_nodes(&self) -> Vec<Value> {
        let nodes = self.get_json("/v1/admin/nodes").await;
        nodes.as_array().cloned().unwrap_or_default()
    }

    pub async fn admin_cluster(&self, name: &str) -> Value {
        let all = self.get_json("/v1/admin/clusters").await;
        all.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no cluster {name} in {all}"))
    }

    /// Sum of an instance counter over a cluster's instances.
    pub async fn instance_sum(&self, cluster: &str, field: &str) -> u64 {
        let c = self.admin_cluster(cluster).await;
        c["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[field].as_u64().unwrap())
            .sum()
    }
}

/// Asserts an `Event3rdServerFault` with the given code whose
/// `FaultString` says `text`.
#[track_caller]
pub fn assert_fault_says(status: u16, body: &Value, http: u16, code: u64, text: &str) {
    assert_fault(status, body, http, code);
    let said = body["FaultString"].as_str().unwrap_or_default();
    assert!(
        said.contains(text),
        "{said:?} does not say {text:?}: {body}"
    );
}

/// Asserts an `Event3rdServerFault` with the given code.
#[track_caller]
pub fn assert_fault(status: u16, body: &Value, http: u16, code: u64) {
    assert_eq!(body["Event"], "Event3rdServerFault", "{body}");
    assert_eq!(body["FaultCode"], code, "{body}");
    assert_eq!(status, http, "{body}");
    assert!(
        body["FaultString"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
}

/// A raw WebSocket client for the node protocol.
pub mod ws {
    use futures_util::{SinkExt, StreamExt};
    use serde_json::Value;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    pub type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    pub async fn connect(
        addr: std::net::SocketAddr,
        token: Option<&str>,
    ) -> Result<Socket, String> {
        let mut req = format!("ws://{addr}/v1/nodes/connect")
            .into_client_request()
            .unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
            .await
            .map(|(s, _)| s)
            .map_err(|e| e.to_string())
    }

    pub async fn send(s: &mut Socket, v: Value) {
        s.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    pub async fn send_text(s: &mut Socket, t: &str) {
        s.send(Message::Text(t.to_string().into())).await.unwrap();
    }

    /// The next JSON frame, skipping pings; `None` when closed.
    pub async fn recv(s: &mut Socket) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), s.next())
                .await
                .expect("a frame within 10 s")?;
            match msg {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["Type"] == "Ping" {
                        continue;
                    }
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Connects and says Hello; returns the socket and the host's answer.
    pub async fn hello(
        addr: std::net::SocketAddr,
        token: Option<&str>,
        hello: Value,
    ) -> (Socket, Value) {
        let mut s = connect(addr, token).await.expect("connect");
        send(&mut s, hello).await;
        let answer = recv(&mut s).await.expect("an answer to Hello");
        (s, answer)
    }
}

/// Raw HTTP/1.1 over a `TcpStream`, for clients that misbehave or send
/// what a well-behaved client library would not.
pub mod raw {
    use std::net::SocketAddr;
    use std::time::Duration;

    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Long enough for anything the server must do; the tests fail rather
    /// than hang if it does not.
    pub const PATIENCE: Duration = Duration::from_secs(20);

    pub async fn connect(addr: SocketAddr) -> TcpStream {
        TcpStream::connect(addr).await.expect("connect")
    }

    /// Reads until the server closes the socket; what it sent before.
    pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        tokio::time::timeout(PATIENCE, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .expect("the server closes the connection");
        all
    }

    /// A parsed answer: status, headers (lower-case names), body.
    #[derive(Debug)]
    pub struct Answer {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Answer {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        pub fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!(
                    "{e}: status {} body {:?}",
                    self.status,
                    String::from_utf8_lossy(&self.body)
                )
            })
        }
    }

    /// Parses one answer with a `content-length` from the front of `bytes`.
    pub fn parse_answer(bytes: &[u8]) -> Option<(Answer, usize)> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body = bytes.get(end..end + length)?.to_vec();
        Some((
            Answer {
                status,
                headers,
                body,
            },
            end + length,
        ))
    }

    /// Sends one request on a keep-alive connection and reads its answer.
    pub async fn exchange(stream: &mut TcpStream, request: &str) -> Answer {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some((answer, _)) = parse_answer(&got) {
                    return answer;
                }
                let n = stream.read(&mut buf).await.expect("read");
                assert!(
                    n > 0,
                    "closed before a whole answer: {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("an answer")
    }

    pub fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    }

    pub fn post_json(path: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// One request on a fresh connection; its answer.
    pub async fn once(addr: SocketAddr, request: &str) -> Answer {
        let mut stream = connect(addr).await;
        exchange(&mut stream, request).await
    }
}

/// Runs `command` (its stdout and stderr captured) to its end; one that
/// runs past `limit` is killed and fails the test with what it wrote.
pub fn finish_within(
    command: &mut std::process::Command,
    limit: std::time::Duration,
) -> std::process::Output {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the command");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{command:?} did not finish in {limit:?}:\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
