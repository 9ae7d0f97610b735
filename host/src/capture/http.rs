//! The `http` capture adapter: interactions submitted by callers that wait
//! for the answer, in two dialects on wasp's own listener.
//!
//! - **Genesys native SOAP** (the Web Service Capture Point in Interaction
//!   Server native mode): `POST /Genesys/Interaction/{cp}/WebServiceCapturePoint`
//!   with a SOAP 1.1 envelope in the namespace [`IXN`]; `GET` on the same
//!   path with `?wsdl` serves the WSDL, its address taken from the
//!   request's `Host`, so a client generated from it calls back the way it
//!   came in.
//! - **JSON**: `POST /v1/capture/{cp}/{submit|update|hold|resume|stop|getinfo}`.
//!
//! Both hand one operation to the capture point's
//! [`Runner`](super::runner::Runner) (tenant, ExternalId, node) and answer
//! once the node did, or with the fault that kept it from doing so: no
//! node in `nodes.wait-for-node-ms` is answered, not retried, because the
//! caller is waiting (a file can wait in its folder, a SOAP client cannot).
//!
//! Every peer is hostile: bodies are read as ESP bodies are
//! (`server.max-body-bytes`, the in-flight body budget, the read timeout);
//! XML must be UTF-8, DTDs and entities other than the five predefined ones
//! are refused, elements nest at most [`MAX_ELEMENT_DEPTH`] deep and a
//! document holds at most [`MAX_ELEMENTS`] elements, so what a request
//! can make wasp hold is bounded before anything is interpreted.
//!
//! Checks, in order: token (3004) → the capture point exists and is an
//! `http` one (2001, HTTP 404) → without tokens, the declared content type
//! (3000, HTTP 415) → the body (3000 / 3003 / 408) → the request (3000) →
//! the runner (tenant 3001, ExternalId 2003/2004, node 2001/2002/3002 ...).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::CapturePoint;
use super::config::Adapter;
use super::runner::Runner;
use crate::Host;
use crate::config::Role;
use crate::esp::http::{PlainText, body_fault, read_body, refused_with, status_of};
use crate::esp::{Refused, Scalar};
use crate::fault::{Cause, Fault, FaultCode};
use crate::generation::Generation;
use crate::kv::{self, Kv, Value};
use crate::node::frames::OpKind;
use crate::runtime::codec::{Entry, Operation, Reply, ReplyKind};

#[cfg(test)]
mod proptests;

/// The Genesys interaction namespace of the native SOAP dialect.
pub const IXN: &str = "http://www.genesyslab.com/interaction";
/// SOAP 1.1 envelopes.
const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelopes: answered with a `VersionMismatch` fault.
const SOAP12_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Deepest element nesting a SOAP request may have: the envelope, body,
/// operation and `UserData` (4), three elements per KV level (`kvitem`,
/// `value`, `ValueList`) for [`kv::MAX_DEPTH`] levels, and the leaves.
pub const MAX_ELEMENT_DEPTH: usize = 8 + 3 * kv::MAX_DEPTH;
/// Most elements a SOAP request may hold: four per KV pair (`kvitem`,
/// `key`, `value`, the value) for [`kv::MAX_PAIRS`] pairs, and the frame.
/// Bounds the tree a body becomes (a 16 MiB body of `<a/>` would
/// otherwise be four million elements).
pub const MAX_ELEMENTS: usize = 4 * kv::MAX_PAIRS + 64;
/// Longest `InteractionId` or `ExternalId`, in characters (as node ids).
const MAX_ID: usize = 128;

// ---------------------------------------------------------------------------
// Handlers

/// `POST /Genesys/Interaction/{cp}/WebServiceCapturePoint`: one SOAP call.
pub async fn soap(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let generation = host.current();
    let runner = match admit(&generation, &name, &parts.headers) {
        Ok(runner) => runner,
        Err(fault) => return soap_fault(&fault, None),
    };
    if !generation.auth.enabled()
        && let Err(fault) = crate::loopback::check_xml(&parts.headers)
    {
        return soap_fault(&fault, None);
    }
    let cp = &runner.cp;
    let (bytes, _held) = match read_body(&host, body).await {
        Ok(read) => read,
        Err(why) => {
            let (fault, close) = body_fault(&host, parts.uri.path(), why);
            cp.stats.taken.inc();
            cp.stats.errors.inc();
            let mut response = soap_fault(&fault, None);
            if close {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return response;
        }
    };
    let call = match parse_envelope(&bytes) {
        Ok(call) => call,
        Err(refused) => {
            cp.stats.taken.inc();
            cp.stats.errors.inc();
            tracing::debug!(capture = %cp.name, "SOAP request refused: {}", refused.fault.message);
            return soap_fault(&refused.fault, Some(refused.code));
        }
    };
    let op = match call {
        SoapCall::Ping => return soap_ok(&ping_response(&host, cp)),
        SoapCall::Op(op) => op,
    };
    let kind = op.kind;
    match run(&runner, op).await {
        Ok(reply) => soap_ok(&op_response(kind, &reply)),
        Err(fault) => soap_fault(&fault, None),
    }
}

/// `GET /Genesys/Interaction/{cp}/WebServiceCapturePoint?wsdl`.
pub async fn wsdl(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let generation = host.current();
    if let Err(fault) = admit(&generation, &name, request.headers()) {
        return soap_fault(&fault, None);
    }
    let asks_wsdl = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.eq_ignore_ascii_case("wsdl")));
    if !asks_wsdl {
        let fault =
            Fault::invalid("GET serves only the WSDL (?wsdl); calls are POSTed SOAP 1.1 envelopes");
        return soap_fault(&fault, None);
    }
    let authority = request_authority(request.headers(), request.uri())
        .unwrap_or_else(|| host.server.listen.to_string());
    let address = format!("http://{authority}/Genesys/Interaction/{name}/WebServiceCapturePoint");
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        )],
        wsdl_text(&name, &address),
    )
        .into_response();
    response.extensions_mut().insert(PlainText);
    response
}

