//! The HTTP listener's bounds, with raw TCP clients that misbehave the way
//! attackers do: trickled headers and bodies, connections that send
//! nothing, clients that never read their answer, more connections than
//! the cap. Each test configures small timeouts and waits for events (the
//! server closing the socket, a metric's value), never for a time.

mod common;

use std::time::Duration;

use common::raw::*;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn server(settings: &str) -> String {
    format!("[server]\n{settings}\n{}", chaos_cluster("chaos", ""))
}

/// The value of one metric series in `/metrics` text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn closed(reason: &str) -> String {
    format!("wasp_http_connections_closed_total{{reason=\"{reason}\"}}")
}

const REFUSED: &str = "wasp_http_connections_refused_total{reason=\"max-connections\"}";
const OPEN: &str = "wasp_http_connections_open";

/// Waits until `series` reaches `value` (read over fresh connections).
async fn wait_for_metric(s: &Served, series: &str, value: f64) -> String {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let text = s.metrics().await;
            if metric(&text, series) == value {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{series} never reached {value}"))
}

#[tokio::test]
async fn a_client_that_trickles_or_never_finishes_its_header_is_disconnected() {
    let s = serve(&server("header-read-timeout-ms = 300")).await;
    // Nothing at all.
    let mut silent = connect(s.addr).await;
    // Half a header, then nothing.
    let mut half = connect(s.addr).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    // A header trickled a byte at a time, never ending: progress does not
    // extend the deadline.
    let trickle = connect(s.addr).await;
    let (mut trickle_read, mut trickle_write) = trickle.into_split();
    let writer = tokio::spawn(async move {
        trickle_write
            .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            .await
            .unwrap();
        while trickle_write.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(read_to_close(&mut silent).await.is_empty());
    assert!(read_to_close(&mut half).await.is_empty());
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 64];
        while trickle_read.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await
    .expect("the trickling client is disconnected");
    writer.await.unwrap();
    let text = s.metrics().await;
    assert_eq!(metric(&text, &closed("header-read-timeout")), 3.0, "{text}");
    assert_eq!(metric(&text, &closed("idle-timeout")), 0.0);
    // A prompt client is served as before.
    let mut ok = connect(s.addr).await;
    assert_eq!(exchange(&mut ok, &get("/healthz")).await.status, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = serve(&server("idle-timeout-ms = 300")).await;
    let mut conn = connect(s.addr).await;
    for _ in 0..2 {
        assert_eq!(exchange(&mut conn, &get("/healthz")).await.status, 200);
    }
    assert!(read_to_close(&mut conn).await.is_empty());
    let text = s.metrics().await;
    assert_eq!(metric(&text, &closed("idle-timeout")), 1.0, "{text}");
    assert_eq!(metric(&text, &closed("header-read-timeout")), 0.0);
}

#[tokio::test]
async fn idle_time_between_requests_does_not_count_against_the_header_timeout() {
    // hyper's own header timeout starts when it waits for the next request
    // and would close this keep-alive connection at the header timeout.
    let s = serve(&server(
        "header-read-timeout-ms = 300\nidle-timeout-ms = 600000",
    ))
    .await;
    let mut keep = connect(s.addr).await;
    assert_eq!(exchange(&mut keep, &get("/healthz")).await.status, 200);
    // Another connection, opened after `keep` went idle, outlives one
    // header timeout: `keep` has been idle longer than that.
    let mut slow = connect(s.addr).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    read_to_close(&mut slow).await;
    assert_eq!(exchange(&mut keep, &get("/healthz")).await.status, 200);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_and_closed() {
    let s = serve(&server("body-read-timeout-ms = 300")).await;
    let conn = connect(s.addr).await;
    let (mut read, mut write) = conn.into_split();
    // The header says 1000 bytes; they come one at a time, for ever.
    let writer = tokio::spawn(async move {
        write
            .write_all(
                b"POST /v1/esp/chaos HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
            )
            .await
            .unwrap();
        while write.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, read.read_to_end(&mut got))
        .await
        .expect("the server answers and closes")
        .ok();
    writer.await.unwrap();
    let (answer, _) = parse_answer(&got).expect("an answer");
    assert_eq!(answer.status, 408);
    assert_eq!(answer.header("connection"), Some("close"));
    let fault = answer.json();
    assert_fault_says(408, &fault, 408, 3000, "body-read-timeout-ms");
    let text = s.metrics().await;
    assert_eq!(metric(&text, &closed("body-read-timeout")), 1.0, "{text}");
    assert_eq!(s.instance_sum("chaos", "handled").await, 0, "nothing ran");
}

#[tokio::test]
async fn a_connection_over_the_cap_is_refused_while_those_open_are_served() {
    let s = serve(&server("max-connections = 3")).await;
    // A health checker with a keep-alive connection, and two attackers
    // that send half a header and wait.
    let mut checker = connect(s.addr).await;
    assert_eq!(exchange(&mut checker, &get("/healthz")).await.status, 200);
    let mut attackers = Vec::new();
    for _ in 0..2 {
        let mut a = connect(s.addr).await;
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        attackers.push(a);
    }
    // One more: answered 503 with a fault, and closed.
    let mut over = connect(s.addr).await;
    let got = read_to_close(&mut over).await;
    let (answer, _) = parse_answer(&got).expect("a 503 answer");
    assert_fault_says(answer.status, &answer.json(), 503, 3003, "max-connections");
    assert_eq!(answer.header("retry-after"), Some("1"));
    // The connections already open are served.
    let metrics = exchange(&mut checker, &get("/metrics")).await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert_eq!(metric(&text, REFUSED), 1.0, "{text}");
    assert_eq!(metric(&text, OPEN), 3.0, "{text}");
    assert_eq!(exchange(&mut checker, &get("/healthz")).await.status, 200);
    // An attacker leaves: its place is free again.
    drop(attackers.pop());
    let text = tokio::time::timeout(PATIENCE, async {
        loop {
            let m = exchange(&mut checker, &get("/metrics")).await;
            let text = String::from_utf8(m.body).unwrap();
            if metric(&text, OPEN) == 2.0 {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed connection is no longer counted");
    assert_eq!(metric(&text, REFUSED), 1.0);
    let mut fresh = connect(s.addr).await;
    assert_eq!(exchange(&mut fresh, &get("/healthz")).await.status, 200);
}

#[tokio::test]
async fn health_checks_answer_while_attackers_hold_connections() {
    let cap = 8;
    let s = serve(&server(&format!(
        "max-connections = {cap}\nheader-read-timeout-ms = 600000"
    )))
    .await;
    // Attackers hold every place but one.
    let mut attackers = Vec::new();
    for _ in 0..cap - 1 {
        let mut a = connect(s.addr).await;
        a.write_all(b"POST /v1/esp/chaos HTTP/1.1\r\n")
            .await
            .unwrap();
        attackers.push(a);
    }
    let mut checker = connect(s.addr).await;
    assert_eq!(exchange(&mut checker, &get("/healthz")).await.status, 200);
    // Now every place is taken; more attackers are refused at once and the
    // checker's connection still answers.
    for _ in 0..3 {
        let mut a = connect(s.addr).await;
        let got = read_to_close(&mut a).await;
        assert_eq!(parse_answer(&got).expect("503").0.status, 503);
    }
    assert_eq!(exchange(&mut checker, &get("/healthz")).await.status, 200);
    let m = exchange(&mut checker, &get("/metrics")).await;
    let text = String::from_utf8(m.body).unwrap();
    assert_eq!(metric(&text, REFUSED), 3.0, "{text}");
    assert_eq!(metric(&text, OPEN), cap as f64, "{text}");
    // ESP calls too.
    let body = json!({"Request": {"Service": "Chaos", "Method": "Echo", "TenantId": 101}});
    let answer = exchange(&mut checker, &post_json("/v1/esp/chaos", &body.to_string())).await;
    assert_eq!(answer.json()["Event"], "Event3rdServerResponse");
}

#[tokio::test]
async fn a_client_that_does_not_read_a_large_answer_is_disconnected() {
    let s = serve(&server("write-timeout-ms = 300")).await;
    // A small receive buffer, so that the answer cannot all sit in the
    // kernel's buffers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(s.addr).await.unwrap();
    let size = 8 << 20;
    let body = json!({"Request": {"Service": "Chaos", "Method": "Big", "TenantId": 101,
        "Parameters": {"Bytes": size}}});
    conn.write_all(post_json("/v1/esp/chaos", &body.to_string()).as_bytes())
        .await
        .unwrap();
    // Not reading: the server gives up on the connection.
    wait_for_metric(&s, &closed("write-timeout"), 1.0).await;
    // What reached this side is a part of the answer, then the end.
    let got = read_to_close(&mut conn).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &got[..got.len().min(100)]
    );
    assert!(
        got.len() < size,
        "{} bytes of an answer over {size}",
        got.len()
    );
    // Other clients are served.
    let mut other = connect(s.addr).await;
    assert_eq!(exchange(&mut other, &get("/healthz")).await.status, 200);
}

#[tokio::test]
async fn a_node_session_outlives_the_http_timeouts() {
    let s = serve(&format!(
        "[server]\nheader-read-timeout-ms = 300\nidle-timeout-ms = 300\nwrite-timeout-ms = 300\n{FAX_AND_IM}"
    ))
    .await;
    let hello = json!({"Type":"Hello","NodeId":"is-1","Tenants":[101],"MediaTypes":["workitem"],"Window":5});
    let (mut session, answer) = ws::hello(s.addr, None, hello).await;
    assert_eq!(answer["Type"], "Welcome");
    // Both read timeouts pass while the session is quiet: one connection
    // is closed for its header, one for idling.
    let mut slow = connect(s.addr).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut idle = connect(s.addr).await;
    assert_eq!(exchange(&mut idle, &get("/healthz")).await.status, 200);
    read_to_close(&mut slow).await;
    read_to_close(&mut idle).await;
    ws::send(&mut session, json!({"Type":"Ping"})).await;
    assert_eq!(ws::recv(&mut session).await.unwrap()["Type"], "Pong");
    // The session counts as an open connection.
    let text = s.metrics().await;
    assert!(metric(&text, OPEN) >= 1.0, "{text}");
}

#[tokio::test]
async fn errors_the_http_stack_answers_itself_are_fault_bodies() {
    let s = serve(&server("")).await;
    let check = |answer: Answer, status: u16, says: &str| {
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{answer:?}"
        );
        assert_fault_says(answer.status, &answer.json(), status, 3000, says);
    };
    let mut conn = connect(s.addr).await;
    check(exchange(&mut conn, &get("/nowhere")).await, 404, "/nowhere");
    let answer = exchange(&mut conn, &get("/v1/esp/chaos")).await;
    assert_eq!(answer.header("allow"), Some("POST"));
    check(answer, 405, "GET is not allowed on /v1/esp/chaos");
    // A WebSocket endpoint asked without an upgrade.
    let answer = exchange(&mut conn, &get("/v1/nodes/connect")).await;
    assert!(answer.status >= 400, "{answer:?}");
    assert_fault(answer.status, &answer.json(), answer.status, 3000);
    // hyper's own answers: URI too long, header too large, not HTTP.
    let long = format!("/{}", "a".repeat(70_000));
    let mut conn = connect(s.addr).await;
    conn.write_all(get(&long).as_bytes()).await.unwrap();
    let got = read_to_close(&mut conn).await;
    check(parse_answer(&got).expect("414").0, 414, "URI");
    let many: String = (0..200).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let mut conn = connect(s.addr).await;
    conn.write_all(format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n").as_bytes())
        .await
        .unwrap();
    let got = read_to_close(&mut conn).await;
    check(parse_answer(&got).expect("431").0, 431, "header");
    let mut conn = connect(s.addr).await;
    conn.write_all(b"HELLO THERE\r\n\r\n").await.unwrap();
    let got = read_to_close(&mut conn).await;
    check(parse_answer(&got).expect("400").0, 400, "HTTP");
    // Each closed its connection, and each is counted by why.
    let text = s.metrics().await;
    for reason in ["uri-too-long", "header-too-large", "bad-request"] {
        assert_eq!(metric(&text, &closed(reason)), 1.0, "{reason}:\n{text}");
    }
}
