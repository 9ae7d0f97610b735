//! ESP ingress: `Request3rdServer` in, `Event3rdServerResponse` or
//! `Event3rdServerFault` out (PROTOCOL.md). The request parser and the
//! dispatcher are transport-free; `http` puts them on `POST /v1/esp/{cluster}`.
//!
//! Checks, in order: well-formed request (3000) → cluster exists (2001,
//! HTTP 404) → tenant given and known (3001) → service and method served
//! by the cluster (2000) → cluster serves the tenant (2001) → balancer
//! (3003 overloaded, 3002 timeout, 2002 lost, 3005 component fault).

pub mod http;

use std::time::Instant;

use serde::Serialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::Generation;
use crate::admin::metrics::Metrics;
use crate::config::TenantConfig;
use crate::fault::{Fault, FaultCode};
use crate::kv::Kv;
use crate::runtime::bindings;

/// A parsed `Request3rdServer`.
#[derive(Debug, Clone)]
pub struct EspRequest {
    pub reference_id: i64,
    /// `Cluster` (sessions only; over HTTP the path names the cluster).
    pub cluster: Option<String>,
    pub service: String,
    pub method: String,
    pub version: String,
    pub tenant: Option<Scalar>,
    pub media_type: Option<String>,
    pub parameters: Kv,
    pub user_data: Option<Kv>,
}

/// A fault together with what is echoed back with it.
#[derive(Debug, Clone)]
pub struct Refused {
    pub reference_id: i64,
    pub user_data: Option<Kv>,
    pub fault: Fault,
}

impl Refused {
    /// A fault with nothing to echo (before a request could be read).
    pub fn new(fault: Fault) -> Self {
        Refused {
            reference_id: 0,
            user_data: None,
            fault,
        }
    }
}

/// Parses a request body. On failure the fault still carries the
/// `ReferenceId` if one could be read.
pub fn parse(body: &[u8]) -> Result<EspRequest, Refused> {
    let refuse = |reference_id, fault| Refused {
        reference_id,
        user_data: None,
        fault,
    };
    // The envelope first, with `Request` and `UserData` left as text: a
    // wrong value deep inside them must not cost the `ReferenceId` the
    // fault is answered with.
    if !starts_with_object(body) {
        let why = match serde_json::from_slice::<IgnoredAny>(body) {
            Err(e) => format!("malformed JSON: {e}"),
            Ok(_) => "the request must be a JSON object".into(),
        };
        return Err(refuse(0, Fault::invalid(why)));
    }
    let top: Envelope = serde_json::from_slice(body)
        .map_err(|e| refuse(0, Fault::invalid(format!("malformed JSON: {e}"))))?;
    let reference_id = match top.reference_id {
        None => 0,
        Some(Scalar::Int(n)) => n,
        Some(_) => return Err(refuse(0, Fault::invalid("ReferenceId: must be an integer"))),
    };
    let invalid = |msg: String| refuse(reference_id, Fault::invalid(msg));
    let cluster = match top.cluster {
        None => None,
        Some(Scalar::Str(s)) if s.chars().any(char::is_control) => {
            return Err(invalid(
                "Cluster: control characters are not allowed".into(),
            ));
        }
        Some(Scalar::Str(s)) => Some(s),
        Some(_) => return Err(invalid("Cluster: must be a string".into())),
    };
    let user_data = match top.user_data {
        None => None,
        Some(raw) => {
            Some(Kv::from_json_text(raw.get(), "UserData").map_err(|e| invalid(e.to_string()))?)
        }
    };
    let Some(request) = top.request else {
        return Err(invalid("Request: is required".into()));
    };
    if !starts_with_object(request.get().as_bytes()) {
        return Err(invalid("Request: must be an object".into()));
    }
    let request: RequestEnvelope =
        serde_json::from_str(request.get()).map_err(|e| invalid(format!("Request: {e}")))?;
    let text =
        |field: &str, value: Option<Scalar>, required: bool| -> Result<Option<String>, Refused> {
            match value {
                None if required => Err(invalid(format!("Request.{field}: is required"))),
                None => Ok(None),
                Some(Scalar::Str(s)) if required && s.is_empty() => {
                    Err(invalid(format!("Request.{field}: is empty")))
                }
                // They name things and reach logs: no forged lines.
                Some(Scalar::Str(s)) if s.chars().any(char::is_control) => Err(invalid(format!(
                    "Request.{field}: control characters are not allowed"
                ))),
                Some(Scalar::Str(s)) => Ok(Some(s)),
                Some(_) => Err(invalid(format!("Request.{field}: must be a string"))),
            }
        };
    let service = text("Service", request.service, true)?.unwrap_or_default();
    let method = text("Method", request.method, true)?.unwrap_or_default();
    let version = text("Version", request.version, false)?.unwrap_or_default();
    let media_type = text("MediaType", request.media_type, false)?;
    let parameters = match request.parameters {
        None => Kv::new(),
        Some(raw) => Kv::from_json_text(raw.get(), "Request.Parameters")
            .map_err(|e| invalid(e.to_string()))?,
    };
    Ok(EspRequest {
        reference_id,
        cluster,
        service,
        method,
        version,
        tenant: request.tenant,
        media_type,
        parameters,
        user_data,
    })
}

