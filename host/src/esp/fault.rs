//! ESP fault codes (PROTOCOL.md) and their one mapping to HTTP.

use axum::http::StatusCode;

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

    /// The HTTP status the table in PROTOCOL.md gives (2001 on an unknown
    /// cluster is 404, set by [`Fault::unknown_cluster`]).
    pub fn status(self) -> StatusCode {
        match self {
            FaultCode::Unsupported | FaultCode::InvalidRequest | FaultCode::Tenant => {
                StatusCode::BAD_REQUEST
            }
            FaultCode::NoServer | FaultCode::NotAccessible | FaultCode::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            FaultCode::LostConnection => StatusCode::BAD_GATEWAY,
            FaultCode::InProgress | FaultCode::MultipleOwners => StatusCode::CONFLICT,
            FaultCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            FaultCode::Unauthorized => StatusCode::UNAUTHORIZED,
            FaultCode::Component => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// A fault answered as `Event3rdServerFault`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault {}: {message}", code.as_u16())]
pub struct Fault {
    pub code: FaultCode,
    pub message: String,
    /// The component's own code, for 3005.
    pub component_code: Option<i32>,
    pub status: StatusCode,
}

impl Fault {
    pub fn new(code: FaultCode, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
            component_code: None,
            status: code.status(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Fault::new(FaultCode::InvalidRequest, message)
    }

    pub fn unknown_cluster(name: &str) -> Self {
        Fault {
            status: StatusCode::NOT_FOUND,
            ..Fault::new(FaultCode::NoServer, format!("no cluster '{name}'"))
        }
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
