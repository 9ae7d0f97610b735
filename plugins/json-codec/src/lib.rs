//! # json-codec: the JSON capture codec (`builtin:json`)
//!
//! One object or an array of objects:
//! `{"operation":"submit","ExternalId":"ord-88","InteractionId":"...","Properties":{...}}`,
//! with KV values as in PROTOCOL.md: integer, string,
//! `{"$binary":"<base64>"}`, nested object; key order and repeated keys are
//! kept. Anything else in an object (a float, a boolean, null, an array, an
//! unknown field, an unknown operation) makes that object a bad operation
//! naming the path, e.g. `[1].Properties.Tags` (array indices from 0); the
//! other objects still decode. Text that is not JSON, or JSON that is not an
//! object or an array, is unreadable as a whole, and so is nesting deeper
//! than serde_json's recursion limit (128) or more than [`MAX_PAIRS`]
//! properties.
//!
//! Replies are written as a JSON array of objects
//! `{"operation":"submitted","InteractionId":..,"ExternalId":..,"TenantId":101,
//! "MediaType":..,"Queue":..,"code":..,"description":..,"Properties":{...}}`,
//! absent fields left out.
//!
//! The parse is plain Rust ([`decode`], [`encode`], [`decode_replies`]); the
//! component is the same code behind [`wasp_codec_sdk::export_codec!`].

mod tree;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use wasp_codec_sdk::{
    BadOperation, Codec, Entry, Info, Item, Kv, OpKind, Operation, Reply, ReplyKind, Value, clip,
};

use tree::Json;
/// The model the parse reads into, for native callers.
pub use wasp_codec_sdk;
pub use wasp_codec_sdk::{MAX_DEPTH, MAX_OPERATIONS, MAX_PAIRS};

/// The codec as the component exports it.
#[derive(Debug)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn info() -> Info {
        Info {
            name: "json".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            content_type: "application/json".into(),
            extension: "json".into(),
        }
    }

    fn decode(item: &Item) -> Result<Vec<Entry>, String> {
        decode(&item.body)
    }

    fn encode(replies: &[Reply]) -> Result<Vec<u8>, String> {
        encode(replies)
    }
}

#[cfg(target_arch = "wasm32")]
wasp_codec_sdk::export_codec!(JsonCodec);

/// The objects of a document and the path prefix of each (`[i].` in an
/// array, nothing for a lone object).
fn objects(body: &[u8]) -> Result<Vec<(String, Json)>, String> {
    let json = tree::parse(body)?;
    let mut pairs = 0usize;
    json.count_pairs(&mut pairs);
    if pairs > MAX_PAIRS {
        return Err(format!(
            "more than {MAX_PAIRS} properties and fields in the document"
        ));
    }
    match json {
        Json::Object(_) => Ok(vec![(String::new(), json)]),
        Json::Array(items) if items.len() > MAX_OPERATIONS => Err(format!(
            "{} operations is more than the {MAX_OPERATIONS} a document may hold",
            items.len()
        )),
        Json::Array(items) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (format!("[{i}]."), item))
            .collect()),
        other => Err(format!(
            "expected an object or an array of objects, found {}",
            other.what()
        )),
    }
}

/// Reads a document into its operations, in order. `Err` is why the whole
/// document cannot be read; a problem in one object is an [`Entry::Bad`].
pub fn decode(body: &[u8]) -> Result<Vec<Entry>, String> {
    Ok(objects(body)?
        .into_iter()
        .map(|(prefix, json)| operation(&prefix, json))
        .collect())
}

