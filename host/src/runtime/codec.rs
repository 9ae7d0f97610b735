//! Capture codecs: components of the `capture-codec` world
//! (`wit/capture/capture.wit`) that turn a capture point's raw items into
//! interaction operations and its replies back into bytes.
//!
//! A [`Codec`] is one loaded component with a small bounded set of
//! instances, hardened as ESP instances are (memory limit, an epoch
//! deadline per call, WASI with nothing granted); a call that traps, runs
//! out of memory or times out costs that call and that instance only, and
//! the next call gets a fresh one. What a codec returns is held to the
//! limits of an ESP request ([`kv::MAX_DEPTH`], [`kv::MAX_PAIRS`]) and to a
//! byte bound per item before any of it reaches the capture pipeline, so a
//! hostile document (or codec) can fail its own item, never the process.
//!
//! The types here are plain host types ([`Kv`], [`OpKind`]); the
//! generated ones stay in [`bindings`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::{Semaphore, SemaphorePermit};
use wasmtime::Store;
use wasmtime::component::types::ComponentItem;

use super::instance::{self, CallError, HOST_CALL_GRACE, HostState, InstanceSpec};
use super::{Runtime, log};
use crate::kv::{self, ArenaPair, Kv, Slot};
use crate::node::frames::OpKind;

/// The one place that runs `bindgen!` for the capture codec world.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "capture-codec",
        path: "../wit/capture",
        exports: { default: async },
    });
}

use bindings::exports::wasp::capture::codec as wit;
use bindings::wasp::kv::types as wkv;

/// `wasp:kv/types` holds types only; linking it lets codecs name them.
impl wkv::Host for HostState {}

impl ArenaPair for wkv::Pair {
    fn size(&self) -> usize {
        self.key.len()
            + match &self.value {
                wkv::Value::Int(_) | wkv::Value::Nested(_) => 0,
                wkv::Value::Str(s) => s.len(),
                wkv::Value::Binary(b) => b.len(),
            }
    }

    fn into_parts(self) -> (String, Slot) {
        let slot = match self.value {
            wkv::Value::Int(i) => Slot::Int(i),
            wkv::Value::Str(s) => Slot::Str(s),
            wkv::Value::Binary(b) => Slot::Binary(b),
            wkv::Value::Nested(i) => Slot::Nested(i),
        };
        (self.key, slot)
    }
}

/// Bounds of one codec.
#[derive(Debug, Clone)]
pub struct CodecLimits {
    /// Instances kept at most (calls beyond wait for one).
    pub instances: usize,
    /// Linear memory of one instance, in bytes (at most the runtime's pool
    /// size).
    pub memory_bytes: usize,
    /// Time one call (one batch) may take.
    pub timeout: Duration,
    /// Bytes one item's decoded entries may hold (keys, values, ids,
    /// descriptions), and bytes of one encoded document.
    pub max_item_bytes: usize,
}

impl Default for CodecLimits {
    fn default() -> Self {
        CodecLimits {
            instances: 2,
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            max_item_bytes: 16 << 20,
        }
    }
}

/// Bytes every entry is charged besides its strings, so that a flood of
/// empty entries is bounded too.
const ENTRY_COST: usize = 64;

/// Longest description of an unreadable item or failed document kept (it
/// ends up in a `.reason` file or a log line).
const MAX_DESCRIPTION: usize = 4096;

/// Why a codec call produced no results. Each is the fault of this call
/// only: the instance that failed is thrown away.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The call did not finish within [`CodecLimits::timeout`].
    #[error("the codec did not answer within {0:?}")]
    Timeout(Duration),
    /// The codec trapped (a panic, unreachable ...).
    #[error("the codec {0}")]
    Trapped(String),
    /// The batch or the work did not fit in the codec's memory.
    #[error("the codec ran out of memory: {0}")]
    OutOfMemory(String),
    /// The codec answered something that breaks the world's contract
    /// (e.g. a result count that is not the item count).
    #[error("the codec answered badly: {0}")]
    Invalid(String),
    /// A fresh instance could not be made.
    #[error("the codec could not be instantiated: {0}")]
    Instantiate(String),
}

