//! Fault codes (PROTOCOL.md) and faults, without any transport.
//!
//! A [`Fault`] says what went wrong in the protocol's terms: its code, a
//! message, a component's own code for 3005, and a [`Cause`] where the code
//! alone does not say enough for a transport to answer well. Each transport
//! maps a fault itself: HTTP to a status (`esp::http::status_of`), a node
//! session to an `Error` frame, a file capture point to a `.reason` file
//! and an `error` reply, a SOAP capture point to a `Fault` element.

/// The fault codes of the wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultCode {
    Unsupported = 2000,
    NoServer = 2001,
    LostConnection = 2002,
    NotAccessible = 2003,
    InProgress = 2004,
    MultipleOwners = 2005,
    InvalidRequest = 3000,
    Tenant = 3001,
    Timeout = 3002,
    Overloaded = 3003,
    Unauthorized = 3004,
    Component = 3005,
}

impl FaultCode {
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

/// What a transport may need beyond the code to answer a fault well (an
/// HTTP status, a SOAP fault code). Most faults need nothing more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cause {
    /// The code says it all.
    #[default]
    Code,
    /// The named target (a cluster, a capture point) does not exist (2001).
    UnknownTarget,
    /// The caller is known but not allowed this (3004).
    Forbidden,
    /// The peer was too slow sending its request (3000).
    SlowPeer,
    /// The request's content type is not one the target takes (3000).
    ContentType,
    /// Nothing is wrong with the operation: no node can take it now (none
    /// serves its tenant and media type, its node is not connected, the
    /// waiting room is full). A capture point keeps the item and tries
    /// again later instead of answering with the fault.
    NodeUnavailable,
}

/// A fault, answered as `Event3rdServerFault` over HTTP and node sessions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault {}: {message}", code.as_u16())]
pub struct Fault {
    pub code: FaultCode,
    pub message: String,
    /// The component's own code, for 3005.
    pub component_code: Option<i32>,
    pub cause: Cause,
}

impl Fault {
    pub fn new(code: FaultCode, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
            component_code: None,
            cause: Cause::Code,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Fault::new(FaultCode::InvalidRequest, message)
    }

    pub fn unknown_cluster(name: &str) -> Self {
        Fault::new(FaultCode::NoServer, format!("no cluster '{name}'"))
            .because(Cause::UnknownTarget)
    }

    /// The same fault with a cause a transport maps.
    pub fn because(self, cause: Cause) -> Self {
        Fault { cause, ..self }
    }

    /// 3004, authenticated but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Fault::new(FaultCode::Unauthorized, message).because(Cause::Forbidden)
    }

    /// A fault code a node sent: a protocol code keeps its meaning; any
    /// other is reported as a component fault carrying it.
    pub fn from_code(code: u16, message: String) -> Self {
        use FaultCode::*;
        let known = [
            Unsupported,
            NoServer,
            LostConnection,
            NotAccessible,
            InProgress,
            MultipleOwners,
            InvalidRequest,
            Tenant,
            Timeout,
            Overloaded,
            Unauthorized,
            Component,
        ];
        match known.into_iter().find(|k| k.as_u16() == code) {
            Some(k) => Fault::new(k, message),
            None => Fault::component(i32::from(code), message),
        }
    }

    pub fn component(code: i32, message: String) -> Self {
        Fault {
            component_code: Some(code),
            ..Fault::new(FaultCode::Component, message)
        }
    }
}
