//! What a hostile component, client or node must not be able to do to the
//! host (issue "hardening"): each test here failed on the code before it.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_result_nested_too_deep_or_too_wide_is_a_fault_for_that_call_only() {
    let served = serve(&chaos_cluster("chaos", "instances = 1")).await;
    // 100 000 levels: before, lifting it overflowed a runtime worker's
    // stack and aborted the process (this test process with it).
    let (status, body) = served
        .esp(
            "chaos",
            "Chaos",
            "Deep",
            json!(101),
            json!({"Depth": 100_000}),
        )
        .await;
    assert_fault_says(status, &body, 502, 2002, "nest deeper than 32 levels");
    assert_eq!(body["ReferenceId"], 42);
    // As deep as a request may be: passed on whole.
    let (status, body) = served
        .esp("chaos", "Chaos", "Deep", json!(101), json!({"Depth": 32}))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut level = &body["Result"];
    for _ in 1..32 {
        level = &level["n"];
    }
    assert_eq!(level["n"], 32, "{body}");
    let (status, body) = served
        .esp("chaos", "Chaos", "Deep", json!(101), json!({"Depth": 33}))
        .await;
    assert_fault_says(status, &body, 502, 2002, "nest deeper");
    // More pairs than a request may carry.
    let (status, body) = served
        .esp(
            "chaos",
            "Chaos",
            "Wide",
            json!(101),
            json!({"Pairs": 100_001}),
        )
        .await;
    assert_fault_says(status, &body, 502, 2002, "100000 pairs");
    // The instance answered each time: it is neither replaced nor retried.
    let (status, body) = served
        .esp("chaos", "Chaos", "Echo", json!(101), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served.instance_sum("chaos", "handled").await, 5);
    assert_eq!(served.instance_sum("chaos", "traps").await, 0);
    assert_eq!(served.instance_sum("chaos", "replaced").await, 0);
}