/// What a codec says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecInfo {
    pub name: String,
    pub version: String,
    /// Media type of what `encode` writes.
    pub content_type: String,
    /// File name extension of what `encode` writes, without the dot.
    pub extension: String,
}

/// One raw item from a capture source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawItem {
    /// The file name, the message key, or the request path.
    pub name: String,
    /// Kafka or HTTP headers; empty for files.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One operation read from an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub kind: OpKind,
    pub interaction_id: Option<String>,
    pub external_id: Option<String>,
    /// `TenantId`, `Queue`, `MediaType` ... as the format put them.
    pub properties: Kv,
}

/// An operation the codec could not read: it gets its own error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOperation {
    /// The element or path, e.g. `interaction[2]/properties/Priority`.
    pub place: String,
    pub description: String,
    pub interaction_id: Option<String>,
    pub external_id: Option<String>,
}

/// One operation slot of an item, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Op(Operation),
    Bad(BadOperation),
}

/// What a reply says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    Submitted,
    Changed,
    Held,
    Resumed,
    Stopped,
    Info,
    Error,
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

/// One live instance of a codec.
struct CodecInstance {
    store: Store<HostState>,
    exports: bindings::CaptureCodec,
}

/// A loaded capture codec, shared by the capture points that use it.
pub struct Codec {
    pre: bindings::CaptureCodecPre<HostState>,
    spec: Arc<InstanceSpec>,
    limits: CodecLimits,
    info: CodecInfo,
    sha256: String,
    from_cache: bool,
    /// Instances not in a call now.
    idle: std::sync::Mutex<Vec<CodecInstance>>,
    /// One permit per instance that may exist.
    permits: Semaphore,
    next_index: AtomicUsize,
    replaced: AtomicU64,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("info", &self.info)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Where a codec may import from: WASI (Rust's std on wasm32-wasip2
/// imports it even when unused; nothing is granted) and the `wasp:kv`
/// types. Not WASI HTTP, not the ESP world's host interfaces: codecs are
/// pure.
fn allowed_import(name: &str) -> bool {
    (name.starts_with("wasi:") && !name.starts_with("wasi:http/")) || name.starts_with("wasp:kv/")
}

impl Codec {
    /// Compiles (or loads from the cache) a codec component, checks that
    /// it imports only WASI and exports `wasp:capture/codec`, and asks it
    /// what it is; the instance that answered is kept for the first call.
    pub async fn load(runtime: &Runtime, bytes: &[u8], limits: CodecLimits) -> Result<Codec> {
        if limits.instances == 0 {
            bail!("a codec needs at least one instance");
        }
        let (component, sha256, from_cache) = runtime.compile(bytes).await?;
        let ty = component.component_type();
        for (name, item) in ty.imports(runtime.engine()) {
            if !allowed_import(name) {
                let what = match item.ty {
                    ComponentItem::ComponentInstance(_) => "interface",
                    _ => "item",
                };
                bail!("the component imports the {what} {name}: a codec may import only WASI");
            }
        }
        let pre = runtime.instantiate_pre(&component)?;
        let pre = bindings::CaptureCodecPre::new(pre)
            .map_err(|e| anyhow!("{e}"))
            .context("the component does not export wasp:capture/codec")?;
        let spec = InstanceSpec {
            cluster: Arc::from("codec"),
            memory_limit: limits.memory_bytes,
            config: Arc::default(),
            store: None,
            http: Arc::default(),
            log: Arc::new(log::LogLimit::unmetered(10)),
            store_refused: None,
        };
        let mut codec = Codec {
            pre,
            spec: Arc::new(spec),
            permits: Semaphore::new(limits.instances),
            limits,
            info: CodecInfo {
                name: String::new(),
                version: String::new(),
                content_type: String::new(),
                extension: String::new(),
            },
            sha256,
            from_cache,
            idle: std::sync::Mutex::new(Vec::new()),
            next_index: AtomicUsize::new(0),
            replaced: AtomicU64::new(0),
        };
        let mut probe = codec.instantiate().await.map_err(|e| anyhow!("{e}"))?;
        instance::arm(
            &mut probe.store,
            Instant::now() + codec.limits.timeout.min(Duration::from_secs(10)),
        );
        let info = probe
            .exports
            .wasp_capture_codec()
            .call_describe(&mut probe.store)
            .await
            .map_err(anyhow::Error::from)
            .context("call describe")?;
        codec.info = CodecInfo {
            name: info.name,
            version: info.version,
            content_type: info.content_type,
            extension: info.extension,
        };
        Arc::make_mut(&mut codec.spec).cluster = Arc::from(format!("codec:{}", codec.info.name));
        codec.lock_idle().push(probe);
        Ok(codec)
    }

    /// What the codec says it is.
    pub fn info(&self) -> &CodecInfo {
        &self.info
    }

    /// SHA-256 of the component, for the admin API and logs.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether the compiled code came from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// Instances thrown away after a failed call so far.
    pub fn replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// Reads a batch of items: one result per item, in order. `Ok` holds
    /// the item's entries in document order; `Err` says why the whole item
    /// cannot be read (it is moved aside with that reason), including when
    /// what the codec made of it breaks a limit.
    pub async fn decode(
        &self,
        items: Vec<RawItem>,
    ) -> Result<Vec<Result<Vec<Entry>, String>>, CodecError> {
        let count = items.len();
        let items: Vec<wit::Item> = items
            .into_iter()
            .map(|i| wit::Item {
                name: i.name,
                headers: i.headers,
                body: i.body,
            })
            .collect();
        let (_permit, mut inst) = self.checkout().await?;
        let deadline = Instant::now() + self.limits.timeout;
        instance::arm(&mut inst.store, deadline);
        let call = inst
            .exports
            .wasp_capture_codec()
            .call_decode(&mut inst.store, &items);
        let result = tokio::time::timeout_at((deadline + HOST_CALL_GRACE).into(), call).await;
        let results = self.settle(inst, result)?;
        drop(items);
        if results.len() != count {
            return Err(self.invalid(format!(
                "decode returned {} results for {count} items",
                results.len()
            )));
        }
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(entries) => self.entries(entries),
                Err(unreadable) => Err(clip(unreadable.description)),
            })
            .collect())
    }

    /// Writes a batch of documents, one per list of replies, in order.
    /// `Err` for a document says why the codec could not write it (or that
    /// what it wrote is larger than [`CodecLimits::max_item_bytes`]).
    pub async fn encode(
        &self,
        docs: Vec<Vec<Reply>>,
    ) -> Result<Vec<Result<Vec<u8>, String>>, CodecError> {
        let count = docs.len();
        let docs: Vec<Vec<wit::Reply>> = docs
            .into_iter()
            .map(|replies| replies.into_iter().map(to_wit_reply).collect())
            .collect();
        let (_permit, mut inst) = self.checkout().await?;
        let deadline = Instant::now() + self.limits.timeout;
        instance::arm(&mut inst.store, deadline);
        let call = inst
            .exports
            .wasp_capture_codec()
            .call_encode(&mut inst.store, &docs);
        let result = tokio::time::timeout_at((deadline + HOST_CALL_GRACE).into(), call).await;
        let results = self.settle(inst, result)?;
        if results.len() != count {
            return Err(self.invalid(format!(
                "encode returned {} documents for {count} lists of replies",
                results.len()
            )));
        }
        let max = self.limits.max_item_bytes;
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(bytes) if bytes.len() > max => Err(format!(
                    "the encoded document of {} bytes is larger than the {max} bytes allowed",
                    bytes.len()
                )),
                Ok(bytes) => Ok(bytes),
                Err(e) => Err(clip(e)),
            })
            .collect())
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<CodecInstance>> {
        // A panic while holding the lock cannot leave the list half-changed.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn instantiate(&self) -> Result<CodecInstance, CodecError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let mut store = instance::new_store(self.pre.engine(), &self.spec, index);
        let exports = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CodecError::Instantiate(format!("{e:#}")))?;
        Ok(CodecInstance { store, exports })
    }

    /// An instance for one call: an idle one, or a fresh one when every
    /// kept instance was thrown away. If the call's future is dropped, the
    /// instance goes with it and is never entered again.
    async fn checkout(&self) -> Result<(SemaphorePermit<'_>, CodecInstance), CodecError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| CodecError::Instantiate("the codec is closed".into()))?;
        let idle = self.lock_idle().pop();
        let inst = match idle {
            Some(inst) => inst,
            None => self.instantiate().await?,
        };
        Ok((permit, inst))
    }

    /// Keeps the instance if the call returned, throws it away otherwise.
    fn settle<T>(
        &self,
        inst: CodecInstance,
        result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, CodecError> {
        let failed = match result {
            Ok(Ok(value)) => {
                self.lock_idle().push(inst);
                return Ok(value);
            }
            Err(_) => CodecError::Timeout(self.limits.timeout),
            Ok(Err(err)) => match instance::explain(&inst.store, err) {
                CallError::Timeout => CodecError::Timeout(self.limits.timeout),
                CallError::Trapped(e) => CodecError::Trapped(e),
                CallError::OutOfMemory(e) => CodecError::OutOfMemory(e),
            },
        };
        // Never entered again: its store (and pool slot) goes now.
        drop(inst);
        self.replaced.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(codec = %self.info.name, error = %failed, "codec instance replaced");
        Err(failed)
    }

    fn invalid(&self, what: String) -> CodecError {
        tracing::warn!(codec = %self.info.name, "{what}");
        CodecError::Invalid(what)
    }

    /// One item's entries, held to the limits: depth and pairs per KV list
    /// as [`Kv::from_arena`] checks, pairs in all to [`kv::MAX_PAIRS`], and
    /// bytes in all to [`CodecLimits::max_item_bytes`].
    fn entries(&self, entries: Vec<wit::Entry>) -> Result<Vec<Entry>, String> {
        let max = self.limits.max_item_bytes;
        let mut bytes = max;
        let mut pairs = kv::MAX_PAIRS;
        let charge = |bytes: &mut usize, n: usize| {
            *bytes = bytes.checked_sub(n).ok_or_else(|| {
                format!("what the codec read from this item is more than {max} bytes")
            })?;
            Ok::<(), String>(())
        };
        let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(entries.len().min(1024));
        for (i, entry) in entries.into_iter().enumerate() {
            let entry = match entry {
                wit::Entry::Op(op) => {
                    charge(
                        &mut bytes,
                        ENTRY_COST + len(&op.interaction_id) + len(&op.external_id),
                    )?;
                    let properties = Kv::from_arena(op.properties.lists, bytes)
                        .map_err(|e| format!("operation {}: properties: {e}", i + 1))?;
                    let footprint = properties.footprint();
                    charge(&mut bytes, footprint.bytes)?;
                    pairs = pairs.checked_sub(footprint.pairs).ok_or_else(|| {
                        format!(
                            "what the codec read from this item holds more than {} pairs",
                            kv::MAX_PAIRS
                        )
                    })?;
                    Entry::Op(Operation {
                        kind: match op.kind {
                            wit::OperationKind::Submit => OpKind::Submit,
                            wit::OperationKind::Update => OpKind::Update,
                            wit::OperationKind::Hold => OpKind::Hold,
                            wit::OperationKind::Resume => OpKind::Resume,
                            wit::OperationKind::Stop => OpKind::Stop,
                            wit::OperationKind::GetInfo => OpKind::GetInfo,
                        },
                        interaction_id: op.interaction_id,
                        external_id: op.external_id,
                        properties,
                    })
                }
                wit::Entry::Bad(bad) => {
                    charge(
                        &mut bytes,
                        ENTRY_COST
                            + bad.place.len()
                            + bad.description.len()
                            + len(&bad.interaction_id)
                            + len(&bad.external_id),
                    )?;
                    Entry::Bad(BadOperation {
                        place: bad.place,
                        description: bad.description,
                        interaction_id: bad.interaction_id,
                        external_id: bad.external_id,
                    })
                }
            };
            out.push(entry);
        }
        Ok(out)
    }
}

