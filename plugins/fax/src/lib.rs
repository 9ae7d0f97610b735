//! Bundled `Fax` service: `SendFax` and `GetFaxStatus`.
//!
//! With `gateway-url` in the cluster config (and its host in `http.allow`)
//! `SendFax` delivers the job: `POST {gateway-url}` with
//! `{"job","to","from","document"(base64)}`; the gateway's `status` becomes
//! the job's status, and `GetFaxStatus` asks `GET {gateway-url}/{job}`.
//! Without a gateway, jobs are accepted and stay `Queued`.
//! With the store granted (`[clusters.<name>.store]`) each job's status is
//! kept there, shared by all instances and scoped by tenant, for
//! `job-ttl-seconds` (config, default 7 days) after its last change. The
//! record is written before the job goes to the gateway: when the store
//! refuses it (full), the answer is a fault and nothing was sent, so a
//! retry cannot send the fax twice. Once the gateway took the job the
//! answer is a success even if the status could not be updated (logged
//! as a warning). Without the store, job ids are self-describing
//! (`FAX-<tenant>-<serial>-<check>`), so any instance can still answer
//! `GetFaxStatus`; either way a tenant never reads another tenant's job.
//!
//! Every job id is new: the gateway gets it as `job` and may use it to
//! drop a job it has already taken.

use wasp_sdk::{Fault, Kv, Request, Service, Value, codes, config, http, store, validate};

struct Fax;

/// Largest document accepted, in bytes.
const MAX_DOCUMENT: usize = 10 * 1024 * 1024;

impl Service for Fax {
    const SERVICE_TYPE: &'static str = "Fax";
    const VERSION: &'static str = "1.0";
    const METHODS: &'static [&'static str] = &["SendFax", "GetFaxStatus"];

    fn handle(req: Request) -> Result<Kv, Fault> {
        match req.method.as_str() {
            "SendFax" => send_fax(&req),
            "GetFaxStatus" => get_fax_status(&req),
            other => Err(Fault::unknown_method(other)),
        }
    }
}

fn send_fax(req: &Request) -> Result<Kv, Fault> {
    let p = &req.parameters;
    let to = p.require_str("To")?;
    validate::e164("To", to)?;
    if let Some(from) = p.optional_str("From")? {
        validate::e164("From", from)?;
    }
    let document: &[u8] = match p.get("Document") {
        None => return Err(Fault::missing("Document")),
        Some(Value::Str(s)) => s.as_bytes(),
        Some(Value::Binary(b)) => b,
        Some(v) => {
            return Err(Fault::invalid(
                "Document",
                format!("expected a string or binary, got {}", v.type_name()),
            ));
        }
    };
    let size = document.len();
    if size == 0 {
        return Err(Fault::invalid("Document", "is empty"));
    }
    if size > MAX_DOCUMENT {
        return Err(Fault::invalid(
            "Document",
            format!("{size} bytes is more than the {MAX_DOCUMENT} accepted"),
        ));
    }
    let serial = next_serial();
    let job = job_id(req.tenant.id, serial);
    let from = p.optional_str("From")?.unwrap_or_default();
    let record = format!("fax/{job}");
    let kept = if store::granted() {
        let ttl = job_ttl()?;
        // The record first: if the store refuses it, nothing was sent.
        store::set_str_with_ttl(&record, QUEUED, ttl)?;
        Some(ttl)
    } else {
        None
    };
    let status = match config::get("gateway-url") {
        Some(gateway) => match deliver(&gateway, &job, to, from, document) {
            Ok(status) => status,
            Err(fault) => {
                // Not sent, and the caller gets no job id: drop the record.
                if kept.is_some() {
                    let _ = store::delete(&record);
                }
                return Err(fault);
            }
        },
        None => QUEUED.to_string(),
    };
    if let Some(ttl) = kept
        && status != QUEUED
    {
        keep_status(&record, &job, &status, ttl);
    }
    wasp_sdk::log::info("fax queued", &[("job", &job), ("to", to)]);
    Ok(Kv::new()
        .with("FaxJobId", job)
        .with("Status", status)
        .with("Bytes", size as i64))
}

