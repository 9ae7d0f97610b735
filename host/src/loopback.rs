//! What keeps web pages out of a gateway without tokens.
//!
//! With no `[[tokens]]` wasp listens on loopback only and allows every
//! call, so the danger is a browser on the same machine: any web page can
//! make it send requests to `127.0.0.1`. Three checks, each only when no
//! tokens are configured (with tokens, the token decides):
//!
//! - **Host** (every route, WebSocket upgrades included): only loopback
//!   names — `localhost`, `127.x.x.x`, `[::1]`, any port. A page that
//!   rebinds its own DNS name to 127.0.0.1 still sends its own name.
//! - **Origin** (every route): when present, it must be a loopback origin.
//!   Browsers send it on cross-site requests and on every WebSocket
//!   handshake, which no CORS rule protects.
//! - **Content-Type** (JSON endpoints, [`require_json`]): only
//!   `application/json`, which a page cannot send cross-site without a
//!   CORS preflight that wasp never grants; `text/plain` and form bodies
//!   can be. The SOAP capture endpoint takes XML instead ([`check_xml`]):
//!   `text/xml` (SOAP 1.1) or `application/soap+xml`, which need the same
//!   preflight.
//!
//! Refusals are fault bodies: 3004 with HTTP 403 for Host and Origin, 3000
//! with HTTP 415 for the content type.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Host;
use crate::esp::Refused;
use crate::fault::{Cause, Fault};

/// Middleware for every route: without tokens, a request must be
/// addressed to a loopback name and must not come from a foreign web page.
pub async fn require_loopback(
    State(host): State<Arc<Host>>,
    request: Request,
    next: Next,
) -> Response {
    if !host.current().auth.enabled()
        && let Err(fault) = check_host(request.headers(), request.uri())
            .and_then(|()| check_origin(request.headers()))
    {
        return Refused::new(fault).into_response();
    }
    next.run(request).await
}

/// Middleware for endpoints that take a JSON body: without tokens, the
/// body must be declared `application/json`.
pub async fn require_json(State(host): State<Arc<Host>>, request: Request, next: Next) -> Response {
    if !host.current().auth.enabled()
        && let Err(fault) = check_json(request.headers())
    {
        return Refused::new(fault).into_response();
    }
    next.run(request).await
}

const WHY: &str = "without [[tokens]] wasp is loopback-only: it answers only requests \
                   addressed to localhost, 127.x.x.x or [::1], so that web pages cannot drive it";

/// The `Host` header (and the authority of an absolute URI) name a
/// loopback host.
pub fn check_host(headers: &HeaderMap, uri: &Uri) -> Result<(), Fault> {
    let Some(host) = headers.get(header::HOST) else {
        return Err(Fault::forbidden(format!(
            "the request has no Host header: {WHY}; send Host: 127.0.0.1, or configure [[tokens]]"
        )));
    };
    let named = host.to_str().ok();
    if !named.is_some_and(is_loopback_authority) {
        return Err(Fault::forbidden(format!(
            "Host '{}' is not a loopback name: {WHY}; address wasp as 127.0.0.1, or configure [[tokens]]",
            String::from_utf8_lossy(host.as_bytes())
        )));
    }
    if let Some(authority) = uri.authority()
        && !is_loopback_authority(authority.as_str())
    {
        return Err(Fault::forbidden(format!(
            "the request is addressed to '{authority}', not a loopback name: {WHY}; \
             address wasp as 127.0.0.1, or configure [[tokens]]"
        )));
    }
    Ok(())
}

/// An `Origin` header, when present, is a loopback web origin.
pub fn check_origin(headers: &HeaderMap) -> Result<(), Fault> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let loopback = origin
        .to_str()
        .ok()
        .and_then(|o| o.parse::<Uri>().ok())
        .is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
                && uri
                    .authority()
                    .is_some_and(|a| is_loopback_authority(a.as_str()))
        });
    if loopback {
        return Ok(());
    }
    Err(Fault::forbidden(format!(
        "the request comes from the web page at '{}': without [[tokens]] wasp refuses requests \
         that web pages make; configure [[tokens]] to allow them",
        String::from_utf8_lossy(origin.as_bytes())
    )))
}

