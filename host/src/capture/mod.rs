//! Capture points: an adapter (native I/O: files, Kafka, HTTP) feeds raw
//! items to a codec component, whose operations become interactions on
//! Interaction Server nodes; replies and notifications go back out through
//! the adapter. See the README's "Capture points".
//!
//! - [`state`]: what a capture point keeps across restarts: ExternalId →
//!   interaction, and the journal of operations already answered.
//!
//! Tenant mapping rules live in [`crate::tenant`], beside the lookup every
//! other caller uses.

pub mod state;