fn to_wit_reply(r: Reply) -> wit::Reply {
    wit::Reply {
        kind: match r.kind {
            ReplyKind::Submitted => wit::ReplyKind::Submitted,
            ReplyKind::Changed => wit::ReplyKind::Changed,
            ReplyKind::Held => wit::ReplyKind::Held,
            ReplyKind::Resumed => wit::ReplyKind::Resumed,
            ReplyKind::Stopped => wit::ReplyKind::Stopped,
            ReplyKind::Info => wit::ReplyKind::Info,
            ReplyKind::Error => wit::ReplyKind::Error,
        },
        interaction_id: r.interaction_id,
        external_id: r.external_id,
        tenant_id: r.tenant_id,
        media_type: r.media_type,
        queue: r.queue,
        code: r.code,
        description: r.description,
        properties: wkv::KvList {
            lists: r.properties.into_arena(|key, slot| wkv::Pair {
                key,
                value: match slot {
                    Slot::Int(i) => wkv::Value::Int(i),
                    Slot::Str(s) => wkv::Value::Str(s),
                    Slot::Binary(b) => wkv::Value::Binary(b),
                    Slot::Nested(i) => wkv::Value::Nested(i),
                },
            }),
        },
    }
}

/// Cuts a description from a codec to [`MAX_DESCRIPTION`] bytes.
fn clip(mut text: String) -> String {
    if text.len() > MAX_DESCRIPTION {
        let mut end = MAX_DESCRIPTION;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Value;
    use crate::runtime::{ComponentCache, PoolSize};
    use genesys_xml::wasp_codec_sdk as sdk;

    fn runtime() -> Runtime {
        Runtime::new(
            PoolSize {
                instances: 8,
                concurrent_calls: 8,
                max_memory: 256 << 20,
            },
            ComponentCache::new(None),
        )
        .unwrap()
    }

    async fn load(runtime: &Runtime, name: &str, limits: CodecLimits) -> Codec {
        Codec::load(runtime, crate::builtin::get(name).unwrap(), limits)
            .await
            .unwrap()
    }

    fn item(body: impl Into<Vec<u8>>) -> RawItem {
        RawItem {
            name: "in.xml".into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn op(entry: &Entry) -> &Operation {
        match entry {
            Entry::Op(op) => op,
            Entry::Bad(bad) => panic!("unexpected bad operation {bad:?}"),
        }
    }

    fn bad(entry: &Entry) -> &BadOperation {
        match entry {
            Entry::Bad(bad) => bad,
            Entry::Op(op) => panic!("expected a bad operation, got {op:?}"),
        }
    }

    const SIX: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<messages>
  <interaction operation="submit" ExternalId="ord-88">
    <properties>
      <Queue>Inbound</Queue>
      <Priority type="int">5</Priority>
      <Customer type="kvlist"><Name>Ada &amp; Co</Name><Segment>gold</Segment></Customer>
      <Blob type="bin">AAEC</Blob>
    </properties>
  </interaction>
  <interaction operation="update" InteractionId="0001"/>
  <interaction operation="hold" ExternalId="ord-88"/>
  <interaction operation="resume" ExternalId="ord-88"/>
  <interaction operation="getinfo" ExternalId="ord-88"/>
  <interaction operation="stop" ExternalId="ord-41"/>
</messages>"#;

    #[tokio::test]
    async fn genesys_xml_decodes_a_batch_one_result_per_item() {
        let runtime = runtime();
        let codec = load(&runtime, "genesys-xml", CodecLimits::default()).await;
        assert_eq!(codec.info().name, "genesys-xml");
        assert_eq!(codec.info().content_type, "application/xml");
        assert_eq!(codec.info().extension, "xml");
        let middle = r#"<m>
  <interaction operation="submit" ExternalId="a"/>
  <interaction operation="submit" ExternalId="b"><properties><Priority type="int">high</Priority></properties></interaction>
  <interaction operation="stop" ExternalId="c"/>
</m>"#;
        let bomb = r#"<!DOCTYPE m [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><m>&b;</m>"#;
        let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        let results = codec
            .decode(vec![
                item(SIX),
                item(middle),
                item(bomb),
                item("<m><interaction operation=\"stop\"></m>"),
                item(deep),
                item("<m>&xxe;</m>"),
            ])
            .await
            .unwrap();
        assert_eq!(results.len(), 6);

        let six = results[0].as_ref().unwrap();
        let kinds: Vec<_> = six.iter().map(|e| op(e).kind).collect();
        use OpKind::*;
        assert_eq!(kinds, [Submit, Update, Hold, Resume, GetInfo, Stop]);
        let submit = op(&six[0]);
        assert_eq!(submit.external_id.as_deref(), Some("ord-88"));
        assert_eq!(
            submit.properties,
            Kv::new()
                .with("Queue", Value::Str("Inbound".into()))
                .with("Priority", Value::Int(5))
                .with(
                    "Customer",
                    Value::List(
                        Kv::new()
                            .with("Name", Value::Str("Ada & Co".into()))
                            .with("Segment", Value::Str("gold".into()))
                    )
                )
                .with("Blob", Value::Binary(vec![0, 1, 2]))
        );
        assert_eq!(op(&six[1]).interaction_id.as_deref(), Some("0001"));

        let middle = results[1].as_ref().unwrap();
        assert_eq!(middle.len(), 3);
        assert_eq!(op(&middle[0]).external_id.as_deref(), Some("a"));
        let b = bad(&middle[1]);
        assert_eq!(b.place, "interaction[2]/properties/Priority");
        assert_eq!(b.external_id.as_deref(), Some("b"));
        assert_eq!(op(&middle[2]).kind, Stop);

        let unreadable = |i: usize, word: &str| {
            let err = results[i].as_ref().unwrap_err();
            assert!(err.contains(word), "item {i}: {err} (expected {word})");
        };
        unreadable(2, "DTD");
        unreadable(3, "well-formed");
        unreadable(4, "nest deeper");
        unreadable(5, "&xxe;");
        assert_eq!(codec.replaced(), 0);
    }

    fn replies() -> Vec<Reply> {
        vec![
            Reply {
                interaction_id: Some("0001".into()),
                external_id: Some("ord-88 <\"&'>".into()),
                tenant_id: Some(101),
                media_type: Some("workitem".into()),
                queue: Some("Inbound".into()),
                properties: Kv::new()
                    .with("Text", Value::Str("a < b\r\n & c".into()))
                    .with("N", Value::Int(-5))
                    .with("B", Value::Binary(vec![0, 255]))
                    .with(
                        "L",
                        Value::List(Kv::new().with("Segment", Value::Str("gold".into()))),
                    ),
                ..Reply::new(ReplyKind::Submitted)
            },
            Reply {
                external_id: Some("ord-41".into()),
                code: Some(3),
                description: Some("unknown ExternalId".into()),
                ..Reply::new(ReplyKind::Error)
            },
            Reply::new(ReplyKind::Stopped),
        ]
    }

    /// A reply as the codec SDK spells it, to compare with what the
    /// native parse reads back.
    fn sdk_reply(r: &Reply) -> (String, Option<String>, Option<u32>, Option<i32>, String) {
        let kind = format!("{:?}", r.kind).to_lowercase();
        let props = serde_json::to_string(&r.properties).unwrap();
        (kind, r.external_id.clone(), r.tenant_id, r.code, props)
    }

    fn sdk_kv(kv: &sdk::Kv) -> Kv {
        Kv(kv
            .0
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    sdk::Value::Int(i) => Value::Int(*i),
                    sdk::Value::Str(s) => Value::Str(s.clone()),
                    sdk::Value::Binary(b) => Value::Binary(b.clone()),
                    sdk::Value::List(l) => Value::List(sdk_kv(l)),
                };
                (k.clone(), v)
            })
            .collect())
    }

    fn read_back(r: &sdk::Reply) -> (String, Option<String>, Option<u32>, Option<i32>, String) {
        let props = serde_json::to_string(&sdk_kv(&r.properties)).unwrap();
        (
            r.kind.name().to_string(),
            r.external_id.clone(),
            r.tenant_id,
            r.code,
            props,
        )
    }

    #[tokio::test]
    async fn replies_round_trip_through_both_codecs() {
        let runtime = runtime();
        let xml = load(&runtime, "genesys-xml", CodecLimits::default()).await;
        let json = load(&runtime, "json", CodecLimits::default()).await;
        let replies = replies();
        let expected: Vec<_> = replies.iter().map(sdk_reply).collect();
        type Read = fn(&[u8]) -> Result<Vec<sdk::Reply>, String>;
        for (codec, read) in [
            (&xml, genesys_xml::decode_replies as Read),
            (&json, json_codec::decode_replies as Read),
        ] {
            // Two documents in one batch: one result each.
            let docs = codec
                .encode(vec![replies.clone(), vec![Reply::new(ReplyKind::Held)]])
                .await
                .unwrap();
            assert_eq!(docs.len(), 2);
            let first = docs[0].as_ref().unwrap();
            let back: Vec<_> = read(first).unwrap().iter().map(read_back).collect();
            assert_eq!(back, expected, "{}", codec.info().name);
            let text = String::from_utf8(first.clone()).unwrap();
            assert!(text.contains("ord-88"), "{text}");
            assert_eq!(read(docs[1].as_ref().unwrap()).unwrap().len(), 1);
        }
        // What a format cannot carry fails that document only.
        let mut odd = Reply::new(ReplyKind::Info);
        odd.properties = Kv::new().with("Two words", Value::Int(1));
        let docs = xml
            .encode(vec![vec![odd], vec![Reply::new(ReplyKind::Held)]])
            .await
            .unwrap();
        assert!(docs[0].as_ref().unwrap_err().contains("element name"));
        assert!(docs[1].is_ok());
    }

    #[tokio::test]
    async fn json_decodes_a_batch_one_result_per_item() {
        let runtime = runtime();
        let codec = load(&runtime, "json", CodecLimits::default()).await;
        assert_eq!(codec.info().name, "json");
        let six = r#"[
          {"operation":"submit","ExternalId":"ord-88","Properties":{"Queue":"Inbound","Priority":5,
             "Customer":{"Segment":"gold"},"Blob":{"$binary":"AAEC"}}},
          {"operation":"update","InteractionId":"0001"},
          {"operation":"hold","ExternalId":"ord-88"},
          {"operation":"resume","ExternalId":"ord-88"},
          {"operation":"getinfo","ExternalId":"ord-88"},
          {"operation":"stop","ExternalId":"ord-41"}]"#;
        let middle = r#"[{"operation":"submit"},{"operation":"submit","ExternalId":"b",
            "Properties":{"Tags":[1]}},{"operation":"stop"}]"#;
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let results = codec
            .decode(vec![
                item(six),
                item(middle),
                item("<xml/>"),
                item(deep),
                item(r#"{"operation":"stop","ExternalId":"x"}"#),
            ])
            .await
            .unwrap();
        assert_eq!(results.len(), 5);
        let six = results[0].as_ref().unwrap();
        let kinds: Vec<_> = six.iter().map(|e| op(e).kind).collect();
        use OpKind::*;
        assert_eq!(kinds, [Submit, Update, Hold, Resume, GetInfo, Stop]);
        assert_eq!(
            op(&six[0]).properties,
            Kv::new()
                .with("Queue", Value::Str("Inbound".into()))
                .with("Priority", Value::Int(5))
                .with(
                    "Customer",
                    Value::List(Kv::new().with("Segment", Value::Str("gold".into())))
                )
                .with("Blob", Value::Binary(vec![0, 1, 2]))
        );
        let middle = results[1].as_ref().unwrap();
        assert_eq!(bad(&middle[1]).place, "[1].Properties.Tags");
        assert_eq!(bad(&middle[1]).external_id.as_deref(), Some("b"));
        assert_eq!(op(&middle[2]).kind, Stop);
        assert!(results[2].as_ref().unwrap_err().contains("not JSON"));
        assert!(results[3].as_ref().unwrap_err().contains("recursion"));
        assert_eq!(op(&results[4].as_ref().unwrap()[0]).kind, Stop);
        assert!(codec.decode(Vec::new()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_component_reads_what_the_native_parse_reads() {
        let runtime = runtime();
        let codec = load(&runtime, "genesys-xml", CodecLimits::default()).await;
        let results = codec.decode(vec![item(SIX)]).await.unwrap();
        let native = genesys_xml::decode(SIX.as_bytes()).unwrap();
        let wasm = results[0].as_ref().unwrap();
        assert_eq!(wasm.len(), native.len());
        for (w, n) in wasm.iter().zip(&native) {
            let sdk::Entry::Op(n) = n else {
                panic!("{n:?}")
            };
            let w = op(w);
            assert_eq!(format!("{:?}", w.kind).to_lowercase(), n.kind.name());
            assert_eq!(w.external_id, n.external_id);
            assert_eq!(w.properties, sdk_kv(&n.properties));
        }
    }

    #[tokio::test]
    async fn a_failed_call_costs_its_instance_not_the_codec() {
        let runtime = runtime();
        // Out of memory: a batch larger than the instance's memory.
        let small = CodecLimits {
            instances: 1,
            memory_bytes: 4 << 20,
            ..CodecLimits::default()
        };
        let codec = load(&runtime, "genesys-xml", small).await;
        let big = format!(
            "<m><interaction operation=\"stop\" ExternalId=\"{}\"/></m>",
            "x".repeat(8 << 20)
        );
        let err = codec.decode(vec![item(big)]).await.unwrap_err();
        assert!(matches!(err, CodecError::OutOfMemory(_)), "{err}");
        assert_eq!(codec.replaced(), 1);
        let results = codec.decode(vec![item(SIX)]).await.unwrap();
        assert_eq!(results[0].as_ref().unwrap().len(), 6);

        // Timeout: a batch that takes far longer than the deadline.
        let hasty = CodecLimits {
            instances: 1,
            memory_bytes: 256 << 20,
            timeout: Duration::from_millis(1),
            ..CodecLimits::default()
        };
        let codec = load(&runtime, "genesys-xml", hasty).await;
        let props = "<P>1</P>".repeat(50_000);
        let doc = format!(
            "<m><interaction operation=\"submit\"><properties>{props}</properties></interaction></m>"
        );
        let batch = vec![item(doc); 20];
        let err = codec.decode(batch).await.unwrap_err();
        assert!(matches!(err, CodecError::Timeout(_)), "{err}");
        assert_eq!(codec.replaced(), 1);
    }

    /// Capture points share a codec across tasks.
    #[test]
    fn codec_calls_can_run_on_any_task() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        fn check(codec: &Codec) {
            send_sync(codec);
            send(&codec.decode(Vec::new()));
            send(&codec.encode(Vec::new()));
        }
        let _ = check;
    }

    #[tokio::test]
    async fn an_esp_service_is_not_a_codec() {
        let runtime = runtime();
        let err = Codec::load(
            &runtime,
            crate::builtin::get("fax").unwrap(),
            CodecLimits::default(),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("may import only WASI"),
            "{err:#}"
        );
    }
}
