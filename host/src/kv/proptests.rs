//! Property tests of the KV JSON decoder ([`Kv::from_json_text`]) and of
//! the ESP request reader built on it ([`crate::esp::parse`]): any text is
//! read or refused with the path and a reason, never a panic; what wasp
//! writes reads back the same; nesting beyond [`MAX_DEPTH`] is refused by
//! the cap, however deep it goes.

use proptest::prelude::*;

use super::{Kv, MAX_DEPTH, Value};
use crate::esp;
use crate::proptest_support::{assert_reason, config, mutate, mutation, shown};

/// Reads `text` as a KV list named `P`: a refusal names a path under `P`.
fn read(text: &str) -> Result<Kv, super::KvError> {
    let result = Kv::from_json_text(text, "P");
    if let Err(e) = &result {
        assert!(
            e.path == "P" || e.path.starts_with("P."),
            "{e:?} for {text:?}"
        );
        assert_reason(&e.reason, text.as_bytes());
    }
    result
}

/// An ESP request: a refusal carries a fault that says why.
fn parse_esp(body: &[u8]) -> Option<esp::EspRequest> {
    match esp::parse(body) {
        Ok(req) => Some(req),
        Err(refused) => {
            assert_reason(&refused.fault.message, body);
            None
        }
    }
}

/// Keys: any text, but not `$binary` (a list whose one key is `$binary`
/// is how binary is spelled, so it cannot be a list too).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z][A-Za-z0-9_.]{0,8}",
        1 => any::<String>().prop_filter("not $binary", |k| k != "$binary"),
    ]
}

fn kv(depth: u32) -> impl Strategy<Value = Kv> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0)].prop_map(Value::Int),
        any::<String>().prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Binary),
    ];
    let value = leaf.prop_recursive(depth, 64, 5, |inner| {
        proptest::collection::vec((key(), inner), 0..5).prop_map(|pairs| Value::List(Kv(pairs)))
    });
    proptest::collection::vec((key(), value), 0..6).prop_map(Kv)
}

/// JSON-ish text from pieces, to reach past the first byte.
fn jsonish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"k\"".to_string()),
        Just("\"$binary\"".to_string()),
        Just("\"AAEC\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-0".to_string()),
        Just("1e400".to_string()),
        Just("1.5".to_string()),
        Just("18446744073709551616".to_string()),
        Just("9223372036854775808".to_string()),
        Just("-9223372036854775809".to_string()),
        "-?[0-9]{1,25}",
        "\"[^\"\\\\]{0,6}\"",
        "[ -~]{0,3}",
    ];
    proptest::collection::vec(piece, 0..48).prop_map(|p| p.concat())
}

