//! `wasp bench capture`: the file capture point, measured in one run.
//!
//! 1. **The codec's cost**: the bundled `genesys-xml` codec as a Wasm
//!    component (`Codec::decode`: items copied into the sandbox, parsed,
//!    operations lifted back into host KV lists) against the same parse
//!    compiled natively into this binary, on the same documents, in
//!    interleaved rounds (the median is reported), per batch of documents
//!    as the pipeline calls it. The ratio is native time / Wasm time: 1.0
//!    means the sandbox costs nothing.
//! 2. **End to end**: a host in this process with a file capture point and
//!    a node-sim answering at once; files are dropped into `inbound/` and
//!    timed until every one is in `processed/` (decode, tenant, node round
//!    trip, a durable journal write per operation, replies written, file
//!    moved). Files/s, operations/s and this process's CPU time per
//!    operation (the node-sim's included) are printed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Host;
use crate::config::Config;
use crate::runtime::codec::{Codec, CodecLimits, RawItem};
use crate::runtime::{ComponentCache, PoolSize, Runtime};
use crate::tools::node_sim::{Sim, SimArgs};

/// Options of `wasp bench capture`.
#[derive(Debug, Clone)]
pub struct CaptureBench {
    /// Interleaved rounds of the codec comparison.
    pub rounds: usize,
    /// Files dropped for the end-to-end run.
    pub files: usize,
    /// A build of the genesys-xml codec instead of the bundled one.
    pub codec: Option<std::path::PathBuf>,
}

/// A small capture file: two submits, nested and typed properties.
fn small_doc(i: usize) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<messages>
  <interaction operation="submit" ExternalId="bench-{i}-a">
    <properties>
      <Queue>Inbound</Queue><MediaType>workitem</MediaType>
      <Subject>Parcel never arrived</Subject><Priority type="int">5</Priority>
      <Customer type="kvlist"><Name>Ada</Name><Segment>gold</Segment></Customer>
    </properties>
  </interaction>
  <interaction operation="submit" ExternalId="bench-{i}-b">
    <properties><Subject>Change my address</Subject><Amount type="int">120</Amount></properties>
  </interaction>
</messages>"#
    )
}

/// A larger capture file: 50 operations.
fn large_doc(i: usize) -> String {
    let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<messages>\n");
    for j in 0..50 {
        doc.push_str(&format!(
            "  <interaction operation=\"submit\" ExternalId=\"bench-{i}-{j}\"><properties>\
             <Subject>Order {j}</Subject><Amount type=\"int\">{j}</Amount>\
             <Customer type=\"kvlist\"><Name>Customer {j}</Name><Segment>standard</Segment></Customer>\
             </properties></interaction>\n"
        ));
    }
    doc.push_str("</messages>\n");
    doc
}

pub async fn run(args: CaptureBench) -> Result<()> {
    println!("{}", super::bench::machine());
    codec_cost(args.rounds, args.codec.as_deref()).await?;
    end_to_end(args.files).await
}

async fn codec_cost(rounds: usize, path: Option<&Path>) -> Result<()> {
    let runtime = Runtime::new(
        PoolSize {
            instances: 16,
            concurrent_calls: 16,
            max_memory: 64 << 20,
        },
        ComponentCache::new(ComponentCache::default_dir()),
    )?;
    let bytes = match path {
        Some(path) => std::borrow::Cow::Owned(
            std::fs::read(path).with_context(|| format!("read {}", path.display()))?,
        ),
        None => std::borrow::Cow::Borrowed(
            crate::builtin::get("genesys-xml").context("the bundled genesys-xml codec")?,
        ),
    };
    let codec = Codec::load(&runtime, &bytes, CodecLimits::default()).await?;
    const BATCH: usize = 16;
    println!(
        "codec genesys-xml: Wasm component vs the same parse native, batches of {BATCH} documents, \
         median of {rounds} interleaved rounds"
    );
    println!(
        "{:<26} {:>14} {:>14} {:>8}",
        "document", "native µs/doc", "wasm µs/doc", "ratio"
    );
    for (label, make) in [
        ("2 operations (~700 B)", small_doc as fn(usize) -> String),
        ("50 operations (~9 KB)", large_doc),
    ] {
        let docs: Vec<Vec<u8>> = (0..BATCH).map(|i| make(i).into_bytes()).collect();
        let size = docs[0].len();
        // Enough batches for ~0.3 s per measurement.
        let batches = if size < 2_000 { 400 } else { 40 };
        let mut native = Vec::new();
        let mut wasm = Vec::new();
        // Warm up both (instances, caches).
        measure_native(&docs, 2)?;
        measure_wasm(&codec, &docs, 2).await?;
        for _ in 0..rounds.max(1) {
            native.push(measure_native(&docs, batches)?);
            wasm.push(measure_wasm(&codec, &docs, batches).await?);
        }
        let per_doc = |runs: &mut Vec<Duration>| {
            runs.sort();
            runs[runs.len() / 2].as_secs_f64() * 1e6 / (batches * BATCH) as f64
        };
        let (n, w) = (per_doc(&mut native), per_doc(&mut wasm));
        println!(
            "{:<26} {:>14.1} {:>14.1} {:>8.2}   ({size} bytes)",
            label,
            n,
            w,
            n / w
        );
    }
    Ok(())
}

