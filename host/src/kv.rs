//! Genesys KV lists on the host: the JSON encoding of PROTOCOL.md and the
//! arena encoding of `wit/esp.wit` and `wit/capture` (`wasp:kv`): one reader
//! ([`Kv::from_arena`]) holds the results of every world to the same limits.
//!
//! JSON: integer → number without fraction, string → string, binary →
//! `{"$binary": "<base64>"}`, nested list → object (key order kept).
//! Anything else is refused with the offending path, e.g.
//! `Request.Parameters.Tags`, so an ESP client knows what to fix.

mod json;
#[cfg(test)]
mod proptests;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Deepest nesting accepted in a KV list; deeper input is refused rather
/// than recursed into. Every walk over a KV list (JSON reading and writing,
/// lowering into and lifting out of a component, dropping) recurses at
/// most this deep, whoever built the list: a request, a node frame or a
/// component's result.
pub const MAX_DEPTH: usize = 32;

/// Most pairs one KV list may hold, its nested lists included: a request's
/// `Parameters` or `UserData`, a node frame's `Properties`, a component's
/// result. Beyond it the list is refused rather than stored.
pub const MAX_PAIRS: usize = 100_000;

/// One value of a KV list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(String),
    Binary(Vec<u8>),
    List(Kv),
}

/// An ordered KV list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv(pub Vec<(String, Value)>);

/// A KV value that is not acceptable, with the path that names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct KvError {
    pub path: String,
    pub reason: String,
}

impl KvError {
    fn new(path: &str, reason: impl Into<String>) -> Self {
        KvError {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

impl Kv {
    pub fn new() -> Self {
        Kv(Vec::new())
    }

    pub fn with(mut self, key: impl Into<String>, value: Value) -> Self {
        self.0.push((key.into(), value));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Reads a KV list from JSON text, keeping repeated keys in order;
    /// `path` names it in error messages.
    pub fn from_json_text(text: &str, path: &str) -> Result<Kv, KvError> {
        let slot = json::Slot::default();
        let mut deserializer = serde_json::Deserializer::from_str(text);
        json::read_list(&mut deserializer, path, &slot)
            .and_then(|kv| deserializer.end().map(|()| kv))
            .map_err(|e| recorded(slot, path, e))
    }

    /// The WIT arena form, borrowing every key and value from this list:
    /// `lists[0]` is the root. [`WitArena::lists`] gives what a request holds.
    pub fn to_wit(&self) -> WitArena<'_> {
        let mut lists = Vec::new();
        if !self.0.is_empty() {
            flatten(self, &mut lists);
        }
        WitArena { lists }
    }

    /// Reads the WIT arena form a component returned, held to the limits
    /// of a request: at most [`MAX_DEPTH`] levels, [`MAX_PAIRS`] pairs and
    /// `max_bytes` of keys and values. Indices must point forward (no
    /// cycles, no sharing) and every list must be used; anything else is
    /// refused, so whatever reaches a client is what a client could send.
    pub fn from_wit(arena: KvListResult, max_bytes: usize) -> Result<Kv, String> {
        Kv::from_arena(arena.lists, max_bytes)
    }

    /// [`Kv::from_wit`] for the arena of any world's bindings (the ESP
    /// world and `wasp:kv` spell their pairs as different Rust types): the
    /// same checks against the same limits.
    pub fn from_arena<P: ArenaPair>(arena: Vec<Vec<P>>, max_bytes: usize) -> Result<Kv, String> {
        if arena.is_empty() {
            return Ok(Kv::new());
        }
        if arena.len() > MAX_PAIRS {
            return Err(format!(
                "{} nested lists is more than the {MAX_PAIRS} pairs a KV list may hold",
                arena.len()
            ));
        }
        let count = arena.len();
        let mut lists: Vec<Option<Vec<P>>> = arena.into_iter().map(Some).collect();
        let mut budget = Budget {
            pairs: MAX_PAIRS,
            bytes: max_bytes,
            max_bytes,
        };
        let kv = unflatten(&mut lists, 0, 0, &mut budget)?;
        if let Some(unused) = lists.iter().position(Option::is_some) {
            return Err(format!(
                "nested list {unused} of {count} is not used by any pair"
            ));
        }
        Ok(kv)
    }

    /// The arena form, consuming the list, for bindings whose parameters
    /// own their strings; `pair` builds one pair of the bindings' type.
    pub fn into_arena<P>(self, pair: impl Fn(String, Slot) -> P + Copy) -> Vec<Vec<P>> {
        let mut lists = Vec::new();
        if !self.0.is_empty() {
            flatten_owned(self, &mut lists, pair);
        }
        lists
    }

    /// Pairs (nested lists' included) and bytes of keys and values, for
    /// checking what a component will be asked to hold.
    pub fn footprint(&self) -> Footprint {
        let mut f = Footprint::default();
        self.add_footprint(&mut f);
        f
    }

    fn add_footprint(&self, f: &mut Footprint) {
        for (key, value) in &self.0 {
            f.pairs += 1;
            f.bytes += key.len();
            match value {
                Value::Int(_) => {}
                Value::Str(s) => f.bytes += s.len(),
                Value::Binary(b) => f.bytes += b.len(),
                Value::List(l) => l.add_footprint(f),
            }
        }
    }
}

/// What a KV list is made of: see [`Kv::footprint`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub pairs: usize,
    pub bytes: usize,
}

/// What a result may still use while it is lifted.
struct Budget {
    pairs: usize,
    bytes: usize,
    max_bytes: usize,
}

impl Budget {
    fn take(&mut self, bytes: usize) -> Result<(), String> {
        if self.pairs == 0 {
            return Err(format!(
                "more than the {MAX_PAIRS} pairs a KV list may hold"
            ));
        }
        self.pairs -= 1;
        self.bytes = self.bytes.checked_sub(bytes).ok_or_else(|| {
            format!(
                "more than {} bytes of keys and values (server.max-body-bytes)",
                self.max_bytes
            )
        })?;
        Ok(())
    }
}

/// The wrong value a parse recorded, or else what the parser said.
fn recorded(slot: json::Slot, path: &str, error: serde_json::Error) -> KvError {
    slot.into_inner()
        .unwrap_or_else(|| KvError::new(path, format!("malformed JSON: {error}")))
}

impl Serialize for Kv {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Kv {
    /// Reads the JSON encoding (repeated keys kept); the error names the
    /// path from `Properties`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        json::read_list(deserializer, "Properties", &json::Slot::default())
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Binary(b) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("$binary", &BASE64.encode(b))?;
                map.end()
            }
            Value::List(kv) => kv.serialize(serializer),
        }
    }
}

