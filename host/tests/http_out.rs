//! Outbound HTTP from components: only to the hosts a cluster allows, with
//! timeouts, against real local HTTP servers.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use common::*;
use serde_json::json;

async fn peer() -> SocketAddr {
    let app = Router::new()
        .route("/ping", get(|| async { "pong from the peer" }))
        .route(
            "/slow",
            // Never answers: only a timeout ends a call to it.
            get(std::future::pending::<&'static str>),
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

    // The peer never answers; the cluster's HTTP timeout (300 ms) ends the
    // call as a component fault, well before the request's deadline
    // (3002).
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
    // The HTTP timeout (10 s) would answer 3005; the deadline answers 3002.
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
    let (status, _) = s.esp("chaos", "Chaos", "Echo", json!(101), json!({})).await;
    assert_eq!(status, 200, "a fresh instance serves");
}