fn measure_native(docs: &[Vec<u8>], batches: usize) -> Result<Duration> {
    let start = Instant::now();
    for _ in 0..batches {
        for doc in docs {
            let entries =
                genesys_xml::decode(doc).map_err(|e| anyhow::anyhow!("native decode: {e}"))?;
            std::hint::black_box(entries);
        }
    }
    Ok(start.elapsed())
}

async fn measure_wasm(codec: &Codec, docs: &[Vec<u8>], batches: usize) -> Result<Duration> {
    let start = Instant::now();
    for _ in 0..batches {
        let items = docs
            .iter()
            .map(|d| RawItem {
                name: "bench.xml".into(),
                headers: Vec::new(),
                body: d.clone(),
            })
            .collect();
        let decoded = codec.decode(items).await?;
        if decoded.iter().any(Result::is_err) {
            bail!("the codec refused a bench document");
        }
        std::hint::black_box(decoded);
    }
    Ok(start.elapsed())
}

async fn end_to_end(files: usize) -> Result<()> {
    let text = r#"
        [[tenants]]
        id = 101
        name = "Bench"
        [captures.bench]
        adapter = "file"
        rescan-ms = 100
        settle-ms = 0
        default-values = { TenantId = 101, Queue = "Inbound" }
        [nodes]
        max-window = 1000
    "#;
    let served = InProcess::start("capture", text, false).await?;
    let (host, addr, tmp) = (served.host.clone(), served.addr, served.dir.clone());
    let sim = Sim::spawn(SimArgs {
        window: 1000,
        ..SimArgs::node(addr, "bench-node", &[101])
    });
    sim.connected(Duration::from_secs(10)).await?;
    let folder = tmp.join("data/bench");
    let staging = tmp.join("staging");
    std::fs::create_dir_all(&staging)?;
    for i in 0..files {
        std::fs::write(staging.join(format!("f-{i:06}.xml")), small_doc(i))?;
    }
    let ops = files * 2;
    let cpu_before = super::bench::cpu_time("self").unwrap_or_default();
    let start = Instant::now();
    for i in 0..files {
        let name = format!("f-{i:06}.xml");
        std::fs::rename(staging.join(&name), folder.join("inbound").join(&name))?;
    }
    // The capture point's own count: polling it costs nothing next to
    // reading the folder.
    let processed = host.current().captures["bench"].stats.processed.clone();
    let deadline = start + Duration::from_secs(600);
    while (processed.get() as usize) < files {
        if Instant::now() > deadline {
            bail!(
                "only {} of {files} files processed in 600 s",
                processed.get()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    let cpu = super::bench::cpu_time("self")
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    println!(
        "end to end: {files} files of 2 submits dropped at once into inbound/, node-sim answering at once"
    );
    println!(
        "  {:.0} files/s, {:.0} operations/s; {:.1} s; this process's CPU {:.0} µs per operation \
         (node-sim included), each operation one durable journal write",
        files as f64 / elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / ops as f64
    );
    let held = sim.state.interactions.lock().map(|m| m.len()).unwrap_or(0);
    if held != ops || count(&folder.join("processed")) != files {
        bail!("the node holds {held} interactions, expected {ops}");
    }
    served.stop().await;
    Ok(())
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A host of a TOML config served in this process on a free loopback
/// port, with `data-dir` (and, with `own_cache`, the compile cache) in a
/// temp folder of its own, relative paths in the config read from there;
/// the folder goes when this is dropped.
pub(crate) struct InProcess {
    pub host: Arc<Host>,
    pub addr: std::net::SocketAddr,
    /// The temp folder.
    pub dir: std::path::PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
    serving: tokio::task::JoinHandle<Result<()>>,
    _cleanup: RemoveOnDrop,
}

impl InProcess {
    pub async fn start(what: &str, toml: &str, own_cache: bool) -> Result<InProcess> {
        let dir = std::env::temp_dir().join(format!(
            "wasp-bench-{what}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let cleanup = RemoveOnDrop(dir.clone());
        std::fs::create_dir_all(&dir)?;
        let mut config = Config::parse(toml, &dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.data_dir = Some(dir.join("data"));
        if own_cache {
            config.runtime.cache_dir = Some(dir.join("cache"));
        }
        let host = Arc::new(Host::start(config).await?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let serving = tokio::spawn(crate::serve(listener, host.clone(), shutdown.clone()));
        Ok(InProcess {
            host,
            addr,
            dir,
            shutdown,
            serving,
            _cleanup: cleanup,
        })
    }

    /// Stops serving and waits until the listener's orderly stop ended.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.serving.await;
    }
}
