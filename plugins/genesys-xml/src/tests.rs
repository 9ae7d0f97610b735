//! The format, natively: what the component runs is this same code.

use wasp_codec_sdk::{BadOperation, Entry, Kv, OpKind, Operation, Reply, ReplyKind, Value};

use crate::{MAX_DEPTH, MAX_OPERATIONS, MAX_PAIRS, decode, decode_replies, encode};

fn ops(entries: &[Entry]) -> Vec<&Operation> {
    entries
        .iter()
        .map(|e| match e {
            Entry::Op(op) => op,
            Entry::Bad(bad) => panic!("unexpected bad operation {bad:?}"),
        })
        .collect()
}

fn bad(entry: &Entry) -> &BadOperation {
    match entry {
        Entry::Bad(bad) => bad,
        Entry::Op(op) => panic!("expected a bad operation, got {op:?}"),
    }
}

const SIX: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a capture file -->
<messages>
  <interaction operation="submit" ExternalId="ord-88">
    <properties>
      <Queue>Inbound</Queue>
      <MediaType>workitem</MediaType>
      <Priority type="int"> 5 </Priority>
      <Customer type="kvlist">
        <Name>Ada &amp; Co &lt;3 &#x263A;</Name>
        <Segment>gold</Segment>
        <Empty type="kvlist"/>
      </Customer>
      <Blob type="bin">AAEC
        /w==</Blob>
      <Note><![CDATA[<b>bold</b>]]></Note>
      <Blank/>
    </properties>
  </interaction>
  <interaction operation="update" InteractionId="0001"><properties><Priority type="int">-7</Priority></properties></interaction>
  <interaction operation="hold" ExternalId="ord-88"/>
  <interaction operation="resume" ExternalId="ord-88"></interaction>
  <interaction operation="getInfo" InteractionId="0002"/>
  <interaction operation="stop" ExternalId="ord-41"/>
</messages>
"#;

#[test]
fn six_operations_decode_in_order() {
    let entries = decode(SIX.as_bytes()).unwrap();
    let ops = ops(&entries);
    let kinds: Vec<_> = ops.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        [
            OpKind::Submit,
            OpKind::Update,
            OpKind::Hold,
            OpKind::Resume,
            OpKind::GetInfo,
            OpKind::Stop
        ]
    );
    let submit = ops[0];
    assert_eq!(submit.external_id.as_deref(), Some("ord-88"));
    assert_eq!(submit.interaction_id, None);
    let expected = Kv::new()
        .with("Queue", Value::Str("Inbound".into()))
        .with("MediaType", Value::Str("workitem".into()))
        .with("Priority", Value::Int(5))
        .with(
            "Customer",
            Value::List(
                Kv::new()
                    .with("Name", Value::Str("Ada & Co <3 \u{263A}".into()))
                    .with("Segment", Value::Str("gold".into()))
                    .with("Empty", Value::List(Kv::new())),
            ),
        )
        .with("Blob", Value::Binary(vec![0, 1, 2, 255]))
        .with("Note", Value::Str("<b>bold</b>".into()))
        .with("Blank", Value::Str(String::new()));
    assert_eq!(submit.properties, expected);
    assert_eq!(ops[1].interaction_id.as_deref(), Some("0001"));
    assert_eq!(ops[1].properties.get("Priority"), Some(&Value::Int(-7)));
    assert_eq!(ops[5].external_id.as_deref(), Some("ord-41"));
    assert!(ops[5].properties.is_empty());
}

#[test]
fn one_interaction_as_the_root() {
    let doc = r#"<interaction operation="stop" InteractionId="i-1"/>"#;
    let entries = decode(doc.as_bytes()).unwrap();
    assert_eq!(ops(&entries)[0].kind, OpKind::Stop);
    let entries = decode(b"<messages/>").unwrap();
    assert!(entries.is_empty());
}