/// `host[:port]` whose host is `localhost`, an address in 127.0.0.0/8 or
/// `[::1]`.
pub fn is_loopback_authority(text: &str) -> bool {
    let Ok(authority) = text.parse::<Authority>() else {
        return false;
    };
    if authority.as_str().contains('@') {
        return false; // user info is no part of a Host
    }
    let host = authority.host();
    let port = &authority.as_str()[host.len()..];
    if !port.is_empty()
        && !port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// The body is declared `application/json` (parameters allowed).
pub fn check_json(headers: &HeaderMap) -> Result<(), Fault> {
    let declared = headers.get(header::CONTENT_TYPE);
    let json = declared
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == "application/json");
    if json {
        return Ok(());
    }
    let got = match declared {
        Some(v) => format!("'{}'", String::from_utf8_lossy(v.as_bytes())),
        None => "none".into(),
    };
    Err(Fault::invalid(format!(
        "Content-Type must be application/json (got {got}): without [[tokens]] wasp takes \
         only JSON, which web pages cannot send to it"
    ))
    .because(Cause::ContentType))
}

/// The body is declared `text/xml` or `application/soap+xml` (parameters
/// allowed): SOAP clients send these, and a web page cannot send them
/// cross-site without a CORS preflight that wasp never grants.
pub fn check_xml(headers: &HeaderMap) -> Result<(), Fault> {
    let declared = headers.get(header::CONTENT_TYPE);
    let xml = declared
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| matches!(m.essence_str(), "text/xml" | "application/soap+xml"));
    if xml {
        return Ok(());
    }
    let got = match declared {
        Some(v) => format!("'{}'", String::from_utf8_lossy(v.as_bytes())),
        None => "none".into(),
    };
    Err(Fault::invalid(format!(
        "Content-Type must be text/xml (got {got}): without [[tokens]] wasp takes only \
         SOAP bodies declared as XML, which web pages cannot send to it"
    ))
    .because(Cause::ContentType))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn loopback_names_with_any_port() {
        for ok in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.0.0.1:0",
            "127.5.6.7:9",
            "[::1]",
            "[::1]:8080",
            "[0:0:0:0:0:0:0:1]:1",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for no in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "128.0.0.1",
            "0.0.0.0:8080",
            "10.0.0.1",
            "[::2]",
            "[::ffff:127.0.0.1]",
            "user@localhost",
            "::1",
            "localhost:http",
        ] {
            assert!(!is_loopback_authority(no), "{no}");
        }
    }

    #[test]
    fn json_with_parameters_only() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            check_json(&h)
        };
        assert!(with("application/json").is_ok());
        assert!(with("application/json; charset=utf-8").is_ok());
        assert!(with("Application/JSON;charset=UTF-8").is_ok());
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/json-seq",
            "",
        ] {
            let fault = with(no).unwrap_err();
            assert_eq!(fault.cause, Cause::ContentType, "{no}");
            assert_eq!(fault.code.as_u16(), 3000);
        }
        assert!(check_json(&HeaderMap::new()).is_err());
    }

    #[test]
    fn soap_bodies_are_declared_xml() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            check_xml(&h)
        };
        assert!(with("text/xml").is_ok());
        assert!(with("text/xml; charset=utf-8").is_ok());
        assert!(with("application/soap+xml; charset=utf-8").is_ok());
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/xml",
            "text/xmlx",
            "",
        ] {
            let fault = with(no).unwrap_err();
            assert_eq!(fault.cause, Cause::ContentType, "{no}");
        }
        assert!(check_xml(&HeaderMap::new()).is_err());
    }

    #[test]
    fn origins() {
        let with = |o: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            check_origin(&h)
        };
        assert!(check_origin(&HeaderMap::new()).is_ok());
        assert!(with("http://127.0.0.1:8080").is_ok());
        assert!(with("http://localhost").is_ok());
        for no in [
            "null",
            "https://evil.example",
            "http://127.0.0.1.evil.example",
            "file://",
        ] {
            let fault = with(no).unwrap_err();
            assert_eq!(fault.cause, Cause::Forbidden, "{no}");
            assert_eq!(fault.code.as_u16(), 3004);
        }
    }
}
