//! Outbound HTTP (`wasi:http/outgoing-handler`) for components, limited to
//! the hosts their cluster lists in `[clusters.<name>.http] allow`. Any
//! other host is refused (the guest sees `HTTP-request-denied`; the host
//! logs which host was refused). Connect and response timeouts apply.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// What a cluster grants for outbound HTTP.
#[derive(Debug, Clone, Default)]
pub struct HttpGrant {
    /// `host` (any port) or `host:port` entries.
    pub allow: Vec<String>,
    /// Connect, first-byte and between-bytes timeout.
    pub timeout: Duration,
}

impl HttpGrant {
    /// Whether `authority` (`host` or `host:port`) may be called.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.allow.iter().any(|entry| match entry.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => {
                h.eq_ignore_ascii_case(host)
                    && port.map(|port| port.to_string()) == Some(p.to_string())
            }
            _ => entry.eq_ignore_ascii_case(host),
        })
    }
}

/// The hooks of one store: the cluster's grant.
pub struct Hooks {
    pub grant: Arc<HttpGrant>,
    pub cluster: Arc<str>,
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let host = request.uri().host().unwrap_or_default().to_string();
        let port = request
            .uri()
            .port_u16()
            .or_else(|| match request.uri().scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            });
        if !self.grant.allows(&host, port) {
            tracing::warn!(
                cluster = %self.cluster,
                host = %host,
                port = ?port,
                "outbound HTTP refused: not in this cluster's http.allow"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let timeout = self.grant.timeout;
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: Some(options.connect_timeout.unwrap_or(timeout).min(timeout)),
            first_byte_timeout: Some(options.first_byte_timeout.unwrap_or(timeout).min(timeout)),
            between_bytes_timeout: Some(
                options
                    .between_bytes_timeout
                    .unwrap_or(timeout)
                    .min(timeout),
            ),
        };
        Box::new(async move {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_entries_match_host_and_port() {
        let g = HttpGrant {
            allow: vec!["sms.example.com".into(), "127.0.0.1:8099".into()],
            timeout: Duration::from_secs(1),
        };
        assert!(g.allows("sms.example.com", Some(443)));
        assert!(g.allows("SMS.example.com", Some(8080)));
        assert!(g.allows("127.0.0.1", Some(8099)));
        assert!(!g.allows("127.0.0.1", Some(8098)));
        assert!(!g.allows("evil.example.com", Some(443)));
        assert!(!g.allows("example.com", Some(443)));
    }
}