/// `POST /v1/capture/{cp}/{operation}`: one JSON call.
pub async fn json(
    State(host): State<Arc<Host>>,
    Path((name, operation)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let generation = host.current();
    let runner = match admit(&generation, &name, &parts.headers) {
        Ok(runner) => runner,
        Err(fault) => return Refused::new(fault).into_response(),
    };
    let Some(kind) = op_kind(&operation) else {
        let fault = Fault::invalid(format!(
            "no operation '{}': submit, update, hold, resume, stop or getinfo",
            crate::runtime::log::escape(&operation)
        ))
        .because(Cause::UnknownTarget);
        return Refused::new(fault).into_response();
    };
    let cp = &runner.cp;
    let (bytes, _held) = match read_body(&host, body).await {
        Ok(read) => read,
        Err(why) => {
            let (fault, close) = body_fault(&host, parts.uri.path(), why);
            cp.stats.taken.inc();
            cp.stats.errors.inc();
            let mut response = Refused::new(fault).into_response();
            if close {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return response;
        }
    };
    let op = match parse_json(kind, &bytes) {
        Ok(op) => op,
        Err(fault) => {
            cp.stats.taken.inc();
            cp.stats.errors.inc();
            return Refused::new(fault).into_response();
        }
    };
    match run(&runner, op).await {
        Ok(reply) => {
            let answer = JsonAnswer {
                interaction_id: reply.interaction_id.as_deref(),
                properties: &reply.properties,
            };
            match serde_json::to_vec(&answer) {
                Ok(bytes) => (
                    StatusCode::OK,
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
        Err(fault) => refused_with(status_of(&fault), &Refused::new(fault)),
    }
}

/// `{"InteractionId":…,"Properties":{…}}`.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct JsonAnswer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    interaction_id: Option<&'a str>,
    properties: &'a Kv,
}

/// The token, then the capture point: an `http` one of this generation,
/// started. The token comes first so that names cannot be probed without
/// one.
fn admit(generation: &Generation, name: &str, headers: &HeaderMap) -> Result<Arc<Runner>, Fault> {
    generation.auth.check(headers, None, Role::Capture)?;
    let unknown = || {
        Fault::new(
            FaultCode::NoServer,
            format!(
                "no http capture point '{}'",
                crate::runtime::log::escape(name)
            ),
        )
        .because(Cause::UnknownTarget)
    };
    let cp = generation.captures.get(name).ok_or_else(unknown)?;
    if cp.config.adapter != Adapter::Http {
        return Err(unknown());
    }
    cp.runner().ok_or_else(|| {
        Fault::new(
            FaultCode::NoServer,
            format!("capture point '{name}' is not running (stopping?)"),
        )
    })
}

/// Runs one operation for a caller that waits: the item is counted taken
/// and processed (whatever the answer), and an `error` reply becomes the
/// fault it reports.
async fn run(runner: &Runner, op: Operation) -> Result<Reply, Fault> {
    let cp = &runner.cp;
    cp.stats.taken.inc();
    let result = runner.run_now(Entry::Op(op)).await;
    cp.stats.processed.inc();
    let reply = result?;
    if reply.kind == ReplyKind::Error {
        let code = reply
            .code
            .unwrap_or(i32::from(FaultCode::InvalidRequest.as_u16()));
        let message = reply.description.unwrap_or_default();
        return Err(match u16::try_from(code) {
            Ok(code) => Fault::from_code(code, message),
            Err(_) => Fault::component(code, message),
        });
    }
    Ok(reply)
}

fn op_kind(name: &str) -> Option<OpKind> {
    Some(match name {
        "submit" => OpKind::Submit,
        "update" => OpKind::Update,
        "hold" => OpKind::Hold,
        "resume" => OpKind::Resume,
        "stop" => OpKind::Stop,
        "getinfo" => OpKind::GetInfo,
        _ => return None,
    })
}

/// `host[:port]` the request was addressed to, when it is a valid
/// authority (it goes into the WSDL, escaped).
fn request_authority(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    let named = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| headers.get(header::HOST)?.to_str().ok().map(str::to_string))?;
    let authority = named.parse::<axum::http::uri::Authority>().ok()?;
    (!authority.as_str().contains('@')).then(|| authority.as_str().to_string())
}

// ---------------------------------------------------------------------------
// JSON

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    #[serde(rename = "ExternalId")]
    external_id: Option<Scalar>,
    #[serde(rename = "InteractionId")]
    interaction_id: Option<Scalar>,
    #[serde(rename = "TenantId")]
    tenant_id: Option<Scalar>,
    #[serde(rename = "Queue")]
    queue: Option<Scalar>,
    #[serde(rename = "Properties")]
    properties: Option<Box<RawValue>>,
}

/// Reads a JSON capture request. `TenantId` and `Queue` become the first
/// properties (the tenant mapping reads them there), replacing the same
/// keys in `Properties`.
pub fn parse_json(kind: OpKind, body: &[u8]) -> Result<Operation, Fault> {
    let request: JsonRequest = serde_json::from_slice(body)
        .map_err(|e| Fault::invalid(format!("malformed request: {e}")))?;
    let text = |field: &str, value: Option<Scalar>| -> Result<Option<String>, Fault> {
        match value {
            None => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s)),
            Some(_) => Err(Fault::invalid(format!("{field}: must be a string"))),
        }
    };
    let external_id = text("ExternalId", request.external_id)?;
    let interaction_id = text("InteractionId", request.interaction_id)?;
    check_id("ExternalId", external_id.as_deref())?;
    check_id("InteractionId", interaction_id.as_deref())?;
    let mut first = Kv::new();
    match request.tenant_id {
        None => {}
        Some(Scalar::Int(n)) => first.0.push(("TenantId".into(), Value::Int(n))),
        Some(Scalar::Str(s)) => first.0.push(("TenantId".into(), Value::Str(s))),
        Some(_) => {
            return Err(Fault::invalid(
                "TenantId: must be a tenant id (integer) or name (string)",
            ));
        }
    }
    if let Some(queue) = text("Queue", request.queue)? {
        first.0.push(("Queue".into(), Value::Str(queue)));
    }
    let properties = match request.properties {
        None => Kv::new(),
        Some(raw) => Kv::from_json_text(raw.get(), "Properties")
            .map_err(|e| Fault::invalid(e.to_string()))?,
    };
    let mut all = first.clone();
    all.0.extend(
        properties
            .0
            .into_iter()
            .filter(|(k, _)| first.get(k).is_none()),
    );
    Ok(Operation {
        kind,
        interaction_id,
        external_id,
        properties: all,
    })
}

