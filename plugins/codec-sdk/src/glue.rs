//! The component side (wasm32 only): the `capture-codec` bindings and the
//! renaming of the generated types to and from the plain model. Used by
//! [`export_codec!`](crate::export_codec); nothing here holds format logic.

pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/capture",
        world: "capture-codec",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "wasp_codec_sdk::glue::bindings",
        // wasp:kv lives in its own package (wit/capture/deps).
        generate_all,
    });
}

use bindings::exports::wasp::capture::codec as wit;
use bindings::wasp::kv::types as kv;

use crate::arena::{Arena, Slot};
use crate::{Codec, Entry, Item, OpKind, Reply, ReplyKind};

/// What `decode` answers for one item.
pub type DecodeResult = Result<Vec<wit::Entry>, wit::Unreadable>;

/// `describe`, from [`Codec::info`].
pub fn describe<C: Codec>() -> wit::CodecInfo {
    let info = C::info();
    wit::CodecInfo {
        name: info.name,
        version: info.version,
        content_type: info.content_type,
        extension: info.extension,
    }
}

/// `decode`: one result per item, in order.
pub fn decode<C: Codec>(items: Vec<wit::Item>) -> Vec<DecodeResult> {
    items
        .into_iter()
        .map(|item| {
            let item = Item {
                name: item.name,
                headers: item.headers,
                body: item.body,
            };
            match C::decode(&item) {
                Ok(entries) => Ok(entries.into_iter().map(entry).collect()),
                Err(description) => Err(wit::Unreadable { description }),
            }
        })
        .collect()
}

/// `encode`: one document per list of replies, in order. A reply whose
/// properties the host sent malformed makes that document an error.
pub fn encode<C: Codec>(documents: Vec<Vec<wit::Reply>>) -> Vec<Result<Vec<u8>, String>> {
    documents
        .into_iter()
        .map(|replies| {
            let replies = replies
                .into_iter()
                .enumerate()
                .map(|(i, r)| reply(r).map_err(|e| format!("reply {i}: properties: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            C::encode(&replies)
        })
        .collect()
}

fn entry(entry: Entry) -> wit::Entry {
    match entry {
        Entry::Op(op) => wit::Entry::Op(wit::Operation {
            kind: match op.kind {
                OpKind::Submit => wit::OperationKind::Submit,
                OpKind::Update => wit::OperationKind::Update,
                OpKind::Hold => wit::OperationKind::Hold,
                OpKind::Resume => wit::OperationKind::Resume,
                OpKind::Stop => wit::OperationKind::Stop,
                OpKind::GetInfo => wit::OperationKind::GetInfo,
            },
            interaction_id: op.interaction_id,
            external_id: op.external_id,
            properties: to_wit(Arena::from_kv(op.properties)),
        }),
        Entry::Bad(bad) => wit::Entry::Bad(wit::BadOperation {
            place: bad.place,
            description: bad.description,
            interaction_id: bad.interaction_id,
            external_id: bad.external_id,
        }),
    }
}

fn reply(r: wit::Reply) -> Result<Reply, String> {
    Ok(Reply {
        kind: match r.kind {
            wit::ReplyKind::Submitted => ReplyKind::Submitted,
            wit::ReplyKind::Changed => ReplyKind::Changed,
            wit::ReplyKind::Held => ReplyKind::Held,
            wit::ReplyKind::Resumed => ReplyKind::Resumed,
            wit::ReplyKind::Stopped => ReplyKind::Stopped,
            wit::ReplyKind::Info => ReplyKind::Info,
            wit::ReplyKind::Error => ReplyKind::Error,
        },
        interaction_id: r.interaction_id,
        external_id: r.external_id,
        tenant_id: r.tenant_id,
        media_type: r.media_type,
        queue: r.queue,
        code: r.code,
        description: r.description,
        properties: from_wit(r.properties).into_kv()?,
    })
}

fn to_wit(arena: Arena) -> kv::KvList {
    kv::KvList {
        lists: arena
            .lists
            .into_iter()
            .map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(key, slot)| kv::Pair {
                        key,
                        value: match slot {
                            Slot::Int(i) => kv::Value::Int(i),
                            Slot::Str(s) => kv::Value::Str(s),
                            Slot::Binary(b) => kv::Value::Binary(b),
                            Slot::Nested(i) => kv::Value::Nested(i),
                        },
                    })
                    .collect()
            })
            .collect(),
    }
}

fn from_wit(list: kv::KvList) -> Arena {
    Arena {
        lists: list
            .lists
            .into_iter()
            .map(|pairs| {
                pairs
                    .into_iter()
                    .map(|pair| {
                        let slot = match pair.value {
                            kv::Value::Int(i) => Slot::Int(i),
                            kv::Value::Str(s) => Slot::Str(s),
                            kv::Value::Binary(b) => Slot::Binary(b),
                            kv::Value::Nested(i) => Slot::Nested(i),
                        };
                        (pair.key, slot)
                    })
                    .collect()
            })
            .collect(),
    }
}