/// A field of the request itself as it was read: a scalar is kept, an
/// array or object is skipped without being built, so a 16 MiB array in
/// `ReferenceId` costs no memory, only the 3000 it is answered with.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// Any other number (too large for i64, or with a fraction).
    OtherNumber,
    Str(String),
    Array,
    Object,
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> serde::de::Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
        Ok(i64::try_from(v).map_or(Scalar::OtherNumber, Scalar::Int))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar::OtherNumber)
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// The top level of a request. Fields whose type is checked by hand are
/// read as [`Scalar`]s; unknown fields are skipped unread. A field given
/// as `null` is present (and wrong), not absent.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "ReferenceId", default, deserialize_with = "present")]
    reference_id: Option<Scalar>,
    #[serde(rename = "Cluster", default, deserialize_with = "present")]
    cluster: Option<Scalar>,
    #[serde(rename = "Request", borrow, default, deserialize_with = "present")]
    request: Option<&'a RawValue>,
    #[serde(rename = "UserData", borrow, default, deserialize_with = "present")]
    user_data: Option<&'a RawValue>,
}

/// `Request`, with `Parameters` left as text.
#[derive(serde::Deserialize)]
struct RequestEnvelope<'a> {
    #[serde(rename = "Service", default, deserialize_with = "present")]
    service: Option<Scalar>,
    #[serde(rename = "Method", default, deserialize_with = "present")]
    method: Option<Scalar>,
    #[serde(rename = "Version", default, deserialize_with = "present")]
    version: Option<Scalar>,
    #[serde(rename = "TenantId", default, deserialize_with = "present")]
    tenant: Option<Scalar>,
    #[serde(rename = "MediaType", default, deserialize_with = "present")]
    media_type: Option<Scalar>,
    #[serde(rename = "Parameters", borrow, default, deserialize_with = "present")]
    parameters: Option<&'a RawValue>,
}

/// A field that is there, even as `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Whether the first thing in `text` (after blanks) opens an object.
fn starts_with_object(text: &[u8]) -> bool {
    text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Resolves `TenantId`: an integer id or a tenant name.
fn resolve_tenant<'a>(
    tenants: &'a [TenantConfig],
    given: Option<&Scalar>,
) -> Result<&'a TenantConfig, Fault> {
    let unknown = |what: String| Fault::new(FaultCode::Tenant, format!("unknown tenant {what}"));
    match given {
        None | Some(Scalar::Null) => Err(Fault::new(
            FaultCode::Tenant,
            "Request.TenantId: is required",
        )),
        Some(Scalar::Int(n)) => crate::tenant::find(tenants, crate::tenant::Key::Id(*n))
            .ok_or_else(|| unknown(n.to_string())),
        Some(Scalar::OtherNumber) => Err(unknown("(a number that is no tenant id)".into())),
        Some(Scalar::Str(name)) => crate::tenant::find(tenants, crate::tenant::Key::Name(name))
            .ok_or_else(|| unknown(format!("'{name}'"))),
        Some(_) => Err(Fault::new(
            FaultCode::Tenant,
            "Request.TenantId: must be a tenant id (integer) or name (string)",
        )),
    }
}

