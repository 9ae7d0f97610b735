//! The arena form of a KV list (`wasp:kv/types.kv-list`): WIT has no
//! recursive types, so `lists[0]` is the root and a nested value is the
//! index of a later list. These are the conversions between it and [`Kv`],
//! kept free of the bindings so that they are tested natively; the glue only
//! renames the types.

use crate::{Kv, MAX_DEPTH, MAX_PAIRS, Value};

/// One value in arena form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Int(i64),
    Str(String),
    Binary(Vec<u8>),
    /// Index into [`Arena::lists`].
    Nested(u32),
}

/// A KV list in arena form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arena {
    pub lists: Vec<Vec<(String, Slot)>>,
}

impl Arena {
    /// Flattens a list; an empty list is an empty arena, as the WIT says.
    pub fn from_kv(kv: Kv) -> Arena {
        let mut lists = Vec::new();
        if !kv.is_empty() {
            flatten(kv, &mut lists);
        }
        Arena { lists }
    }

    /// Rebuilds the list, refusing what the host would refuse: indices
    /// that do not point forward or point twice, lists no pair uses, more
    /// than [`MAX_DEPTH`] levels or [`MAX_PAIRS`] pairs. Recursion is bounded
    /// by the depth check, however the arena is shaped.
    pub fn into_kv(self) -> Result<Kv, String> {
        if self.lists.is_empty() {
            return Ok(Kv::new());
        }
        if self.lists.len() > MAX_PAIRS {
            return Err(format!(
                "{} nested lists is more than the {MAX_PAIRS} pairs a KV list may hold",
                self.lists.len()
            ));
        }
        let count = self.lists.len();
        let mut lists: Vec<Option<Vec<(String, Slot)>>> =
            self.lists.into_iter().map(Some).collect();
        let mut pairs = 0;
        let kv = unflatten(&mut lists, 0, 0, &mut pairs)?;
        if let Some(unused) = lists.iter().position(Option::is_some) {
            return Err(format!(
                "nested list {unused} of {count} is not used by any pair"
            ));
        }
        Ok(kv)
    }
}

fn flatten(kv: Kv, lists: &mut Vec<Vec<(String, Slot)>>) -> u32 {
    let index = lists.len();
    lists.push(Vec::new());
    let mut pairs = Vec::with_capacity(kv.0.len());
    for (key, value) in kv.0 {
        let slot = match value {
            Value::Int(i) => Slot::Int(i),
            Value::Str(s) => Slot::Str(s),
            Value::Binary(b) => Slot::Binary(b),
            Value::List(l) => Slot::Nested(flatten(l, lists)),
        };
        pairs.push((key, slot));
    }
    lists[index] = pairs;
    index as u32
}

fn unflatten(
    lists: &mut [Option<Vec<(String, Slot)>>],
    index: usize,
    depth: usize,
    pairs: &mut usize,
) -> Result<Kv, String> {
    if depth >= MAX_DEPTH {
        return Err(format!("KV lists nest deeper than {MAX_DEPTH} levels"));
    }
    let list = lists
        .get_mut(index)
        .ok_or_else(|| format!("nested list index {index} is out of range"))?
        .take()
        .ok_or_else(|| format!("nested list {index} is used twice"))?;
    let mut out = Vec::with_capacity(list.len());
    for (key, slot) in list {
        *pairs += 1;
        if *pairs > MAX_PAIRS {
            return Err(format!(
                "more than the {MAX_PAIRS} pairs a KV list may hold"
            ));
        }
        let value = match slot {
            Slot::Int(i) => Value::Int(i),
            Slot::Str(s) => Value::Str(s),
            Slot::Binary(b) => Value::Binary(b),
            Slot::Nested(i) if (i as usize) <= index => {
                return Err(format!(
                    "nested list index {i} in list {index} points backwards"
                ));
            }
            Slot::Nested(i) => Value::List(unflatten(lists, i as usize, depth + 1, pairs)?),
        };
        out.push((key, value));
    }
    Ok(Kv(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Arena {
        Arena {
            lists: (0..n)
                .map(|i| {
                    let slot = if i + 1 < n {
                        Slot::Nested(i as u32 + 1)
                    } else {
                        Slot::Int(1)
                    };
                    vec![("n".to_string(), slot)]
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip_keeps_order_types_and_nesting() {
        let kv = Kv::new()
            .with("a", Value::Int(-1))
            .with(
                "b",
                Value::List(Kv::new().with(
                    "c",
                    Value::List(Kv::new().with("d", Value::Str("x".into()))),
                )),
            )
            .with("a", Value::Binary(vec![0, 255]));
        let arena = Arena::from_kv(kv.clone());
        assert_eq!(arena.lists.len(), 3);
        assert_eq!(arena.into_kv().unwrap(), kv);
        assert_eq!(Arena::from_kv(Kv::new()).lists.len(), 0);
        assert_eq!(Arena::default().into_kv().unwrap(), Kv::new());
    }

    #[test]
    fn bad_arenas_are_refused() {
        assert!(chain(MAX_DEPTH).into_kv().is_ok());
        let err = chain(MAX_DEPTH + 1).into_kv().unwrap_err();
        assert!(err.contains("deeper"), "{err}");
        assert!(chain(50_000).into_kv().unwrap_err().contains("deeper"));
        let cyclic = Arena {
            lists: vec![vec![("self".into(), Slot::Nested(0))]],
        };
        assert!(cyclic.into_kv().unwrap_err().contains("backwards"));
        let twice = Arena {
            lists: vec![
                vec![("a".into(), Slot::Nested(1)), ("b".into(), Slot::Nested(1))],
                vec![],
            ],
        };
        assert!(twice.into_kv().unwrap_err().contains("twice"));
        let mut stray = chain(2);
        stray.lists.push(Vec::new());
        assert!(stray.into_kv().unwrap_err().contains("not used"));
        let out_of_range = Arena {
            lists: vec![vec![("a".into(), Slot::Nested(7))]],
        };
        assert!(out_of_range.into_kv().unwrap_err().contains("range"));
        let wide = Arena {
            lists: vec![vec![(String::new(), Slot::Int(0)); MAX_PAIRS + 1]],
        };
        assert!(wide.into_kv().unwrap_err().contains("pairs"));
    }
}
