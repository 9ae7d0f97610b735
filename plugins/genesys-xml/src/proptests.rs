//! Property tests of the reader and writer: whatever the bytes, the reader
//! answers (a document, or why not) without panicking or recursing; what
//! the writer writes reads back the same; a broken, too deep, entity-laden
//! or non-UTF-8 variant of a good document is refused with a reason.
//!
//! Deterministic: a fixed seed and no persistence files, so CI runs the
//! same cases every time (`PROPTEST_CASES` does not change the count).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use wasp_codec_sdk::{Entry, Kv, Reply, ReplyKind, Value};

use crate::{MAX_DEPTH, MAX_ELEMENT_DEPTH, decode, decode_replies, encode};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5741_5350),
        ..Config::default()
    }
}

/// Both readers on `body`: no panic, and a refusal says why.
fn read_all(body: &[u8]) -> (Result<Vec<Entry>, String>, Result<Vec<Reply>, String>) {
    let entries = decode(body);
    if let Err(e) = &entries {
        assert!(!e.trim().is_empty(), "an empty reason for {body:?}");
    }
    if let Ok(entries) = &entries {
        for entry in entries {
            if let Entry::Bad(bad) = entry {
                assert!(!bad.description.trim().is_empty(), "{bad:?}");
                assert!(!bad.place.is_empty(), "{bad:?}");
            }
        }
    }
    let replies = decode_replies(body);
    if let Err(e) = &replies {
        assert!(!e.trim().is_empty(), "an empty reason for {body:?}");
    }
    (entries, replies)
}

/// Keys the writer can write: XML names without `:`.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z_][A-Za-z0-9_.-]{0,10}",
        1 => "[éЖ名_][a-zé0-9]{0,4}",
    ]
}

/// Text XML 1.0 carries: markup characters, whitespace (carriage returns
/// too), non-ASCII, `]]>`.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ -~]{0,20}",
        1 => "[ \t\r\n<>&\"']{0,6}",
        1 => "(]]>|é|\u{263A}|\u{1F600}|\u{FFFD}|x){0,5}",
    ]
}

fn kv(depth: u32) -> impl Strategy<Value = Kv> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        text().prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Binary),
    ];
    let value = leaf.prop_recursive(depth, 48, 4, |inner| {
        proptest::collection::vec((key(), inner), 0..4).prop_map(|pairs| Value::List(Kv(pairs)))
    });
    proptest::collection::vec((key(), value), 0..5).prop_map(Kv)
}

/// Attribute values: absent, or non-empty (an empty one reads as absent).
fn attr() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text().prop_filter("non-empty", |s| !s.is_empty()))
}

fn reply() -> impl Strategy<Value = Reply> {
    (
        proptest::sample::select(ReplyKind::ALL.to_vec()),
        (attr(), attr(), attr(), attr(), attr()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<i32>()),
        kv(6),
    )
        .prop_map(
            |(kind, (iid, eid, media, queue, description), tenant, code, properties)| Reply {
                interaction_id: iid,
                external_id: eid,
                media_type: media,
                queue,
                description,
                tenant_id: tenant,
                code,
                properties,
                ..Reply::new(kind)
            },
        )
}

fn replies() -> impl Strategy<Value = Vec<Reply>> {
    proptest::collection::vec(reply(), 0..4)
}

/// A small document of XML-ish pieces, to reach deeper than random bytes.
fn xmlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<messages>".to_string()),
        Just("</messages>".to_string()),
        Just("<interaction operation=\"submit\">".to_string()),
        Just("<interaction operation=\"stop\" ExternalId=\"e\"/>".to_string()),
        Just("</interaction>".to_string()),
        Just("<properties>".to_string()),
        Just("</properties>".to_string()),
        Just("<K type=\"kvlist\">".to_string()),
        Just("<K type=\"int\">".to_string()),
        Just("<K type=\"bin\">".to_string()),
        Just("<K type=\"odd\">".to_string()),
        Just("</K>".to_string()),
        Just("<K>".to_string()),
        Just("<K/>".to_string()),
        Just("<![CDATA[x]]>".to_string()),
        Just("<!-- c -->".to_string()),
        Just("<?pi x?>".to_string()),
        Just("<?xml version=\"1.0\" encoding=\"UTF-16\"?>".to_string()),
        Just("<!DOCTYPE m [<!ENTITY e \"x\">]>".to_string()),
        Just("&e;".to_string()),
        Just("&amp;".to_string()),
        Just("&#0;".to_string()),
        Just("&#x110000;".to_string()),
        Just("&#65;".to_string()),
        Just("&".to_string()),
        Just("<".to_string()),
        Just("a=\"&lt;\"".to_string()),
        "[0-9A-Za-z+/= -]{0,8}",
        "[^\u{0}]{0,4}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

/// A change to a good document.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
    Replace(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Replace(at, b)),
    ]
}

fn mutate(mut doc: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let len = doc.len();
    match *m {
        Mutation::Truncate(at) => doc.truncate(at % len),
        Mutation::Insert(at, b) => doc.insert(at % (len + 1), b),
        Mutation::Remove(at) => {
            doc.remove(at % len);
        }
        Mutation::Replace(at, b) => doc[at % len] = b,
    }
    doc
}

