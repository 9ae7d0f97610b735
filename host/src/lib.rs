//! # wasp — a WebAssembly-pluggable ESP gateway and capture-point host
//!
//! Interaction Server nodes send ESP requests (`Request3rdServer`); wasp
//! routes each to a named **Application Cluster** whose instances are
//! sandboxed Wasm components of one service type, so fax and IM never mix.
//! **Capture points** take interactions in (files, Kafka, SOAP/JSON), read them with
//! a sandboxed codec component, and hand each to the node serving its
//! tenant.
//!
//! ```text
//!  POST /v1/esp/{cluster}          esp::http      thin handler
//!        │                         esp::parse     JSON → EspRequest (3000)
//!        ▼                         esp::dispatch  cluster, tenant, service,
//!  Generation.clusters[cluster]                   method checks (2001/3001/2000)
//!        │                         cluster        queue + window + p2c
//!        ▼                                        (3003, 3002, retry → 2002)
//!  Instance (Store per instance)   runtime        wasmtime, pooling allocator,
//!        │                                        epoch deadlines, disk cache
//!        ▼
//!  Event3rdServerResponse / Event3rdServerFault
//!
//!  inbound/*.xml                   capture::file      watch + rescan, settle, bounds
//!        │ batch                   runtime::codec     decode in the sandbox
//!        ▼                         capture::pipeline  journal replay, tenant::TenantMapper,
//!  node::Nodes::operate ──► node session ──► Interaction Server node
//!        │ answers (journaled in capture::state)
//!        ▼
//!  notification/*.xml, then the file ──► processed/   (unreadable: error/ + .reason)
//! ```
//!
//! Two lifetimes: [`Host`] is the process (runtime and its instance pool,
//! node sessions, metrics, listener settings); a [`Generation`] is one
//! loaded config (tenants, tokens, clusters, capture points), held behind
//! one atomic pointer so that installing another one never drops a node
//! session. Every request holds the generation it started on.
//!
//! Module by module:
//! - [`host`]: what lives as long as the process (runtime, node sessions,
//!   metrics, listener settings) and the current generation behind one
//!   atomic pointer.
//! - [`reload`]: reload and rollback: a new generation built whole, then
//!   one switch; unchanged clusters and capture points taken over.
//! - [`generation`]: one loaded config (tenants, tokens, clusters, capture
//!   points), built whole; each request holds the one it started on.
//! - [`fault`]: fault codes and faults without transport; HTTP, node frames
//!   and capture outputs each map them.
//! - [`config`]: TOML, validated as a whole before anything starts.
//! - [`kv`]: Genesys KV lists ⇄ JSON ⇄ the WIT arena.
//! - [`runtime`]: engine, linker, component cache, instances, limits; the
//!   two worlds it serves: ESP services and capture codecs (`runtime::codec`).
//! - [`cluster`]: Application Clusters and the balancer.
//! - [`esp`]: the ESP ingress; `esp::http::status_of` maps faults to HTTP.
//! - [`admin`]: health, readiness, metrics, admin API, the dashboard
//!   (`/ui`, live over server-sent events).
//! - [`auth`]: bearer tokens and roles.
//! - [`tenant`]: tenants, the one lookup by id or name, capture points'
//!   tenant mapping.
//! - [`listener`]: the HTTP listener: connection cap and timeouts.
//! - [`loopback`]: without tokens, keeps web pages out (Host, Origin,
//!   Content-Type).
//! - [`node`]: Interaction Server node sessions, the node router.
//! - [`capture`]: capture points: config, the file adapter, the pipeline
//!   (decode → tenant → node → finalize), their persisted state.
//! - [`tools`]: clients outside the core: node-sim, the bench, the demo's
//!   mock peers.

pub mod admin;
pub mod auth;
pub mod builtin;
pub mod call;
pub mod capture;
pub mod cluster;
pub mod config;
pub mod esp;
pub mod fault;
pub mod generation;
pub mod host;
pub mod kv;
pub mod listener;
pub mod loopback;
pub mod new;
pub mod node;
pub mod reload;
pub mod runtime;
pub mod store;
pub mod tenant;
pub mod tools;

#[cfg(test)]
mod proptest_support;

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

pub use generation::{Generation, StartError};
pub use host::Host;

/// The HTTP surface. A function of the state, so tests serve it on
/// `127.0.0.1:0` and talk to it over real sockets.
pub fn app(host: Arc<Host>) -> Router {
    let admin = Router::new()
        .route("/v1/admin/clusters", get(admin::clusters))
        .route("/v1/admin/nodes", get(admin::nodes))
        .route("/v1/admin/captures", get(admin::captures))
        .route("/v1/admin/reload", post(admin::reload))
        .route("/v1/admin/rollback", post(admin::rollback))
        .route("/v1/admin/reloads", get(admin::reloads))
        .route("/v1/admin/events", get(admin::dashboard::events))
        .route("/ui", get(admin::dashboard::page))
        .route("/ui/", get(admin::dashboard::page))
        .route_layer(axum::middleware::from_fn_with_state(
            host.clone(),
            admin::require_admin,
        ));
    // The JSON check runs for POST only: another method is answered 405.
    let esp = post(esp::http::handle).route_layer(axum::middleware::from_fn_with_state(
        host.clone(),
        loopback::require_json,
    ));
    // Capture points with `adapter = "http"`. SOAP checks its content type
    // itself, to answer with a SOAP fault; GET serves the WSDL.
    let soap = post(capture::http::soap).get(capture::http::wsdl);
    let capture_json = post(capture::http::json).route_layer(axum::middleware::from_fn_with_state(
        host.clone(),
        loopback::require_json,
    ));
    Router::new()
        .route("/v1/esp/{cluster}", esp)
        .route(
            "/Genesys/Interaction/{capture}/WebServiceCapturePoint",
            soap,
        )
        .route("/v1/capture/{capture}/{operation}", capture_json)
        .route("/v1/nodes/connect", get(node::session::connect))
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        // The dashboard's script and style sheet hold no data.
        .route("/ui/app.js", get(admin::dashboard::script))
        .route("/ui/style.css", get(admin::dashboard::style))
        .merge(admin)
        .layer(axum::middleware::from_fn_with_state(
            host.clone(),
            loopback::require_loopback,
        ))
        .layer(axum::middleware::from_fn(esp::http::fault_bodies))
        .with_state(host)
}

/// Serves `app` until `shutdown` is cancelled, then closes node sessions
/// and drains in-flight requests; connections are bounded and timed as
/// `[server]` says (see [`listener`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    host: Arc<Host>,
    shutdown: CancellationToken,
) -> Result<()> {
    listener::serve(listener, host, shutdown)
        .await
        .context("serve HTTP")
}