/// A `wasp run` child process serving `config` on an ephemeral port.
struct Wasp {
    child: std::process::Child,
    addr: String,
    /// Everything the process wrote to stderr so far (drained by a thread,
    /// so a chatty process never blocks on a full pipe).
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Wasp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Wasp {
    fn start(config: &str) -> Wasp {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasp.toml");
        std::fs::write(&path, format!("{TENANTS}\n{config}")).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasp"))
            .arg("run")
            .arg(&path)
            .args(["--listen", "127.0.0.1:0"])
            .env(
                "WASP_CACHE_DIR",
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasp-cache"),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while pipe.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        // Keep reading: a closed pipe would fail the server's next print.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let Some(addr) = first.trim().strip_prefix("wasp listening on http://") else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(std::time::Duration::from_millis(100));
            panic!("wasp did not start: {first:?}\n{}", stderr.lock().unwrap());
        };
        Wasp {
            addr: addr.to_string(),
            child,
            stderr,
            _dir: dir,
        }
    }

    /// Waits until stderr contains `text` (at most 10 s); returns it all.
    async fn stderr_with(&self, text: &str) -> String {
        for _ in 0..200 {
            let now = self.stderr.lock().unwrap().clone();
            if now.contains(text) {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "stderr never said {text:?}:\n{}",
            self.stderr.lock().unwrap()
        );
    }

    /// Peak resident memory of the process so far, in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("VmHWM in /proc/<pid>/status");
        let kb: u64 = line
            .trim_start_matches("VmHWM:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb << 10
    }
}

#[tokio::test]
async fn a_huge_value_where_an_integer_belongs_costs_no_memory() {
    let wasp = Wasp::start(&chaos_cluster("chaos", ""));
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/esp/chaos", wasp.addr);
    let ok = http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"Request":{"Service":"Chaos","Method":"Echo","TenantId":101}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let before = wasp.peak_rss();
    // Just under the 16 MiB body limit: ReferenceId, TenantId and an
    // unknown field each one big array. Before, each was built as a JSON
    // value (about 50 times its size): four at once took 2.5 GB.
    let array = |field: &str| {
        let mut body = format!("{{\"{field}\":[");
        while body.len() < (16 << 20) - 200 {
            body.push_str("[1],");
        }
        body.push_str(
            "1],\"Request\":{\"Service\":\"Chaos\",\"Method\":\"Echo\",\"TenantId\":101}}",
        );
        body
    };
    let bodies = [
        array("ReferenceId"),
        array("Unknown"),
        array("ReferenceId"),
        array("Cluster"),
    ];
    let answers = futures_util::future::join_all(bodies.into_iter().map(|body| {
        http.post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    }))
    .await;
    for answer in answers {
        let answer = answer.unwrap();
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.unwrap();
        if body["FaultCode"] == 3000 {
            assert_fault(status, &body, 400, 3000);
        } else {
            // The unknown field is skipped unread; the request is served.
            assert_eq!(status, 200, "{body}");
        }
    }
    let grew = wasp.peak_rss().saturating_sub(before);
    // The bodies themselves are 64 MiB; their parse may add little more.
    assert!(
        grew < 320 << 20,
        "peak memory grew by {} MiB for four 16 MiB requests",
        grew >> 20
    );
}

#[tokio::test]
async fn a_huge_value_in_a_node_frame_costs_no_memory() {
    let wasp = Wasp::start(
        "[clusters.echo]\nservice = \"Echo\"\ncomponent = \"builtin:echo\"\ntenants = [101]\n",
    );
    let addr: std::net::SocketAddr = wasp.addr.parse().unwrap();
    let (mut socket, welcome) = ws::hello(addr, None, hello("is-big", json!([101]))).await;
    assert_eq!(welcome["Type"], "Welcome", "{welcome}");
    let before = wasp.peak_rss();
    // Frames just under the 16 MiB limit whose one field is a big array
    // of arrays. Before, every frame was first built as a JSON value
    // (about 50 times its size).
    let mut pad = String::with_capacity(16 << 20);
    while pad.len() < (16 << 20) - 300 {
        pad.push_str("[1],");
    }
    pad.push_str("[1]");
    let frames = [
        format!(r#"{{"Type":"Ping","Pad":[{pad}]}}"#),
        format!(
            r#"{{"Type":"Request3rdServer","Cluster":"echo","ReferenceId":[{pad}],"Request":{{}}}}"#
        ),
        format!(r#"{{"Type":"Done","CorrelationId":"c-1","Extra":[{pad}]}}"#),
    ];
    for (i, frame) in frames.iter().enumerate() {
        ws::send_text(&mut socket, frame).await;
        // A Ping after each frame: its Pong shows the frame was handled
        // (the first frame is a Ping itself; the second is answered 3000;
        // the third answers an operation nobody waits for).
        ws::send(&mut socket, json!({"Type":"Ping"})).await;
        let mut pongs = 0;
        while pongs < 1 + usize::from(i == 0) {
            let frame = ws::recv(&mut socket).await.expect("the session goes on");
            if frame["Type"] == "Pong" {
                pongs += 1;
            } else if frame["Event"] == "Event3rdServerFault" {
                assert_eq!(frame["FaultCode"], 3000, "{frame}");
            }
        }
    }
    let grew = wasp.peak_rss().saturating_sub(before);
    assert!(
        grew < 150 << 20,
        "peak memory grew by {} MiB for 16 MiB frames",
        grew >> 20
    );
}

#[tokio::test]
async fn a_request_too_big_for_an_instance_is_refused_before_it_is_lowered() {
    // 2 MiB of memory cannot hold a 1.5 MiB parameter twice over.
    let served = serve(&chaos_cluster("chaos", "instances = 1\nmemory-mb = 2")).await;
    let big = "x".repeat(3 << 19);
    let (status, body) = served
        .esp("chaos", "Chaos", "Echo", json!(101), json!({ "Text": big }))
        .await;
    assert_fault_says(status, &body, 400, 3000, "more than cluster 'chaos' allows");
    assert_eq!(body["ReferenceId"], 42);
    // Nothing was lowered: no instance trapped or was replaced.
    assert_eq!(served.instance_sum("chaos", "traps").await, 0);
    assert_eq!(served.instance_sum("chaos", "replaced").await, 0);
    // More pairs than a request may carry, in a legal 16 MiB body: refused
    // while it is read, with the path.
    let mut pairs = String::from("{");
    for i in 0..150_000 {
        pairs.push_str(&format!("\"k{i}\":1,"));
    }
    pairs.push_str("\"end\":1}");
    let body = format!(
        r#"{{"ReferenceId":7,"Request":{{"Service":"Chaos","Method":"Echo","TenantId":101,"Parameters":{pairs}}}}}"#
    );
    let (status, _, body) = served.post_raw("chaos", body).await;
    assert_fault_says(
        status,
        &body,
        400,
        3000,
        "Request.Parameters: more than the 100000 pairs",
    );
    assert_eq!(body["ReferenceId"], 7);
}

#[tokio::test]
async fn a_fresh_instance_out_of_memory_is_not_retried_and_retry_can_be_turned_off() {
    let served = serve(&format!(
        "{}{}",
        chaos_cluster("chaos", "instances = 2\nmemory-mb = 16"),
        chaos_cluster("once", "instances = 2\nretry = false")
    ))
    .await;
    // Before: the retry allocated the same way, a second instance lost.
    let (status, body) = served
        .esp("chaos", "Chaos", "Alloc", json!(101), json!({}))
        .await;
    assert_fault_says(
        status,
        &body,
        502,
        2002,
        "not retried: a fresh instance ran out of memory",
    );
    assert_eq!(served.instance_sum("chaos", "traps").await, 1);
    let (status, body) = served
        .esp("once", "Chaos", "Trap", json!(101), json!({}))
        .await;
    assert_fault_says(status, &body, 502, 2002, "retry = false");
    assert_eq!(served.instance_sum("once", "traps").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_cluster_refuses_what_it_cannot_finish_instead_of_timing_out() {
    // One instance, calls of 300 ms, 1.4 s to answer: about four calls
    // fit. Before, twelve at once made every later one start too late,
    // time out running and take the instance down each time.
    let served = serve(&chaos_cluster(
        "chaos",
        "instances = 1\nwindow = 2\nqueue = 50\ntimeout-ms = 1400",
    ))
    .await;
    let spin = || served.esp("chaos", "Chaos", "Spin", json!(101), json!({"Millis": 300}));
    // One call teaches the cluster how long calls take.
    assert_eq!(spin().await.0, 200);
    let answers = futures_util::future::join_all((0..12).map(|_| spin())).await;
    let mut served_ok = 0;
    for (status, body) in &answers {
        match status {
            200 => served_ok += 1,
            503 => assert_fault_says(*status, body, 503, 3003, "overloaded"),
            _ => assert_fault_says(*status, body, 504, 3002, "not started"),
        }
    }
    assert!(served_ok >= 2, "{answers:?}");
    assert_eq!(
        served.instance_sum("chaos", "timeouts").await,
        0,
        "a call was started that could not finish: {answers:?}"
    );
    assert_eq!(served.instance_sum("chaos", "replaced").await, 0);
}

fn hello(node: &str, tenants: serde_json::Value) -> serde_json::Value {
    json!({"Type":"Hello","NodeId":node,"Tenants":tenants,"MediaTypes":["workitem"],"Window":4})
}

/// Polls the admin API until `node` is connected (`true`) or gone.
async fn wait_for_node(served: &Served, node: &str, connected: bool) -> bool {
    for _ in 0..400 {
        let there = served
            .admin_nodes()
            .await
            .iter()
            .any(|n| n["node_id"] == node);
        if there == connected {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_reading_is_disconnected_instead_of_filling_memory() {
    let served = serve(&format!(
        "[nodes]\nwrite-timeout-ms = 300\n{}",
        chaos_cluster("chaos", "instances = 2")
    ))
    .await;
    let (socket, welcome) = ws::hello(served.addr, None, hello("deaf", json!([101]))).await;
    assert_eq!(welcome["Type"], "Welcome", "{welcome}");
    // Requests with 1 MiB answers, and pings so the node looks alive, but
    // nothing is ever read. Before, the host queued every answer (GBs in
    // seconds) and never ended the session.
    let (_, mut sink) = {
        use futures_util::StreamExt;
        let (sink, stream) = socket.split();
        (stream, sink)
    };
    let big = "x".repeat(1 << 20);
    let sender = tokio::spawn(async move {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        for i in 0..400 {
            let request = json!({"Type":"Request3rdServer","Cluster":"chaos","ReferenceId":i,
                "Request":{"Service":"Chaos","Method":"Echo","TenantId":101,"Parameters":{"Text":big}}});
            let ping = json!({"Type":"Ping"});
            if sink
                .send(Message::Text(request.to_string().into()))
                .await
                .is_err()
                || sink
                    .send(Message::Text(ping.to_string().into()))
                    .await
                    .is_err()
            {
                return i;
            }
        }
        400
    });
    assert!(
        wait_for_node(&served, "deaf", false).await,
        "the node that does not read is still connected"
    );
    sender.abort();
    let metrics = served.metrics().await;
    assert!(
        metrics.contains("wasp_node_sessions_closed_total{reason=\"write-timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_node_id_cannot_be_taken_over_with_a_weaker_token() {
    let both = "node-token-for-101-and-102";
    let one = "node-token-for-101-only-x";
    let served = serve(&format!(
        "[[tokens]]\ntoken = \"{both}\"\nrole = \"node\"\ntenants = [101, 102]\n\
         [[tokens]]\ntoken = \"{one}\"\nrole = \"node\"\ntenants = [101]\n{FAX_AND_IM}"
    ))
    .await;
    let (mut first, welcome) =
        ws::hello(served.addr, Some(both), hello("is-1", json!([101, 102]))).await;
    assert_eq!(welcome["Type"], "Welcome", "{welcome}");
    let (_, refused) = ws::hello(served.addr, Some(one), hello("is-1", json!([101]))).await;
    assert_eq!(refused["Type"], "Refused", "{refused}");
    assert_eq!(refused["Code"], 3004, "{refused}");
    // The legitimate session goes on.
    ws::send(&mut first, json!({"Type":"Ping"})).await;
    assert_eq!(ws::recv(&mut first).await.unwrap()["Type"], "Pong");
    // The same token may replace it (a node reconnecting).
    let (_, welcome) = ws::hello(served.addr, Some(both), hello("is-1", json!([101]))).await;
    assert_eq!(welcome["Type"], "Welcome", "{welcome}");
    assert!(
        ws::recv(&mut first).await.is_none(),
        "the old session is closed"
    );
}

#[tokio::test]
async fn control_characters_in_identifiers_are_refused() {
    let served = serve(FAX_AND_IM).await;
    let (_, refused) = ws::hello(
        served.addr,
        None,
        hello("is-1\n2026-12-01T00:00:00Z ERROR forged", json!([101])),
    )
    .await;
    assert_eq!(refused["Type"], "Refused", "{refused}");
    assert_eq!(refused["Code"], 3000, "{refused}");
    assert!(
        refused["Description"]
            .as_str()
            .unwrap()
            .contains("control characters"),
        "{refused}"
    );
    let (status, body) = served
        .esp("fax", "Fax", "SendFax\nforged", json!(101), json!({}))
        .await;
    assert_fault_says(
        status,
        &body,
        400,
        3000,
        "Request.Method: control characters",
    );
}

#[tokio::test]
async fn plugin_log_lines_cannot_forge_host_log_lines() {
    let wasp = Wasp::start(&chaos_cluster("chaos", ""));
    let answer = reqwest::Client::new()
        .post(format!("http://{}/v1/esp/chaos", wasp.addr))
        .header("content-type", "application/json")
        .body(
            json!({"Request":{"Service":"Chaos","Method":"Log","TenantId":101,
                "Parameters":{"Lines":1,"Text":"ok\n2026-12-01T00:00:00Z ERROR forged"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let stderr = wasp.stderr_with("ERROR forged").await;
    assert!(
        stderr.contains("ok\\n2026-12-01T00:00:00Z ERROR forged"),
        "{stderr}"
    );
    // The line names its cluster and the request's tenant.
    let line = stderr.lines().find(|l| l.contains("ERROR forged")).unwrap();
    assert!(
        line.contains("cluster=\"chaos\"") && line.contains("tenant=101"),
        "{line}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("2026-12-01T00:00:00Z")),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_frame_over_the_size_limit_gets_an_error_and_close_code_1009() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let served = serve(&format!("[server]\nmax-body-bytes = 4096\n{FAX_AND_IM}")).await;
    let (mut socket, welcome) = ws::hello(served.addr, None, hello("is-1", json!([101]))).await;
    assert_eq!(welcome["Type"], "Welcome", "{welcome}");
    let big = json!({"Type":"Ping","Pad":"x".repeat(8192)});
    ws::send(&mut socket, big).await;
    let error = ws::recv(&mut socket).await.expect("an Error frame");
    assert_eq!(error["Type"], "Error", "{error}");
    assert_eq!(error["Code"], 3000, "{error}");
    assert!(
        error["Description"]
            .as_str()
            .unwrap()
            .contains("larger than 4096 bytes"),
        "{error}"
    );
    let close = loop {
        match socket.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("a close code").code), 1009);
    let metrics = served.metrics().await;
    assert!(
        metrics.contains("wasp_node_sessions_closed_total{reason=\"frame-too-large\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn node_sessions_are_capped() {
    let served = serve(&format!("[nodes]\nmax-sessions = 1\n{FAX_AND_IM}")).await;
    let (_first, welcome) = ws::hello(served.addr, None, hello("is-1", json!([101]))).await;
    assert_eq!(welcome["Type"], "Welcome", "{welcome}");
    let refused = ws::connect(served.addr, None).await.unwrap_err();
    assert!(refused.contains("503"), "{refused}");
    let metrics = served.metrics().await;
    assert!(
        metrics.contains("wasp_node_sessions_refused_total{reason=\"max-sessions\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_held_at_once_are_bounded() {
    use tokio::io::AsyncWriteExt;
    // 1 MiB of bodies at once; each request may be 1 MiB.
    let served = serve(&format!(
        "[server]\nmax-body-bytes = 1048576\nmax-inflight-body-mb = 1\n{}",
        chaos_cluster("chaos", "")
    ))
    .await;
    let body = |pad: usize| {
        format!(
            r#"{{"Request":{{"Service":"Chaos","Method":"Echo","TenantId":101,"Parameters":{{"Pad":"{}"}}}}}}"#,
            "x".repeat(pad)
        )
    };
    // A slow client declares 700 000 bytes and sends half of them.
    let slow_body = body(700_000);
    let mut slow = raw::connect(served.addr).await;
    let head = format!(
        "POST /v1/esp/chaos HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        slow_body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&slow_body.as_bytes()[..350_000])
        .await
        .unwrap();
    // Another large body does not fit beside it: refused at once, counted.
    let mut tries = 0;
    let refused = loop {
        let (status, _, answer) = served.post_raw("chaos", body(700_000)).await;
        if status == 503 {
            break answer;
        }
        // The slow request's head may not have been read yet.
        assert_eq!(status, 200, "{answer}");
        tries += 1;
        assert!(
            tries < 1_000,
            "1 000 large bodies fitted beside the slow one: its body never held the budget"
        );
        tokio::task::yield_now().await;
    };
    assert_fault_says(503, &refused, 503, 3003, "server.max-inflight-body-mb");
    // A small one still fits.
    let (status, _, answer) = served.post_raw("chaos", body(10)).await;
    assert_eq!(status, 200, "{answer}");
    // The slow one completes; its share comes back.
    slow.write_all(&slow_body.as_bytes()[350_000..])
        .await
        .unwrap();
    let mut got = Vec::new();
    let answer = loop {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        let n = slow.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before an answer");
        got.extend_from_slice(&buf[..n]);
        if let Some((answer, _)) = raw::parse_answer(&got) {
            break answer;
        }
    };
    assert_eq!(answer.status, 200);
    let (status, _, answer) = served.post_raw("chaos", body(700_000)).await;
    assert_eq!(status, 200, "{answer}");
    let metrics = served.metrics().await;
    assert!(
        metrics.contains("wasp_http_requests_refused_total{reason=\"max-inflight-body-mb\"} 1"),
        "{metrics}"
    );
}
