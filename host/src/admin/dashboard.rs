//! The dashboard: a web page at `/ui` and the stream that keeps it live.
//!
//! The page (`ui/index.html`, `ui/app.js`, `ui/style.css`) is embedded in
//! the binary: no build step, no framework, nothing fetched from elsewhere.
//! It opens `GET /v1/admin/events`, a server-sent event stream that sends a
//! [`Snapshot`] of the host every second: clusters with their instances,
//! load and faults; node sessions and their tenants; capture points with
//! their counts and backlog; the last faults; the reload history. The
//! figures come from the same builders as the admin API's JSON.
//!
//! The page and the stream are admin routes: with `[[tokens]]` configured
//! they need an admin token, given as `?token=` since a browser's
//! `EventSource` cannot set an `Authorization` header (open
//! `/ui?token=<admin token>`; the page passes it on to the stream). The
//! script and the style sheet hold no data and are served to anyone.
//!
//! Streams are bounded ([`MAX_STREAMS`] at once, a further one is answered
//! 503) and end when the host stops.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Host;
use crate::admin::metrics::RecentFault;
use crate::capture::CaptureSnapshot;
use crate::cluster::ClusterSnapshot;
use crate::fault::{Fault, FaultCode};
use crate::node::NodeSnapshot;
use crate::reload::ReloadReport;

/// Dashboard streams open at once; a further one is answered 503.
pub const MAX_STREAMS: usize = 16;

/// How often a stream sends a snapshot.
pub const INTERVAL: Duration = Duration::from_secs(1);

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// What one event of the stream carries.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub clusters: Vec<ClusterLoad>,
    pub nodes: Vec<NodeSnapshot>,
    pub captures: Vec<CaptureSnapshot>,
    /// The last faults, newest first.
    pub faults: Vec<RecentFault>,
    /// The last reloads, oldest first.
    pub reloads: Vec<ReloadReport>,
}

/// A cluster as `/v1/admin/clusters` shows it, with its request and fault
/// counts.
#[derive(Debug, Serialize)]
pub struct ClusterLoad {
    #[serde(flatten)]
    pub cluster: ClusterSnapshot,
    /// Requests that reached it so far.
    pub requests: u64,
    /// Faults it answered so far.
    pub faults: u64,
}

/// The host as the dashboard shows it now.
pub fn snapshot(host: &Host) -> Snapshot {
    let generation = host.current();
    let clusters = generation
        .clusters
        .values()
        .map(|c| ClusterLoad {
            cluster: c.snapshot(),
            requests: c.metrics.requests(),
            faults: host.metrics.cluster_faults(&c.name),
        })
        .collect();
    Snapshot {
        at: crate::store::Clock::System.now(),
        clusters,
        nodes: host.nodes.snapshot(),
        captures: super::capture_snapshots(&generation),
        faults: host.metrics.recent_faults(),
        reloads: host.reload_history(),
    }
}

/// `GET /ui`: the page.
pub async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'self'; style-src 'self'; \
                     connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                     form-action 'none'; frame-ancestors 'none'",
                ),
            ),
            // The page's address may hold the admin token.
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// `GET /ui/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/style.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /v1/admin/events`: a [`Snapshot`] every [`INTERVAL`] as
/// server-sent events (`event: snapshot`), the first at once. Ends when the
/// host stops.
pub async fn events(State(host): State<Arc<Host>>) -> Response {
    let Ok(permit) = host.dashboards.clone().try_acquire_owned() else {
        host.metrics.request_refused("dashboard-streams");
        return crate::esp::Refused::new(Fault::new(
            FaultCode::Overloaded,
            format!("{MAX_STREAMS} dashboard streams are open already; close one and try again"),
        ))
        .into_response();
    };
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = Stream {
        host: Arc::downgrade(&host),
        stopping: host.stopping.clone(),
        ticks,
        _permit: permit,
    };
    drop(host);
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        tokio::select! {
            biased;
            () = state.stopping.cancelled() => return None,
            _ = state.ticks.tick() => {}
        }
        let host = state.host.upgrade()?;
        let data = match serde_json::to_string(&snapshot(&host)) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!("dashboard: cannot write a snapshot: {e}");
                return None;
            }
        };
        drop(host);
        let event = Event::default()
            .event("snapshot")
            .retry(Duration::from_secs(2))
            .data(data);
        Some((Ok::<_, Infallible>(event), state))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// One dashboard stream's state.
struct Stream {
    host: Weak<Host>,
    stopping: tokio_util::sync::CancellationToken,
    ticks: tokio::time::Interval,
    _permit: tokio::sync::OwnedSemaphorePermit,
}
