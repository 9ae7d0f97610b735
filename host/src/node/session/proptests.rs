//! Property tests of the frames a node sends ([`parse_hello`],
//! [`parse_frame`], and [`NodeFrame`] as `node-sim` reads them): any text
//! is read or refused with a reason, never a panic; frames written by
//! [`NodeFrame::to_text`] read back; broken frames, properties nested
//! beyond [`MAX_DEPTH`] and numbers beyond their range are refused.

use proptest::prelude::*;
use serde_json::Value as Json;

use super::{Incoming, parse_frame, parse_hello};
use crate::esp::Scalar;
use crate::kv::{Kv, MAX_DEPTH, Value};
use crate::node::frames::NodeFrame;
use crate::proptest_support::{assert_reason, config, mutate, mutation};

/// Both readers of a session's frames, and the node side's: no panic, and
/// a refusal says why.
fn read(text: &str) -> Result<Incoming, String> {
    if let Err(why) = parse_hello(text) {
        assert_reason(&why, text.as_bytes());
    }
    if let Err(e) = serde_json::from_str::<NodeFrame>(text) {
        assert_reason(&e.to_string(), text.as_bytes());
    }
    let frame = parse_frame(text);
    if let Err(why) = &frame {
        assert_reason(why, text.as_bytes());
    }
    frame
}

/// An id the host takes: 1 to 128 characters, no control characters.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._:-]{1,40}",
        1 => "[^\\p{Cc}]{1,20}",
    ]
}

fn kv(depth: u32) -> impl Strategy<Value = Kv> {
    let key = prop_oneof![
        3 => "[A-Za-z][A-Za-z0-9_]{0,8}",
        1 => any::<String>().prop_filter("not $binary", |k| k != "$binary"),
    ];
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        any::<String>().prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Binary),
    ];
    let value = leaf.prop_recursive(depth, 48, 4, move |inner| {
        proptest::collection::vec(("[A-Za-z]{1,6}", inner), 0..4).prop_map(|p| Value::List(Kv(p)))
    });
    proptest::collection::vec((key, value), 0..5).prop_map(Kv)
}

fn node_frame() -> impl Strategy<Value = NodeFrame> {
    prop_oneof![
        (id(), proptest::option::of(id()), kv(4)).prop_map(|(c, i, p)| NodeFrame::Done {
            correlation_id: c,
            interaction_id: i,
            properties: p,
        }),
        (id(), any::<u16>(), any::<String>()).prop_map(|(c, code, d)| NodeFrame::Error {
            correlation_id: c,
            code,
            description: d,
        }),
        (id(), id(), kv(4)).prop_map(|(i, n, p)| NodeFrame::Notify {
            interaction_id: i,
            notification: n,
            properties: p,
        }),
        Just(NodeFrame::Ping),
        Just(NodeFrame::Pong),
    ]
}

fn hello() -> impl Strategy<Value = NodeFrame> {
    (
        id().prop_filter("no edge whitespace", |n| n.trim() == n),
        proptest::collection::vec(
            prop_oneof![any::<i64>().prop_map(Json::from), id().prop_map(Json::from)],
            1..8,
        ),
        proptest::collection::vec(id(), 0..4),
        any::<u32>(),
    )
        .prop_map(|(node_id, tenants, media_types, window)| NodeFrame::Hello {
            node_id,
            tenants,
            media_types,
            window,
        })
}

