//! Reading documents: one streaming pass over the events, with an explicit
//! stack bounded by [`MAX_DEPTH`]. The pass yields each `interaction` as
//! read (attributes, properties, or the first problem found in it); what it
//! means is decided by the caller: operations ([`decode`]) or replies
//! ([`decode_replies`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use wasp_codec_sdk::{
    BadOperation, Entry, Kv, MAX_DEPTH, MAX_OPERATIONS, MAX_PAIRS, OpKind, Operation, Reply,
    ReplyKind, Value, clip,
};

use crate::MAX_ELEMENT_DEPTH;

/// Reads a document into its operations, in document order. `Err` is why
/// the whole document cannot be read (it names the line and column where it
/// can); a problem within one `interaction` is a [`Entry::Bad`] for it.
pub fn decode(body: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    read_document(body, |read| entries.push(read.into_entry()))?;
    Ok(entries)
}

/// Reads a document of replies, as [`encode`](crate::encode) writes them:
/// for tools and tests that check what a capture point wrote. Strict: any
/// problem fails the whole document.
pub fn decode_replies(body: &[u8]) -> Result<Vec<Reply>, String> {
    let mut replies = Vec::new();
    let mut problem = None;
    read_document(body, |read| {
        if problem.is_none() {
            match read.into_reply() {
                Ok(reply) => replies.push(reply),
                Err(e) => problem = Some(e),
            }
        }
    })?;
    match problem {
        Some(e) => Err(e),
        None => Ok(replies),
    }
}

/// One `interaction` element as read.
#[derive(Default)]
struct Read {
    /// `interaction[n]`, n counting from 1 among the root's children.
    place: String,
    attrs: Attrs,
    properties: Kv,
    /// The first problem: where, and what.
    problem: Option<(String, String)>,
}

#[derive(Default)]
struct Attrs {
    operation: Option<String>,
    interaction_id: Option<String>,
    external_id: Option<String>,
    tenant_id: Option<String>,
    media_type: Option<String>,
    queue: Option<String>,
    code: Option<String>,
    description: Option<String>,
}

impl Read {
    fn into_entry(self) -> Entry {
        let bad = |place: String, description: String, attrs: Attrs| {
            Entry::Bad(BadOperation {
                place,
                description,
                interaction_id: attrs.interaction_id,
                external_id: attrs.external_id,
            })
        };
        if let Some((place, description)) = self.problem {
            return bad(place, description, self.attrs);
        }
        let kind = match self.attrs.operation.as_deref() {
            None => Err("no operation attribute".to_string()),
            Some(name) => OpKind::parse(name).ok_or_else(|| OpKind::unknown(name)),
        };
        match kind {
            Ok(kind) => Entry::Op(Operation {
                kind,
                interaction_id: self.attrs.interaction_id,
                external_id: self.attrs.external_id,
                properties: self.properties,
            }),
            Err(description) => bad(self.place, description, self.attrs),
        }
    }

    fn into_reply(self) -> Result<Reply, String> {
        if let Some((place, description)) = self.problem {
            return Err(format!("{place}: {description}"));
        }
        let place = self.place;
        let a = self.attrs;
        let name = a.operation.unwrap_or_default();
        let kind = ReplyKind::parse(&name)
            .ok_or_else(|| format!("{place}: unknown reply '{}'", clip(&name)))?;
        let number = |what: &str, text: Option<String>| -> Result<Option<i64>, String> {
            text.map(|t| {
                t.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{place}: {what} '{}' is not a number", clip(&t)))
            })
            .transpose()
        };
        let tenant_id = number("TenantId", a.tenant_id)?
            .map(|t| u32::try_from(t).map_err(|_| format!("{place}: TenantId {t} is out of range")))
            .transpose()?;
        let code = number("code", a.code)?
            .map(|c| i32::try_from(c).map_err(|_| format!("{place}: code {c} is out of range")))
            .transpose()?;
        Ok(Reply {
            kind,
            interaction_id: a.interaction_id,
            external_id: a.external_id,
            tenant_id,
            media_type: a.media_type,
            queue: a.queue,
            code,
            description: a.description,
            properties: self.properties,
        })
    }
}