/// Runs a parsed request on a cluster, with metrics. `allowed` limits the
/// tenants (a node's announced tenants, or a node token's): another tenant
/// is refused with 3004.
pub async fn dispatch(
    generation: &Generation,
    metrics: &Metrics,
    cluster_name: &str,
    req: &EspRequest,
    allowed: Option<&[u32]>,
) -> Result<Kv, Fault> {
    let Some(cluster) = generation.clusters.get(cluster_name) else {
        let fault = Fault::unknown_cluster(cluster_name);
        metrics.fault("", &fault);
        return Err(fault);
    };
    let started = Instant::now();
    let result = async {
        let tenant = resolve_tenant(generation.tenants(), req.tenant.as_ref())?;
        tracing::Span::current().record("tenant", tenant.id);
        if let Some(allowed) = allowed
            && !allowed.contains(&tenant.id)
        {
            return Err(Fault::forbidden(format!(
                "tenant {} is not allowed here (allowed: {allowed:?})",
                tenant.id
            )));
        }
        if req.service != cluster.service {
            return Err(Fault::new(
                FaultCode::Unsupported,
                format!(
                    "cluster '{}' serves service '{}', not '{}'",
                    cluster.name, cluster.service, req.service
                ),
            ));
        }
        if !cluster.methods.contains(&req.method) {
            let mut methods: Vec<_> = cluster.methods.iter().map(String::as_str).collect();
            methods.sort_unstable();
            return Err(Fault::new(
                FaultCode::Unsupported,
                format!(
                    "service '{}' has no method '{}' (methods: {})",
                    cluster.service,
                    req.method,
                    methods.join(", ")
                ),
            ));
        }
        if !cluster.serves(tenant.id) {
            return Err(Fault::new(
                FaultCode::NoServer,
                format!("cluster '{}' serves no tenant {}", cluster.name, tenant.id),
            ));
        }
        cluster.check_fits(&req.parameters, req.user_data.as_ref())?;
        // Lowered into the component straight from the parsed request.
        let parameters = req.parameters.to_wit();
        let parameters = parameters.lists();
        let user_data = req.user_data.as_ref().map(Kv::to_wit).unwrap_or_default();
        let user_data = user_data.lists();
        let wit_req = bindings::Request {
            service: &req.service,
            method: &req.method,
            version: &req.version,
            tenant: bindings::Tenant {
                id: tenant.id,
                name: &tenant.name,
            },
            media_type: req.media_type.as_deref(),
            parameters: bindings::KvListParam { lists: &parameters },
            user_data: bindings::KvListParam { lists: &user_data },
        };
        cluster.call(&wit_req).await
    }
    .await;
    cluster.metrics.observe(started.elapsed());
    if let Err(fault) = &result {
        metrics.fault(cluster_name, fault);
    }
    if let Err(fault) = &result {
        tracing::debug!(
            code = fault.code.as_u16(),
            "fault: {}",
            crate::runtime::log::escape(&fault.message)
        );
    }
    result
}

/// `Event3rdServerResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResponseBody<'a> {
    pub event: &'static str,
    pub reference_id: i64,
    pub result: &'a Kv,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<&'a Kv>,
}

impl<'a> ResponseBody<'a> {
    pub fn new(reference_id: i64, result: &'a Kv, user_data: Option<&'a Kv>) -> Self {
        ResponseBody {
            event: "Event3rdServerResponse",
            reference_id,
            result,
            user_data,
        }
    }
}

/// `Event3rdServerFault`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaultBody<'a> {
    pub event: &'static str,
    pub reference_id: i64,
    pub fault_code: u16,
    pub fault_string: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_fault_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<&'a Kv>,
}

impl<'a> FaultBody<'a> {
    pub fn new(refused: &'a Refused) -> Self {
        FaultBody {
            event: "Event3rdServerFault",
            reference_id: refused.reference_id,
            fault_code: refused.fault.code.as_u16(),
            fault_string: &refused.fault.message,
            component_fault_code: refused.fault.component_code,
            user_data: refused.user_data.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_the_protocol_example() {
        let body = br#"{"ReferenceId":42,"Request":{"Service":"Classification","Method":"Classify",
            "Version":"1.0","TenantId":101,"Parameters":{"Text":"my parcel never arrived","RootCategory":"Support"}},
            "UserData":{"StrategyId":"s-7"}}"#;
        let req = parse(body).unwrap();
        assert_eq!(req.reference_id, 42);
        assert_eq!(req.method, "Classify");
        assert_eq!(req.parameters.0.len(), 2);
        assert!(req.user_data.is_some());
    }