use crate::runtime::bindings::{KvListResult, PairParam, PairResult, ValueParam, ValueResult};

/// A KV list in the WIT arena form, borrowed from a [`Kv`]. Lowering into a
/// component copies straight from the `Kv`'s strings.
#[derive(Debug, Default)]
pub struct WitArena<'a> {
    lists: Vec<Vec<PairParam<'a>>>,
}

impl<'a> WitArena<'a> {
    /// The slices a `kv-list` parameter is made of; keep them alive while
    /// the [`KvListParam`] built from them is used.
    pub fn lists(&self) -> Vec<&[PairParam<'a>]> {
        self.lists.iter().map(Vec::as_slice).collect()
    }
}

fn flatten<'a>(kv: &'a Kv, lists: &mut Vec<Vec<PairParam<'a>>>) -> u32 {
    let index = lists.len();
    lists.push(Vec::new());
    let mut pairs = Vec::with_capacity(kv.0.len());
    for (key, value) in &kv.0 {
        let value = match value {
            Value::Int(i) => ValueParam::Int(*i),
            Value::Str(s) => ValueParam::Str(s),
            Value::Binary(b) => ValueParam::Binary(b),
            Value::List(l) => ValueParam::Nested(flatten(l, lists)),
        };
        pairs.push(PairParam { key, value });
    }
    lists[index] = pairs;
    index as u32
}

/// One value of a KV arena, whatever bindings it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Int(i64),
    Str(String),
    Binary(Vec<u8>),
    /// Index of a later list of the arena.
    Nested(u32),
}

