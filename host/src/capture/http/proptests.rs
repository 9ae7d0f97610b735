//! Property tests of the SOAP reader ([`parse_envelope`]) and of the JSON
//! capture request reader ([`parse_json`]): any body is read or refused
//! with a reason, never a panic; a Submit built from a generated KV list
//! reads back as that list; broken, too deep, DTD- or entity-laden and
//! non-UTF-8 variants are refused by the documented caps.

use proptest::prelude::*;

use super::{IXN, MAX_ELEMENT_DEPTH, SOAP_ENV, SoapCall, parse_envelope, parse_json};
use crate::kv::{self, Kv, Value};
use crate::node::frames::OpKind;
use crate::proptest_support::{assert_reason, config, mutate, mutation, shown};

/// Reads `body`; a refusal must say why.
fn read(body: &[u8]) -> Option<SoapCall> {
    match parse_envelope(body) {
        Ok(call) => Some(call),
        Err(refused) => {
            assert_reason(&refused.fault.message, body);
            assert!(
                ["Client", "VersionMismatch", "MustUnderstand"].contains(&refused.code),
                "{}",
                refused.code
            );
            None
        }
    }
}

/// Escaped for element content, carriage returns included (a raw one
/// would be read as a newline).
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

fn write_kv(out: &mut String, kv: &Kv) {
    for (key, value) in &kv.0 {
        out.push_str("<i:kvitem><i:key>");
        out.push_str(&escape(key));
        out.push_str("</i:key><i:value>");
        match value {
            Value::Str(s) => {
                out.push_str("<i:ValueString>");
                out.push_str(&escape(s));
                out.push_str("</i:ValueString>");
            }
            Value::Int(n) => out.push_str(&format!("<i:ValueInt> {n} </i:ValueInt>")),
            Value::Binary(b) => {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(b);
                out.push_str(&format!("<i:ValueBinary>{b64}</i:ValueBinary>"));
            }
            Value::List(inner) => {
                out.push_str("<i:ValueList>");
                write_kv(out, inner);
                out.push_str("</i:ValueList>");
            }
        }
        out.push_str("</i:value></i:kvitem>");
    }
}

/// A Submit of `user_data` for tenant 101, named by `external_id`.
fn submit(external_id: &str, user_data: &Kv) -> String {
    let mut out = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:i="{IXN}"><s:Header/><s:Body><i:Submit>
<i:TenantId>101</i:TenantId><i:ExternalId>{}</i:ExternalId><i:UserData>"#,
        escape(external_id)
    );
    write_kv(&mut out, user_data);
    out.push_str("</i:UserData></i:Submit></s:Body></s:Envelope>\n");
    out
}

/// Text XML 1.0 carries.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ -~]{0,16}",
        1 => "[ \t\r\n<>&\"']{0,6}",
        1 => "(]]>|é|\u{263A}|\u{1F600}|x){0,5}",
    ]
}

fn kv(depth: u32) -> impl Strategy<Value = Kv> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        text().prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Binary),
    ];
    let value = leaf.prop_recursive(depth, 48, 4, |inner| {
        proptest::collection::vec((text(), inner), 0..4).prop_map(|p| Value::List(Kv(p)))
    });
    proptest::collection::vec((text(), value), 0..5).prop_map(Kv)
}