/// A property's `type`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Str,
    Int,
    Bin,
    KvList,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Str => "str",
            Type::Int => "int",
            Type::Bin => "bin",
            Type::KvList => "kvlist",
        }
    }
}

/// An open property element.
struct Frame {
    key: String,
    ty: Type,
    /// Its text, for scalar types.
    text: String,
    /// Its pairs, for `kvlist`.
    list: Kv,
}

/// The `interaction` being read and where its parts are.
struct Open {
    read: Read,
    /// Element depth of the `interaction` element.
    depth: usize,
    /// Element depth of the open `properties` element, if one is open.
    properties: Option<usize>,
    frames: Vec<Frame>,
}

impl Open {
    /// `interaction[2]/properties/Customer/Segment`, for the open frames
    /// plus `last`.
    fn place(&self, last: Option<&str>) -> String {
        let mut place = format!("{}/properties", self.read.place);
        for frame in &self.frames {
            place.push('/');
            place.push_str(&clip(&frame.key));
        }
        if let Some(last) = last {
            place.push('/');
            place.push_str(&clip(last));
        }
        place
    }

    fn fail(&mut self, place: String, description: String) {
        if self.read.problem.is_none() {
            self.read.problem = Some((place, description));
        }
    }
}

/// Line and column (both from 1, the column in characters) of a byte
/// offset, for messages about where a document went wrong.
fn line_col(text: &str, offset: u64) -> String {
    let offset = (offset as usize).min(text.len());
    let mut start = offset;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// The replacement text of an entity reference: the five predefined ones
/// and character references; anything else is refused.
fn entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

/// The one pass over a document; calls `each` for every `interaction` (and
/// for every other child of the root, as a problem).
fn read_document(body: &[u8], mut each: impl FnMut(Read)) -> Result<(), String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("not UTF-8 text: invalid byte at offset {}", e.valid_up_to()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    config.allow_dangling_amp = false;

    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut children = 0usize;
    let mut pairs = 0usize;
    let mut open: Option<Open> = None;
    // Depth of an element (not an interaction) being skipped.
    let mut skipping: Option<usize> = None;
    loop {
        let at = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed XML at {}: {e}",
                line_col(text, reader.error_position())
            )
        })?;
        let here = || line_col(text, at);
        match event {
            Event::Start(e) => {
                depth += 1;
                if depth > MAX_ELEMENT_DEPTH {
                    return Err(format!(
                        "elements nest deeper than {MAX_ELEMENT_DEPTH} levels at {}",
                        here()
                    ));
                }
                let name = element_name(&e);
                if depth == 1 {
                    check_attributes(&e, text, at)?;
                    roots += 1;
                    if roots > 1 {
                        return Err(format!(
                            "a second root element <{}> at {}",
                            clip(&name),
                            here()
                        ));
                    }
                    if name == "interaction" {
                        children += 1;
                        open = Some(begin(&e, children, depth, text, at)?);
                    }
                    continue;
                }
                if skipping.is_some() {
                    check_attributes(&e, text, at)?;
                    continue;
                }
                match open.as_mut() {
                    None => {
                        // A child of the root envelope.
                        children += 1;
                        if children > MAX_OPERATIONS {
                            return Err(format!(
                                "more than {MAX_OPERATIONS} operations in the document (at {})",
                                here()
                            ));
                        }
                        if name == "interaction" {
                            open = Some(begin(&e, children, depth, text, at)?);
                        } else {
                            check_attributes(&e, text, at)?;
                            each(Read {
                                place: format!("{}[{children}]", clip(&name)),
                                problem: Some((
                                    format!("{}[{children}]", clip(&name)),
                                    format!(
                                        "unexpected element <{}>: the root holds interaction elements",
                                        clip(&name)
                                    ),
                                )),
                                ..Read::default()
                            });
                            skipping = Some(depth);
                        }
                    }
                    Some(o) => {
                        check_attributes(&e, text, at)?;
                        if o.read.problem.is_some() {
                            continue;
                        }
                        if depth == o.depth + 1 {
                            if name == "properties" && o.properties.is_none() {
                                o.properties = Some(depth);
                            } else {
                                let place = format!("{}/{}", o.read.place, clip(&name));
                                o.fail(
                                    place,
                                    format!(
                                        "unexpected element <{}>: an interaction holds one properties element",
                                        clip(&name)
                                    ),
                                );
                            }
                            continue;
                        }
                        // A property: a pair of the list of the innermost
                        // open kvlist, or of the properties themselves.
                        if let Some(top) = o.frames.last()
                            && top.ty != Type::KvList
                        {
                            let place = o.place(None);
                            let ty = top.ty.name();
                            o.fail(
                                place,
                                format!(
                                    "a {ty} property holds an element <{}>; only kvlist properties hold elements",
                                    clip(&name)
                                ),
                            );
                            continue;
                        }
                        pairs += 1;
                        if pairs > MAX_PAIRS {
                            return Err(format!(
                                "more than {MAX_PAIRS} properties in the document (at {})",
                                here()
                            ));
                        }
                        let ty = match attribute(&e, "type", text, at)? {
                            None => Type::Str,
                            Some(t) => match t.as_str() {
                                "str" => Type::Str,
                                "int" => Type::Int,
                                "bin" => Type::Bin,
                                "kvlist" => Type::KvList,
                                other => {
                                    let place = o.place(Some(&name));
                                    o.fail(
                                        place,
                                        format!(
                                            "unknown type '{}' (expected str, int, kvlist or bin)",
                                            clip(other)
                                        ),
                                    );
                                    continue;
                                }
                            },
                        };
                        // The root list is level 0; a kvlist at level
                        // `frames.len()` opens the next one.
                        if ty == Type::KvList && o.frames.len() + 1 >= MAX_DEPTH {
                            let place = o.place(Some(&name));
                            o.fail(
                                place,
                                format!("KV lists nest deeper than {MAX_DEPTH} levels"),
                            );
                            continue;
                        }
                        o.frames.push(Frame {
                            key: name,
                            ty,
                            text: String::new(),
                            list: Kv::new(),
                        });
                    }
                }
            }
            Event::End(_) => {
                if skipping == Some(depth) {
                    skipping = None;
                } else if let Some(o) = open.as_mut() {
                    if depth == o.depth {
                        each(open.take().map(|o| o.read).unwrap_or_default());
                    } else if o.read.problem.is_some() {
                        // Nothing more is built in a failed interaction.
                    } else if !o.frames.is_empty()
                        && o.properties.is_some_and(|p| depth == p + o.frames.len())
                    {
                        let place = o.place(None);
                        let frame = o.frames.pop().unwrap_or_else(|| unreachable!());
                        match finish(frame) {
                            Ok((key, value)) => match o.frames.last_mut() {
                                Some(parent) => parent.list.0.push((key, value)),
                                None => o.read.properties.0.push((key, value)),
                            },
                            Err(description) => o.fail(place, description),
                        }
                    } else if o.properties == Some(depth) {
                        o.properties = None;
                    }
                }
                depth -= 1;
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                value_text(&mut open, depth, &content, text, at)?;
            }
            Event::CData(t) => {
                let content = t.xml10_content();
                value_text(&mut open, depth, &content, text, at)?;
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => entity(&r).ok_or_else(|| {
                        format!(
                            "entity &{}; at {} is not allowed: only &lt; &gt; &amp; &apos; &quot; and character references are",
                            clip(&r),
                            here()
                        )
                    })?,
                    Err(e) => {
                        return Err(format!("bad character reference at {}: {e}", here()));
                    }
                };
                let mut buf = [0u8; 4];
                value_text(&mut open, depth, c.encode_utf8(&mut buf), text, at)?;
            }
            Event::DocType(_) => {
                return Err(format!(
                    "a DTD (<!DOCTYPE>) at {} is not allowed: documents may use only the predefined entities and character references",
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
                            "encoding '{}' is not supported: documents must be UTF-8",
                            clip(name)
                        ));
                    }
                }
            }
            // Empty elements come as Start and End (expand_empty_elements).
            Event::Empty(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                if depth > 0 {
                    return Err(format!(
                        "the document ends inside an element (at {})",
                        here()
                    ));
                }
                if roots == 0 {
                    return Err("no root element".into());
                }
                return Ok(());
            }
        }
    }
}

