//! Bearer tokens with roles (`node`, `admin`, `capture`) and, for node
//! tokens, the tenants they may use. With no tokens configured every call
//! is allowed and wasp listens on loopback only (see `main.rs`).
//!
//! A token comes in `Authorization: Bearer <token>` or, for WebSockets,
//! `?token=`. Missing or unknown: 3004 with HTTP 401. Known but of another
//! role, or a tenant it does not allow: 3004 with HTTP 403. An `admin`
//! token may do everything.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};

use crate::config::{Config, Role};
use crate::fault::{Fault, FaultCode};

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    /// For node tokens: the tenant ids it may use. `None`: any.
    pub tenants: Option<Vec<u32>>,
}

#[derive(Debug, Default)]
pub struct Auth {
    grants: HashMap<String, Grant>,
}

impl Auth {
    pub fn from_config(config: &Config) -> Auth {
        let grants = config
            .tokens
            .iter()
            .map(|t| {
                let tenants = (t.role == Role::Node).then(|| {
                    t.tenants
                        .iter()
                        .filter_map(|r| config.tenant(r).map(|c| c.id))
                        .collect()
                });
                (
                    t.token.clone(),
                    Grant {
                        role: t.role,
                        tenants,
                    },
                )
            })
            .collect();
        Auth { grants }
    }

    /// Whether tokens are configured at all.
    pub fn enabled(&self) -> bool {
        !self.grants.is_empty()
    }

    /// Checks a call that needs `role`. `Ok(None)` when auth is off.
    pub fn check(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        role: Role,
    ) -> Result<Option<Grant>, Fault> {
        if !self.enabled() {
            return Ok(None);
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let Some(token) = bearer.or(query_token) else {
            return Err(Fault::new(
                FaultCode::Unauthorized,
                "a bearer token is required",
            ));
        };
        let Some(grant) = self.grants.get(token) else {
            return Err(Fault::new(FaultCode::Unauthorized, "unknown token"));
        };
        if grant.role != role && grant.role != Role::Admin {
            return Err(Fault::forbidden(format!(
                "a {:?} token cannot be used here ({:?} role needed)",
                grant.role, role
            )));
        }
        Ok(Some(grant.clone()))
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC
/// 9110, 11.1).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k "] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header}");
        }
        for header in ["Basic t0k", "Bearert0k", "Bearer", "Bearer  ", "t0k"] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }
}