/// An id is 1 to [`MAX_ID`] characters without control characters: it
/// names an interaction to a node and reaches logs.
fn check_id(field: &str, id: Option<&str>) -> Result<(), Fault> {
    match id {
        None => Ok(()),
        Some("") => Err(Fault::invalid(format!("{field}: is empty"))),
        Some(s) if s.chars().count() > MAX_ID => Err(Fault::invalid(format!(
            "{field}: longer than {MAX_ID} characters"
        ))),
        Some(s) if s.chars().any(char::is_control) => Err(Fault::invalid(format!(
            "{field}: control characters are not allowed"
        ))),
        Some(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// SOAP: reading

/// What a SOAP envelope asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapCall {
    Op(Operation),
    Ping,
}

/// A SOAP request refused: the fault, and the SOAP 1.1 `faultcode` it is
/// answered with (`Client`, `VersionMismatch`, `MustUnderstand`).
#[derive(Debug, Clone)]
pub struct SoapRefused {
    pub code: &'static str,
    pub fault: Fault,
}

fn client(message: impl Into<String>) -> SoapRefused {
    SoapRefused {
        code: "Client",
        fault: Fault::invalid(message),
    }
}

/// One element of a request, as read (bounded by [`MAX_ELEMENTS`] and
/// [`MAX_ELEMENT_DEPTH`]).
#[derive(Debug, Default)]
struct Element {
    /// The namespace it is in ("" for none).
    ns: String,
    name: String,
    /// `mustUnderstand="1"` (only looked at on header entries).
    must_understand: bool,
    children: Vec<Element>,
    text: String,
}

impl Element {
    /// In the Genesys namespace, or unqualified (clients that do not
    /// qualify local elements are understood too).
    fn is(&self, name: &str) -> bool {
        self.name == name && (self.ns == IXN || self.ns.is_empty())
    }
}

/// Reads a SOAP 1.1 envelope: `Envelope`, an optional `Header` (entries
/// marked `mustUnderstand="1"` are refused: wasp understands none), and a
/// `Body` holding one operation element in [`IXN`].
pub fn parse_envelope(body: &[u8]) -> Result<SoapCall, SoapRefused> {
    let root = read_tree(body).map_err(client)?;
    if root.name == "Envelope" && root.ns == SOAP12_ENV {
        return Err(SoapRefused {
            code: "VersionMismatch",
            fault: Fault::invalid("a SOAP 1.2 envelope: this endpoint speaks SOAP 1.1"),
        });
    }
    if root.name != "Envelope" || root.ns != SOAP_ENV {
        return Err(SoapRefused {
            code: "VersionMismatch",
            fault: Fault::invalid(format!(
                "the root element is not a SOAP 1.1 Envelope ({{{SOAP_ENV}}}Envelope)"
            )),
        });
    }
    let mut body = None;
    for (i, child) in root.children.iter().enumerate() {
        match (child.ns == SOAP_ENV, child.name.as_str()) {
            (true, "Header") if i == 0 => {
                if let Some(entry) = child.children.iter().find(|e| e.must_understand) {
                    return Err(SoapRefused {
                        code: "MustUnderstand",
                        fault: Fault::invalid(format!(
                            "header entry '{}' must be understood, and wasp understands no header",
                            entry.name
                        )),
                    });
                }
            }
            (true, "Body") if body.is_none() => body = Some(child),
            _ => {
                return Err(client(format!(
                    "unexpected element '{}' in the Envelope (a Header, then one Body)",
                    child.name
                )));
            }
        }
    }
    let body = body.ok_or_else(|| client("the Envelope has no Body"))?;
    let [call] = body.children.as_slice() else {
        return Err(client(format!(
            "the Body must hold one operation element, not {}",
            body.children.len()
        )));
    };
    if call.ns != IXN {
        return Err(client(format!(
            "operation '{}' is not in the namespace {IXN}",
            call.name
        )));
    }
    let kind = match call.name.as_str() {
        "Submit" => OpKind::Submit,
        "Update" => OpKind::Update,
        "Hold" => OpKind::Hold,
        "Resume" => OpKind::Resume,
        "Stop" => OpKind::Stop,
        "GetInfo" => OpKind::GetInfo,
        "Ping" => {
            if let Some(extra) = call.children.first() {
                return Err(client(format!(
                    "Ping takes no element, got '{}'",
                    extra.name
                )));
            }
            return Ok(SoapCall::Ping);
        }
        other => {
            return Err(client(format!(
                "unknown operation '{other}': Submit, Update, Hold, Resume, Stop, GetInfo or Ping"
            )));
        }
    };
    read_operation(kind, call).map(SoapCall::Op).map_err(client)
}

/// The fields of one operation element. Submit: `InteractionId` is not
/// taken; `TenantId`, `Queue`, `MediaType`, `InteractionType`,
/// `InteractionSubtype` become the first properties, `UserData`'s items
/// follow. Update: `UserData` holds the properties to change. Every
/// operation but Submit names its interaction by `InteractionId` or
/// `ExternalId`.
fn read_operation(kind: OpKind, call: &Element) -> Result<Operation, String> {
    let op = &call.name;
    let mut interaction_id = None;
    let mut external_id = None;
    let mut head = Kv::new();
    let mut user_data: Option<Kv> = None;
    const ATTRIBUTES: [&str; 5] = [
        "TenantId",
        "Queue",
        "MediaType",
        "InteractionType",
        "InteractionSubtype",
    ];
    for field in &call.children {
        if !(field.ns == IXN || field.ns.is_empty()) {
            return Err(format!(
                "{op}: element '{}' is in a foreign namespace",
                field.name
            ));
        }
        let name = field.name.as_str();
        let leaf = || -> Result<String, String> {
            if let Some(child) = field.children.first() {
                return Err(format!(
                    "{op}/{name}: holds element '{}', expected text",
                    child.name
                ));
            }
            Ok(field.text.trim().to_string())
        };
        match name {
            "InteractionId" if kind != OpKind::Submit && interaction_id.is_none() => {
                let id = leaf()?;
                check_id(&format!("{op}/InteractionId"), Some(&id)).map_err(|f| f.message)?;
                interaction_id = Some(id);
            }
            "ExternalId" if external_id.is_none() => {
                let id = leaf()?;
                check_id(&format!("{op}/ExternalId"), Some(&id)).map_err(|f| f.message)?;
                external_id = Some(id);
            }
            "UserData"
                if matches!(kind, OpKind::Submit | OpKind::Update) && user_data.is_none() =>
            {
                let mut pairs = 0;
                user_data = Some(read_kv(field, &format!("{op}/UserData"), 1, &mut pairs)?);
            }
            n if kind == OpKind::Submit && ATTRIBUTES.contains(&n) => {
                if head.get(n).is_some() {
                    return Err(format!("{op}/{n}: given twice"));
                }
                let text = leaf()?;
                let value = match (n, text.parse::<i64>()) {
                    ("TenantId", Ok(id)) => Value::Int(id),
                    _ => Value::Str(text),
                };
                head.0.push((n.to_string(), value));
            }
            "InteractionId" | "ExternalId" | "UserData" => {
                return Err(if kind == OpKind::Submit && name == "InteractionId" {
                    format!("{op}: a Submit cannot name an InteractionId (the node assigns it)")
                } else if name == "UserData" {
                    format!("{op}: UserData is taken by Submit and Update only")
                } else {
                    format!("{op}/{name}: given twice")
                });
            }
            other => {
                return Err(format!("{op}: unknown element '{other}'"));
            }
        }
    }
    if kind != OpKind::Submit && interaction_id.is_none() && external_id.is_none() {
        return Err(format!("{op}: needs an InteractionId or an ExternalId"));
    }
    let mut properties = head;
    if let Some(data) = user_data {
        properties.0.extend(data.0);
    }
    Ok(Operation {
        kind,
        interaction_id,
        external_id,
        properties,
    })
}

/// A KV list: `kvitem` elements, each a `key` and a `value` holding one
/// of `ValueString`, `ValueInt` (i64), `ValueBinary` (base64) or
/// `ValueList` (nested, at most [`kv::MAX_DEPTH`] levels, at most
/// [`kv::MAX_PAIRS`] pairs in all).
fn read_kv(list: &Element, path: &str, depth: usize, pairs: &mut usize) -> Result<Kv, String> {
    if depth > kv::MAX_DEPTH {
        return Err(format!(
            "{path}: KV lists nest deeper than {} levels",
            kv::MAX_DEPTH
        ));
    }
    let mut out = Kv::new();
    for (i, item) in list.children.iter().enumerate() {
        let at = format!("{path}/kvitem[{}]", i + 1);
        if !item.is("kvitem") {
            return Err(format!(
                "{path}: unexpected element '{}' (kvitem expected)",
                item.name
            ));
        }
        *pairs += 1;
        if *pairs > kv::MAX_PAIRS {
            return Err(format!("{path}: more than {} KV pairs", kv::MAX_PAIRS));
        }
        let (mut key, mut value) = (None, None);
        for part in &item.children {
            if part.is("key") && key.is_none() && part.children.is_empty() {
                key = Some(part.text.clone());
            } else if part.is("value") && value.is_none() {
                value = Some(part);
            } else {
                return Err(format!(
                    "{at}: unexpected element '{}' (one key and one value)",
                    part.name
                ));
            }
        }
        let key = key.ok_or_else(|| format!("{at}: no key"))?;
        let value = value.ok_or_else(|| format!("{at}: no value"))?;
        let at = format!("{at}/value");
        let [typed] = value.children.as_slice() else {
            return Err(format!(
                "{at}: must hold one of ValueString, ValueInt, ValueBinary, ValueList"
            ));
        };
        let leaf = || {
            if let Some(child) = typed.children.first() {
                Err(format!(
                    "{at}/{}: holds element '{}'",
                    typed.name, child.name
                ))
            } else {
                Ok(typed.text.as_str())
            }
        };
        let value = if typed.is("ValueString") {
            Value::Str(leaf()?.to_string())
        } else if typed.is("ValueInt") {
            let text = leaf()?.trim();
            Value::Int(
                text.parse().map_err(|_| {
                    format!("{at}/ValueInt: '{}' is not an integer (i64)", clip(text))
                })?,
            )
        } else if typed.is("ValueBinary") {
            let text: String = leaf()?.split_ascii_whitespace().collect();
            Value::Binary(
                BASE64
                    .decode(text.as_bytes())
                    .map_err(|e| format!("{at}/ValueBinary: not base64: {e}"))?,
            )
        } else if typed.is("ValueList") {
            Value::List(read_kv(
                typed,
                &format!("{at}/ValueList"),
                depth + 1,
                pairs,
            )?)
        } else {
            return Err(format!(
                "{at}: unknown value element '{}' (ValueString, ValueInt, ValueBinary, ValueList)",
                typed.name
            ));
        };
        out.0.push((key, value));
    }
    Ok(out)
}

/// The body as a tree of elements, refusing what no SOAP request needs:
/// other encodings than UTF-8, DTDs, entities beyond the five predefined
/// ones, more than [`MAX_ELEMENT_DEPTH`] levels or [`MAX_ELEMENTS`]
/// elements, text or elements outside the root.
fn read_tree(body: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("not UTF-8 text: invalid byte at offset {}", e.valid_up_to()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = quick_xml::NsReader::from_str(text);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    config.allow_dangling_amp = false;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let at = reader.buffer_position();
        let here = || line_col(text, at);
        let (ns, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (ns, event),
            Err(e) => {
                let message = e.to_string();
                return Err(format!(
                    "not well-formed XML at {}: {message}",
                    line_col(text, reader.error_position())
                ));
            }
        };
        let ns = match ns {
            ResolveResult::Bound(ns) => ns.into_inner().to_string(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(prefix) => {
                return Err(format!(
                    "undeclared namespace prefix '{}' at {}",
                    clip(&prefix),
                    here()
                ));
            }
        };
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return Err(format!("a second root element at {}", here()));
                }
                if stack.len() >= MAX_ELEMENT_DEPTH {
                    return Err(format!(
                        "elements nest deeper than {MAX_ELEMENT_DEPTH} levels at {}",
                        here()
                    ));
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(format!("more than {MAX_ELEMENTS} elements"));
                }
                let name = e.local_name().into_inner().to_string();
                let must_understand = e.attributes().flatten().any(|a| {
                    a.key.local_name().into_inner() == "mustUnderstand"
                        && matches!(a.value.as_ref(), "1" | "true")
                });
                stack.push(Element {
                    ns,
                    name,
                    must_understand,
                    ..Element::default()
                });
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("an end tag without a start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(format!("text outside the root element at {}", here())),
                }
            }
            Event::CData(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&content),
                    None => return Err(format!("CDATA outside the root element at {}", here())),
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => predefined(&r).ok_or_else(|| {
                        format!(
                            "entity &{}; at {} is not allowed: only &lt; &gt; &amp; &apos; &quot; and character references are",
                            clip(&r),
                            here()
                        )
                    })?,
                    Err(e) => return Err(format!("bad character reference at {}: {e}", here())),
                };
                match stack.last_mut() {
                    Some(open) => open.text.push(c),
                    None => {
                        return Err(format!(
                            "a reference outside the root element at {}",
                            here()
                        ));
                    }
                }
            }
            Event::DocType(_) => {
                return Err(format!(
                    "a DTD (<!DOCTYPE>) at {} is not allowed: SOAP messages carry none",
                    here()
                ));
            }
            Event::Decl(d) => {
                if let Some(encoding) = d.encoding() {
                    let encoding =
                        encoding.map_err(|e| format!("bad XML declaration at {}: {e}", here()))?;
                    let name: &str = &encoding;
                    if !name.eq_ignore_ascii_case("utf-8") {
                        return Err(format!(
                            "encoding '{}' is not supported: requests must be UTF-8",
                            clip(name)
                        ));
                    }
                }
            }
            // Empty elements come as Start and End (expand_empty_elements).
            Event::Empty(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                if !stack.is_empty() {
                    return Err(format!(
                        "the document ends inside an element (at {})",
                        here()
                    ));
                }
                return root.ok_or_else(|| "no root element (an empty body?)".to_string());
            }
        }
    }
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

