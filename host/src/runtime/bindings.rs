//! The one place that runs `bindgen!` for the ESP service world; the rest
//! of wasp uses the names re-exported here.

wasmtime::component::bindgen!({
    world: "esp-service",
    path: "../wit",
    exports: { default: async },
});

pub use self::wasp::esp::log::Level as LogLevel;
pub use self::wasp::esp::types::{Fault, KvList, Pair, Request, ServiceInfo, Tenant, Value};
