//! The format, natively: what the component runs is this same code.

use wasp_codec_sdk::{BadOperation, Entry, Kv, OpKind, Reply, ReplyKind, Value};

use crate::{MAX_DEPTH, MAX_OPERATIONS, MAX_PAIRS, decode, decode_replies, encode};

fn bad(entry: &Entry) -> &BadOperation {
    match entry {
        Entry::Bad(bad) => bad,
        Entry::Op(op) => panic!("expected a bad operation, got {op:?}"),
    }
}

#[test]
fn six_operations_decode_in_order_with_kv_values() {
    let doc = r#"[
      {"operation":"submit","ExternalId":"ord-88","Properties":{
         "Queue":"Inbound","Priority":5,"Z":-1,"Tags":{"b":1,"a":2,"b":"again"},
         "Blob":{"$binary":"AAEC/w=="},"Empty":{}}},
      {"operation":"update","InteractionId":"0001","Properties":{"Priority":7}},
      {"operation":"hold","ExternalId":"ord-88"},
      {"operation":"resume","ExternalId":"ord-88"},
      {"operation":"getinfo","InteractionId":"0002"},
      {"operation":"stop","ExternalId":"ord-41"}
    ]"#;
    let entries = decode(doc.as_bytes()).unwrap();
    let ops: Vec<_> = entries
        .iter()
        .map(|e| match e {
            Entry::Op(op) => op,
            Entry::Bad(b) => panic!("{b:?}"),
        })
        .collect();
    let kinds: Vec<_> = ops.iter().map(|o| o.kind).collect();
    use OpKind::*;
    assert_eq!(kinds, [Submit, Update, Hold, Resume, GetInfo, Stop]);
    assert_eq!(
        ops[0].properties,
        Kv::new()
            .with("Queue", Value::Str("Inbound".into()))
            .with("Priority", Value::Int(5))
            .with("Z", Value::Int(-1))
            .with(
                "Tags",
                Value::List(
                    Kv::new()
                        .with("b", Value::Int(1))
                        .with("a", Value::Int(2))
                        .with("b", Value::Str("again".into()))
                )
            )
            .with("Blob", Value::Binary(vec![0, 1, 2, 255]))
            .with("Empty", Value::List(Kv::new()))
    );
    assert_eq!(ops[0].external_id.as_deref(), Some("ord-88"));
    assert_eq!(ops[1].interaction_id.as_deref(), Some("0001"));
    // One object alone is one operation.
    let one = decode(br#"{"operation":"stop","ExternalId":"x"}"#).unwrap();
    assert!(matches!(&one[0], Entry::Op(op) if op.kind == OpKind::Stop));
    assert!(decode(b"[]").unwrap().is_empty());
}

#[test]
fn a_bad_operation_is_its_own_entry_and_the_rest_decode() {
    let doc = r#"[
      {"operation":"submit","ExternalId":"a"},
      {"operation":"submit","ExternalId":"b","Properties":{"Tags":[1,2]}},
      {"operation":"frobnicate","InteractionId":"c"},
      {"operation":"submit","Properties":{"L":{"x":1.5}}},
      {"operation":"submit","Properties":{"B":{"$binary":"!!"}}},
      {"operation":"submit","Properties":{"N":18446744073709551615}},
      {"operation":"submit","Queue":"Inbound"},
      {"ExternalId":"h"},
      "not an object",
      {"operation":"submit","Properties":{"T":true,"U":null}},
      {"operation":"submit","Properties":"x"},
      {"operation":"stop","ExternalId":"z"}
    ]"#;
    let entries = decode(doc.as_bytes()).unwrap();
    assert_eq!(entries.len(), 12);
    assert!(matches!(&entries[0], Entry::Op(_)));
    let b = bad(&entries[1]);
    assert_eq!(b.place, "[1].Properties.Tags");
    assert!(b.description.contains("an array"), "{}", b.description);
    assert_eq!(b.external_id.as_deref(), Some("b"));
    let c = bad(&entries[2]);
    assert_eq!(c.place, "[2].operation");
    assert!(c.description.contains("unknown operation 'frobnicate'"));
    assert_eq!(c.interaction_id.as_deref(), Some("c"));
    assert_eq!(bad(&entries[3]).place, "[3].Properties.L.x");
    assert!(bad(&entries[3]).description.contains("float"));
    assert_eq!(bad(&entries[4]).place, "[4].Properties.B.$binary");
    assert!(bad(&entries[5]).description.contains("64 bits"));
    assert!(
        bad(&entries[6])
            .description
            .contains("unknown field 'Queue'")
    );
    assert_eq!(bad(&entries[7]).place, "[7].operation");
    assert_eq!(bad(&entries[8]).place, "[8]");
    assert_eq!(bad(&entries[9]).place, "[9].Properties.T");
    assert_eq!(bad(&entries[10]).place, "[10].Properties");
    assert!(matches!(&entries[11], Entry::Op(op) if op.kind == OpKind::Stop));
    // A lone object's paths have no index.
    let one = decode(br#"{"operation":"submit","Properties":{"A":{"B":false}}}"#).unwrap();
    assert_eq!(bad(&one[0]).place, "Properties.A.B");
}