fn line_col(text: &str, at: u64) -> String {
    let at = (at as usize).min(text.len());
    let before = &text.as_bytes()[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = at
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    format!("line {line}, column {column}")
}

/// At most 64 characters of peer-sent text in a message.
fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    crate::runtime::log::escape(&out).to_string()
}

// ---------------------------------------------------------------------------
// SOAP: writing

const ENVELOPE_OPEN: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    "\n",
    r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ixn="http://www.genesyslab.com/interaction">"#,
    "<SOAP-ENV:Body>"
);
const ENVELOPE_CLOSE: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>\n";

fn soap_ok(body: &str) -> Response {
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        )],
        format!("{ENVELOPE_OPEN}{body}{ENVELOPE_CLOSE}"),
    )
        .into_response();
    response.extensions_mut().insert(PlainText);
    response
}

/// A SOAP `Fault` with `detail/ixn:FaultMessage{ErrorCode, ErrorDescription}`
/// (`ErrorCode` is wasp's fault code). HTTP 500, as SOAP 1.1 says for
/// faults, except where HTTP itself decides: 401/403 (token), 404 (no
/// such capture point), 415 (content type). `faultcode` is `Client` for
/// a request the caller has to change, `Server` for what may succeed
/// later (no node, timeouts, a node's own fault), unless `code` says.
fn soap_fault(fault: &Fault, code: Option<&'static str>) -> Response {
    let status = match (fault.cause, fault.code) {
        (Cause::UnknownTarget, _) => StatusCode::NOT_FOUND,
        (Cause::Forbidden, _) => StatusCode::FORBIDDEN,
        (Cause::ContentType, _) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        (_, FaultCode::Unauthorized) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let code = code.unwrap_or(match fault.code {
        FaultCode::InvalidRequest
        | FaultCode::Tenant
        | FaultCode::Unauthorized
        | FaultCode::NotAccessible
        | FaultCode::InProgress
        | FaultCode::Unsupported => "Client",
        _ => "Server",
    });
    let mut body = String::new();
    let _ = write!(
        body,
        "<SOAP-ENV:Fault><faultcode>SOAP-ENV:{code}</faultcode><faultstring>{msg}</faultstring>\
         <detail><ixn:FaultMessage><ixn:ErrorCode>{n}</ixn:ErrorCode>\
         <ixn:ErrorDescription>{msg}</ixn:ErrorDescription></ixn:FaultMessage></detail></SOAP-ENV:Fault>",
        msg = Escaped(&fault.message),
        n = fault.code.as_u16(),
    );
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        )],
        format!("{ENVELOPE_OPEN}{body}{ENVELOPE_CLOSE}"),
    )
        .into_response();
    response.extensions_mut().insert(PlainText);
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if fault.code == FaultCode::Overloaded {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// `RequestResponse` (Submit: `Extension` with `InteractionId`; Hold,
/// Resume, Stop, Update: empty) or, for GetInfo, `GetInfoResponse`.
fn op_response(kind: OpKind, reply: &Reply) -> String {
    let mut out = String::new();
    match kind {
        OpKind::Submit => {
            let id = Kv::new().with(
                "InteractionId",
                Value::Str(reply.interaction_id.clone().unwrap_or_default()),
            );
            out.push_str("<ixn:RequestResponse><ixn:Extension>");
            write_kv(&mut out, &id);
            out.push_str("</ixn:Extension></ixn:RequestResponse>");
        }
        OpKind::GetInfo => {
            out.push_str("<ixn:GetInfoResponse>");
            let text = |out: &mut String, name: &str, value: Option<&str>| {
                if let Some(v) = value {
                    let _ = write!(out, "<ixn:{name}>{}</ixn:{name}>", Escaped(v));
                }
            };
            text(&mut out, "InteractionId", reply.interaction_id.as_deref());
            text(&mut out, "ExternalId", reply.external_id.as_deref());
            let tenant =
                reply
                    .tenant_id
                    .map(i64::from)
                    .or(match reply.properties.get("TenantId") {
                        Some(Value::Int(n)) => Some(*n),
                        _ => None,
                    });
            if let Some(t) = tenant {
                let _ = write!(out, "<ixn:TenantId>{t}</ixn:TenantId>");
            }
            let queue = match reply.properties.get("Queue") {
                Some(Value::Str(q)) => Some(q.as_str()),
                _ => reply.queue.as_deref(),
            };
            text(&mut out, "Queue", queue);
            out.push_str("<ixn:UserData>");
            write_kv(&mut out, &reply.properties);
            out.push_str("</ixn:UserData></ixn:GetInfoResponse>");
        }
        OpKind::Update | OpKind::Hold | OpKind::Resume | OpKind::Stop => {
            out.push_str("<ixn:RequestResponse/>");
        }
    }
    out
}

/// Ping: the capture point's and the node router's figures, as a
/// `RequestResponse` whose `Extension` lists them.
fn ping_response(host: &Host, cp: &CapturePoint) -> String {
    let s = cp.snapshot();
    let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let stats = Kv::new()
        .with("CapturePoint", Value::Str(s.name))
        .with("Taken", int(s.taken))
        .with("Processed", int(s.processed))
        .with("Errors", int(s.errors))
        .with("Operations", int(s.operations))
        .with("OperationErrors", int(s.operation_errors))
        .with("WaitingForNode", Value::Int(s.waiting_for_node))
        .with("Nodes", int(host.nodes.snapshot().len() as u64))
        .with("Interactions", int(host.nodes.interactions() as u64));
    let mut out = String::from("<ixn:RequestResponse><ixn:Extension>");
    write_kv(&mut out, &stats);
    out.push_str("</ixn:Extension></ixn:RequestResponse>");
    out
}

/// A KV list as `ixn:kvitem`s (nesting is bounded by [`kv::MAX_DEPTH`]
/// wherever the list came from).
fn write_kv(out: &mut String, list: &Kv) {
    for (key, value) in &list.0 {
        let _ = write!(
            out,
            "<ixn:kvitem><ixn:key>{}</ixn:key><ixn:value>",
            Escaped(key)
        );
        match value {
            Value::Str(s) => {
                let _ = write!(out, "<ixn:ValueString>{}</ixn:ValueString>", Escaped(s));
            }
            Value::Int(n) => {
                let _ = write!(out, "<ixn:ValueInt>{n}</ixn:ValueInt>");
            }
            Value::Binary(b) => {
                let _ = write!(
                    out,
                    "<ixn:ValueBinary>{}</ixn:ValueBinary>",
                    BASE64.encode(b)
                );
            }
            Value::List(inner) => {
                out.push_str("<ixn:ValueList>");
                write_kv(out, inner);
                out.push_str("</ixn:ValueList>");
            }
        }
        out.push_str("</ixn:value></ixn:kvitem>");
    }
}

/// Text escaped for XML content and attributes. Characters XML 1.0
/// cannot carry at all (controls other than tab, newline, carriage
/// return) become U+FFFD.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&apos;")?,
                '\t' | '\n' | '\r' => f.write_char(c)?,
                c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                    f.write_char('\u{fffd}')?
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// WSDL

/// The WSDL of capture point `name`, served at `address`: document/literal
/// SOAP 1.1, one schema in [`IXN`] (`elementFormDefault="qualified"`).
pub fn wsdl_text(name: &str, address: &str) -> String {
    let mut operations = String::new();
    for op in [
        "Submit", "Update", "Hold", "Resume", "Stop", "GetInfo", "Ping",
    ] {
        let _ = write!(
            operations,
            "<wsdl:operation name=\"{op}\"><soap:operation soapAction=\"{IXN}/{op}\" style=\"document\"/>\
             <wsdl:input><soap:body use=\"literal\"/></wsdl:input>\
             <wsdl:output><soap:body use=\"literal\"/></wsdl:output>\
             <wsdl:fault name=\"FaultMessage\"><soap:fault name=\"FaultMessage\" use=\"literal\"/></wsdl:fault>\
             </wsdl:operation>\n    "
        );
    }
    WSDL.replace("{NAME}", &Escaped(name).to_string())
        .replace("{ADDRESS}", &Escaped(address).to_string())
        .replace("{OPERATIONS}", operations.trim_end())
}

const WSDL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="WebServiceCapturePoint"
    targetNamespace="http://www.genesyslab.com/interaction"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:ixn="http://www.genesyslab.com/interaction">
  <wsdl:documentation>wasp capture point '{NAME}': the Genesys Web Service Capture Point, native mode</wsdl:documentation>
  <wsdl:types>
    <xsd:schema targetNamespace="http://www.genesyslab.com/interaction" elementFormDefault="qualified">
      <xsd:complexType name="KVList">
        <xsd:sequence>
          <xsd:element name="kvitem" type="ixn:KVItem" minOccurs="0" maxOccurs="unbounded"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="KVItem">
        <xsd:sequence>
          <xsd:element name="key" type="xsd:string"/>
          <xsd:element name="value" type="ixn:KVValue"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="KVValue">
        <xsd:choice>
          <xsd:element name="ValueString" type="xsd:string"/>
          <xsd:element name="ValueInt" type="xsd:long"/>
          <xsd:element name="ValueBinary" type="xsd:base64Binary"/>
          <xsd:element name="ValueList" type="ixn:KVList"/>
        </xsd:choice>
      </xsd:complexType>
      <xsd:complexType name="InteractionRef">
        <xsd:sequence>
          <xsd:element name="InteractionId" type="xsd:string" minOccurs="0"/>
          <xsd:element name="ExternalId" type="xsd:string" minOccurs="0"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:element name="Submit">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="TenantId" type="xsd:string" minOccurs="0"/>
            <xsd:element name="Queue" type="xsd:string" minOccurs="0"/>
            <xsd:element name="MediaType" type="xsd:string" minOccurs="0"/>
            <xsd:element name="InteractionType" type="xsd:string" minOccurs="0"/>
            <xsd:element name="InteractionSubtype" type="xsd:string" minOccurs="0"/>
            <xsd:element name="ExternalId" type="xsd:string" minOccurs="0"/>
            <xsd:element name="UserData" type="ixn:KVList" minOccurs="0"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="Update">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="InteractionId" type="xsd:string" minOccurs="0"/>
            <xsd:element name="ExternalId" type="xsd:string" minOccurs="0"/>
            <xsd:element name="UserData" type="ixn:KVList" minOccurs="0"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="Hold" type="ixn:InteractionRef"/>
      <xsd:element name="Resume" type="ixn:InteractionRef"/>
      <xsd:element name="Stop" type="ixn:InteractionRef"/>
      <xsd:element name="GetInfo" type="ixn:InteractionRef"/>
      <xsd:element name="Ping">
        <xsd:complexType><xsd:sequence/></xsd:complexType>
      </xsd:element>
      <xsd:element name="RequestResponse">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="Extension" type="ixn:KVList" minOccurs="0"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="GetInfoResponse">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="InteractionId" type="xsd:string"/>
            <xsd:element name="ExternalId" type="xsd:string" minOccurs="0"/>
            <xsd:element name="TenantId" type="xsd:int" minOccurs="0"/>
            <xsd:element name="Queue" type="xsd:string" minOccurs="0"/>
            <xsd:element name="UserData" type="ixn:KVList" minOccurs="0"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="FaultMessage">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="ErrorCode" type="xsd:int"/>
            <xsd:element name="ErrorDescription" type="xsd:string"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
    </xsd:schema>
  </wsdl:types>
  <wsdl:message name="SubmitRequest"><wsdl:part name="parameters" element="ixn:Submit"/></wsdl:message>
  <wsdl:message name="UpdateRequest"><wsdl:part name="parameters" element="ixn:Update"/></wsdl:message>
  <wsdl:message name="HoldRequest"><wsdl:part name="parameters" element="ixn:Hold"/></wsdl:message>
  <wsdl:message name="ResumeRequest"><wsdl:part name="parameters" element="ixn:Resume"/></wsdl:message>
  <wsdl:message name="StopRequest"><wsdl:part name="parameters" element="ixn:Stop"/></wsdl:message>
  <wsdl:message name="GetInfoRequest"><wsdl:part name="parameters" element="ixn:GetInfo"/></wsdl:message>
  <wsdl:message name="PingRequest"><wsdl:part name="parameters" element="ixn:Ping"/></wsdl:message>
  <wsdl:message name="RequestResponse"><wsdl:part name="parameters" element="ixn:RequestResponse"/></wsdl:message>
  <wsdl:message name="GetInfoResponse"><wsdl:part name="parameters" element="ixn:GetInfoResponse"/></wsdl:message>
  <wsdl:message name="FaultMessage"><wsdl:part name="fault" element="ixn:FaultMessage"/></wsdl:message>
  <wsdl:portType name="WebServiceCapturePointPortType">
    <wsdl:operation name="Submit"><wsdl:input message="ixn:SubmitRequest"/><wsdl:output message="ixn:RequestResponse"/><wsdl:fault name="FaultMessage" message="ixn:FaultMessage"/></wsdl:operation>
    <wsdl:operation name="Update"><wsdl:input message="ixn:UpdateRequest"/><wsdl:output message="ixn:RequestResponse"/><wsdl:fault name="FaultMessage" message="ixn:FaultMessage"/></wsdl:operation>
    <wsdl:operation name="Hold"><wsdl:input message="ixn:HoldRequest"/><wsdl:output message="ixn:RequestResponse"/><wsdl:fault name="FaultMessage" message="ixn:FaultMessage"/></wsdl:operation>
    <wsdl:operation name="Resume"><wsdl:input message="ixn:ResumeRequest"/><wsdl:output message="ixn:RequestResponse"/><wsdl:fault name="FaultMessage" message="ixn:FaultMessage"/></wsdl:operation>
    <wsdl:operation name="Stop"><wsdl:input message="ixn:StopRequest"/><wsdl:output message="ixn:RequestResponse"/><wsdl:fault name="FaultMessage" message="ixn:FaultMessage"/></wsdl:operation>
    <wsdl:operation name="GetInfo"><wsdl:input message="ixn:GetInfoRequest"/><wsdl:output message="ixn:GetInfoResponse"/><wsdl:fault name="FaultMessage" message="ixn:FaultMessage"/></wsdl:operation>
    <wsdl:operation name="Ping"><wsdl:input message="ixn:PingRequest"/><wsdl:output message="ixn:RequestResponse"/><wsdl:fault name="FaultMessage" message="ixn:FaultMessage"/></wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="WebServiceCapturePointBinding" type="ixn:WebServiceCapturePointPortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    {OPERATIONS}
  </wsdl:binding>
  <wsdl:service name="WebServiceCapturePoint">
    <wsdl:port name="WebServiceCapturePoint" binding="ixn:WebServiceCapturePointBinding">
      <soap:address location="{ADDRESS}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#;