fn get_fax_status(req: &Request) -> Result<Kv, Fault> {
    let job = req.parameters.require_str("FaxJobId")?;
    let not_found = || {
        Fault::new(
            codes::NOT_FOUND,
            format!("no fax job '{job}' for tenant {}", req.tenant.id),
        )
    };
    if let Some(gateway) = config::get("gateway-url") {
        let known = store::granted() && store::get_str(&format!("fax/{job}"))?.is_some()
            || matches!(parse_job_id(job), Some((tenant, _)) if tenant == req.tenant.id);
        if !known {
            return Err(not_found());
        }
        let response = http::get(&format!("{}/{job}", gateway.trim_end_matches('/')), &[])?;
        let answer = gateway_answer(&response)?;
        let status = answer["status"].as_str().unwrap_or("Unknown").to_string();
        if store::granted() {
            keep_status(&format!("fax/{job}"), job, &status, job_ttl()?);
        }
        return Ok(Kv::new().with("FaxJobId", job).with("Status", status));
    }
    let status = if store::granted() {
        store::get_str(&format!("fax/{job}"))?.ok_or_else(not_found)?
    } else {
        match parse_job_id(job) {
            Some((tenant, _)) if tenant == req.tenant.id => "Queued".to_string(),
            _ => return Err(not_found()),
        }
    };
    Ok(Kv::new().with("FaxJobId", job).with("Status", status))
}

/// A job's status before the gateway reports one.
const QUEUED: &str = "Queued";

/// How long a job's record is kept after its last change: 7 days.
const DEFAULT_JOB_TTL: u32 = 7 * 24 * 60 * 60;

/// Config `job-ttl-seconds` (1 to `u32::MAX`), or the default.
fn job_ttl() -> Result<u32, Fault> {
    let ttl = config::number(
        "job-ttl-seconds",
        u64::from(DEFAULT_JOB_TTL),
        u64::from(u32::MAX),
    )?;
    Ok(ttl as u32)
}

/// Records the gateway's status for a job it has taken. The answer does
/// not depend on it (the gateway has the job), so a failure is a warning.
fn keep_status(record: &str, job: &str, status: &str, ttl: u32) {
    if let Err(fault) = store::set_str_with_ttl(record, status, ttl) {
        wasp_sdk::log::warn(
            "fax job status not kept",
            &[("job", job), ("status", status), ("error", &fault.message)],
        );
    }
}

/// Fault code: the fax gateway refused or failed.
const GATEWAY_FAILED: i32 = 11;

/// Hands a job to the fax gateway; returns its status.
fn deliver(
    gateway: &str,
    job: &str,
    to: &str,
    from: &str,
    document: &[u8],
) -> Result<String, Fault> {
    use base64::Engine as _;
    let body = serde_json::json!({
        "job": job,
        "to": to,
        "from": from,
        "document": base64::engine::general_purpose::STANDARD.encode(document),
    });
    let response = http::post_json(gateway, &[], &body.to_string())?;
    let answer = gateway_answer(&response)?;
    Ok(answer["status"].as_str().unwrap_or("Queued").to_string())
}

fn gateway_answer(response: &http::Response) -> Result<serde_json::Value, Fault> {
    response.json_or_fault("fax gateway", GATEWAY_FAILED)
}

/// A random serial: unique across instances without shared state.
fn next_serial() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish() & 0x0000_ffff_ffff_ffff
}

fn check(tenant: u32, serial: u64) -> u16 {
    // FNV-1a over the two numbers: catches typos, not forgery.
    let mut hash: u32 = 0x811c_9dc5;
    for b in tenant
        .to_le_bytes()
        .iter()
        .chain(serial.to_le_bytes().iter())
    {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash & 0xffff) as u16
}

fn job_id(tenant: u32, serial: u64) -> String {
    format!("FAX-{tenant}-{serial:012X}-{:04X}", check(tenant, serial))
}

fn parse_job_id(id: &str) -> Option<(u32, u64)> {
    let mut parts = id.strip_prefix("FAX-")?.split('-');
    let tenant: u32 = parts.next()?.parse().ok()?;
    let serial = u64::from_str_radix(parts.next()?, 16).ok()?;
    let chk = u16::from_str_radix(parts.next()?, 16).ok()?;
    (parts.next().is_none() && chk == check(tenant, serial)).then_some((tenant, serial))
}

wasp_sdk::export!(Fax);
