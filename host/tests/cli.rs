//! The `wasp` binary as an operator uses it: `check`, `run`, the demo.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const WASP: &str = env!("CARGO_BIN_EXE_wasp");

/// The binary, with a compile cache under the build's own temp folder
/// (never the user's).
fn wasp() -> Command {
    let mut command = Command::new(WASP);
    command.env(
        "WASP_CACHE_DIR",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasp-cache"),
    );
    command
}

/// The stdout of a run that must have succeeded; else its stdout and
/// stderr are the failure's message.
fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn demo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.toml")
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("wasp.toml");
    std::fs::write(&path, format!("{}\n{text}", common::TENANTS)).unwrap();
    path
}

#[test]
fn check_accepts_the_demo() {
    let out = wasp().arg("check").arg(demo()).output().unwrap();
    let stdout = succeeded(&out);
    assert!(stdout.contains("cluster fax: service Fax"), "{stdout}");
    assert!(stdout.contains("cluster im: service IM"), "{stdout}");
    assert!(stdout.contains("OK"), "{stdout}");
}

/// `wasp check` builds the demo's capture point (its codec loads) but
/// touches no folder: nothing is created where it would keep its files.
#[test]
fn check_builds_capture_points_without_touching_their_folders() {
    let dir = tempfile::tempdir().unwrap();
    let out = wasp()
        .current_dir(dir.path())
        .arg("check")
        .arg(demo())
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("capture point orders: file adapter, codec genesys-xml"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("wasp-data").exists(),
        "check created the data directory"
    );
}

#[test]
fn logs_are_json_lines_on_request_and_plain_text_in_a_file() {
    let out = wasp()
        .args(["--log-format", "json", "check"])
        .arg(demo())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty(), "check logs the clusters it started");
    for line in &lines {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            json["level"].is_string() && json["fields"].is_object(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("\"cluster\":\"fax\"")),
        "{stderr}"
    );
    // Text to a pipe: no terminal, so no color escape codes.
    let out = wasp().arg("check").arg(demo()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster=fax"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "escape codes in: {stderr:?}");
}

#[test]
fn check_refuses_a_component_of_another_service_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        r#"
        [clusters.fax]
        service = "Fax"
        component = "builtin:im"
        tenants = [101]
        "#,
    );
    let out = wasp().arg("check").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "accepted an IM component in a Fax cluster"
    );
    assert!(
        stderr.contains("clusters.fax") && stderr.contains("'Fax'") && stderr.contains("'IM'"),
        "the error names the cluster and both service types: {stderr}"
    );
}

#[test]
fn check_reports_every_config_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        r#"
        [clusters.fax]
        service = "Fax"
        component = "missing.wasm"
        tenants = [101, 109]
        window = 0
        "#,
    );
    let out = wasp().arg("check").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for want in [
        "clusters.fax.component: component file",
        "clusters.fax.tenants[1]: tenant 109 is not declared",
        "clusters.fax.window: 0 is outside",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in {stderr}");
    }

    let path = write_config(
        &dir,
        "[clusters.fax]\nservice = \"Fax\"\ncolour = \"red\"\n",
    );
    let out = wasp().arg("check").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("colour") && stderr.contains("line"),
        "{stderr}"
    );
}

#[test]
fn a_second_start_loads_compiled_code_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let path = write_config(
        &dir,
        &format!(
            "[runtime]\ncache-dir = {:?}\n[clusters.fax]\nservice = \"Fax\"\ncomponent = \"builtin:fax\"\ntenants = [101]\n",
            cache.display().to_string()
        ),
    );
    let out = wasp().arg("check").arg(&path).output().unwrap();
    let first = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        first.contains("OK") && !first.contains("from cache"),
        "{first}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        1,
        "one compiled artifact"
    );
    let out = wasp().arg("check").arg(&path).output().unwrap();
    let second = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        second.contains("[compiled code from cache]"),
        "{second}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_opens_no_store_file_so_a_running_host_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let held = dir.path().join("held.redb");
    let absent = dir.path().join("absent.redb");
    let path = write_config(
        &dir,
        r#"
        [clusters.fax]
        service = "Fax"
        component = "builtin:fax"
        tenants = [101]
        [clusters.fax.store]
        persist = "held.redb"

        [clusters.im]
        service = "IM"
        component = "builtin:im"
        tenants = [101]
        [clusters.im.store]
        persist = "absent.redb"
        "#,
    );
    // A running host holds its store's file (and its lock).
    let running = wasp::store::ClusterStore::file(&held, wasp::store::Limits::entries(10)).unwrap();
    running.set(101, "fax/1", b"Queued", None).unwrap();
    let out = wasp().arg("check").arg(&path).output().unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains(&format!("store: {} not opened", held.display())),
        "{stdout}"
    );
    assert!(!absent.exists(), "check created a store file");
    assert_eq!(
        running.get(101, "fax/1").unwrap().as_deref(),
        Some(&b"Queued"[..])
    );
}