#[test]
fn what_is_not_a_document_of_objects_is_unreadable() {
    for (doc, word) in [
        (&b"<xml/>"[..], "not JSON"),
        (b"", "not JSON"),
        (b"{\"operation\":\"stop\"", "not JSON"),
        (b"{} {}", "not JSON"),
        (b"\"text\"", "found a string"),
        (b"42", "found an integer"),
        (
            b"{\"operation\":\"stop\",\"ExternalId\":\"\xff\"}",
            "not JSON",
        ),
    ] {
        let err = decode(doc).unwrap_err();
        assert!(err.contains(word), "{err} (expected {word})");
    }
}

#[test]
fn depth_and_size_are_bounded() {
    let deep = 10_000;
    let doc = format!("{}{}", "[".repeat(deep), "]".repeat(deep));
    assert!(decode(doc.as_bytes()).unwrap_err().contains("recursion"));
    let nested = |levels: usize| {
        let open = "{\"n\":".repeat(levels);
        let close = "}".repeat(levels);
        format!("{{\"operation\":\"submit\",\"Properties\":{open}1{close}}}")
    };
    assert!(matches!(
        &decode(nested(MAX_DEPTH).as_bytes()).unwrap()[0],
        Entry::Op(_)
    ));
    let entries = decode(nested(MAX_DEPTH + 1).as_bytes()).unwrap();
    assert!(bad(&entries[0]).description.contains("deeper than 32"));
    let many = format!(
        "{{\"operation\":\"submit\",\"Properties\":{{{}}}}}",
        vec!["\"k\":1"; MAX_PAIRS].join(",")
    );
    assert!(decode(many.as_bytes()).unwrap_err().contains("properties"));
    let ops = |n: usize| format!("[{}]", vec!["1"; n].join(","));
    assert_eq!(
        decode(ops(MAX_OPERATIONS).as_bytes()).unwrap().len(),
        MAX_OPERATIONS
    );
    assert!(
        decode(ops(MAX_OPERATIONS + 1).as_bytes())
            .unwrap_err()
            .contains("operations")
    );
}

#[test]
fn replies_round_trip() {
    let replies = vec![
        Reply {
            interaction_id: Some("0001".into()),
            external_id: Some("ord-88 \"q\" \\ \u{1}".into()),
            tenant_id: Some(101),
            media_type: Some("workitem".into()),
            queue: Some("Inbound".into()),
            properties: Kv::new()
                .with("A", Value::Int(i64::MIN))
                .with("A", Value::Str("again".into()))
                .with("B", Value::Binary(vec![1, 2, 3]))
                .with(
                    "L",
                    Value::List(
                        Kv::new()
                            .with("$binary", Value::Int(1))
                            .with("x", Value::List(Kv::new())),
                    ),
                ),
            ..Reply::new(ReplyKind::Info)
        },
        Reply {
            code: Some(404),
            description: Some("unknown ExternalId".into()),
            ..Reply::new(ReplyKind::Error)
        },
    ];
    let bytes = encode(&replies).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with(r#"[{"operation":"info","InteractionId":"0001","ExternalId":"#),
        "{text}"
    );
    assert!(
        text.contains(r#"{"operation":"error","code":404,"description":"unknown ExternalId"}"#)
    );
    assert_eq!(decode_replies(&bytes).unwrap(), replies);
    for kind in ReplyKind::ALL {
        let one = [Reply::new(kind)];
        assert_eq!(decode_replies(&encode(&one).unwrap()).unwrap(), one);
    }
    assert_eq!(encode(&[]).unwrap(), b"[]\n");
    // A list whose one key is `$binary` would read back as binary.
    let mut r = Reply::new(ReplyKind::Info);
    r.properties = Kv::new().with(
        "L",
        Value::List(Kv::new().with("$binary", Value::Str("AAEC".into()))),
    );
    let err = encode(&[r]).unwrap_err();
    assert!(
        err.contains("Properties.L") && err.contains("$binary"),
        "{err}"
    );
}