/// `<p>` nested `depth` deep around an interaction's properties.
fn nested_list(depth: usize) -> String {
    let mut doc = String::from("<m><interaction operation=\"submit\"><properties>");
    for _ in 0..depth {
        doc.push_str("<L type=\"kvlist\">");
    }
    doc.push_str("<X>1</X>");
    for _ in 0..depth {
        doc.push_str("</L>");
    }
    doc.push_str("</properties></interaction></m>");
    doc
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn any_bytes_are_read_or_refused(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = read_all(&body);
    }

    #[test]
    fn any_xmlish_text_is_read_or_refused(doc in xmlish()) {
        let _ = read_all(doc.as_bytes());
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn written_replies_read_back(replies in replies()) {
        let bytes = encode(&replies).expect("generated replies are writable");
        let (entries, read) = read_all(&bytes);
        prop_assert_eq!(read.expect("a written document reads back"), replies.clone());
        // As operations, every reply is a (bad: unknown operation) entry.
        prop_assert_eq!(entries.expect("a written document is well-formed").len(), replies.len());
    }

    #[test]
    fn broken_documents_are_refused_with_a_reason(replies in replies(), m in mutation()) {
        let bytes = encode(&replies).expect("generated replies are writable");
        let changed = mutate(bytes.clone(), &m);
        let (entries, _) = read_all(&changed);
        // Cut before the root's end tag closes: never a document.
        let closed = bytes.iter().rposition(|&b| b == b'>').unwrap_or_default();
        if let Mutation::Truncate(at) = m && at % bytes.len() <= closed {
            prop_assert!(entries.is_err(), "a truncated document read: {:?}", String::from_utf8_lossy(&changed));
        }
    }

    #[test]
    fn invalid_utf8_is_refused(replies in replies(), at in any::<usize>(), byte in prop_oneof![Just(0xFFu8), Just(0xC0), Just(0x80), Just(0xF5)]) {
        let mut bytes = encode(&replies).expect("generated replies are writable");
        let at = at % (bytes.len() + 1);
        bytes.insert(at, byte);
        let (entries, replies) = read_all(&bytes);
        let err = entries.expect_err("invalid UTF-8 is not a document");
        prop_assert!(err.contains("not UTF-8"), "{}", err);
        prop_assert!(replies.is_err());
    }

    #[test]
    fn dtds_and_entities_are_refused(
        replies in replies(),
        name in "[a-z]{1,6}".prop_filter("not predefined", |n| !["lt", "gt", "amp", "apos", "quot"].contains(&n.as_str())),
        system in any::<bool>(),
    ) {
        let bytes = encode(&replies).expect("generated replies are writable");
        let text = String::from_utf8(bytes).expect("written documents are UTF-8");
        let (decl, rest) = text.split_once('\n').expect("a declaration line");
        let entity = if system {
            format!("<!ENTITY {name} SYSTEM \"file:///etc/passwd\">")
        } else {
            format!("<!ENTITY {name} \"{}\">", "&lol;".repeat(8))
        };
        let with_dtd = format!("{decl}\n<!DOCTYPE messages [{entity}]>\n{rest}");
        let err = decode(with_dtd.as_bytes()).expect_err("a DTD is refused");
        prop_assert!(err.contains("DTD"), "{}", err);
        // The entity used without a DTD: refused by name.
        let used = text.replacen("<messages>", &format!("<messages>&{name};"), 1);
        let err = decode(used.as_bytes()).expect_err("an undeclared entity is refused");
        prop_assert!(err.contains(&format!("&{name};")), "{}", err);
    }

    #[test]
    fn deep_documents_are_refused_by_the_cap(depth in (MAX_ELEMENT_DEPTH + 1)..20_000usize, name in "[a-z]{1,3}") {
        let doc = format!("{}{}", format!("<{name}>").repeat(depth), format!("</{name}>").repeat(depth));
        let (entries, _) = read_all(doc.as_bytes());
        let err = entries.expect_err("too deep");
        prop_assert!(err.contains(&format!("deeper than {MAX_ELEMENT_DEPTH}")), "{}", err);
    }

    #[test]
    fn deep_lists_are_bad_operations(depth in 0..(MAX_ELEMENT_DEPTH - 3)) {
        let entries = decode(nested_list(depth).as_bytes()).expect("well-formed and within the element cap");
        prop_assert_eq!(entries.len(), 1);
        match &entries[0] {
            Entry::Op(op) => prop_assert!(depth < MAX_DEPTH, "{} levels read: {:?}", depth, op.kind),
            Entry::Bad(bad) => {
                prop_assert!(depth >= MAX_DEPTH, "{}: {:?}", depth, bad);
                prop_assert!(bad.description.contains(&format!("deeper than {MAX_DEPTH}")), "{:?}", bad);
            }
        }
    }

    #[test]
    fn huge_numbers_are_bad_values(digits in "-?[1-9][0-9]{18,59}", attr in any::<bool>()) {
        let fits = digits.parse::<i64>().is_ok();
        let doc = format!(
            "<m><interaction operation=\"update\" InteractionId=\"1\"><properties><N type=\"int\">{digits}</N></properties></interaction></m>"
        );
        match &decode(doc.as_bytes()).expect("well-formed")[0] {
            Entry::Op(op) => prop_assert!(fits && op.properties.0[0].1 == Value::Int(digits.parse().unwrap())),
            Entry::Bad(bad) => {
                prop_assert!(!fits);
                prop_assert!(bad.description.contains("not a whole number"), "{:?}", bad);
                prop_assert!(bad.place.ends_with("properties/N"), "{:?}", bad);
            }
        }
        let field = if attr { "TenantId" } else { "code" };
        let doc = format!("<m><interaction operation=\"info\" {field}=\"{digits}\"/></m>");
        let err = decode_replies(doc.as_bytes()).expect_err("out of range");
        prop_assert!(err.contains(field), "{}", err);
    }
}