/// JSON-ish frames from pieces.
fn frameish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just(r#""Type":"Done""#.to_string()),
        Just(r#""Type":"Notify""#.to_string()),
        Just(r#""Type":"Hello""#.to_string()),
        Just(r#""Type":7"#.to_string()),
        Just(r#""CorrelationId":"c""#.to_string()),
        Just(r#""InteractionId":"""#.to_string()),
        Just(r#""Properties":"#.to_string()),
        Just(r#""Code":70000"#.to_string()),
        Just(r#""Tenants":[101,"x"]"#.to_string()),
        Just(r#""Window":4294967296"#.to_string()),
        Just(r#""\u0007""#.to_string()),
        Just("null".to_string()),
        "-?[0-9]{1,22}",
        "[ -~]{0,3}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn any_text_is_read_or_refused(text in any::<String>()) {
        let _ = read(&text);
    }

    #[test]
    fn any_frameish_text_is_read_or_refused(text in frameish()) {
        let _ = read(&text);
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn written_frames_read_back(frame in node_frame()) {
        let text = frame.to_text();
        prop_assert_eq!(&serde_json::from_str::<NodeFrame>(&text).expect("reads back"), &frame);
        let read = read(&text).expect("a written frame is taken");
        match (read, frame) {
            (Incoming::Ping, NodeFrame::Ping) | (Incoming::Pong, NodeFrame::Pong) => {}
            (Incoming::Done(done), NodeFrame::Done { correlation_id, interaction_id, properties }) => {
                prop_assert_eq!(done.correlation_id, correlation_id);
                prop_assert_eq!(done.interaction_id, interaction_id);
                prop_assert_eq!(done.properties, properties);
            }
            (Incoming::Error(error), NodeFrame::Error { correlation_id, code, description }) => {
                prop_assert_eq!(error.correlation_id, correlation_id);
                prop_assert_eq!(error.code, code);
                prop_assert_eq!(error.description, description);
            }
            (Incoming::Notify(notify), NodeFrame::Notify { interaction_id, notification, properties }) => {
                prop_assert_eq!(notify.interaction_id, interaction_id);
                prop_assert_eq!(notify.notification, notification);
                prop_assert_eq!(notify.properties, properties);
            }
            (read, frame) => prop_assert!(false, "{:?} read as {:?}", frame, read),
        }
    }

    #[test]
    fn a_written_hello_reads_back(frame in hello()) {
        let text = frame.to_text();
        let hello = parse_hello(&text).expect("a written Hello is taken");
        let NodeFrame::Hello { node_id, tenants, media_types, window } = frame else {
            unreachable!()
        };
        prop_assert_eq!(hello.node_id, node_id);
        prop_assert_eq!(hello.media_types, media_types);
        prop_assert_eq!(hello.window, window);
        let scalars: Vec<Scalar> = tenants
            .iter()
            .map(|t| match t {
                Json::String(s) => Scalar::Str(s.clone()),
                n => Scalar::Int(n.as_i64().expect("generated as i64")),
            })
            .collect();
        prop_assert_eq!(hello.tenants, scalars);
        // Another frame after the Hello is refused by name.
        prop_assert_eq!(read(&text).expect_err("Hello twice"), "Hello was already received");
    }

    #[test]
    fn broken_frames_are_read_or_refused(frame in node_frame(), m in mutation()) {
        let changed = mutate(frame.to_text().into_bytes(), &m);
        // A WebSocket text frame is UTF-8: only those reach the parser.
        if let Ok(text) = std::str::from_utf8(&changed) {
            let _ = read(text);
        }
    }

    #[test]
    fn deep_properties_are_refused_by_the_cap(depth in (MAX_DEPTH + 1)..100_000usize, notify in any::<bool>()) {
        let deep = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let text = if notify {
            format!(r#"{{"Type":"Notify","InteractionId":"i","Notification":"n","Properties":{deep}}}"#)
        } else {
            format!(r#"{{"Type":"Done","CorrelationId":"c","Properties":{deep}}}"#)
        };
        let why = read(&text).expect_err("too deep");
        prop_assert!(why.contains("deeper than"), "{}", why);
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let why = read(&format!(r#"{{"Type":"Hello","NodeId":"n","Tenants":{deep}}}"#)).expect_err("arrays of arrays");
        prop_assert!(!why.is_empty());
    }

    #[test]
    fn numbers_out_of_range_are_refused(digits in "[1-9][0-9]{5,40}", field in 0..3usize) {
        let text = match field {
            0 => format!(r#"{{"Type":"Error","CorrelationId":"c","Code":{digits}}}"#),
            1 => format!(r#"{{"Type":"Done","CorrelationId":"c","Properties":{{"N":{digits}0000000000000000}}}}"#),
            _ => format!(r#"{{"Type":"Hello","NodeId":"n","Tenants":[1],"MediaTypes":["m"],"Window":{digits}00000}}"#),
        };
        // Code is a u16, Window a u32, a property an i64: all refused,
        // naming the frame and the type expected.
        let why = if field == 2 {
            parse_hello(&text).expect_err("Window too big")
        } else {
            parse_frame(&text).expect_err("out of range")
        };
        let expected = ["expected u16", "does not fit in 64 bits", "expected u32"][field];
        prop_assert!(why.contains(expected), "{}", why);
    }
}
