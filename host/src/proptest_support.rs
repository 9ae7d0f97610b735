//! What the property tests of the parsers share (KV JSON, ESP requests,
//! SOAP, node frames, config): a deterministic configuration and the
//! mutations made to good documents.
//!
//! Deterministic: a fixed seed and no persistence files, so CI runs the
//! same cases every time; a failure prints its minimal input, which is
//! kept as a plain unit test beside the fix.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

pub fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5741_5350),
        ..Config::default()
    }
}

/// A change to a good document.
#[derive(Debug, Clone)]
pub enum Mutation {
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
    Replace(usize, u8),
    /// A copy of a slice of the document, inserted elsewhere.
    Splice(usize, usize, usize),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Replace(at, b)),
        (any::<usize>(), 0..64usize, any::<usize>())
            .prop_map(|(a, n, b)| Mutation::Splice(a, n, b)),
    ]
}

/// `doc` changed by `m` (positions are taken modulo the length).
pub fn mutate(mut doc: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let len = doc.len();
    if len == 0 {
        return doc;
    }
    match *m {
        Mutation::Truncate(at) => doc.truncate(at % len),
        Mutation::Insert(at, b) => doc.insert(at % (len + 1), b),
        Mutation::Remove(at) => {
            doc.remove(at % len);
        }
        Mutation::Replace(at, b) => doc[at % len] = b,
        Mutation::Splice(from, n, to) => {
            let from = from % len;
            let piece = doc[from..(from + n).min(len)].to_vec();
            let to = to % (len + 1);
            doc.splice(to..to, piece);
        }
    }
    doc
}

/// Some text of `doc`, lossily, for a failure message.
pub fn shown(doc: &[u8]) -> String {
    let text = String::from_utf8_lossy(doc);
    text.chars().take(400).collect()
}

/// A refusal must say why: not empty, not only whitespace.
pub fn assert_reason(reason: &str, input: &[u8]) {
    assert!(
        !reason.trim().is_empty(),
        "an empty reason for {:?}",
        shown(input)
    );
}
