//! Writing replies: `<messages>` holding one `<interaction>` per reply, in
//! the shape the reader reads (so a reply can be read back). Everything is
//! escaped; what XML 1.0 cannot carry at all (a control character, a key
//! that is not an element name) fails the document with a description
//! rather than writing something a reader would refuse or misread.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use wasp_codec_sdk::{Kv, Reply, Value, clip};

/// Writes one document holding `replies`.
pub fn encode(replies: &[Reply]) -> Result<Vec<u8>, String> {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<messages>\n");
    for (i, reply) in replies.iter().enumerate() {
        write_reply(&mut out, reply).map_err(|e| format!("reply {}: {e}", i + 1))?;
    }
    out.push_str("</messages>\n");
    Ok(out.into_bytes())
}

fn write_reply(out: &mut String, r: &Reply) -> Result<(), String> {
    out.push_str("  <interaction operation=\"");
    out.push_str(r.kind.name());
    out.push('"');
    let tenant = r.tenant_id.map(|t| t.to_string());
    let code = r.code.map(|c| c.to_string());
    let attrs = [
        ("InteractionId", r.interaction_id.as_deref()),
        ("ExternalId", r.external_id.as_deref()),
        ("TenantId", tenant.as_deref()),
        ("MediaType", r.media_type.as_deref()),
        ("Queue", r.queue.as_deref()),
        ("code", code.as_deref()),
        ("description", r.description.as_deref()),
    ];
    for (name, value) in attrs {
        if let Some(value) = value {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            escape(out, value, true).map_err(|e| format!("{name}: {e}"))?;
            out.push('"');
        }
    }
    if r.properties.is_empty() {
        out.push_str("/>\n");
        return Ok(());
    }
    out.push_str(">\n    <properties>\n");
    write_list(out, &r.properties, 3, "properties")?;
    out.push_str("    </properties>\n  </interaction>\n");
    Ok(())
}

fn write_list(out: &mut String, kv: &Kv, indent: usize, path: &str) -> Result<(), String> {
    for (key, value) in &kv.0 {
        let path = format!("{path}/{}", clip(key));
        if !is_name(key) {
            return Err(format!(
                "{path}: the key is not an XML element name, so it cannot be written in this format"
            ));
        }
        for _ in 0..indent {
            out.push_str("  ");
        }
        out.push('<');
        out.push_str(key);
        match value {
            Value::Str(s) => {
                out.push('>');
                escape(out, s, false).map_err(|e| format!("{path}: {e}"))?;
            }
            Value::Int(i) => {
                out.push_str(" type=\"int\">");
                out.push_str(&i.to_string());
            }
            Value::Binary(b) => {
                out.push_str(" type=\"bin\">");
                out.push_str(&BASE64.encode(b));
            }
            Value::List(list) if list.is_empty() => {
                out.push_str(" type=\"kvlist\"/>\n");
                continue;
            }
            Value::List(list) => {
                out.push_str(" type=\"kvlist\">\n");
                write_list(out, list, indent + 1, &path)?;
                for _ in 0..indent {
                    out.push_str("  ");
                }
            }
        }
        out.push_str("</");
        out.push_str(key);
        out.push_str(">\n");
    }
    Ok(())
}

/// Appends `text` escaped for element content or (`attribute`) a quoted
/// attribute value. Carriage returns, and in attributes tabs and newlines,
/// become character references so that a reader's end-of-line and
/// attribute normalization give back the same text.
fn escape(out: &mut String, text: &str, attribute: bool) -> Result<(), String> {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\t' | '\n' => out.push(c),
            c if !xml_char(c) => {
                return Err(format!(
                    "holds the character U+{:04X}, which XML 1.0 cannot carry",
                    c as u32
                ));
            }
            c => out.push(c),
        }
    }
    Ok(())
}

/// XML 1.0's `Char` production (tab, newline and carriage return are
/// handled before this).
fn xml_char(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whether `key` can be an element name: letters, digits, `_`, `-`, `.`
/// and non-ASCII letters, not starting with a digit, `-` or `.` (the XML
/// `Name` production without `:`, which would be read as a namespace).
fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let start = |c: char| c == '_' || c.is_alphabetic();
    start(first) && chars.all(|c| start(c) || c.is_alphanumeric() || c == '-' || c == '.')
}
