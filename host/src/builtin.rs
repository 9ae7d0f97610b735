//! Components built from `plugins/` by `build.rs` and embedded in the
//! binary, so a config can say `component = "builtin:fax"`.

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// The bytes of a builtin component.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Names of all builtin components.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}
