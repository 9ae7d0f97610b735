//! Bundled `SMS` service: `SendMessage`, as the Genesys SMS Server does it.
//!
//! - `To` in E.164; `From` optional, falling back to the tenant's
//!   configured default reply address (`default-reply-address.<tenant>`,
//!   else `default-reply-address`).
//! - `Text` is split into segments: GSM-7 (160 septets, or 153 per part
//!   when concatenated; extension characters take two septets and are never
//!   split) when every character has a GSM-7 encoding, else UCS-2 (70 UTF-16
//!   units, or 67 per part; surrogate pairs never split). At most
//!   `max-segments` (default 10).
//! - Delivery: `POST {gateway-url}` with JSON
//!   `{"to","from","text","encoding","segments":[...]}` and, when set,
//!   `Authorization: Bearer {gateway-token}` (never logged). The gateway's
//!   `id` becomes `MessageId`; a non-2xx answer becomes a fault carrying the
//!   gateway's message.

use wasp_sdk::{Fault, Kv, Request, Service, codes, config, http, validate};

struct Sms;

/// Fault code: the gateway refused or failed.
const GATEWAY_FAILED: i32 = 11;

impl Service for Sms {
    const SERVICE_TYPE: &'static str = "SMS";
    const VERSION: &'static str = "1.0";
    const METHODS: &'static [&'static str] = &["SendMessage"];

    fn handle(req: Request) -> Result<Kv, Fault> {
        match req.method.as_str() {
            "SendMessage" => send_message(&req),
            other => Err(Fault::unknown_method(other)),
        }
    }
}

/// GSM 03.38 basic character set.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (each takes an escape plus the character).
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{c}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}

/// Splits `text` into SMS segments.
fn segments(text: &str) -> (Encoding, Vec<String>) {
    let septets = |c: char| -> Option<usize> {
        if GSM_BASIC.contains(c) {
            Some(1)
        } else if GSM_EXTENDED.contains(c) {
            Some(2)
        } else {
            None
        }
    };
    let gsm: Option<Vec<usize>> = text.chars().map(septets).collect();
    let (encoding, costs): (Encoding, Vec<usize>) = match gsm {
        Some(costs) => (Encoding::Gsm7, costs),
        None => (Encoding::Ucs2, text.chars().map(char::len_utf16).collect()),
    };
    let (single, part) = match encoding {
        Encoding::Gsm7 => (160, 153),
        Encoding::Ucs2 => (70, 67),
    };
    if costs.iter().sum::<usize>() <= single {
        return (encoding, vec![text.to_string()]);
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let mut used = 0;
    for (c, cost) in text.chars().zip(costs) {
        if used + cost > part {
            out.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(c);
        used += cost;
    }
    if !current.is_empty() {
        out.push(current);
    }
    (encoding, out)
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn send_message(req: &Request) -> Result<Kv, Fault> {
    let p = &req.parameters;
    let to = p.require_str("To")?;
    validate::e164("To", to)?;
    let from = match p.optional_str("From")? {
        Some(from) => from.to_string(),
        None => config::get(&format!("default-reply-address.{}", req.tenant.id))
            .or_else(|| config::get("default-reply-address"))
            .ok_or_else(|| {
                Fault::new(
                    codes::MISSING_PARAMETER,
                    format!(
                        "missing parameter 'From' and no default-reply-address is configured for tenant {}",
                        req.tenant.id
                    ),
                )
            })?,
    };
    let text = p.require_str("Text")?;
    let (encoding, parts) = segments(text);
    let max: usize = config::get("max-segments")
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(10);
    if parts.len() > max {
        return Err(Fault::invalid(
            "Text",
            format!(
                "needs {} {} segments, more than the {max} allowed",
                parts.len(),
                encoding.name()
            ),
        ));
    }
    let gateway = config::get("gateway-url").ok_or_else(|| {
        Fault::new(
            codes::INTERNAL,
            "no SMS gateway configured (config gateway-url)",
        )
    })?;
    let body = format!(
        r#"{{"to":{},"from":{},"text":{},"encoding":{},"segments":[{}]}}"#,
        json_str(to),
        json_str(&from),
        json_str(text),
        json_str(encoding.name()),
        parts
            .iter()
            .map(|s| json_str(s))
            .collect::<Vec<_>>()
            .join(",")
    );
    let token = config::get("gateway-token");
    let auth = token.as_ref().map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let response = http::post_json(&gateway, &headers, &body)?;
    let answer: serde_json::Value =
        serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    if !response.ok() {
        let message = answer["error"]
            .as_str()
            .or(answer["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| response.text());
        return Err(Fault::new(
            GATEWAY_FAILED,
            format!("the SMS gateway answered {}: {message}", response.status),
        ));
    }
    let id = answer["id"]
        .as_str()
        .map(str::to_string)
        .or_else(|| answer["id"].as_i64().map(|i| i.to_string()))
        .ok_or_else(|| Fault::new(GATEWAY_FAILED, "the SMS gateway's answer has no id"))?;
    wasp_sdk::log::info(
        "sms sent",
        &[("message", &id), ("segments", &parts.len().to_string())],
    );
    Ok(Kv::new()
        .with("MessageId", id)
        .with("Segments", parts.len() as i64)
        .with("Encoding", encoding.name())
        .with("From", from))
}

wasp_sdk::export!(Sms);