fn operation(prefix: &str, json: Json) -> Entry {
    let place = prefix.trim_end_matches('.');
    let Json::Object(fields) = json else {
        return Entry::Bad(BadOperation {
            place: place.to_string(),
            description: format!("expected an object, found {}", json.what()),
            interaction_id: None,
            external_id: None,
        });
    };
    // The ids first, as far as they read, so an error reply carries them.
    let id = |name: &str| {
        fields.iter().find_map(|(k, v)| match v {
            Json::Str(s) if k == name => Some(s.clone()),
            _ => None,
        })
    };
    let (interaction_id, external_id) = (id("InteractionId"), id("ExternalId"));
    let bad = |place: String, description: String| {
        Entry::Bad(BadOperation {
            place,
            description,
            interaction_id: interaction_id.clone(),
            external_id: external_id.clone(),
        })
    };
    let mut kind = None;
    let mut properties = None;
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in &fields {
        let path = format!("{prefix}{}", clip(key));
        if seen.contains(&key.as_str()) {
            return bad(path, "given twice".into());
        }
        match key.as_str() {
            "operation" => match value {
                Json::Str(name) => match OpKind::parse(name) {
                    Some(k) => kind = Some(k),
                    None => return bad(path, OpKind::unknown(name)),
                },
                other => return bad(path, format!("expected a string, found {}", other.what())),
            },
            "InteractionId" | "ExternalId" => {
                if !matches!(value, Json::Str(_)) {
                    return bad(path, format!("expected a string, found {}", value.what()));
                }
            }
            "Properties" => match kv(value, &path, 0) {
                Ok(Value::List(list)) => properties = Some(list),
                Ok(_) => {
                    return bad(
                        path,
                        "expected an object of properties, found a value".into(),
                    );
                }
                Err((path, description)) => return bad(path, description),
            },
            other => {
                return bad(
                    path,
                    format!(
                        "unknown field '{}' (expected operation, InteractionId, ExternalId or Properties)",
                        clip(other)
                    ),
                );
            }
        }
        seen.push(key);
    }
    let Some(kind) = kind else {
        return bad(format!("{prefix}operation"), "no operation".into());
    };
    Entry::Op(Operation {
        kind,
        interaction_id,
        external_id,
        properties: properties.unwrap_or_default(),
    })
}

/// A KV value at `path`, `depth` levels below the properties; `Err` holds
/// the path of the offending value and what is wrong with it.
fn kv(json: &Json, path: &str, depth: usize) -> Result<Value, (String, String)> {
    let fail = |what: String| Err((path.to_string(), what));
    match json {
        Json::Int(i) => Ok(Value::Int(*i)),
        Json::Str(s) => Ok(Value::Str(s.clone())),
        Json::Big(_) => fail("an integer that does not fit in 64 bits".into()),
        Json::Float(_) => fail("a float: KV integers are whole numbers".into()),
        Json::Null | Json::Bool(_) | Json::Array(_) => fail(format!(
            "{} is not a KV value (integer, string, {{\"$binary\": ...}} or object)",
            json.what()
        )),
        Json::Object(fields) => {
            if let [(key, value)] = fields.as_slice()
                && key == "$binary"
            {
                let path = format!("{path}.$binary");
                return match value {
                    Json::Str(text) => BASE64
                        .decode(text.as_bytes())
                        .map(Value::Binary)
                        .map_err(|e| (path, format!("not base64: {e}"))),
                    other => Err((
                        path,
                        format!("expected base64 text, found {}", other.what()),
                    )),
                };
            }
            if depth >= MAX_DEPTH {
                return fail(format!("KV lists nest deeper than {MAX_DEPTH} levels"));
            }
            let mut list = Vec::with_capacity(fields.len());
            for (key, value) in fields {
                let path = format!("{path}.{}", clip(key));
                list.push((key.clone(), kv(value, &path, depth + 1)?));
            }
            Ok(Value::List(Kv(list)))
        }
    }
}