fn element_name(e: &BytesStart<'_>) -> String {
    e.name().as_ref().to_string()
}

/// Opens an `interaction` element: its place and attributes.
fn begin(
    e: &BytesStart<'_>,
    index: usize,
    depth: usize,
    text: &str,
    at: u64,
) -> Result<Open, String> {
    let mut attrs = Attrs::default();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| format!("bad attribute at {}: {err}", line_col(text, at)))?;
        let value = attr_value(&attr, text, at)?;
        let slot = match attr.key.as_ref() {
            "operation" => &mut attrs.operation,
            "InteractionId" => &mut attrs.interaction_id,
            "ExternalId" => &mut attrs.external_id,
            "TenantId" => &mut attrs.tenant_id,
            "MediaType" => &mut attrs.media_type,
            "Queue" => &mut attrs.queue,
            "code" => &mut attrs.code,
            "description" => &mut attrs.description,
            _ => continue,
        };
        // An empty attribute is an absent one.
        *slot = Some(value).filter(|v| !v.is_empty());
    }
    Ok(Open {
        read: Read {
            place: format!("interaction[{index}]"),
            attrs,
            ..Read::default()
        },
        depth,
        properties: None,
        frames: Vec::new(),
    })
}

fn attr_value(
    attr: &quick_xml::events::attributes::Attribute<'_>,
    text: &str,
    at: u64,
) -> Result<String, String> {
    attr.normalized_value(XmlVersion::Implicit1_0)
        .map(|v| v.into_owned())
        .map_err(|err| {
            format!(
                "attribute value at {} is not allowed: {err} (only &lt; &gt; &amp; &apos; &quot; and character references are)",
                line_col(text, at)
            )
        })
}