#[test]
fn a_bad_operation_is_its_own_entry_and_the_rest_decode() {
    let doc = r#"<messages>
  <interaction operation="submit" ExternalId="a"><properties><Q>x</Q></properties></interaction>
  <interaction operation="submit" ExternalId="b"><properties><Priority type="int">high</Priority></properties></interaction>
  <interaction operation="frobnicate" ExternalId="c"/>
  <interaction operation="submit" ExternalId="d"><properties><C type="kvlist"><X type="float">1.5</X></C></properties></interaction>
  <interaction operation="submit" ExternalId="e"><properties><B type="bin">!!</B></properties></interaction>
  <interaction operation="submit" ExternalId="f"><properties><N type="int">9223372036854775808</N></properties></interaction>
  <interaction ExternalId="g"/>
  <note>hello</note>
  <interaction operation="submit" ExternalId="h"><properties><C type="kvlist">text</C></properties></interaction>
  <interaction operation="submit" ExternalId="i"><properties><S>text<X/></S></properties></interaction>
  <interaction operation="stop" ExternalId="z"/>
</messages>"#;
    let entries = decode(doc.as_bytes()).unwrap();
    assert_eq!(entries.len(), 11);
    assert!(matches!(&entries[0], Entry::Op(op) if op.external_id.as_deref() == Some("a")));
    let b = bad(&entries[1]);
    assert_eq!(b.place, "interaction[2]/properties/Priority");
    assert!(b.description.contains("'high'"), "{}", b.description);
    assert_eq!(b.external_id.as_deref(), Some("b"));
    let c = bad(&entries[2]);
    assert_eq!(c.place, "interaction[3]");
    assert!(c.description.contains("unknown operation 'frobnicate'"));
    let d = bad(&entries[3]);
    assert_eq!(d.place, "interaction[4]/properties/C/X");
    assert!(d.description.contains("unknown type 'float'"));
    assert_eq!(bad(&entries[4]).place, "interaction[5]/properties/B");
    assert!(bad(&entries[4]).description.contains("base64"));
    assert!(bad(&entries[5]).description.contains("64 bits"));
    assert!(bad(&entries[6]).description.contains("no operation"));
    assert_eq!(bad(&entries[7]).place, "note[8]");
    assert_eq!(bad(&entries[8]).place, "interaction[9]/properties/C");
    assert_eq!(bad(&entries[9]).place, "interaction[10]/properties/S");
    assert!(matches!(&entries[10], Entry::Op(op) if op.kind == OpKind::Stop));
}

fn unreadable(doc: &[u8]) -> String {
    match decode(doc) {
        Err(e) => e,
        Ok(entries) => panic!("read {entries:?} from {:?}", String::from_utf8_lossy(doc)),
    }
}

#[test]
fn dtds_and_entities_are_refused() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<messages><interaction operation="submit"><properties><Q>&lol2;</Q></properties></interaction></messages>"#;
    let err = unreadable(bomb.as_bytes());
    assert!(
        err.contains("DTD") && err.contains("line 2, column 1"),
        "{err}"
    );
    let external = r#"<!DOCTYPE m SYSTEM "file:///etc/passwd"><m/>"#;
    assert!(unreadable(external.as_bytes()).contains("DTD"));
    let undefined = "<m>\n<interaction operation=\"submit\"><properties><Q>&xxe;</Q></properties></interaction></m>";
    let err = unreadable(undefined.as_bytes());
    assert!(err.contains("&xxe;") && err.contains("line 2"), "{err}");
    // Wherever it is: in an attribute, or outside any operation.
    assert!(
        unreadable(br#"<m><interaction operation="submit" ExternalId="&xxe;"/></m>"#)
            .contains("xxe")
    );
    assert!(unreadable(b"<m a=\"&xxe;\"/>").contains("xxe"));
    assert!(unreadable(b"<m>&xxe;</m>").contains("xxe"));
}

#[test]
fn malformed_documents_are_unreadable() {
    for (doc, word) in [
        (
            &b"<m><interaction operation=\"stop\"></m>"[..],
            "well-formed",
        ),
        (b"<m>", "ends inside"),
        (b"", "no root"),
        (b"just text", "outside the root"),
        (b"<a/><b/>", "second root"),
        (b"<m a=\"1\" a=\"2\"/>", "attribute"),
        (b"<m>\xff</m>", "UTF-8"),
        (
            b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><m/>",
            "encoding",
        ),
        (b"<m>a & b</m>", "well-formed"),
    ] {
        let err = unreadable(doc);
        assert!(err.contains(word), "{err} (expected {word})");
    }
}

