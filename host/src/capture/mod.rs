//! Capture points: where work items enter the contact centre from outside
//! (files, topics, HTTP) rather than from an Interaction Server node.
//!
//! Each adapter only moves raw items in and finalizes them when told; what
//! the bytes mean (codecs), which tenant they belong to and which node takes
//! them is decided elsewhere in the capture pipeline, so that every adapter
//! can be tested against its own medium alone.
//!
//! - [`file`](mod@file): a watched inbound directory with `processed/`, `error/` and
//!   `notification/` beside it.

pub mod file;

pub mod state;