/// Reads every attribute so that a malformed one or an entity in one is
/// refused wherever it is.
fn check_attributes(e: &BytesStart<'_>, text: &str, at: u64) -> Result<(), String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|err| format!("bad attribute at {}: {err}", line_col(text, at)))?;
        attr_value(&attr, text, at)?;
    }
    Ok(())
}

fn attribute(
    e: &BytesStart<'_>,
    name: &str,
    text: &str,
    at: u64,
) -> Result<Option<String>, String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|err| format!("bad attribute at {}: {err}", line_col(text, at)))?;
        if attr.key.as_ref() == name {
            return attr_value(&attr, text, at).map(Some);
        }
    }
    Ok(None)
}

/// Character data: part of the innermost open scalar property, or
/// whitespace between elements (anything else there is refused).
fn value_text(
    open: &mut Option<Open>,
    depth: usize,
    content: &str,
    text: &str,
    at: u64,
) -> Result<(), String> {
    let blank = content.chars().all(|c| c.is_ascii_whitespace());
    let Some(o) = open.as_mut() else {
        if depth == 0 && !blank {
            return Err(format!(
                "text outside the root element at {}",
                line_col(text, at)
            ));
        }
        return Ok(());
    };
    if o.read.problem.is_some() || blank && o.frames.last().is_none_or(|f| f.ty == Type::KvList) {
        return Ok(());
    }
    let inside = o
        .properties
        .is_some_and(|p| !o.frames.is_empty() && depth == p + o.frames.len());
    match o.frames.last_mut() {
        Some(frame) if inside && frame.ty != Type::KvList => {
            frame.text.push_str(content);
        }
        Some(_) if inside => {
            let place = o.place(None);
            o.fail(
                place,
                "a kvlist property holds text; its values are elements".into(),
            );
        }
        // Text beside the envelope's elements is ignored.
        _ => {}
    }
    Ok(())
}

/// The value of a closed property element.
fn finish(frame: Frame) -> Result<(String, Value), String> {
    let value =
        match frame.ty {
            Type::Str => Value::Str(frame.text),
            Type::KvList => Value::List(frame.list),
            Type::Int => {
                let t = frame.text.trim();
                Value::Int(t.parse::<i64>().map_err(|_| {
                    format!("'{}' is not a whole number that fits in 64 bits", clip(t))
                })?)
            }
            Type::Bin => {
                let compact: String = frame
                    .text
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                Value::Binary(
                    BASE64
                        .decode(compact.as_bytes())
                        .map_err(|e| format!("not base64: {e}"))?,
                )
            }
        };
    Ok((frame.key, value))
}
