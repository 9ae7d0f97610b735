//! # genesys-xml: the Genesys XML capture codec (`builtin:genesys-xml`)
//!
//! The format of CAPTURE.md: one root element of any name holding
//! `interaction` elements, or one `interaction` as the root. Each has an
//! `operation` attribute (`submit`, `update`, `hold`, `resume`, `stop`,
//! `getinfo`), `InteractionId` and `ExternalId` attributes, and a
//! `<properties>` child whose elements are the KV pairs, typed by a `type`
//! attribute: `str` (the default), `int`, `kvlist` (nested), `bin` (base64).
//! Replies use the same shape, with `operation` one of `submitted` ...
//! `error`.
//!
//! Documents come from anyone who can drop a file or produce a message, so
//! the reader refuses, for the whole item: any DTD (`<!DOCTYPE>`), any
//! entity other than the five predefined ones and character references (no
//! entity expansion, no external entities), elements nested deeper than
//! [`MAX_ELEMENT_DEPTH`], more than [`MAX_PAIRS`] properties or
//! [`MAX_OPERATIONS`] operations, and XML that
//! is not well-formed. It streams (quick-xml) with an explicit stack of at
//! most [`MAX_DEPTH`] lists, so a 10 000-deep document costs neither
//! recursion nor memory. A bad operation (unknown name, wrong `type`, bad
//! value) is its own entry naming the element, e.g.
//! `interaction[2]/properties/Priority`; the rest of the document still
//! decodes.
//!
//! The parse is plain Rust: it runs natively ([`decode`], [`encode`],
//! [`decode_replies`]) as well as inside the component, which is the same
//! code behind [`wasp_codec_sdk::export_codec!`] on wasm32.

mod read;
mod write;

use wasp_codec_sdk::{Codec, Entry, Info, Item, Reply};

pub use read::{decode, decode_replies};
/// The model the parse reads into, for native callers.
pub use wasp_codec_sdk;
pub use wasp_codec_sdk::{MAX_DEPTH, MAX_OPERATIONS, MAX_PAIRS};
pub use write::encode;

/// Deepest element nesting read at all: the envelope (root, `interaction`,
/// `properties`) plus [`MAX_DEPTH`] levels of lists and a little room, so
/// that a list one level too deep is a bad operation naming it, and only a
/// far deeper document is refused whole.
pub const MAX_ELEMENT_DEPTH: usize = MAX_DEPTH + 8;

/// The codec as the component exports it.
#[derive(Debug)]
pub struct GenesysXml;

impl Codec for GenesysXml {
    fn info() -> Info {
        Info {
            name: "genesys-xml".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            content_type: "application/xml".into(),
            extension: "xml".into(),
        }
    }

    fn decode(item: &Item) -> Result<Vec<Entry>, String> {
        decode(&item.body)
    }

    fn encode(replies: &[Reply]) -> Result<Vec<u8>, String> {
        encode(replies)
    }
}

#[cfg(target_arch = "wasm32")]
wasp_codec_sdk::export_codec!(GenesysXml);

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