/// `wasp check` does not connect to a Redis store: it would change no
/// state, but a check must not depend on (or load) a shared server.
#[test]
fn check_does_not_connect_to_a_redis_store() {
    let dir = tempfile::tempdir().unwrap();
    // Something listening where the store's Redis would be: it would see
    // a connection.
    let redis = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let path = write_config(
        &dir,
        &format!(
            r#"
            [clusters.fax]
            service = "Fax"
            component = "builtin:fax"
            tenants = [101]
            [clusters.fax.store]
            backend = "redis"
            url = "redis://{}/0"
            "#,
            redis.local_addr().unwrap()
        ),
    );
    let out = wasp().arg("check").arg(&path).output().unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("store: Redis, keys under 'wasp:fax:', not connected"),
        "{stdout}"
    );
    redis.set_nonblocking(true).unwrap();
    assert!(
        matches!(redis.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "check connected to Redis"
    );
}

struct KillOnDrop(std::process::Child);

/// Collects a child's stderr on a thread (so the child never blocks on a
/// full pipe), for failure messages: a test that fails shows what the
/// child said.
#[derive(Clone)]
struct Said(std::sync::Arc<std::sync::Mutex<String>>);

impl Said {
    fn collect(stderr: std::process::ChildStderr) -> Said {
        let said = Said(Default::default());
        let into = said.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut text = into.0.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        said
    }
}

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wasp's stderr:\n{}", self.0.lock().unwrap())
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_serves_the_demo_and_prints_where_and_what_to_try() {
    let data = tempfile::tempdir().unwrap();
    // Port 0 for the server and the mock peers: a demo running on this
    // machine (on 8080 and 8091) does not get in the way.
    let mut child = wasp()
        .arg("run")
        .arg(demo())
        .args(["--listen", "127.0.0.1:0", "--mock-peers", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let said = Said::collect(child.stderr.take().unwrap());
    // Whatever happens below, the server does not outlive the test.
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut next_line = || {
        lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("wasp run stopped writing to stdout; {said}"))
    };
    let first = next_line();
    let addr = first
        .strip_prefix("wasp listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}; {said}"))
        .to_string();
    // Read up to the curl line (the server keeps stdout open); its -d body
    // is on the next line, after a backslash. On the way: where the mock
    // peers are.
    let mut mocks = None;
    let mut curl = None;
    for _ in 0..30 {
        let line = next_line();
        if let Some(at) = line.split("demo mock peers").nth(1) {
            mocks = at.split("http://").nth(1).map(str::to_string);
        }
        if line.trim_start().starts_with("curl ") {
            curl = Some(line);
            break;
        }
    }
    let curl = curl.unwrap_or_else(|| panic!("no curl line to try; {said}"));
    let mocks =
        mocks.unwrap_or_else(|| panic!("the demo does not say where its mock peers are; {said}"));
    assert!(
        !mocks.ends_with(":8091") && !mocks.ends_with(":0"),
        "{mocks}"
    );
    assert!(curl.contains(&addr), "{curl}");
    assert!(curl.trim_end().ends_with('\\'), "{curl}");
    let body_line = next_line();
    // Run what was printed, as a user pasting it would.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{curl}\n{body_line}"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{printed}; {said}");
    let answer: serde_json::Value =
        serde_json::from_str(&printed).unwrap_or_else(|e| panic!("{e}: {printed:?}; {said}"));
    // The README shows what that line answers: the answer must match it
    // (the job id's serial and check digits aside).
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let shown = readme
        .lines()
        .find(|l| l.starts_with("# {\"Event\":\"Event3rdServerResponse\",\"ReferenceId\":1,"))
        .expect("the README shows the answer to the printed line");
    let shown: serde_json::Value =
        serde_json::from_str(&shown[2..].replace('…', "")).expect("the README's answer is JSON");
    assert_eq!(
        answer["Event"], shown["Event"],
        "{answer} vs README {shown}"
    );
    assert_eq!(answer["ReferenceId"], shown["ReferenceId"]);
    for (key, value) in shown["Result"].as_object().unwrap() {
        match value.as_str() {
            Some(prefix) if key == "FaxJobId" => assert!(
                answer["Result"][key].as_str().unwrap().starts_with(prefix),
                "{answer} vs README {shown}"
            ),
            _ => assert_eq!(
                &answer["Result"][key], value,
                "{key}: {answer} vs README {shown}"
            ),
        }
    }
    // The demo's embedded node-sim is connected.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nodes: serde_json::Value = rt.block_on(async {
        for _ in 0..100 {
            let nodes: serde_json::Value = reqwest::get(format!("http://{addr}/v1/admin/nodes"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if nodes.as_array().is_some_and(|n| !n.is_empty()) {
                return nodes;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serde_json::Value::Null
    });
    assert_eq!(nodes[0]["node_id"], "demo-node-1", "{nodes}; {said}");
    // SIGTERM stops it cleanly.
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "wasp run exits 0 on SIGTERM: {status}; {said}"
    );
}

#[test]
fn run_without_tokens_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "[server]\nlisten = \"0.0.0.0:0\"\n[clusters.echo]\nservice = \"Echo\"\ncomponent = \"builtin:echo\"\ntenants = [101]\n",
    );
    let mut child = wasp()
        .arg("run")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let _child = KillOnDrop(child);
    // Both pipes stay open while wasp runs: it would fail writing to a
    // closed one.
    let mut out_lines = BufReader::new(stdout).lines();
    let mut err_lines = BufReader::new(stderr).lines();
    let first = out_lines.next().and_then(Result::ok).unwrap_or_else(|| {
        let said: Vec<String> = err_lines.by_ref().map_while(Result::ok).collect();
        panic!("wasp run wrote nothing; its stderr:\n{}", said.join("\n"))
    });
    let addr: std::net::SocketAddr = first
        .strip_prefix("wasp listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback(), "{first}");
    let said = err_lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("[[tokens]]"))
        .expect("wasp says why");
    assert!(
        said.contains("not listening on 0.0.0.0:0") && said.contains("loopback only"),
        "{said}"
    );
    // And it serves there.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    drop((out_lines, err_lines));
}