#[test]
fn depth_is_bounded_without_recursion() {
    let deep = 10_000;
    let doc = format!("{}{}", "<a>".repeat(deep), "</a>".repeat(deep));
    let err = unreadable(doc.as_bytes());
    assert!(err.contains("nest deeper"), "{err}");

    // KV lists: 32 levels, the properties themselves being the first.
    let nested = |levels: usize| {
        let open = "<L type=\"kvlist\">".repeat(levels - 1);
        let close = "</L>".repeat(levels - 1);
        format!(
            "<m><interaction operation=\"submit\"><properties>{open}<V>x</V>{close}</properties></interaction></m>"
        )
    };
    let entries = decode(nested(MAX_DEPTH).as_bytes()).unwrap();
    assert!(matches!(entries[0], Entry::Op(_)));
    let entries = decode(nested(MAX_DEPTH + 1).as_bytes()).unwrap();
    assert!(bad(&entries[0]).description.contains("deeper than 32"));
}

#[test]
fn properties_are_bounded() {
    let pairs = |n: usize| "<P>1</P>".repeat(n);
    let doc = |n| {
        format!(
            "<m><interaction operation=\"submit\"><properties>{}</properties></interaction></m>",
            pairs(n)
        )
    };
    let entries = decode(doc(MAX_PAIRS).as_bytes()).unwrap();
    assert!(matches!(&entries[0], Entry::Op(op) if op.properties.0.len() == MAX_PAIRS));
    assert!(unreadable(doc(MAX_PAIRS + 1).as_bytes()).contains("properties"));
    // Operations too, bad ones included: each would get a reply.
    let ops = |n: usize| format!("<m>{}</m>", "<x/>".repeat(n));
    assert_eq!(
        decode(ops(MAX_OPERATIONS).as_bytes()).unwrap().len(),
        MAX_OPERATIONS
    );
    assert!(unreadable(ops(MAX_OPERATIONS + 1).as_bytes()).contains("operations"));
}

fn replies() -> Vec<Reply> {
    vec![
        Reply {
            tenant_id: Some(101),
            interaction_id: Some("0001".into()),
            external_id: Some("ord-88 \"quoted\" <&> 'x'\n\ttab".into()),
            media_type: Some("workitem".into()),
            queue: Some("Inbound".into()),
            properties: Kv::new()
                .with(
                    "Text",
                    Value::Str("a < b && c > d\r\nline\ttab ]]> é".into()),
                )
                .with("Padded", Value::Str("  both ends  ".into()))
                .with("N", Value::Int(i64::MIN))
                .with("B", Value::Binary(vec![0, 1, 2, 3, 254]))
                .with(
                    "L",
                    Value::List(
                        Kv::new()
                            .with("Inner", Value::List(Kv::new()))
                            .with("Inner", Value::Str(String::new())),
                    ),
                ),
            ..Reply::new(ReplyKind::Submitted)
        },
        Reply {
            code: Some(-3),
            description: Some("unknown ExternalId 'ord-41'".into()),
            external_id: Some("ord-41".into()),
            ..Reply::new(ReplyKind::Error)
        },
        Reply::new(ReplyKind::Stopped),
    ]
}

#[test]
fn replies_round_trip() {
    let replies = replies();
    let bytes = encode(&replies).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<messages>"));
    assert!(
        text.contains("operation=\"error\" ExternalId=\"ord-41\" code=\"-3\""),
        "{text}"
    );
    assert!(text.contains("<N type=\"int\">"), "{text}");
    assert_eq!(decode_replies(&bytes).unwrap(), replies);
    assert!(decode_replies(b"<messages><interaction operation=\"submit\"/></messages>").is_err());
    for kind in ReplyKind::ALL {
        let one = [Reply::new(kind)];
        assert_eq!(decode_replies(&encode(&one).unwrap()).unwrap(), one);
    }
}

#[test]
fn what_xml_cannot_carry_fails_the_document() {
    let mut r = Reply::new(ReplyKind::Info);
    r.properties = Kv::new().with("Bell", Value::Str("\u{7}".into()));
    let err = encode(&[r.clone()]).unwrap_err();
    assert!(
        err.contains("U+0007") && err.contains("properties/Bell"),
        "{err}"
    );
    r.properties = Kv::new().with("Two words", Value::Int(1));
    assert!(
        encode(&[r.clone()])
            .unwrap_err()
            .contains("not an XML element name")
    );
    r.properties = Kv::new();
    r.description = Some("\u{0}".into());
    assert!(encode(&[r]).unwrap_err().contains("description"));
}
