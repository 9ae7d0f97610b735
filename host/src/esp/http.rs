//! `POST /v1/esp/{cluster}`: thin handler — read, parse, dispatch, answer.
//! The one fault → HTTP mapping is the `IntoResponse` for [`Refused`].

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::{FaultBody, Refused, ResponseBody};
use crate::Host;
use crate::admin::metrics::Limit;
use crate::config::Role;
use crate::fault::{Cause, Fault, FaultCode};

pub async fn handle(
    State(host): State<Arc<Host>>,
    Path(cluster): Path<String>,
    request: Request,
) -> Response {
    // The whole request rather than a `HeaderMap` extractor, which clones
    // every header.
    let (parts, body) = request.into_parts();
    // One generation for the whole request.
    let generation = host.current();
    let grant = match generation.auth.check(&parts.headers, None, Role::Node) {
        Ok(grant) => grant,
        Err(fault) => {
            return Refused::new(fault).into_response();
        }
    };
    // `_held`: the body's share of `server.max-inflight-body-mb`, until
    // the answer is made.
    let (bytes, _held) = match read_body(&host, body).await {
        Ok(read) => read,
        Err(why) => return body_refused(&host, &format!("/v1/esp/{cluster}"), why),
    };
    let req = match super::parse(&bytes) {
        Ok(req) => req,
        Err(refused) => {
            // Label only clusters that exist: a path must not mint series.
            let label = if generation.clusters.contains_key(&cluster) {
                cluster.as_str()
            } else {
                ""
            };
            host.metrics.fault(label, &refused.fault);
            return refused.into_response();
        }
    };
    // A DEBUG span: with a subscriber at INFO a per-request span costs
    // about a tenth of a request. Warnings carry their own fields.
    let span = tracing::debug_span!(
        "esp",
        cluster = %crate::runtime::log::escape(&cluster),
        reference_id = req.reference_id,
        tenant = tracing::field::Empty,
        instance = tracing::field::Empty,
    );
    let allowed = grant.as_ref().and_then(|g| g.tenants.as_deref());
    let mut response = match super::dispatch(&generation, &host.metrics, &cluster, &req, allowed)
        .instrument(span)
        .await
    {
        Ok(result) => json_response(
            StatusCode::OK,
            &ResponseBody::new(req.reference_id, &result, req.user_data.as_ref()),
        ),
        Err(fault) => Refused {
            reference_id: req.reference_id,
            user_data: req.user_data,
            fault,
        }
        .into_response(),
    };
    // Which component answered: a reload that swaps it shows here.
    if let Some(c) = generation.clusters.get(&cluster)
        && let Ok(value) = HeaderValue::from_str(&c.sha256[..c.sha256.len().min(COMPONENT_ID_LEN)])
    {
        response.headers_mut().insert(COMPONENT_HEADER, value);
    }
    response
}

/// The header naming the component that answered: the first
/// [`COMPONENT_ID_LEN`] hex digits of its SHA-256, as
/// `/v1/admin/clusters` shows it in full.
pub const COMPONENT_HEADER: &str = "wasp-component";
/// Hex digits of the SHA-256 in [`COMPONENT_HEADER`].
pub const COMPONENT_ID_LEN: usize = 12;

/// Why a request body was not read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over `server.max-body-bytes`.
    TooLarge,
    /// Over what all requests may hold at once.
    Busy,
    /// Not all there within `server.body-read-timeout-ms`.
    TimedOut,
    /// The stream failed.
    Broken,
}