/// A pair of a KV arena as some world's bindings spell it, so that one
/// reader ([`Kv::from_arena`]) holds every world's results to the limits.
pub trait ArenaPair {
    /// Bytes of key and value, for the budget, before the pair is taken.
    fn size(&self) -> usize;
    /// The key and the value.
    fn into_parts(self) -> (String, Slot);
}

impl ArenaPair for PairResult {
    fn size(&self) -> usize {
        self.key.len()
            + match &self.value {
                ValueResult::Int(_) | ValueResult::Nested(_) => 0,
                ValueResult::Str(s) => s.len(),
                ValueResult::Binary(b) => b.len(),
            }
    }

    fn into_parts(self) -> (String, Slot) {
        let slot = match self.value {
            ValueResult::Int(i) => Slot::Int(i),
            ValueResult::Str(s) => Slot::Str(s),
            ValueResult::Binary(b) => Slot::Binary(b),
            ValueResult::Nested(i) => Slot::Nested(i),
        };
        (self.key, slot)
    }
}

fn flatten_owned<P>(
    kv: Kv,
    lists: &mut Vec<Vec<P>>,
    pair: impl Fn(String, Slot) -> P + Copy,
) -> u32 {
    let index = lists.len();
    lists.push(Vec::new());
    let mut pairs = Vec::with_capacity(kv.0.len());
    for (key, value) in kv.0 {
        let slot = match value {
            Value::Int(i) => Slot::Int(i),
            Value::Str(s) => Slot::Str(s),
            Value::Binary(b) => Slot::Binary(b),
            Value::List(l) => Slot::Nested(flatten_owned(l, lists, pair)),
        };
        pairs.push(pair(key, slot));
    }
    lists[index] = pairs;
    index as u32
}

