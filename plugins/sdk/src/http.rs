//! Outbound HTTP for plugins (`wasi:http`), blocking and small.
//!
//! The host only lets a cluster call the hosts in its
//! `[clusters.<name>.http] allow` list; any other host fails with a fault
//! that says so. Bodies are bounded by [`MAX_BODY`].

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

use crate::{Fault, codes};

/// Largest response body read, in bytes.
pub const MAX_BODY: usize = 4 << 20;

/// Fault code for HTTP failures (refused host, connection, timeout).
pub const HTTP_FAILED: i32 = 10;

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// What an API says went wrong: `error.message`, `error`, `message` or
    /// `detail` of a JSON body, else the body text.
    pub fn error_message(&self) -> String {
        let json = self.json();
        [
            &json["error"]["message"],
            &json["error"],
            &json["message"],
            &json["detail"],
        ]
        .into_iter()
        .find_map(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| self.text())
    }

    /// The JSON body of a 2xx answer, or a fault with `code` saying what
    /// `peer` answered.
    pub fn json_or_fault(&self, peer: &str, code: i32) -> Result<serde_json::Value, Fault> {
        if self.ok() {
            Ok(self.json())
        } else {
            Err(Fault::new(
                code,
                format!(
                    "the {peer} answered {}: {}",
                    self.status,
                    self.error_message()
                ),
            ))
        }
    }
}

fn failed(url: &str, why: impl std::fmt::Display) -> Fault {
    Fault::new(HTTP_FAILED, format!("HTTP request to {url} failed: {why}"))
}

fn explain(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            "the host is not in this cluster's http.allow list (denied by wasp)".into()
        }
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => "timed out".into(),
        other => format!("{other:?}"),
    }
}

/// `GET url`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, Fault> {
    request("GET", url, headers, &[])
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, headers: &[(&str, &str)], json: &str) -> Result<Response, Fault> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request("POST", url, &all, json.as_bytes())
}

/// Any request. `url` is `http://` or `https://`.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, Fault> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(Fault::new(
            codes::INTERNAL,
            format!("'{url}' is not an http(s) URL"),
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let fields =
        Fields::from_list(&entries).map_err(|e| failed(url, format!("bad header: {e:?}")))?;
    let req = OutgoingRequest::new(fields);
    let bad = |what: &str| failed(url, format!("invalid {what}"));
    req.set_method(&method).map_err(|_| bad("method"))?;
    req.set_scheme(Some(&scheme)).map_err(|_| bad("scheme"))?;
    req.set_authority(Some(authority))
        .map_err(|_| bad("host"))?;
    req.set_path_with_query(Some(path))
        .map_err(|_| bad("path"))?;
    let out = req.body().map_err(|_| failed(url, "no request body"))?;
    {
        let stream = out
            .write()
            .map_err(|_| failed(url, "no request body stream"))?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| failed(url, format!("writing the body: {e:?}")))?;
        }
    }
    let pending = outgoing_handler::handle(req, None).map_err(|e| failed(url, explain(&e)))?;
    OutgoingBody::finish(out, None).map_err(|e| failed(url, explain(&e)))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(failed(url, explain(&code))),
        Some(Err(())) | None => return Err(failed(url, "no response")),
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|_| failed(url, "no response body"))?;
    let stream = incoming
        .stream()
        .map_err(|_| failed(url, "no response body stream"))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(failed(
                        url,
                        format!("response body larger than {MAX_BODY} bytes"),
                    ));
                }
            }
            Err(StreamError::Closed) => break,
            Err(e) => return Err(failed(url, format!("reading the body: {e:?}"))),
        }
    }
    Ok(Response { status, body })
}
