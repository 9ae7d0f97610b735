//! Property tests of config parsing ([`Config::parse`], capture points'
//! sections included): any text is a config or a list of problems, each
//! saying something, never a panic; a mutated `examples/demo.toml` too;
//! a number out of its field's range is refused naming the field; tables,
//! arrays and keys nested very deep are refused without recursing.

use std::path::Path;

use proptest::prelude::*;

use super::Config;
use crate::proptest_support::{config, mutate, mutation, shown};

const DEMO: &str = include_str!("../../../examples/demo.toml");

fn demo_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
}

/// Parses `text`; a refusal lists at least one problem, none empty.
fn parse(text: &str) -> Option<Config> {
    match Config::parse(text, demo_dir()) {
        Ok(config) => Some(config),
        Err(e) => {
            assert!(!e.problems.is_empty(), "no problem listed for {text:?}");
            for p in &e.problems {
                assert!(
                    !p.trim().is_empty(),
                    "an empty problem for {:?}",
                    shown(text.as_bytes())
                );
            }
            None
        }
    }
}

/// TOML-ish text from pieces, the config's own keys among them.
fn tomlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_string()),
        Just("[server]\n".to_string()),
        Just("[[tenants]]\n".to_string()),
        Just("[clusters.fax]\n".to_string()),
        Just("[clusters.fax.store]\n".to_string()),
        Just("[captures.c]\n".to_string()),
        Just("id = 101\n".to_string()),
        Just("name = \"T\"\n".to_string()),
        Just("service = \"Fax\"\n".to_string()),
        Just("component = \"builtin:fax\"\n".to_string()),
        Just("tenants = [101, \"T\"]\n".to_string()),
        Just("adapter = \"file\"\n".to_string()),
        Just("adapter = \"kafka\"\n".to_string()),
        Just("codec = \"builtin:genesys-xml\"\n".to_string()),
        Just("rules = [{ property = \"A.B\", equals = \"x\", tenant = 9 }]\n".to_string()),
        Just("default-values = { TenantId = 101 }\n".to_string()),
        Just("listen = \"127.0.0.1:0\"\n".to_string()),
        Just("instances = ".to_string()),
        Just("window = ".to_string()),
        Just("timeout-ms = ".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("1e999".to_string()),
        Just("nan".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"\"\"".to_string()),
        Just("'''".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("{".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("=".to_string()),
        "[0-9]{1,6}",
        "[ -~]{0,4}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

/// The smallest good config with one cluster field set to `value`.
fn with_cluster_field(field: &str, value: &str) -> String {
    format!(
        "[[tenants]]\nid = 101\nname = \"T\"\n\n[clusters.fax]\nservice = \"Fax\"\n\
         component = \"builtin:fax\"\ntenants = [101]\n{field} = {value}\n"
    )
}

#[test]
fn the_demo_config_parses() {
    parse(DEMO).expect("examples/demo.toml is a good config");
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn any_text_is_a_config_or_problems(text in any::<String>()) {
        parse(&text);
    }

    #[test]
    fn any_tomlish_text_is_a_config_or_problems(text in tomlish()) {
        parse(&text);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_changed_demo_is_a_config_or_problems(m in mutation(), n in mutation()) {
        let changed = mutate(mutate(DEMO.as_bytes().to_vec(), &m), &n);
        // Config text is read as UTF-8 first (`Config::load`).
        if let Ok(text) = std::str::from_utf8(&changed) {
            parse(text);
        }
    }

    #[test]
    fn numbers_out_of_range_name_their_field(
        field in prop::sample::select(vec!["instances", "timeout-ms", "queue", "window", "memory-mb", "max-calls"]),
        value in prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            Just("-1".to_string()),
            Just("0".to_string()),
            Just("18446744073709551616".to_string()),
            Just("99999999999999999999999".to_string()),
            Just("1e999".to_string()),
            Just("-inf".to_string()),
            Just("1.5".to_string()),
            Just("\"4\"".to_string()),
        ],
    ) {
        let text = with_cluster_field(field, &value);
        if let Err(e) = Config::parse(&text, demo_dir()) {
            let all = e.problems.join("\n");
            prop_assert!(all.contains(field), "{} = {}: {}", field, value, all);
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing(depth in 1..20_000usize, form in 0..5usize) {
        let text = match form {
            0 => format!("x = {}{}\n", "[".repeat(depth), "]".repeat(depth)),
            1 => format!("x = {}1{}\n", "{ a = ".repeat(depth), " }".repeat(depth)),
            2 => format!("{}x = 1\n", "a.".repeat(depth)),
            3 => format!("[{}a]\n", "a.".repeat(depth)),
            _ => format!(
                "[[tenants]]\nid = 1\nname = \"T\"\n[clusters.fax]\nservice = \"Fax\"\ncomponent = \"builtin:fax\"\ntenants = [1]\n[clusters.fax.config]\nx = {}{}\n",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        };
        prop_assert!(parse(&text).is_none(), "form {} depth {} taken", form, depth);
    }
}
