//! # wasp-codec-sdk: capture codecs for wasp in plain Rust
//!
//! A capture codec is a Wasm component exporting `wasp:capture/codec`
//! (see `wit/capture/capture.wit`): it turns raw items (a file, a Kafka
//! message, an HTTP body) into interaction operations, and replies back into
//! bytes of the same format. This crate is what every codec shares:
//!
//! - a plain model ([`Kv`], [`Operation`], [`Entry`], [`Reply`], ...) that
//!   compiles on any target, so a codec's format logic is ordinary Rust that
//!   is unit-tested natively and that a host can run without a sandbox;
//! - the arena form of KV lists the WIT uses ([`arena`]), with the
//!   conversions both ways held to the host's limits;
//! - on `wasm32` only, the bindings and the [`export_codec!`] macro that
//!   turns a [`Codec`] into the component's exports.
//!
//! ```ignore
//! struct Csv;
//! impl wasp_codec_sdk::Codec for Csv {
//!     fn info() -> wasp_codec_sdk::Info { /* ... */ }
//!     fn decode(item: &wasp_codec_sdk::Item) -> Result<Vec<wasp_codec_sdk::Entry>, String> { /* ... */ }
//!     fn encode(replies: &[wasp_codec_sdk::Reply]) -> Result<Vec<u8>, String> { /* ... */ }
//! }
//! wasp_codec_sdk::export_codec!(Csv);
//! ```

pub mod arena;

/// Deepest nesting of a KV list, the root list being level 0: the host
/// refuses anything deeper, so a codec refuses it first and says where.
pub const MAX_DEPTH: usize = 32;

/// Most pairs the KV lists of one item may hold, nested ones included (the
/// host's bound for one KV list): a codec stops reading there rather than
/// building what the host would refuse.
pub const MAX_PAIRS: usize = 100_000;

/// Most operations one item may hold: every operation gets a reply, so a
/// codec stops reading there rather than build (and make the host answer)
/// an unbounded number of them.
pub const MAX_OPERATIONS: usize = 100_000;

/// One value of a Genesys KV list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(String),
    Binary(Vec<u8>),
    List(Kv),
}

/// An ordered KV list; keys may repeat and order is kept, as in Genesys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv(pub Vec<(String, Value)>);

impl Kv {
    /// An empty list.
    pub fn new() -> Kv {
        Kv(Vec::new())
    }

    /// Appends a pair, for building lists in one expression.
    pub fn with(mut self, key: impl Into<String>, value: Value) -> Kv {
        self.0.push((key.into(), value));
        self
    }

    /// The first value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether the list has no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The six interaction operations of CAPTURE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Submit,
    Update,
    Hold,
    Resume,
    Stop,
    GetInfo,
}

impl OpKind {
    /// Every kind, in the order the formats list them.
    pub const ALL: [OpKind; 6] = [
        OpKind::Submit,
        OpKind::Update,
        OpKind::Hold,
        OpKind::Resume,
        OpKind::Stop,
        OpKind::GetInfo,
    ];

    /// The name both bundled formats use (`submit` ... `getinfo`).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Submit => "submit",
            OpKind::Update => "update",
            OpKind::Hold => "hold",
            OpKind::Resume => "resume",
            OpKind::Stop => "stop",
            OpKind::GetInfo => "getinfo",
        }
    }

    /// Reads an operation name, ignoring ASCII case (`getInfo` is
    /// `getinfo`); `None` for anything else.
    pub fn parse(name: &str) -> Option<OpKind> {
        OpKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// A description of an unknown operation name, listing the known ones.
    pub fn unknown(name: &str) -> String {
        format!(
            "unknown operation '{}' (expected submit, update, hold, resume, stop or getinfo)",
            clip(name)
        )
    }
}

/// One interaction operation read from an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub kind: OpKind,
    pub interaction_id: Option<String>,
    pub external_id: Option<String>,
    /// `TenantId`, `Queue`, `MediaType` ... travel here, where the format
    /// puts them; the host maps the tenant and fills defaults.
    pub properties: Kv,
}

/// An operation that could not be read; it gets its own error reply and
/// the item's other operations still run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOperation {
    /// Names the element or path, e.g. `interaction[2]/properties/Priority`.
    pub place: String,
    pub description: String,
    /// As far as they could be read, for the error reply.
    pub interaction_id: Option<String>,
    pub external_id: Option<String>,
}

/// What one operation slot of an item holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Op(Operation),
    Bad(BadOperation),
}

