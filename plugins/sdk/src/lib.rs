//! # wasp-sdk: ESP services for wasp in a few lines of Rust
//!
//! A wasp plugin is a Wasm component exporting the `wasp:esp/service`
//! interface (see `wit/esp.wit`). This crate hides the generated bindings
//! behind a small trait and a pleasant KV list type:
//!
//! ```ignore
//! use wasp_sdk::{Fault, Kv, Request, Service};
//!
//! struct Hello;
//!
//! impl Service for Hello {
//!     const SERVICE_TYPE: &'static str = "Hello";
//!     const VERSION: &'static str = "1.0";
//!     const METHODS: &'static [&'static str] = &["Greet"];
//!
//!     fn handle(req: Request) -> Result<Kv, Fault> {
//!         let name = req.parameters.require_str("Name")?;
//!         Ok(Kv::new().with("Greeting", format!("Hello, {name}")))
//!     }
//! }
//!
//! wasp_sdk::export!(Hello);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and point a
//! cluster's `component` at the `.wasm` file.

pub mod http;
mod kv;

pub use kv::{Kv, Value};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "esp-service",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "wasp_sdk::bindings",
    });
}

use bindings::wasp::esp::types as wit;

/// Fault codes a component can use for the common cases. The host answers
/// every component fault as ESP fault 3005 with `ComponentFaultCode` set to
/// the code given here.
pub mod codes {
    /// A required parameter is missing.
    pub const MISSING_PARAMETER: i32 = 1;
    /// A parameter has the wrong type or an invalid value.
    pub const INVALID_PARAMETER: i32 = 2;
    /// The method is not one the component serves.
    pub const UNKNOWN_METHOD: i32 = 3;
    /// The thing asked about does not exist.
    pub const NOT_FOUND: i32 = 4;
    /// A bound was reached: the cluster's store is full for the tenant,
    /// or a limit of the component's own. The message says which.
    pub const LIMIT_REACHED: i32 = 5;
    /// Anything else went wrong inside the component.
    pub const INTERNAL: i32 = 100;
}

/// An error a component returns; it reaches the ESP client as fault 3005.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: i32,
    pub message: String,
}

impl Fault {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
        }
    }

    /// `Parameters.<name>` is missing.
    pub fn missing(name: &str) -> Self {
        Fault::new(
            codes::MISSING_PARAMETER,
            format!("missing parameter '{name}'"),
        )
    }

    /// `Parameters.<name>` is present but not acceptable.
    pub fn invalid(name: &str, why: impl std::fmt::Display) -> Self {
        Fault::new(
            codes::INVALID_PARAMETER,
            format!("invalid parameter '{name}': {why}"),
        )
    }

    /// The method is not served by this component.
    pub fn unknown_method(method: &str) -> Self {
        Fault::new(codes::UNKNOWN_METHOD, format!("unknown method '{method}'"))
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fault {}: {}", self.code, self.message)
    }
}

impl std::error::Error for Fault {}

/// The tenant a request is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: u32,
    pub name: String,
}

/// One ESP request, as the component sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub service: String,
    pub method: String,
    pub version: String,
    pub tenant: Tenant,
    pub media_type: Option<String>,
    pub parameters: Kv,
    pub user_data: Kv,
}

/// An ESP service. Implement it and call [`export!`].
pub trait Service {
    /// The service type, e.g. `"Fax"`. A cluster only loads a component
    /// whose service type matches its own.
    const SERVICE_TYPE: &'static str;
    /// The component's version, reported to operators.
    const VERSION: &'static str;
    /// The methods served. Requests for other methods are refused by the
    /// host with fault 2000 before they reach `handle`.
    const METHODS: &'static [&'static str];

    /// Answer one request.
    fn handle(req: Request) -> Result<Kv, Fault>;
}

/// Structured logging to the host; the host adds tenant, cluster and
/// instance fields. The host writes at most the cluster's
/// `log-per-second` lines and clips long messages (4 KiB) and field
/// values (1 KiB), so log what an operator needs, not whole documents.
pub mod log {
    use crate::bindings::wasp::esp::log as wit_log;