    #[test]
    fn parse_refusals_name_the_field_and_keep_the_reference() {
        let cases: [(&[u8], &str); 12] = [
            (b"{not json", "malformed JSON"),
            (b"not json", "malformed JSON"),
            (b"[1, 2]", "the request must be a JSON object"),
            (br#"{"ReferenceId":7,"Request":[1]}"#, "Request: must be an object"),
            (br#"{"ReferenceId":7,"Request":{"Service":"S","Method":"M","Parameters":null}}"#, "Request.Parameters: expected a KV list (JSON object), got null"),
            (br#"{"ReferenceId":7,"Request":{"Service":null,"Method":"M"}}"#, "Request.Service: must be a string"),
            (br#"{"ReferenceId":7,"Request":{"Service":"S","Service":"T","Method":"M"}}"#, "duplicate field `Service`"),
            (br#"{"ReferenceId":7}"#, "Request: is required"),
            (br#"{"ReferenceId":7,"Request":{"Method":"M","TenantId":1}}"#, "Request.Service: is required"),
            (br#"{"ReferenceId":7,"Request":{"Service":"S","Method":"M","Parameters":{"Tags":1.5}}}"#, "Request.Parameters.Tags"),
            (br#"{"ReferenceId":7,"Request":{"Service":"S","Method":"M"},"UserData":{"a":[1]}}"#, "UserData.a"),
            (br#"{"ReferenceId":"x"}"#, "ReferenceId: must be an integer"),
        ];
        for (body, want) in cases {
            let err = parse(body).unwrap_err();
            assert_eq!(err.fault.code, FaultCode::InvalidRequest);
            assert!(
                err.fault.message.contains(want),
                "{} !~ {want}",
                err.fault.message
            );
        }
        assert_eq!(
            parse(br#"{"ReferenceId":7,"Request":{"Service":"S"}}"#)
                .unwrap_err()
                .reference_id,
            7
        );
        // A wrong value deep in a list still answers with the reference.
        let deep = br#"{"Request":{"Service":"S","Method":"M","Parameters":{"A":{"B":{"C":true}}}},"ReferenceId":9}"#;
        let err = parse(deep).unwrap_err();
        assert_eq!(err.reference_id, 9);
        assert_eq!(
            err.fault.message,
            "Request.Parameters.A.B.C: a boolean is not a KV value; use an integer, string, {\"$binary\": ...} or object"
        );
    }

    #[test]
    fn parse_keeps_repeated_keys_in_order() {
        let body = br#"{"Request":{"Service":"S","Method":"M","TenantId":1,
            "Parameters":{"To":"+1","To":"+2","Opt":{"k":1,"k":2},"$binary":"x","$binary":"y"}}}"#;
        let req = parse(body).unwrap();
        let keys: Vec<&str> = req.parameters.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["To", "To", "Opt", "$binary", "$binary"]);
        assert_eq!(
            serde_json::to_string(&req.parameters).unwrap(),
            r#"{"To":"+1","To":"+2","Opt":{"k":1,"k":2},"$binary":"x","$binary":"y"}"#
        );
    }

    #[test]
    fn tenants_resolve_by_id_or_name() {
        let tenants = vec![TenantConfig {
            id: 101,
            name: "Environment".into(),
        }];
        let find = |j: Scalar| resolve_tenant(&tenants, Some(&j)).map(|t| t.id);
        assert_eq!(find(Scalar::Int(101)), Ok(101));
        assert_eq!(find(Scalar::Str("Environment".into())), Ok(101));
        assert_eq!(find(Scalar::Str("101".into())), Ok(101));
        assert_eq!(find(Scalar::Int(102)).unwrap_err().code, FaultCode::Tenant);
        assert_eq!(find(Scalar::Int(-1)).unwrap_err().code, FaultCode::Tenant);
        assert_eq!(find(Scalar::Array).unwrap_err().code, FaultCode::Tenant);
        assert_eq!(
            resolve_tenant(&tenants, None).unwrap_err().code,
            FaultCode::Tenant
        );
    }
}