fn unflatten<P: ArenaPair>(
    lists: &mut [Option<Vec<P>>],
    index: usize,
    depth: usize,
    budget: &mut Budget,
) -> Result<Kv, String> {
    // The root is level 0, as in the JSON reader: 32 levels in all.
    if depth >= MAX_DEPTH {
        return Err(format!("KV lists nest deeper than {MAX_DEPTH} levels"));
    }
    let pairs = lists
        .get_mut(index)
        .ok_or_else(|| format!("nested list index {index} is out of range"))?
        .take()
        .ok_or_else(|| format!("nested list {index} is used twice"))?;
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs {
        budget.take(pair.size())?;
        let (key, slot) = pair.into_parts();
        let value = match slot {
            Slot::Int(i) => Value::Int(i),
            Slot::Str(s) => Value::Str(s),
            Slot::Binary(b) => Value::Binary(b),
            Slot::Nested(i) if (i as usize) <= index => {
                return Err(format!(
                    "nested list index {i} in list {index} points backwards"
                ));
            }
            Slot::Nested(i) => Value::List(unflatten(lists, i as usize, depth + 1, budget)?),
        };
        out.push((key, value));
    }
    Ok(Kv(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trip_keeps_order_types_and_nesting() {
        let json =
            json!({"Z": 1, "A": "x", "Bin": {"$binary": "AAEC"}, "L": {"b": 2, "a": {"deep": -5}}});
        let kv = Kv::from_json_text(&json.to_string(), "P").unwrap();
        assert_eq!(kv.0[0].0, "Z");
        assert_eq!(kv.get("Bin"), Some(&Value::Binary(vec![0, 1, 2])));
        assert_eq!(serde_json::to_value(&kv).unwrap(), json);
        assert_eq!(
            serde_json::to_string(&kv).unwrap(),
            r#"{"Z":1,"A":"x","Bin":{"$binary":"AAEC"},"L":{"b":2,"a":{"deep":-5}}}"#
        );
    }

    #[test]
    fn bad_values_name_their_path() {
        let cases = [
            (json!({"Tags": 1.5}), "Request.Parameters.Tags", "float"),
            (json!({"A": {"B": null}}), "Request.Parameters.A.B", "null"),
            (json!({"A": [1]}), "Request.Parameters.A", "array"),
            (json!({"A": true}), "Request.Parameters.A", "boolean"),
            (
                json!({"A": {"$binary": "!!"}}),
                "Request.Parameters.A",
                "base64",
            ),
            (
                json!({"A": 18446744073709551615u64}),
                "Request.Parameters.A",
                "64 bits",
            ),
        ];
        for (json, path, word) in cases {
            let err = Kv::from_json_text(&json.to_string(), "Request.Parameters").unwrap_err();
            assert_eq!(err.path, path, "{json}");
            assert!(err.reason.contains(word), "{err}");
        }
        let err = Kv::from_json_text(r#""x""#, "Request.UserData").unwrap_err();
        assert_eq!(err.path, "Request.UserData");
    }

    #[test]
    fn json_text_keeps_repeated_keys_and_reads_binary_only_when_alone() {
        let text = r#"{"A":1,"A":"two","N":{"x":1,"x":2},"B":{"$binary":"AAEC"},
            "L":{"$binary":"AAEC","more":1}}"#;
        let kv = Kv::from_json_text(text, "P").unwrap();
        assert_eq!(kv.0[0], ("A".into(), Value::Int(1)));
        assert_eq!(kv.0[1], ("A".into(), Value::Str("two".into())));
        assert_eq!(
            serde_json::to_string(kv.get("N").unwrap()).unwrap(),
            r#"{"x":1,"x":2}"#
        );
        assert_eq!(kv.get("B"), Some(&Value::Binary(vec![0, 1, 2])));
        // Not alone: a list whose first key happens to be `$binary`.
        assert_eq!(
            kv.get("L"),
            Some(&Value::List(
                Kv::new()
                    .with("$binary", Value::Str("AAEC".into()))
                    .with("more", Value::Int(1))
            ))
        );
        // Node frames read `Properties` the same way.
        let props: Kv = serde_json::from_str(r#"{"q":"a","q":"b"}"#).unwrap();
        assert_eq!(props.0.len(), 2);
        // Errors name the path; trailing text is malformed JSON.
        let err = Kv::from_json_text(r#"{"L":{"$binary":[1],"x":1}}"#, "P").unwrap_err();
        assert_eq!(err.path, "P.L.$binary");
        let err = Kv::from_json_text(r#"{"A":1} x"#, "P").unwrap_err();
        assert!(err.reason.starts_with("malformed JSON"), "{err}");
    }

    #[test]
    fn depth_is_bounded() {
        let mut json = json!(1);
        for _ in 0..(MAX_DEPTH + 2) {
            json = json!({ "n": json });
        }
        let err = Kv::from_json_text(&json.to_string(), "P").unwrap_err();
        assert!(err.reason.contains("nest deeper"), "{err}");
        // The same count as for results: 32 levels, the root included.
        let nested = |levels: usize| {
            let mut json = json!(1);
            for _ in 0..levels {
                json = json!({ "n": json });
            }
            Kv::from_json_text(&json.to_string(), "P")
        };
        assert!(nested(MAX_DEPTH).is_ok());
        assert!(nested(MAX_DEPTH + 1).is_err());
    }

    #[test]
    fn integers_beyond_64_bits_are_not_called_floats() {
        // Found by the property tests: a whole number beyond u64 (which
        // the JSON parser reads as a float) was refused as "a float".
        for big in [
            "1000000000000000000000",
            "-9223372036854775809",
            "18446744073709551615",
        ] {
            let err = Kv::from_json_text(&format!(r#"{{"N":{big}}}"#), "P").unwrap_err();
            assert_eq!(err.path, "P.N");
            assert!(err.reason.contains("does not fit in 64 bits"), "{err}");
            assert!(!err.reason.contains("float"), "{err}");
        }
        let err = Kv::from_json_text(r#"{"N":1.5}"#, "P").unwrap_err();
        assert!(err.reason.contains("is a float"), "{err}");
    }

    #[test]
    fn pairs_are_bounded_across_nested_lists() {
        let pairs = |n: usize| {
            (0..n)
                .map(|i| format!("\"k{i}\":1"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let half = pairs(MAX_PAIRS / 2);
        let over = format!("{{{half},\"L\":{{{half}}}}}");
        // MAX_PAIRS / 2 twice plus the pair holding the nested list.
        assert!(Kv::from_json_text(&over, "P").is_err());
        let fits = format!("{{{},\"L\":{{{half}}}}}", pairs(MAX_PAIRS / 2 - 1));
        assert_eq!(
            Kv::from_json_text(&fits, "P").unwrap().footprint().pairs,
            MAX_PAIRS
        );
        let err = Kv::from_json_text(&over, "Request.Parameters").unwrap_err();
        assert!(err.reason.contains("pairs"), "{err}");
        assert_eq!(err.path, "Request.Parameters.L");
    }

    #[test]
    fn wit_arena_round_trip_and_rejects_cycles() {
        let kv = Kv::new()
            .with("a", Value::Int(1))
            .with(
                "b",
                Value::List(Kv::new().with(
                    "c",
                    Value::List(Kv::new().with("d", Value::Str("x".into()))),
                )),
            )
            .with("e", Value::Binary(vec![9]));
        // What a component would return is the owned twin of the borrowed
        // arena lowered into it.
        let owned = KvListResult {
            lists: kv
                .to_wit()
                .lists()
                .iter()
                .map(|pairs| pairs.iter().map(owned_pair).collect())
                .collect(),
        };
        assert_eq!(Kv::from_wit(owned, 1 << 20).unwrap(), kv);

        let cyclic = KvListResult {
            lists: vec![vec![PairResult {
                key: "self".into(),
                value: ValueResult::Nested(0),
            }]],
        };
        assert!(
            Kv::from_wit(cyclic, 1 << 20)
                .unwrap_err()
                .contains("backwards")
        );
    }

    /// A chain of `n` lists, each nesting the next.
    fn chain(n: usize) -> KvListResult {
        KvListResult {
            lists: (0..n)
                .map(|i| {
                    vec![PairResult {
                        key: "n".into(),
                        value: if i + 1 < n {
                            ValueResult::Nested(i as u32 + 1)
                        } else {
                            ValueResult::Int(1)
                        },
                    }]
                })
                .collect(),
        }
    }

    #[test]
    fn results_are_held_to_the_limits_of_requests() {
        // As deep as a request may be: accepted. One more: refused, even
        // far deeper (no recursion into it).
        assert!(Kv::from_wit(chain(MAX_DEPTH), 1 << 20).is_ok());
        let err = Kv::from_wit(chain(MAX_DEPTH + 1), 1 << 20).unwrap_err();
        assert!(err.contains("nest deeper than 32"), "{err}");
        let err = Kv::from_wit(chain(50_000), 1 << 20).unwrap_err();
        assert!(err.contains("nest deeper"), "{err}");
        // Pairs, bytes, and lists no pair uses.
        let wide = KvListResult {
            lists: vec![
                (0..=MAX_PAIRS)
                    .map(|_| PairResult {
                        key: String::new(),
                        value: ValueResult::Int(0),
                    })
                    .collect(),
            ],
        };
        assert!(Kv::from_wit(wide, 1 << 20).unwrap_err().contains("pairs"));
        let big = KvListResult {
            lists: vec![vec![PairResult {
                key: "k".into(),
                value: ValueResult::Str("x".repeat(100)),
            }]],
        };
        assert!(Kv::from_wit(big, 100).unwrap_err().contains("bytes"));
        let mut stray = chain(2);
        stray.lists.push(Vec::new());
        assert!(
            Kv::from_wit(stray, 1 << 20)
                .unwrap_err()
                .contains("not used")
        );
    }

    fn owned_pair(pair: &PairParam<'_>) -> PairResult {
        PairResult {
            key: pair.key.to_string(),
            value: match pair.value {
                ValueParam::Int(i) => ValueResult::Int(i),
                ValueParam::Str(s) => ValueResult::Str(s.to_string()),
                ValueParam::Binary(b) => ValueResult::Binary(b.to_vec()),
                ValueParam::Nested(i) => ValueResult::Nested(i),
            },
        }
    }
}