/// One raw item from a capture source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    /// The file name, the message key, or the request path.
    pub name: String,
    /// Kafka or HTTP headers; empty for files.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a reply says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Submitted,
    Changed,
    Held,
    Resumed,
    Stopped,
    Info,
    Error,
}

impl ReplyKind {
    /// Every kind.
    pub const ALL: [ReplyKind; 7] = [
        ReplyKind::Submitted,
        ReplyKind::Changed,
        ReplyKind::Held,
        ReplyKind::Resumed,
        ReplyKind::Stopped,
        ReplyKind::Info,
        ReplyKind::Error,
    ];

    /// The name both bundled formats write (`submitted` ... `error`).
    pub fn name(self) -> &'static str {
        match self {
            ReplyKind::Submitted => "submitted",
            ReplyKind::Changed => "changed",
            ReplyKind::Held => "held",
            ReplyKind::Resumed => "resumed",
            ReplyKind::Stopped => "stopped",
            ReplyKind::Info => "info",
            ReplyKind::Error => "error",
        }
    }

    /// Reads a reply name (exact), so a reply written by a codec can be
    /// read back.
    pub fn parse(name: &str) -> Option<ReplyKind> {
        ReplyKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A reply to one operation, or a notification about an interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: ReplyKind,
    pub interaction_id: Option<String>,
    pub external_id: Option<String>,
    pub tenant_id: Option<u32>,
    pub media_type: Option<String>,
    pub queue: Option<String>,
    /// For errors: the fault code ...
    pub code: Option<i32>,
    /// ... and what went wrong.
    pub description: Option<String>,
    pub properties: Kv,
}

impl Reply {
    /// A reply of `kind` with nothing else set.
    pub fn new(kind: ReplyKind) -> Reply {
        Reply {
            kind,
            interaction_id: None,
            external_id: None,
            tenant_id: None,
            media_type: None,
            queue: None,
            code: None,
            description: None,
            properties: Kv::new(),
        }
    }
}

/// What a codec says it is (`describe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// e.g. `genesys-xml`.
    pub name: String,
    pub version: String,
    /// Media type of what `encode` writes.
    pub content_type: String,
    /// File name extension of what `encode` writes, without the dot.
    pub extension: String,
}

/// A capture codec: the format logic, free of any bindings.
pub trait Codec {
    /// What the codec is.
    fn info() -> Info;

    /// Reads one item: its operations in document order, or why the whole
    /// item cannot be read (it is then moved aside with that reason).
    fn decode(item: &Item) -> Result<Vec<Entry>, String>;

    /// Writes one document holding `replies`, or why it cannot be written.
    fn encode(replies: &[Reply]) -> Result<Vec<u8>, String>;
}

/// Cuts text quoted back in a description to a readable length (a hostile
/// document may put megabytes in a name).
pub fn clip(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue;

/// Exports a [`Codec`] as the component's `wasp:capture/codec`.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_codec {
    ($codec:ty) => {
        struct __WaspCodec;
        impl $crate::glue::bindings::exports::wasp::capture::codec::Guest for __WaspCodec {
            fn describe() -> $crate::glue::bindings::exports::wasp::capture::codec::CodecInfo {
                $crate::glue::describe::<$codec>()
            }
            fn decode(
                items: ::std::vec::Vec<$crate::glue::bindings::exports::wasp::capture::codec::Item>,
            ) -> ::std::vec::Vec<$crate::glue::DecodeResult> {
                $crate::glue::decode::<$codec>(items)
            }
            fn encode(
                documents: ::std::vec::Vec<
                    ::std::vec::Vec<$crate::glue::bindings::exports::wasp::capture::codec::Reply>,
                >,
            ) -> ::std::vec::Vec<::core::result::Result<::std::vec::Vec<u8>, ::std::string::String>>
            {
                $crate::glue::encode::<$codec>(documents)
            }
        }
        $crate::glue::bindings::export_raw!(__WaspCodec with_types_in $crate::glue::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for kind in OpKind::ALL {
            assert_eq!(OpKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(OpKind::parse("GetInfo"), Some(OpKind::GetInfo));
        assert_eq!(OpKind::parse("frobnicate"), None);
        for kind in ReplyKind::ALL {
            assert_eq!(ReplyKind::parse(kind.name()), Some(kind));
        }
    }

    #[test]
    fn clip_cuts_long_text_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(clip(&long), format!("{}...", "é".repeat(64)));
    }
}
