//! Bundled `IM` service: `SendMessage` to an instant-messaging address.
//!
//! With `gateway-url` in the cluster config (and its host in `http.allow`)
//! each message is delivered: `POST {gateway-url}` with `{"to","text"}`;
//! the gateway's `id` becomes `MessageId`. Without one, messages are
//! accepted with a generated id.

use wasp_sdk::{Fault, Kv, Request, Service};

struct Im;

/// Longest message accepted, in characters.
const MAX_TEXT: usize = 4096;

impl Service for Im {
    const SERVICE_TYPE: &'static str = "IM";
    const VERSION: &'static str = "1.0";
    const METHODS: &'static [&'static str] = &["SendMessage"];

    fn handle(req: Request) -> Result<Kv, Fault> {
        match req.method.as_str() {
            "SendMessage" => send_message(&req),
            other => Err(Fault::unknown_method(other)),
        }
    }
}

fn send_message(req: &Request) -> Result<Kv, Fault> {
    let to = req.parameters.require_str("To")?;
    if to.chars().any(char::is_whitespace) || to.len() > 256 {
        return Err(Fault::invalid(
            "To",
            format!("'{to}' is not an IM address (no spaces, at most 256 bytes)"),
        ));
    }
    let text = req.parameters.require_str("Text")?;
    let chars = text.chars().count();
    if chars > MAX_TEXT {
        return Err(Fault::invalid(
            "Text",
            format!("{chars} characters is more than the {MAX_TEXT} accepted"),
        ));
    }
    let id = match wasp_sdk::config::get("gateway-url") {
        Some(gateway) => deliver(&gateway, to, text)?,
        None => message_id(req.tenant.id),
    };
    wasp_sdk::log::debug("im accepted", &[("message", &id), ("to", to)]);
    Ok(Kv::new()
        .with("MessageId", id)
        .with("Status", "Accepted")
        .with("Characters", chars as i64))
}

fn deliver(gateway: &str, to: &str, text: &str) -> Result<String, Fault> {
    let body = serde_json::json!({"to": to, "text": text}).to_string();
    let response = wasp_sdk::http::post_json(gateway, &[], &body)?;
    let answer = response.json_or_fault("IM gateway", 11)?;
    answer["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Fault::new(11, "the IM gateway's answer has no id"))
}

fn message_id(tenant: u32) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(tenant);
    format!("IM-{tenant}-{:016X}", h.finish())
}

wasp_sdk::export!(Im);
