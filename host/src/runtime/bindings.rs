//! The one place that runs `bindgen!` for the ESP service world; the rest
//! of wasp uses the names re-exported here.

wasmtime::component::bindgen!({
    world: "esp-service",
    path: "../wit",
    exports: { default: async },
    // The store may be a Redis server: its calls wait on the network, so
    // they are async and never block a runtime thread.
    imports: { "wasp:esp/store": async },
    // Requests are lowered from borrowed data: the host does not copy the
    // strings of a request before they are copied into guest memory.
    ownership: Borrowing { duplicate_if_necessary: true },
});

pub use self::wasp::esp::log::Level as LogLevel;
pub use self::wasp::esp::types::{
    Fault, KvListParam, KvListResult, PairParam, PairResult, Request, ServiceInfo, Tenant,
    ValueParam, ValueResult,
};