/// The answer to a body that was not read whole: see [`body_fault`].
fn body_refused(host: &Host, path: &str, why: BodyError) -> Response {
    let (fault, close) = body_fault(host, path, why);
    let mut response = Refused::new(fault).into_response();
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The fault for a body to `path` that was not read whole, counted; and
/// whether the connection is to be closed rather than drained (timed out,
/// or refused for room). Every endpoint that reads a body answers with it
/// in its own format (JSON here, SOAP for capture points).
pub(crate) fn body_fault(host: &Host, path: &str, why: BodyError) -> (Fault, bool) {
    let server = &host.server;
    let (fault, close) = match why {
        BodyError::TooLarge => {
            host.metrics.request_refused("max-body-bytes");
            let fault = Fault::invalid(format!(
                "the request body is larger than {} bytes",
                server.max_body_bytes
            ));
            (fault, false)
        }
        BodyError::Busy => {
            host.metrics.request_refused("max-inflight-body-mb");
            let fault = Fault::new(
                FaultCode::Overloaded,
                format!(
                    "the server already holds {} MiB of request bodies \
                     (server.max-inflight-body-mb); try again",
                    server.max_inflight_body_mb
                ),
            );
            (fault, true)
        }
        BodyError::TimedOut => {
            host.metrics.http.hit(
                Limit::BodyReadTimeout,
                format_args!(
                    "answered 408 and closed the connection: the request body to {path} \
                     did not arrive within server.body-read-timeout-ms ({})",
                    server.body_read_timeout_ms
                ),
            );
            let fault = Fault::invalid(format!(
                "the request body did not arrive within {} ms (server.body-read-timeout-ms)",
                server.body_read_timeout_ms
            ))
            .because(Cause::SlowPeer);
            (fault, true)
        }
        BodyError::Broken => (
            Fault::invalid("the request body could not be read (the client went away?)"),
            false,
        ),
    };
    (fault, close)
}

/// Reads a body within `server.body-read-timeout-ms`: see [`read_bounded`].
pub(crate) async fn read_body(
    host: &Host,
    body: axum::body::Body,
) -> Result<(Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>), BodyError> {
    let server = &host.server;
    let read = read_bounded(body, server.max_body_bytes, &host.body_budget);
    tokio::time::timeout(server.body_read_timeout(), read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

/// Reads a body of at most `max` bytes, holding a permit of `budget` per
/// byte: a declared length is taken before anything is read (and sizes the
/// buffer once), other bytes as they arrive. The permits come back when
/// the returned guard is dropped.
async fn read_bounded(
    body: axum::body::Body,
    max: usize,
    budget: &Arc<tokio::sync::Semaphore>,
) -> Result<(Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>), BodyError> {
    use http_body_util::BodyExt;
    use hyper::body::Body as _;
    let mut body = body;
    let declared = body.size_hint().exact().unwrap_or(0);
    if declared > max as u64 {
        return Err(BodyError::TooLarge);
    }
    let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let take = |n: usize, held: &mut Option<tokio::sync::OwnedSemaphorePermit>| {
        let n = u32::try_from(n).map_err(|_| BodyError::TooLarge)?;
        let permit = budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BodyError::Busy)?;
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        Ok::<(), BodyError>(())
    };
    take(declared as usize, &mut held)?;
    let mut out = Vec::with_capacity(declared as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let len = out.len() + data.len();
        if len > max {
            return Err(BodyError::TooLarge);
        }
        if len > declared as usize {
            take(len - (declared as usize).max(out.len()), &mut held)?;
        }
        out.extend_from_slice(&data);
    }
    Ok((out, held))
}

/// The HTTP status of a fault: the table in PROTOCOL.md, refined by the
/// fault's [`Cause`]. The one fault → HTTP mapping.
pub fn status_of(fault: &Fault) -> StatusCode {
    match fault.cause {
        Cause::UnknownTarget => return StatusCode::NOT_FOUND,
        Cause::Forbidden => return StatusCode::FORBIDDEN,
        Cause::SlowPeer => return StatusCode::REQUEST_TIMEOUT,
        Cause::ContentType => return StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Cause::Code | Cause::NodeUnavailable => {}
    }
    match fault.code {
        FaultCode::Unsupported | FaultCode::InvalidRequest | FaultCode::Tenant => {
            StatusCode::BAD_REQUEST
        }
        FaultCode::NoServer | FaultCode::NotAccessible | FaultCode::Overloaded => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        FaultCode::LostConnection => StatusCode::BAD_GATEWAY,
        FaultCode::InProgress | FaultCode::MultipleOwners => StatusCode::CONFLICT,
        FaultCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FaultCode::Unauthorized => StatusCode::UNAUTHORIZED,
        FaultCode::Component => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = status_of(&self.fault);
        refused_with(status, &self)
    }
}

/// `refused` answered with `status` (which may differ from
/// [`status_of`] when HTTP itself refused the request).
pub fn refused_with(status: StatusCode, refused: &Refused) -> Response {
    let mut response = json_response(status, &FaultBody::new(refused));
    if refused.fault.code == FaultCode::Overloaded {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// Marks an error answer whose plain-text body is meant as it is (e.g.
/// `/readyz`'s 503): [`fault_bodies`] leaves it alone.
#[derive(Debug, Clone, Copy)]
pub struct PlainText;

/// Middleware around the whole HTTP surface: an error answer without a
/// JSON body — an unknown route (404), a method a route does not take
/// (405), a request an extractor refuses (400, 426 ...) — gets an
/// `Event3rdServerFault` body with the same status and a fitting code.
/// Answers hyper writes itself are rewritten in `listener`.
pub async fn fault_bodies(request: Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    let status = response.status();
    if status.as_u16() < 400
        || response.extensions().get::<PlainText>().is_some()
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    {
        return response;
    }
    let code = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => FaultCode::Unauthorized,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => FaultCode::Overloaded,
        StatusCode::GATEWAY_TIMEOUT => FaultCode::Timeout,
        _ => FaultCode::InvalidRequest,
    };
    let (mut parts, body) = response.into_parts();
    let said = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|s| !s.is_empty());
    let path = uri.path();
    let message = match (status, said) {
        (StatusCode::NOT_FOUND, _) => format!("no endpoint {path} (see the README for the API)"),
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            // axum may add `Allow` only after this layer: say it when known.
            if allowed.is_empty() {
                format!("{method} is not allowed on {path} (see the Allow header)")
            } else {
                format!("{method} is not allowed on {path} (allowed: {allowed})")
            }
        }
        (_, Some(said)) => format!("{said} ({method} {path})"),
        (_, None) => format!(
            "{} ({method} {path})",
            status.canonical_reason().unwrap_or("refused")
        ),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut fresh = refused_with(status, &Refused::new(Fault::new(code, message)));
    // Keep what the original answer said in its headers (Allow, ...).
    for name in parts.headers.keys() {
        if *name == header::CONTENT_TYPE {
            continue;
        }
        fresh.headers_mut().remove(name);
        for value in parts.headers.get_all(name) {
            fresh.headers_mut().append(name.clone(), value.clone());
        }
    }
    fresh
}
