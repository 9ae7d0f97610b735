//! Reading the JSON encoding of KV lists straight from the parser (serde
//! visitors), without building a `serde_json::Value` first:
//! - a key that repeats in one object is kept, in order (Genesys KV lists
//!   may repeat keys, and wasp writes them that way);
//! - strings move into the list instead of being copied;
//! - the path of a value (`Request.Parameters.Options.Retry`) is only
//!   spelled out when it is wrong.
//!
//! A visitor that meets a wrong value records a [`KvError`] naming the
//! path in the shared slot and fails the parse; the caller reports the
//! recorded error rather than the parser's (which would add a position).

use std::cell::{Cell, RefCell};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::{Kv, KvError, MAX_DEPTH, MAX_PAIRS, Value};

/// Where a value sits: `parent.key`, spelled out only for an error.
pub(super) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    key: &'a str,
}

impl<'a> Path<'a> {
    fn root(name: &'a str) -> Self {
        Path {
            parent: None,
            key: name,
        }
    }

    fn child(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            key,
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            write!(f, "{parent}.")?;
        }
        f.write_str(self.key)
    }
}

/// What one parse shares: the first wrong value, and the pairs read so
/// far (at most [`MAX_PAIRS`], nested lists included).
#[derive(Default)]
pub(super) struct Slot {
    error: RefCell<Option<KvError>>,
    pairs: Cell<usize>,
}

impl Slot {
    pub(super) fn into_inner(self) -> Option<KvError> {
        self.error.into_inner()
    }
}

fn fail<E: de::Error>(slot: &Slot, path: &Path<'_>, reason: String) -> E {
    let error = KvError::new(&path.to_string(), reason);
    let message = error.to_string();
    slot.error.borrow_mut().get_or_insert(error);
    E::custom(message)
}

/// Reads a KV list (a JSON object) named `name` from `deserializer`; a
/// wrong value is recorded in `slot`.
pub(super) fn read_list<'de, D: Deserializer<'de>>(
    deserializer: D,
    name: &str,
    slot: &Slot,
) -> Result<Kv, D::Error> {
    let path = Path::root(name);
    deserializer.deserialize_any(ListVisitor { path: &path, slot })
}

/// The top-level list: an object, anything else is refused.
struct ListVisitor<'a> {
    path: &'a Path<'a>,
    slot: &'a Slot,
}

impl<'de> Visitor<'de> for ListVisitor<'_> {
    type Value = Kv;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a KV list (JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kv, A::Error> {
        let mut out = Kv::new();
        read_pairs(&mut map, None, self.path, 0, self.slot, &mut out)?;
        Ok(out)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Kv, E> {
        Err(self.not_a_list("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Kv, E> {
        Err(self.not_a_list("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Kv, E> {
        Err(self.not_a_list("a float"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Kv, E> {
        Err(self.not_a_list("a string"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Kv, E> {
        Err(self.not_a_list("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kv, E> {
        Err(self.not_a_list("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Kv, A::Error> {
        Err(self.not_a_list("an array"))
    }
}

impl ListVisitor<'_> {
    fn not_a_list<E: de::Error>(&self, kind: &str) -> E {
        fail(
            self.slot,
            self.path,
            format!("expected a KV list (JSON object), got {kind}"),
        )
    }
}

/// Reads the pairs of an object into `out`: `first`, a key already read,
/// then the rest. `depth` is the list's own.
fn read_pairs<'de, A: MapAccess<'de>>(
    map: &mut A,
    mut first: Option<String>,
    path: &Path<'_>,
    depth: usize,
    slot: &Slot,
    out: &mut Kv,
) -> Result<(), A::Error> {
    while let Some(key) = match first.take() {
        Some(key) => Some(key),
        None => map.next_key::<String>()?,
    } {
        let pairs = slot.pairs.get() + 1;
        if pairs > MAX_PAIRS {
            return Err(fail(
                slot,
                path,
                format!(
                    "more than the {MAX_PAIRS} pairs a KV list may hold (nested lists included)"
                ),
            ));
        }
        slot.pairs.set(pairs);
        let value = map.next_value_seed(ValueSeed {
            path: &path.child(&key),
            depth: depth + 1,
            slot,
        })?;
        out.0.push((key, value));
    }
    Ok(())
}

/// One KV value at `path`.
struct ValueSeed<'a> {
    path: &'a Path<'a>,
    depth: usize,
    slot: &'a Slot,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a KV value")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v).map(Value::Int).map_err(|_| {
            fail(
                self.slot,
                self.path,
                format!("integer {v} does not fit in 64 bits"),
            )
        })
    }

    /// A fraction or an exponent, or a whole number beyond `u64` (the
    /// parser reads those as floats too): the latter is told as a number
    /// out of range, not as a float the client never wrote.
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        let reason = if v.fract() == 0.0 && v.abs() >= 9.223_372_036_854_776e18 {
            format!(
                "{v:?} does not fit in 64 bits (KV integers run from {} to {})",
                i64::MIN,
                i64::MAX
            )
        } else {
            format!("{v:?} is a float; KV values are integers, strings, binary or lists")
        };
        Err(fail(self.slot, self.path, reason))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
        Err(self.not_a_value("a boolean"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Err(self.not_a_value("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Drain it so the error is ours, not the parser's complaint about
        // an unfinished array.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(self.not_a_value("an array"))
    }

    /// An object is a nested list, or binary when it is exactly
    /// `{"$binary": "<base64>"}`.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(fail(
                self.slot,
                self.path,
                format!("KV lists nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        let mut list = Kv::new();
        let mut first = map.next_key::<String>()?;
        if let Some(key) = first.take_if(|key| key == "$binary") {
            let value: Json = map.next_value()?;
            first = map.next_key::<String>()?;
            if first.is_none() {
                return self.binary(value);
            }
            // A list that merely starts with a `$binary` key.
            let value = ValueSeed {
                path: &self.path.child(&key),
                depth: self.depth + 1,
                slot: self.slot,
            }
            .deserialize(&value)
            .map_err(|e| de::Error::custom(e.to_string()))?;
            list.0.push((key, value));
        }
        read_pairs(&mut map, first, self.path, self.depth, self.slot, &mut list)?;
        Ok(Value::List(list))
    }
}

impl ValueSeed<'_> {
    fn not_a_value<E: de::Error>(&self, kind: &str) -> E {
        fail(
            self.slot,
            self.path,
            format!(
                "{kind} is not a KV value; use an integer, string, {{\"$binary\": ...}} or object"
            ),
        )
    }

    fn binary<E: de::Error>(&self, value: Json) -> Result<Value, E> {
        match value {
            Json::String(b64) => BASE64
                .decode(b64)
                .map(Value::Binary)
                .map_err(|e| fail(self.slot, self.path, format!("$binary is not base64: {e}"))),
            other => Err(fail(
                self.slot,
                self.path,
                format!("$binary must be a base64 string, got {}", kind(&other)),
            )),
        }
    }
}

/// How a JSON value is named in error messages.
fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_f64() => "a float",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