/// `{"a":{"a":...1...}}` nested `depth` objects deep.
fn nested(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn any_text_is_read_or_refused(text in any::<String>()) {
        let _ = read(&text);
        parse_esp(text.as_bytes());
    }

    #[test]
    fn any_bytes_are_an_esp_request_or_refused(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        parse_esp(&body);
    }

    #[test]
    fn any_jsonish_text_is_read_or_refused(text in jsonish()) {
        let _ = read(&text);
        parse_esp(format!(
            r#"{{"ReferenceId":1,"Request":{{"Service":"S","Method":"M","Parameters":{text}}},"UserData":{text}}}"#
        ).as_bytes());
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn written_lists_read_back(kv in kv(6)) {
        let text = serde_json::to_string(&kv).expect("a KV list serializes");
        prop_assert_eq!(read(&text).expect("what wasp writes reads back"), kv.clone());
        let pretty = serde_json::to_string_pretty(&kv).expect("a KV list serializes");
        prop_assert_eq!(read(&pretty).expect("whitespace is allowed"), kv.clone());
        let request = format!(
            r#"{{"ReferenceId":7,"Request":{{"Service":"S","Method":"M","Parameters":{text}}},"UserData":{text}}}"#
        );
        let req = parse_esp(request.as_bytes()).expect("a request with a written list reads");
        prop_assert_eq!(&req.parameters, &kv);
        prop_assert_eq!(req.user_data.as_ref(), Some(&kv));
    }

    #[test]
    fn changed_lists_are_read_or_refused(kv in kv(5), m in mutation()) {
        let text = serde_json::to_vec(&kv).expect("a KV list serializes");
        let changed = mutate(text, &m);
        if let Ok(changed) = std::str::from_utf8(&changed) {
            let _ = read(changed);
        }
        let request = [
            &br#"{"ReferenceId":7,"Request":{"Service":"S","Method":"M","Parameters":"#[..],
            &changed,
            b"}}",
        ]
        .concat();
        parse_esp(&request);
    }

    #[test]
    fn truncated_lists_are_refused(kv in kv(5), at in any::<usize>()) {
        let text = serde_json::to_string(&kv).expect("a KV list serializes");
        let mut at = at % text.len();
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let err = read(&text[..at]).expect_err("a cut object is not a list");
        prop_assert!(!err.to_string().is_empty());
    }

    #[test]
    fn invalid_utf8_is_refused(kv in kv(4), at in any::<usize>(), byte in prop_oneof![Just(0xFFu8), Just(0xC0), Just(0x80), Just(0xF5)]) {
        let text = serde_json::to_string(&kv).expect("a KV list serializes");
        let mut body = format!(r#"{{"Request":{{"Service":"S","Method":"M","Parameters":{text}}}}}"#).into_bytes();
        let at = at % (body.len() + 1);
        body.insert(at, byte);
        prop_assert!(parse_esp(&body).is_none(), "read: {}", shown(&body));
    }

    #[test]
    fn deep_lists_are_refused_by_the_cap(depth in (MAX_DEPTH + 1)..100_000usize) {
        let text = nested(depth);
        let err = read(&text).expect_err("too deep");
        prop_assert!(err.reason.contains(&format!("deeper than {MAX_DEPTH}")), "{}", err);
        // The same inside a request, as UserData and as Parameters.
        for body in [
            format!(r#"{{"ReferenceId":3,"UserData":{text}}}"#),
            format!(r#"{{"ReferenceId":3,"Request":{{"Service":"S","Method":"M","Parameters":{text}}}}}"#),
        ] {
            let refused = esp::parse(body.as_bytes()).expect_err("too deep");
            prop_assert!(!refused.fault.message.is_empty());
            prop_assert_eq!(refused.reference_id, 3);
        }
    }

    #[test]
    fn deep_arrays_anywhere_are_refused(depth in 1..100_000usize, field in 0..4usize) {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let body = match field {
            0 => format!(r#"{{"ReferenceId":{deep}}}"#),
            1 => format!(r#"{{"Request":{{"Service":"S","Method":"M","Parameters":{{"A":{deep}}}}}}}"#),
            2 => format!(r#"{{"Request":{{"Service":{deep},"Method":"M"}}}}"#),
            _ => format!(r#"{{"Other":{deep},"Request":{{"Service":"S","Method":"M"}}}}"#),
        };
        // Either refused or (an unknown field skipped) read; never a crash.
        parse_esp(body.as_bytes());
        let _ = read(&format!(r#"{{"A":{deep}}}"#)).expect_err("arrays are not KV values");
    }

    #[test]
    fn numbers_beyond_64_bits_are_refused(digits in "-?[1-9][0-9]{19,80}", exp in "(e|E)[+-]?[0-9]{1,4}") {
        let err = read(&format!(r#"{{"N":{digits}}}"#)).expect_err("too big for i64");
        prop_assert_eq!(&err.path, "P.N");
        prop_assert!(err.reason.contains("does not fit in 64 bits"), "{}", err);
        // A float, or (beyond f64) a number the parser cannot hold: the
        // parser says so, with the position, before any path is known.
        let err = read(&format!(r#"{{"L":{{"N":1{exp}}}}}"#)).expect_err("a float");
        prop_assert!(
            err.path == "P.L.N"
                && (err.reason.contains("is a float") || err.reason.contains("does not fit in 64 bits"))
                || err.path == "P" && err.reason.contains("number out of range at line 1"),
            "{}", err
        );
    }
}

#[test]
fn binary_spelled_as_a_list_is_binary() {
    // Why `$binary` is not a generated key: an object is binary when
    // `$binary` is its one key (README, "The protocol in brief"), so a list of that
    // one key does not read back as a list.
    let kv = Kv::new().with(
        "L",
        Value::List(Kv::new().with("$binary", Value::Str("AAE=".into()))),
    );
    let text = serde_json::to_string(&kv).unwrap();
    assert_eq!(
        Kv::from_json_text(&text, "P").unwrap(),
        Kv::new().with("L", Value::Binary(vec![0, 1]))
    );
}
