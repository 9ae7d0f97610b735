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

/// Checks one `http.allow` entry: `host` or `host:port`, host a DNS name,
/// an IPv4 address or an IPv6 address in brackets (`[::1]`), port
/// 1..=65535. An entry that could never match a request is refused with
/// why, rather than silently denying every call.
pub fn check_allow_entry(entry: &str) -> Result<(), String> {
    if entry.is_empty() {
        return Err("is empty".into());
    }
    if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{}' contains spaces", entry.escape_debug()));
    }
    if entry.contains('/') || entry.contains('@') {
        return Err(format!(
            "'{entry}' is not a host or host:port (no scheme, path or user)"
        ));
    }
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return Err(format!("'{entry}': '[' without ']'"));
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{entry}': '{ip}' is not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("'{entry}': only ':port' may follow ']'")),
            },
        }
    } else {
        match entry.split_once(':') {
            Some((host, port)) if !port.contains(':') => (Some(host), Some(port)),
            Some(_) => {
                return Err(format!(
                    "'{entry}': write IPv6 addresses in brackets, e.g. '[::1]' or '[::1]:8080'"
                ));
            }
            None => (Some(entry), None),
        }
    };
    if let Some(host) = host {
        if host.contains('*') {
            return Err(format!(
                "'{entry}': wildcards are not supported; list each host"
            ));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let trimmed = host.strip_suffix('.').unwrap_or(host);
        if host.len() > 253 || !trimmed.split('.').all(label_ok) {
            return Err(format!("'{entry}': '{host}' is not a host name or address"));
        }
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(format!("'{entry}': port '{port}' is not 1..=65535"));
    }
    Ok(())
}

/// The hooks of one store: the cluster's grant (in its instance spec).
pub struct Hooks {
    pub spec: Arc<super::InstanceSpec>,
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
        if !self.spec.http.allows(&host, port) {
            tracing::warn!(
                cluster = %self.spec.cluster,
                host = %host,
                port = ?port,
                "outbound HTTP refused: not in this cluster's http.allow"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let timeout = self.spec.http.timeout;
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

    #[test]
    fn allow_entries_that_can_never_match_are_refused() {
        for good in [
            "sms.example.com",
            "127.0.0.1:8099",
            "[::1]",
            "[::1]:8080",
            "localhost",
            "fax-host.example.com:443",
        ] {
            assert_eq!(check_allow_entry(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("::1", "brackets"),
            ("host:99999", "1..=65535"),
            ("host:0", "1..=65535"),
            ("*", "wildcards"),
            ("*.example.com", "wildcards"),
            ("sms example.com", "spaces"),
            (" sms.example.com", "spaces"),
            ("https://sms.example.com", "scheme"),
            ("[::1", "without"),
            ("[nope]:80", "IPv6"),
            ("", "empty"),
            ("exa_mple.com", "not a host"),
        ] {
            let err = check_allow_entry(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
