//! Health, readiness, metrics and the admin API.

pub mod dashboard;
pub mod metrics;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Host;
use crate::cluster::ClusterSnapshot;
use metrics::ClusterLabels;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: config loaded and every cluster has a live instance.
pub async fn readyz(State(host): State<Arc<Host>>) -> Response {
    let generation = host.current();
    let not_ready: Vec<&str> = generation
        .clusters
        .values()
        .filter(|c| c.live_instances() == 0)
        .map(|c| &*c.name)
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no live instance in cluster(s): {}\n", not_ready.join(", ")),
        )
            .into_response();
        // A probe's answer, not a fault.
        response
            .extensions_mut()
            .insert(crate::esp::http::PlainText);
        response
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(host): State<Arc<Host>>) -> Response {
    for cluster in host.current().clusters.values() {
        let labels = ClusterLabels {
            cluster: cluster.name.to_string(),
        };
        host.metrics
            .queue_depth
            .get_or_create(&labels)
            .set(cluster.queue_depth() as i64);
        host.metrics
            .instances
            .get_or_create(&labels)
            .set(cluster.live_instances() as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        host.metrics.render(),
    )
        .into_response()
}

/// Admin routes need an admin token when tokens are configured.
pub async fn require_admin(
    State(host): State<Arc<Host>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_string)
    });
    match host.current().auth.check(
        request.headers(),
        token.as_deref(),
        crate::config::Role::Admin,
    ) {
        Ok(_) => next.run(request).await,
        Err(fault) => crate::esp::Refused::new(fault).into_response(),
    }
}

/// `GET /v1/admin/nodes`: connected nodes, their tenants, media types,
/// windows and what is outstanding on each.
pub async fn nodes(State(host): State<Arc<Host>>) -> Json<Vec<crate::node::NodeSnapshot>> {
    Json(host.nodes.snapshot())
}

/// `POST /v1/admin/reload`: reads the config file again and installs it
/// (see [`crate::reload`]); 200 with the report when it serves, 422 with
/// the reasons when nothing changed.
pub async fn reload(State(host): State<Arc<Host>>) -> Response {
    report(host.reload(crate::reload::Trigger::Admin).await)
}

/// `POST /v1/admin/rollback`: back to the config before the last reload.
pub async fn rollback(State(host): State<Arc<Host>>) -> Response {
    report(host.rollback().await)
}

/// `GET /v1/admin/reloads`: the last reloads, oldest first.
pub async fn reloads(State(host): State<Arc<Host>>) -> Json<Vec<crate::reload::ReloadReport>> {
    Json(host.reload_history())
}

fn report(report: crate::reload::ReloadReport) -> Response {
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, Json(report)).into_response()
}

/// `GET /v1/admin/captures`: each capture point, its adapter, codec,
/// folders and counts (taken, operations, processed, errors, waiting for
/// a node, backlog).
pub async fn captures(State(host): State<Arc<Host>>) -> Json<Vec<crate::capture::CaptureSnapshot>> {
    Json(capture_snapshots(&host.current()))
}

/// Each capture point of `generation` as `/v1/admin/captures` shows it.
pub fn capture_snapshots(generation: &crate::Generation) -> Vec<crate::capture::CaptureSnapshot> {
    generation.captures.values().map(|c| c.snapshot()).collect()
}

/// `GET /v1/admin/clusters`: each cluster, its service type, tenants,
/// instances and what each handled.
pub async fn clusters(State(host): State<Arc<Host>>) -> Json<Vec<ClusterSnapshot>> {
    Json(
        host.current()
            .clusters
            .values()
            .map(|c| c.snapshot())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_names_the_clusters_without_a_live_instance() {
        let text = "[runtime]\nno-cache = true\n[[tenants]]\nid = 101\nname = \"T\"\n\
            [clusters.echo]\nservice = \"Echo\"\ncomponent = \"builtin:echo\"\ntenants = [101]\n\
            [clusters.other]\nservice = \"Echo\"\ncomponent = \"builtin:echo\"\ntenants = [101]\n";
        let config = crate::config::Config::parse(text, std::path::Path::new(".")).unwrap();
        let host = Arc::new(Host::start(config).await.unwrap());
        let ready = readyz(State(host.clone())).await;
        assert_eq!(ready.status(), StatusCode::OK);
        host.current().clusters["echo"].lose_all_instances();
        let ready = readyz(State(host.clone())).await;
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(ready.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"no live instance in cluster(s): echo\n");
    }
}