    fn emit(level: wit_log::Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        wit_log::log(level, message, &fields);
    }

    pub fn debug(message: &str, fields: &[(&str, &str)]) {
        emit(wit_log::Level::Debug, message, fields)
    }
    pub fn info(message: &str, fields: &[(&str, &str)]) {
        emit(wit_log::Level::Info, message, fields)
    }
    pub fn warn(message: &str, fields: &[(&str, &str)]) {
        emit(wit_log::Level::Warn, message, fields)
    }
    pub fn error(message: &str, fields: &[(&str, &str)]) {
        emit(wit_log::Level::Error, message, fields)
    }
}

/// The component's configuration: the `config` table of its cluster.
pub mod config {
    use crate::bindings::wasp::esp::config as wit_config;

    /// One value, if configured.
    pub fn get(key: &str) -> Option<String> {
        wit_config::get(key)
    }

    /// All values, sorted by key.
    pub fn all() -> Vec<(String, String)> {
        wit_config::get_all()
    }

    /// A whole number from 1 to `max` under `key`, or `default` when it is
    /// not configured; anything else is a fault naming the key.
    pub fn number(key: &str, default: u64, max: u64) -> Result<u64, crate::Fault> {
        match get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    crate::Fault::new(
                        crate::codes::INTERNAL,
                        format!("config {key} '{v}' is not a number from 1 to {max}"),
                    )
                }),
        }
    }
}

#[doc(hidden)]
pub fn __describe<S: Service>() -> wit::ServiceInfo {
    wit::ServiceInfo {
        service_type: S::SERVICE_TYPE.to_string(),
        version: S::VERSION.to_string(),
        methods: S::METHODS.iter().map(|m| m.to_string()).collect(),
    }
}

#[doc(hidden)]
pub fn __handle<S: Service>(req: wit::Request) -> Result<wit::KvList, wit::Fault> {
    let req = Request {
        service: req.service,
        method: req.method,
        version: req.version,
        tenant: Tenant {
            id: req.tenant.id,
            name: req.tenant.name,
        },
        media_type: req.media_type,
        parameters: Kv::from_wit(req.parameters),
        user_data: Kv::from_wit(req.user_data),
    };
    S::handle(req).map(Kv::into_wit).map_err(|f| wit::Fault {
        code: f.code,
        message: f.message,
    })
}

/// Export a [`Service`] implementation as the component's `service`.
#[macro_export]
macro_rules! export {
    ($service:ty) => {
        struct __WaspService;
        impl $crate::bindings::exports::wasp::esp::service::Guest for __WaspService {
            fn describe() -> $crate::bindings::wasp::esp::types::ServiceInfo {
                $crate::__describe::<$service>()
            }
            fn handle(
                req: $crate::bindings::wasp::esp::types::Request,
            ) -> ::core::result::Result<
                $crate::bindings::wasp::esp::types::KvList,
                $crate::bindings::wasp::esp::types::Fault,
            > {
                $crate::__handle::<$service>(req)
            }
        }
        $crate::bindings::export_raw!(__WaspService with_types_in $crate::bindings);
    };
}

/// Validators shared by services.
pub mod validate {
    use crate::Fault;

    /// An E.164 telephone number: `+`, a non-zero country digit, 8 to 15
    /// digits in all. Spaces, dashes and dots are not accepted: ESP clients
    /// are expected to normalise numbers.
    pub fn e164(param: &str, number: &str) -> Result<(), Fault> {
        let Some(digits) = number.strip_prefix('+') else {
            return Err(Fault::invalid(
                param,
                format!("'{number}' is not in E.164 form (it must start with '+')"),
            ));
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Fault::invalid(
                param,
                format!("'{number}' is not in E.164 form (only digits may follow '+')"),
            ));
        }
        if digits.starts_with('0') {
            return Err(Fault::invalid(
                param,
                format!("'{number}' is not in E.164 form (country codes do not start with 0)"),
            ));
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(Fault::invalid(
                param,
                format!(
                    "'{number}' is not in E.164 form ({} digits, expected 8 to 15)",
                    digits.len()
                ),
            ));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn e164_numbers() {
            assert!(super::e164("To", "+14155550100").is_ok());
            assert!(super::e164("To", "+4930123456").is_ok());
            for bad in [
                "14155550100",
                "+1 415 555",
                "+0123456789",
                "+123",
                "+1234567890123456",
                "+",
            ] {
                assert!(super::e164("To", bad).is_err(), "{bad}");
            }
        }
    }
}