/// A small envelope of SOAP-ish pieces, to reach past the first element.
fn soapish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(format!(
            r#"<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:i="{IXN}">"#
        )),
        Just("</s:Envelope>".to_string()),
        Just("<s:Body>".to_string()),
        Just("</s:Body>".to_string()),
        Just("<s:Header><x s:mustUnderstand=\"1\"/></s:Header>".to_string()),
        Just("<i:Submit>".to_string()),
        Just("</i:Submit>".to_string()),
        Just("<i:Stop><i:InteractionId>1</i:InteractionId></i:Stop>".to_string()),
        Just("<i:Ping/>".to_string()),
        Just("<i:UserData>".to_string()),
        Just("</i:UserData>".to_string()),
        Just("<i:kvitem><i:key>k</i:key><i:value>".to_string()),
        Just("</i:value></i:kvitem>".to_string()),
        Just("<i:ValueList>".to_string()),
        Just("</i:ValueList>".to_string()),
        Just("<i:ValueInt>99999999999999999999</i:ValueInt>".to_string()),
        Just("<i:ValueBinary>!!</i:ValueBinary>".to_string()),
        Just("<u:x>".to_string()),
        Just("<!DOCTYPE e [<!ENTITY x \"y\">]>".to_string()),
        Just("&x;".to_string()),
        Just("&#0;".to_string()),
        Just("&lt;".to_string()),
        Just("<![CDATA[c]]>".to_string()),
        Just("<?xml version=\"1.0\" encoding=\"latin1\"?>".to_string()),
        "[ -~]{0,4}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn any_bytes_are_read_or_refused(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        read(&body);
        if let Err(fault) = parse_json(OpKind::Submit, &body) {
            assert_reason(&fault.message, &body);
        }
    }

    #[test]
    fn any_soapish_text_is_read_or_refused(body in soapish()) {
        read(body.as_bytes());
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn a_written_submit_reads_back(external_id in "[A-Za-z0-9._-]{1,40}", user_data in kv(6)) {
        let body = submit(&external_id, &user_data);
        let Some(SoapCall::Op(op)) = read(body.as_bytes()) else {
            panic!("not read: {}", shown(body.as_bytes()));
        };
        prop_assert_eq!(op.kind, OpKind::Submit);
        prop_assert_eq!(op.external_id.as_deref(), Some(external_id.as_str()));
        let mut expected = Kv::new().with("TenantId", Value::Int(101));
        expected.0.extend(user_data.0);
        prop_assert_eq!(op.properties, expected);
    }

    #[test]
    fn broken_envelopes_are_refused_with_a_reason(user_data in kv(4), m in mutation()) {
        let body = submit("e-1", &user_data).into_bytes();
        read(&mutate(body, &m));
    }

    #[test]
    fn truncated_envelopes_are_refused(user_data in kv(4), at in any::<usize>()) {
        let body = submit("e-1", &user_data).into_bytes();
        let end = body.iter().rposition(|&b| b == b'>').unwrap_or_default();
        let cut = &body[..at % (end + 1)];
        prop_assert!(read(cut).is_none(), "read: {}", shown(cut));
    }

    #[test]
    fn invalid_utf8_is_refused(user_data in kv(4), at in any::<usize>(), byte in prop_oneof![Just(0xFFu8), Just(0xC0), Just(0x80), Just(0xF5)]) {
        let mut body = submit("e-1", &user_data).into_bytes();
        let at = at % (body.len() + 1);
        body.insert(at, byte);
        let refused = parse_envelope(&body).expect_err("not UTF-8");
        prop_assert!(refused.fault.message.contains("not UTF-8"), "{}", refused.fault.message);
    }

    #[test]
    fn dtds_and_entities_are_refused(
        user_data in kv(3),
        name in "[a-z]{1,6}".prop_filter("not predefined", |n| !["lt", "gt", "amp", "apos", "quot"].contains(&n.as_str())),
        system in any::<bool>(),
    ) {
        let body = submit("e-1", &user_data);
        let (decl, rest) = body.split_once('\n').expect("a declaration line");
        let entity = if system {
            format!("<!ENTITY {name} SYSTEM \"file:///etc/passwd\">")
        } else {
            format!("<!ENTITY {name} \"{}\">", "&lol;".repeat(8))
        };
        let with_dtd = format!("{decl}\n<!DOCTYPE s:Envelope [{entity}]>\n{rest}");
        let refused = parse_envelope(with_dtd.as_bytes()).expect_err("a DTD is refused");
        prop_assert!(refused.fault.message.contains("DTD"), "{}", refused.fault.message);
        let used = body.replacen("<i:ExternalId>", &format!("<i:ExternalId>&{name};"), 1);
        let refused = parse_envelope(used.as_bytes()).expect_err("an entity is refused");
        prop_assert!(refused.fault.message.contains(&format!("&{name};")), "{}", refused.fault.message);
    }

    #[test]
    fn deep_elements_are_refused_by_the_cap(depth in (MAX_ELEMENT_DEPTH + 1)..50_000usize) {
        let body = format!(
            r#"<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body>{}{}</s:Body></s:Envelope>"#,
            "<a>".repeat(depth),
            "</a>".repeat(depth)
        );
        let refused = parse_envelope(body.as_bytes()).expect_err("too deep");
        prop_assert!(
            refused.fault.message.contains(&format!("deeper than {MAX_ELEMENT_DEPTH}")),
            "{}", refused.fault.message
        );
    }

    #[test]
    fn deep_lists_are_refused_by_the_kv_cap(depth in 0..(2 * kv::MAX_DEPTH)) {
        let mut inner = Kv::new().with("X", Value::Int(1));
        for _ in 0..depth {
            inner = Kv::new().with("L", Value::List(inner));
        }
        let body = submit("e-1", &inner);
        match read(body.as_bytes()) {
            Some(SoapCall::Op(op)) => {
                prop_assert!(depth < kv::MAX_DEPTH, "{} levels read", depth);
                prop_assert_eq!(op.properties.0.len(), 2);
            }
            Some(SoapCall::Ping) => prop_assert!(false, "a Ping"),
            None => {
                prop_assert!(depth >= kv::MAX_DEPTH, "{} levels refused", depth);
                let refused = parse_envelope(body.as_bytes()).expect_err("refused");
                prop_assert!(refused.fault.message.contains("deeper than"), "{}", refused.fault.message);
            }
        }
    }

    #[test]
    fn numbers_beyond_64_bits_are_refused(digits in "-?[1-9][0-9]{19,80}") {
        let body = format!(
            r#"<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:i="{IXN}"><s:Body><i:Update><i:InteractionId>1</i:InteractionId><i:UserData><i:kvitem><i:key>N</i:key><i:value><i:ValueInt>{digits}</i:ValueInt></i:value></i:kvitem></i:UserData></i:Update></s:Body></s:Envelope>"#
        );
        let refused = parse_envelope(body.as_bytes()).expect_err("too big");
        prop_assert!(refused.fault.message.contains("ValueInt"), "{}", refused.fault.message);
    }
}
