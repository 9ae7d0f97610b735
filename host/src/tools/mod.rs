//! Clients and stand-ins that ship with the `wasp` binary but are not part
//! of the host: nothing in the core depends on them, they only use its
//! public types (the node protocol's frames, the config).
//!
//! - [`node_sim`]: a reference Interaction Server node (`wasp node-sim`),
//!   also embedded by the demo and used by tests and the bench.
//! - [`bench`]: the load generator behind `wasp bench`.
//! - [`bench_capture`]: `wasp bench capture`: the codec in Wasm vs native,
//!   and files through a capture point end to end.
//! - [`bench_kafka`]: `wasp bench kafka` and `wasp bench soap`: Kafka and
//!   SOAP capture points end to end, beside baselines in the same run.
//! - [`kafka_cli`]: `wasp kafka produce|consume`, to try a kafka capture
//!   point by hand.
//! - [`demo`]: the demo's mock SMS, fax and IM gateways and social APIs.

pub mod bench;
pub mod bench_capture;
pub mod bench_kafka;
pub mod demo;
pub mod kafka_cli;
pub mod node_sim;
pub mod pace;
