//! Outbound HTTP from components: only to the hosts a cluster allows, with
//! timeouts, against real local HTTP servers.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::*;
use serde_json::json;

async fn peer() -> SocketAddr {
    let app = Router::new()
        .route("/ping", get(|| async { "pong from the peer" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn cluster(allow: &str) -> String {
    chaos_cluster("chaos", &format!("timeout-ms = 3000\n{allow}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_reaches_the_hosts_its_cluster_allows_and_no_other() {
    let allowed = peer().await;
    let other = peer().await;
    let s = serve(&cluster(&format!(
        "[clusters.chaos.http]\nallow = [\"127.0.0.1:{}\"]\ntimeout-ms = 300",
        allowed.port()
    )))
    .await;
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Fetch",
            json!(101),
            json!({"Url": format!("http://{allowed}/ping")}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Result"]["Status"], 200);
    assert_eq!(answer["Result"]["Body"], "pong from the peer");

    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Fetch",
            json!(101),
            json!({"Url": format!("http://{other}/ping")}),
        )
        .await;
    assert_fault_says(
        status,
        &answer,
        422,
        3005,
        "not in this cluster's http.allow",
    );

    // The peer's answer takes 5 s; the cluster's HTTP timeout is 300 ms.
    let started = Instant::now();
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Fetch",
            json!(101),
            json!({"Url": format!("http://{allowed}/slow")}),
        )
        .await;
    assert_fault_says(status, &answer, 422, 3005, "failed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_grant_every_host_is_refused() {
    let peer = peer().await;
    let s = serve(&cluster("")).await;
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Fetch",
            json!(101),
            json!({"Url": format!("http://{peer}/ping")}),
        )
        .await;
    assert_fault_says(status, &answer, 422, 3005, "denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_stuck_in_http_is_cut_at_the_cluster_deadline() {
    let peer = peer().await;
    let s = serve(&chaos_cluster(
        "chaos",
        &format!(
            "timeout-ms = 300\ninstances = 1\n[clusters.chaos.http]\nallow = [\"127.0.0.1:{}\"]\ntimeout-ms = 10000",
            peer.port()
        ),
    ))
    .await;
    let started = Instant::now();
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Fetch",
            json!(101),
            json!({"Url": format!("http://{peer}/slow")}),
        )
        .await;
    assert_fault(status, &answer, 504, 3002);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (status, _) = s.esp("chaos", "Chaos", "Echo", json!(101), json!({})).await;
    assert_eq!(status, 200, "a fresh instance serves");
}
