//! Frames of a node session (PROTOCOL.md, "Node sessions"): JSON objects
//! with a `Type` field, in Genesys-style PascalCase. ESP frames
//! (`Request3rdServer`, `Event3rdServerResponse`/`Fault`) reuse the ESP
//! types of [`crate::esp`].
//!
//! Both sides live here: the host parses [`NodeFrame`]s and writes
//! [`HostFrame`]s; `node-sim` does the opposite.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::kv::Kv;

/// Protocol version in `Welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The kinds of interaction operations the host sends to nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpKind {
    Submit,
    Update,
    Hold,
    Resume,
    Stop,
    GetInfo,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Submit => "Submit",
            OpKind::Update => "Update",
            OpKind::Hold => "Hold",
            OpKind::Resume => "Resume",
            OpKind::Stop => "Stop",
            OpKind::GetInfo => "GetInfo",
        }
    }
}

/// Host → node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "Type", rename_all_fields = "PascalCase")]
pub enum HostFrame {
    Welcome {
        host_id: String,
        protocol_version: u32,
    },
    Refused {
        code: u16,
        description: String,
    },
    Submit {
        correlation_id: String,
        capture_point: String,
        tenant_id: u32,
        media_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
        #[serde(default)]
        properties: Kv,
    },
    Update(OpFrame),
    Hold(OpFrame),
    Resume(OpFrame),
    Stop(OpFrame),
    GetInfo(OpFrame),
    /// The host could not make sense of a node frame; the session goes on.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlation_id: Option<String>,
        code: u16,
        description: String,
    },
    Ping,
    Pong,
}

/// An operation on an existing interaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpFrame {
    pub correlation_id: String,
    pub interaction_id: String,
    #[serde(default)]
    pub properties: Kv,
}

/// Node → host (except `Request3rdServer`, read by [`crate::esp::parse`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "Type", rename_all_fields = "PascalCase")]
pub enum NodeFrame {
    Hello {
        node_id: String,
        /// Tenant ids (or names).
        tenants: Vec<Json>,
        media_types: Vec<String>,
        window: u32,
    },
    Done {
        correlation_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interaction_id: Option<String>,
        #[serde(default)]
        properties: Kv,
    },
    Error {
        correlation_id: String,
        code: u16,
        #[serde(default)]
        description: String,
    },
    Notify {
        interaction_id: String,
        notification: String,
        #[serde(default)]
        properties: Kv,
    },
    Ping,
    Pong,
}

impl HostFrame {
    /// The frame for an operation.
    pub fn op(kind: OpKind, frame: OpFrame) -> HostFrame {
        match kind {
            OpKind::Update => HostFrame::Update(frame),
            OpKind::Hold => HostFrame::Hold(frame),
            OpKind::Resume => HostFrame::Resume(frame),
            OpKind::Stop => HostFrame::Stop(frame),
            OpKind::GetInfo | OpKind::Submit => HostFrame::GetInfo(frame),
        }
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("frames always serialize")
    }
}

impl NodeFrame {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("frames always serialize")
    }
}

/// What kind of frame a text is, by its `Type` (or `Event`) field.
pub fn frame_type(json: &Json) -> Option<&str> {
    json.get("Type")
        .or_else(|| json.get("Event"))
        .and_then(Json::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_match_the_protocol_examples() {
        let hello: NodeFrame = serde_json::from_value(json!({"Type":"Hello","NodeId":"is-1",
            "Tenants":[101,102],"MediaTypes":["email","workitem"],"Window":100}))
        .unwrap();
        assert!(matches!(hello, NodeFrame::Hello { window: 100, .. }));
        let submit = HostFrame::Submit {
            correlation_id: "c-17".into(),
            capture_point: "orders".into(),
            tenant_id: 101,
            media_type: "workitem".into(),
            queue: Some("Inbound".into()),
            external_id: Some("ord-88".into()),
            properties: Kv::new(),
        };
        assert_eq!(
            serde_json::to_value(&submit).unwrap(),
            json!({"Type":"Submit","CorrelationId":"c-17","CapturePoint":"orders","TenantId":101,
                "MediaType":"workitem","Queue":"Inbound","ExternalId":"ord-88","Properties":{}})
        );
        let stop = HostFrame::op(
            OpKind::Stop,
            OpFrame {
                correlation_id: "c-18".into(),
                interaction_id: "0001AB".into(),
                properties: Kv::new(),
            },
        );
        assert_eq!(
            serde_json::to_value(&stop).unwrap(),
            json!({"Type":"Stop","CorrelationId":"c-18","InteractionId":"0001AB","Properties":{}})
        );
        let done: NodeFrame = serde_json::from_value(
            json!({"Type":"Done","CorrelationId":"c-17","InteractionId":"0001AB","Properties":{"A":1}}),
        )
        .unwrap();
        assert!(matches!(done, NodeFrame::Done { .. }));
        assert_eq!(
            serde_json::to_value(HostFrame::Ping).unwrap(),
            json!({"Type":"Ping"})
        );
    }
}