/// A cluster of a service with no known example: the start-up lines say
/// how to list its methods with `wasp call` (and that line works).
#[test]
fn run_suggests_wasp_call_for_a_service_without_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &common::chaos_cluster("chaos", ""));
    let mut child = wasp()
        .arg("run")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let said = Said::collect(child.stderr.take().unwrap());
    let _child = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let suggested = lines
        .by_ref()
        .take(30)
        .map_while(Result::ok)
        .find(|l| l.trim_start().starts_with("wasp call "))
        .unwrap_or_else(|| panic!("no wasp call line; {said}"));
    let line = suggested.trim_start().split("    #").next().unwrap();
    assert_eq!(line, format!("wasp call {} chaos", path.display()));
    let out = wasp().args(line.split(' ').skip(1)).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.contains("service Chaos"),
        "{listed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(lines);
}

#[test]
fn bench_esp_prints_the_tax_the_floor_and_the_wrk_comparison() {
    // Short and small: what is checked is that every phase runs and says
    // what it measured, not the figures.
    let out = wasp()
        .args([
            "bench",
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--connections",
            "4",
            "--wrk",
        ])
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    for line in [
        "tax at peak (server CPU per request over native): pooled ",
        "server CPU per request at one rate for all three",
        "tax at that rate: pooled ",
        "the floor wasmtime sets, per request: pooled ≥ ",
        "user-space tax: pooled ",
        "ratio b/a (pooled / native)",
        "this machine's floor under p99: a thread sleeping 0.1 ms at a time",
        "waiting for a core: ",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    // With wrk on PATH its table; without, why it was not run.
    assert!(
        stdout.contains("wrk -t1 -c32 (1 s, median of 1 interleaved rounds):")
            && stdout.contains("of native (target ≥ 0.95)")
            || stdout
                .contains("wrk comparison not run: run wrk (install it with: apt-get install wrk)"),
        "{stdout}"
    );
}