/// The cluster's key-value store (`wasp:esp/store`): shared by every
/// instance of the cluster, scoped to the tenant of the request being
/// handled. Granted by `[clusters.<name>.store]`; check with [`granted`].
///
/// Errors become faults: a bound of the store that was reached (its
/// message starts with `store: full:` and names the setting) is
/// [`codes::LIMIT_REACHED`](crate::codes::LIMIT_REACHED), anything else
/// [`codes::INTERNAL`](crate::codes::INTERNAL).
pub mod store {
    use crate::bindings::wasp::esp::store as wit_store;
    use crate::{Fault, codes};

    fn fault(e: String) -> Fault {
        if is_full(&e) {
            Fault::new(codes::LIMIT_REACHED, e)
        } else {
            Fault::new(codes::INTERNAL, e)
        }
    }

    /// Whether a store error says a bound was reached.
    pub fn is_full(error: &str) -> bool {
        error.starts_with("store: full:")
    }

    /// Whether the cluster grants the store.
    pub fn granted() -> bool {
        !matches!(wit_store::keys("\u{0}"), Err(e) if e.starts_with("store: not granted"))
    }

    pub fn get(key: &str) -> Result<Option<Vec<u8>>, Fault> {
        wit_store::get(key).map_err(fault)
    }

    /// The value as UTF-8 text (invalid bytes replaced).
    pub fn get_str(key: &str) -> Result<Option<String>, Fault> {
        Ok(get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Sets the value; it stays until deleted.
    pub fn set(key: &str, value: &[u8]) -> Result<(), Fault> {
        wit_store::set(key, value).map_err(fault)
    }

    pub fn set_str(key: &str, value: &str) -> Result<(), Fault> {
        set(key, value.as_bytes())
    }

    /// Sets the value, which expires `ttl_seconds` (at least 1) from now.
    pub fn set_with_ttl(key: &str, value: &[u8], ttl_seconds: u32) -> Result<(), Fault> {
        wit_store::set_with_ttl(key, value, ttl_seconds).map_err(fault)
    }

    pub fn set_str_with_ttl(key: &str, value: &str, ttl_seconds: u32) -> Result<(), Fault> {
        set_with_ttl(key, value.as_bytes(), ttl_seconds)
    }

    /// Whether the key existed.
    pub fn delete(key: &str) -> Result<bool, Fault> {
        wit_store::delete(key).map_err(fault)
    }

    /// Keys starting with `prefix`, sorted, at most 1000.
    pub fn keys(prefix: &str) -> Result<Vec<String>, Fault> {
        wit_store::keys(prefix).map_err(fault)
    }

    /// Adds `delta` to the integer under the key (a missing key counts as
    /// 0) and returns the sum, atomically across the cluster's instances.
    pub fn increment(key: &str, delta: i64) -> Result<i64, Fault> {
        wit_store::increment(key, delta).map_err(fault)
    }

    /// Sets the key to `new` if it holds `expected` (`None`: absent),
    /// atomically; returns whether it did.
    pub fn compare_and_swap(key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<bool, Fault> {
        wit_store::compare_and_swap(key, expected, new).map_err(fault)
    }

    #[cfg(test)]
    mod tests {
        use crate::codes;

        #[test]
        fn a_bound_of_the_store_is_a_limit_fault_and_the_rest_internal() {
            let full = super::fault(
                "store: full: tenant 101 has 10 keys, its limit (store.max-entries-per-tenant)"
                    .into(),
            );
            assert_eq!(full.code, codes::LIMIT_REACHED);
            assert!(full.message.contains("store.max-entries-per-tenant"));
            let other = super::fault("store: keys are 1 to 1024 bytes".into());
            assert_eq!(other.code, codes::INTERNAL);
        }
    }
}