/// Writes replies as a JSON array of objects.
pub fn encode(replies: &[Reply]) -> Result<Vec<u8>, String> {
    let mut out = String::from("[");
    for (i, r) in replies.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str("{\"operation\":");
        string(&mut out, r.kind.name());
        let strings = [
            ("InteractionId", &r.interaction_id),
            ("ExternalId", &r.external_id),
        ];
        for (name, value) in strings {
            if let Some(value) = value {
                out.push_str(&format!(",\"{name}\":"));
                string(&mut out, value);
            }
        }
        if let Some(tenant) = r.tenant_id {
            out.push_str(&format!(",\"TenantId\":{tenant}"));
        }
        for (name, value) in [("MediaType", &r.media_type), ("Queue", &r.queue)] {
            if let Some(value) = value {
                out.push_str(&format!(",\"{name}\":"));
                string(&mut out, value);
            }
        }
        if let Some(code) = r.code {
            out.push_str(&format!(",\"code\":{code}"));
        }
        if let Some(description) = &r.description {
            out.push_str(",\"description\":");
            string(&mut out, description);
        }
        if !r.properties.is_empty() {
            out.push_str(",\"Properties\":");
            list(&mut out, &r.properties, "Properties")
                .map_err(|e| format!("reply {}: {e}", i + 1))?;
        }
        out.push('}');
    }
    out.push_str("]\n");
    Ok(out.into_bytes())
}

fn string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| unreachable!()));
}

/// Writes a KV list as an object. A list whose one key is `$binary` would
/// read back as binary, so it fails the document rather than be misread.
fn list(out: &mut String, kv: &Kv, path: &str) -> Result<(), String> {
    if let [(key, _)] = kv.0.as_slice()
        && key == "$binary"
    {
        return Err(format!(
            "{path}: a list holding only a $binary key cannot be written in JSON (it would read back as binary)"
        ));
    }
    out.push('{');
    for (i, (key, value)) in kv.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, key);
        out.push(':');
        match value {
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Str(s) => string(out, s),
            Value::Binary(b) => {
                out.push_str("{\"$binary\":\"");
                out.push_str(&BASE64.encode(b));
                out.push_str("\"}");
            }
            Value::List(l) => list(out, l, &format!("{path}.{}", clip(key)))?,
        }
    }
    out.push('}');
    Ok(())
}

/// Reads replies as [`encode`] writes them, for tools and tests that check
/// what a capture point wrote. Strict: any problem fails the document.
pub fn decode_replies(body: &[u8]) -> Result<Vec<Reply>, String> {
    let mut replies = Vec::new();
    for (prefix, json) in objects(body)? {
        let Json::Object(fields) = json else {
            return Err(format!("{prefix}: expected an object"));
        };
        let mut reply = Reply::new(ReplyKind::Error);
        let mut kind = None;
        for (key, value) in &fields {
            let path = format!("{prefix}{}", clip(key));
            let text = || match value {
                Json::Str(s) => Ok(Some(s.clone())),
                _ => Err(format!("{path}: expected a string")),
            };
            let number = || match value {
                Json::Int(n) => Ok(*n),
                _ => Err(format!("{path}: expected an integer")),
            };
            match key.as_str() {
                "operation" => {
                    let name = text()?.unwrap_or_default();
                    kind = Some(
                        ReplyKind::parse(&name)
                            .ok_or_else(|| format!("{path}: unknown reply '{}'", clip(&name)))?,
                    );
                }
                "InteractionId" => reply.interaction_id = text()?,
                "ExternalId" => reply.external_id = text()?,
                "MediaType" => reply.media_type = text()?,
                "Queue" => reply.queue = text()?,
                "description" => reply.description = text()?,
                "TenantId" => {
                    reply.tenant_id = Some(
                        u32::try_from(number()?).map_err(|_| format!("{path}: out of range"))?,
                    )
                }
                "code" => {
                    reply.code = Some(
                        i32::try_from(number()?).map_err(|_| format!("{path}: out of range"))?,
                    )
                }
                "Properties" => match kv(value, &path, 0) {
                    Ok(Value::List(l)) => reply.properties = l,
                    Ok(_) => return Err(format!("{path}: expected an object")),
                    Err((path, e)) => return Err(format!("{path}: {e}")),
                },
                other => return Err(format!("{path}: unknown field '{}'", clip(other))),
            }
        }
        reply.kind = kind.ok_or_else(|| format!("{prefix}operation: missing"))?;
        replies.push(reply);
    }
    Ok(replies)
}

#[cfg(test)]
mod tests;
