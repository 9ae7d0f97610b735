//! Genesys KV lists: ordered `key -> value` lists whose values are
//! integers, strings, binary data or nested lists.

use crate::Fault;
use crate::bindings::wasp::esp::types as wit;

/// One value in a [`Kv`] list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(String),
    Binary(Vec<u8>),
    List(Kv),
}

impl Value {
    /// The Genesys name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Str(_) => "string",
            Value::Binary(_) => "binary",
            Value::List(_) => "list",
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Binary(v)
    }
}
impl From<Kv> for Value {
    fn from(v: Kv) -> Self {
        Value::List(v)
    }
}

/// An ordered KV list. Keys may repeat; getters return the first match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv(Vec<(String, Value)>);

impl Kv {
    pub fn new() -> Self {
        Kv(Vec::new())
    }

    /// Builder style: `Kv::new().with("Status", "Queued").with("Pages", 3)`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.push(key, value);
        self
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.0.push((key.into(), value.into()));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The first value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string under `key`; `None` if absent or not a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The integer under `key`; `None` if absent or not an integer.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// The binary value under `key`; `None` if absent or not binary.
    pub fn binary(&self, key: &str) -> Option<&[u8]> {
        match self.get(key) {
            Some(Value::Binary(b)) => Some(b),
            _ => None,
        }
    }

    /// The nested list under `key`; `None` if absent or not a list.
    pub fn list(&self, key: &str) -> Option<&Kv> {
        match self.get(key) {
            Some(Value::List(l)) => Some(l),
            _ => None,
        }
    }

    /// The string under `key`, or a fault naming the parameter: missing,
    /// of another type, or empty.
    pub fn require_str(&self, key: &str) -> Result<&str, Fault> {
        match self.get(key) {
            None => Err(Fault::missing(key)),
            Some(Value::Str(s)) if s.trim().is_empty() => Err(Fault::invalid(key, "is empty")),
            Some(Value::Str(s)) => Ok(s),
            Some(v) => Err(Fault::invalid(
                key,
                format!("expected a string, got {}", v.type_name()),
            )),
        }
    }

    /// The string under `key` if present, or a fault if it has another type.
    pub fn optional_str(&self, key: &str) -> Result<Option<&str>, Fault> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => Err(Fault::invalid(
                key,
                format!("expected a string, got {}", v.type_name()),
            )),
        }
    }

    /// The integer under `key`, or a fault naming the parameter.
    pub fn require_int(&self, key: &str) -> Result<i64, Fault> {
        match self.get(key) {
            None => Err(Fault::missing(key)),
            Some(Value::Int(i)) => Ok(*i),
            Some(v) => Err(Fault::invalid(
                key,
                format!("expected an integer, got {}", v.type_name()),
            )),
        }
    }

    pub(crate) fn from_wit(arena: wit::KvList) -> Kv {
        let mut lists: Vec<Option<Vec<wit::Pair>>> = arena.lists.into_iter().map(Some).collect();
        if lists.is_empty() {
            return Kv::new();
        }
        build(&mut lists, 0, 0)
    }

    pub(crate) fn into_wit(self) -> wit::KvList {
        let mut lists = Vec::new();
        flatten(self, &mut lists);
        wit::KvList { lists }
    }
}

/// Host-built arenas are well formed (indices point forward); anything else
/// becomes an empty list rather than a panic. Depth is bounded by the
/// arena's length because every index must point past its parent.
fn build(lists: &mut [Option<Vec<wit::Pair>>], index: usize, parent: usize) -> Kv {
    if index != 0 && index <= parent {
        return Kv::new();
    }
    let Some(pairs) = lists.get_mut(index).and_then(Option::take) else {
        return Kv::new();
    };
    // `map` + `collect` from one `Vec` into another of the same layout
    // reuses the allocation: no new vector per list.
    let out = pairs
        .into_iter()
        .map(|pair| {
            let value = match pair.value {
                wit::Value::Int(i) => Value::Int(i),
                wit::Value::Str(s) => Value::Str(s),
                wit::Value::Binary(b) => Value::Binary(b),
                wit::Value::Nested(i) => Value::List(build(lists, i as usize, index)),
            };
            (pair.key, value)
        })
        .collect();
    Kv(out)
}

fn flatten(kv: Kv, lists: &mut Vec<Vec<wit::Pair>>) -> u32 {
    let index = lists.len();
    lists.push(Vec::new());
    let pairs =
        kv.0.into_iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::Int(i) => wit::Value::Int(i),
                    Value::Str(s) => wit::Value::Str(s),
                    Value::Binary(b) => wit::Value::Binary(b),
                    Value::List(l) => wit::Value::Nested(flatten(l, lists)),
                };
                wit::Pair { key, value }
            })
            .collect();
    lists[index] = pairs;
    index as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_lists_survive_the_arena() {
        let kv = Kv::new()
            .with("A", 1)
            .with(
                "B",
                Kv::new()
                    .with("C", "x")
                    .with("D", Kv::new().with("E", vec![1u8, 2])),
            )
            .with("F", "last");
        let back = Kv::from_wit(kv.clone().into_wit());
        assert_eq!(back, kv);
    }

    #[test]
    fn typed_getters_explain_what_is_wrong() {
        let kv = Kv::new().with("To", 5).with("Empty", " ");
        assert_eq!(
            kv.require_str("To").unwrap_err().message,
            "invalid parameter 'To': expected a string, got integer"
        );
        assert_eq!(
            kv.require_str("From").unwrap_err().message,
            "missing parameter 'From'"
        );
        assert_eq!(
            kv.require_str("Empty").unwrap_err().message,
            "invalid parameter 'Empty': is empty"
        );
    }
}
