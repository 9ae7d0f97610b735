//! `wasp bench kafka` and `wasp bench soap`: capture points end to end.
//!
//! - **kafka**: messages already on a topic of a real broker (`--brokers`,
//!   e.g. `scripts/kafka-broker 9092`) go through a kafka capture point —
//!   codec, node-sim answer, replies produced with `acks=all`, offsets
//!   committed — beside a baseline in the same run: a plain rdkafka loop on
//!   the same machine that consumes the same messages and produces one
//!   reply each (`acks=all`) and commits, with no codec and no node. The
//!   ratio says how much of the broker-and-client floor wasp keeps.
//! - **soap**: SOAP `Submit`s to an http capture point (each answered once
//!   the in-process node-sim did), beside SOAP `Ping` (no node, the same
//!   envelope parse) and JSON submits in the same run.
//!
//! CPU figures are per message or request: for kafka, wasp's process
//! (the node-sim runs in a process of its own, measured apart); for soap,
//! this process (wasp, node-sim and the load together).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::bench::{cpu_time, machine};
use super::bench_capture::InProcess;
use crate::tools::node_sim::{Sim, SimArgs};

/// Partitions of each benchmark topic.
const PARTITIONS: i32 = 4;

/// `wasp bench kafka`.
pub struct KafkaBench {
    pub brokers: String,
    pub messages: usize,
    pub rounds: usize,
}

/// `wasp bench soap`.
pub struct SoapBench {
    pub seconds: u64,
    pub connections: usize,
    pub rounds: usize,
}

fn doc(i: usize) -> Vec<u8> {
    format!(
        r#"<interaction operation="submit" ExternalId="b-{i}"><properties><Subject>order {i}</Subject><Priority type="int">5</Priority></properties></interaction>"#
    )
    .into_bytes()
}

async fn create_topics(brokers: &str, names: &[(&str, i32)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .with_context(|| format!("create topics on {brokers}"))?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }
    Ok(())
}

fn producer(brokers: &str) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()?)
}

async fn produce(brokers: &str, topic: &str, n: usize) -> Result<()> {
    let producer = producer(brokers)?;
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("k-{i}");
        let payload = doc(i);
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?,
        );
    }
    for p in pending {
        p.await?.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    Ok(())
}

/// One measurement: messages or requests per second, and this process's
/// CPU per message or request.
#[derive(Debug, Clone, Copy)]
struct Figure {
    per_second: f64,
    cpu_us: f64,
}

fn figure(n: usize, elapsed: Duration, cpu: Duration) -> Figure {
    Figure {
        per_second: n as f64 / elapsed.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / n.max(1) as f64,
    }
}

fn median(mut v: Vec<Figure>) -> Figure {
    v.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    v[v.len() / 2]
}

/// The floor: consume `n` messages of `topic`, produce a reply for each
/// (acks=all, all awaited), commit.
async fn baseline(brokers: &str, topic: &str, n: usize) -> Result<Figure> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-baseline"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let producer = producer(brokers)?;
    let out = format!("{topic}.baseline");
    // The clock starts at the first message (the group join is not timed,
    // as wasp's is not).
    let first = consumer.recv().await?;
    let cpu_before = cpu_time("self").unwrap_or_default();
    let start = Instant::now();
    let mut pending = Vec::with_capacity(n);
    let mut send = |m: &rdkafka::message::BorrowedMessage<'_>| -> Result<()> {
        let payload = m.payload().unwrap_or_default().to_vec();
        let key = m.key().unwrap_or_default().to_vec();
        let record = FutureRecord::to(&out).key(&key).payload(&payload);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?,
        );
        Ok(())
    };
    send(&first)?;
    drop(first);
    for _ in 1..n {
        let m = consumer.recv().await?;
        send(&m)?;
    }
    for p in pending {
        p.await?.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    consumer.commit_consumer_state(CommitMode::Sync)?;
    let elapsed = start.elapsed();
    let cpu = cpu_time("self")
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    tokio::task::spawn_blocking(move || drop(consumer));
    Ok(figure(n, elapsed, cpu))
}

/// wasp: a kafka capture point on `topic` (already holding `n` messages)
/// to an in-process node-sim; timed from the partitions' assignment until
/// every message is finished and its offset committed.
async fn through_wasp(brokers: &str, topic: &str, n: usize) -> Result<(Figure, f64)> {
    let text = format!(
        r#"
        [[tenants]]
        id = 101
        name = "Bench"
        [captures.bench]
        adapter = "kafka"
        brokers = "{brokers}"
        topic = "{topic}"
        batch = 64
        max-in-flight = 2048
        default-values = {{ TenantId = 101, Queue = "Inbound" }}
        [nodes]
        max-window = 2000
    "#
    );
    let served = InProcess::start("kafka", &text, true).await?;
    let (host, addr) = (served.host.clone(), served.addr);
    // The node in a process of its own, as an Interaction Server is: its
    // CPU is not wasp's.
    let mut node = tokio::process::Command::new(std::env::current_exe()?)
        .args(["node-sim", "--connect", &format!("ws://{addr}")])
        .args([
            "--node-id",
            "bench-node",
            "--tenants",
            "101",
            "--window",
            "2000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start the node-sim")?;
    let node_pid = node.id().context("the node-sim's pid")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.nodes.snapshot().is_empty() {
        if Instant::now() > deadline {
            bail!("the node-sim did not connect");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cp = host.current().captures["bench"].clone();
    let deadline = Instant::now() + Duration::from_secs(600);
    // Timed from the first message taken.
    while cp.stats.taken.get() == 0 {
        if Instant::now() > deadline {
            bail!("the capture point took nothing in 600 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cpu_before = cpu_time("self").unwrap_or_default();
    let node_before = cpu_time(&node_pid).unwrap_or_default();
    let start = Instant::now();
    let group = "wasp-bench";
    let committed = || -> i64 {
        let c: rdkafka::consumer::BaseConsumer = match ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .create()
        {
            Ok(c) => c,
            Err(_) => return 0,
        };
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(topic, p);
        }
        c.committed_offsets(tpl, Duration::from_secs(10))
            .map(|t| {
                t.elements()
                    .iter()
                    .map(|e| match e.offset() {
                        rdkafka::Offset::Offset(o) => o,
                        _ => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    loop {
        if cp.stats.processed.get() as usize >= n && committed() >= n as i64 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} messages finished in 600 s",
                cp.stats.processed.get()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_time("self")
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let node_cpu = cpu_time(&node_pid)
        .unwrap_or_default()
        .saturating_sub(node_before);
    let answered = cp.stats.answered.get() as usize;
    if answered < n {
        bail!("the node answered {answered} operations, expected {n}");
    }
    served.stop().await;
    let _ = node.kill().await;
    Ok((
        figure(n, elapsed, cpu),
        node_cpu.as_secs_f64() * 1e6 / n as f64,
    ))
}

pub async fn run_kafka(args: KafkaBench) -> Result<()> {
    println!("{}", machine());
    println!(
        "kafka capture end to end: {} messages (one submit each) on {PARTITIONS} partitions of a broker at {}, \
         a node-sim process answering at once; {} interleaved rounds, medians",
        args.messages, args.brokers, args.rounds
    );
    let mut base = Vec::new();
    let mut wasp = Vec::new();
    for round in 0..args.rounds {
        let topic = format!("bench-{}-{round}", std::process::id());
        create_topics(
            &args.brokers,
            &[
                (&topic, PARTITIONS),
                (&format!("{topic}.notification"), 1),
                (&format!("{topic}.error"), 1),
                (&format!("{topic}.baseline"), 1),
            ],
        )
        .await?;
        produce(&args.brokers, &topic, args.messages).await?;
        let b = baseline(&args.brokers, &topic, args.messages).await?;
        let (w, node_us) = through_wasp(&args.brokers, &topic, args.messages).await?;
        println!(
            "  round {}: baseline {:.0} msg/s ({:.1} µs CPU/msg), wasp {:.0} msg/s ({:.1} µs CPU/msg; the node-sim process {:.1} µs/msg)",
            round + 1,
            b.per_second,
            b.cpu_us,
            w.per_second,
            w.cpu_us,
            node_us
        );
        base.push(b);
        wasp.push(w);
    }
    let (b, w) = (median(base), median(wasp));
    println!(
        "baseline (consume, produce a reply acks=all, commit; no codec, no node): {:.0} msg/s, {:.1} µs CPU/msg",
        b.per_second, b.cpu_us
    );
    println!(
        "wasp (consume, codec, node-sim, reply acks=all, commit):                {:.0} msg/s, {:.1} µs CPU/msg",
        w.per_second, w.cpu_us
    );
    println!(
        "ratio wasp/baseline: {:.2}; target >= 20000 msg/s",
        w.per_second / b.per_second
    );
    Ok(())
}

const SOAP_NS: &str = "http://www.genesyslab.com/interaction";

fn soap_envelope(op: &str, inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ixn="{SOAP_NS}"><soap:Body><ixn:{op}>{inner}</ixn:{op}></soap:Body></soap:Envelope>"#
    )
}

/// What one request of a kind is: path, content type, action, body for
/// request `i`.
#[derive(Clone, Copy)]
enum Kind {
    SoapSubmit,
    SoapPing,
    JsonSubmit,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::SoapSubmit => "SOAP Submit (answered after the node)",
            Kind::SoapPing => "SOAP Ping (no node)",
            Kind::JsonSubmit => "JSON submit (answered after the node)",
        }
    }

    fn request(self, conn: usize, i: usize) -> Result<Request<Full<Bytes>>> {
        // Unique across connections, measurements and runs.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ext = format!("s-{}-{n}-{conn}-{i}", std::process::id());
        let (path, ctype, action, body) = match self {
            Kind::SoapSubmit => (
                "/Genesys/Interaction/bench-ws/WebServiceCapturePoint",
                "text/xml; charset=utf-8",
                Some("Submit"),
                soap_envelope(
                    "Submit",
                    &format!(
                        "<ixn:ExternalId>{ext}</ixn:ExternalId><ixn:UserData><ixn:kvitem><ixn:key>Subject</ixn:key><ixn:value><ixn:ValueString>order</ixn:ValueString></ixn:value></ixn:kvitem></ixn:UserData>"
                    ),
                ),
            ),
            Kind::SoapPing => (
                "/Genesys/Interaction/bench-ws/WebServiceCapturePoint",
                "text/xml; charset=utf-8",
                Some("Ping"),
                soap_envelope("Ping", ""),
            ),
            Kind::JsonSubmit => (
                "/v1/capture/bench-ws/submit",
                "application/json",
                None,
                format!(r#"{{"ExternalId":"{ext}","Properties":{{"Subject":"order"}}}}"#),
            ),
        };
        let mut req = Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", ctype);
        if let Some(action) = action {
            req = req.header("soapaction", format!("\"{SOAP_NS}/{action}\""));
        }
        Ok(req.body(Full::new(Bytes::from(body)))?)
    }
}

async fn soap_load(
    addr: std::net::SocketAddr,
    kind: Kind,
    connections: usize,
    duration: Duration,
) -> Result<(Figure, u64)> {
    let cpu_before = cpu_time("self").unwrap_or_default();
    let start = Instant::now();
    let stop = start + duration;
    let mut tasks = Vec::new();
    for conn in 0..connections {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, c) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(c);
            let (mut ok, mut failed) = (0usize, 0u64);
            let mut i = 0;
            while Instant::now() < stop {
                let resp = sender.send_request(kind.request(conn, i)?).await?;
                let good = resp.status() == hyper::StatusCode::OK;
                let body = resp.into_body().collect().await?.to_bytes();
                if !good && failed == 0 {
                    eprintln!(
                        "{}: first failure: {}",
                        kind.label(),
                        String::from_utf8_lossy(&body[..body.len().min(600)])
                    );
                }
                if good {
                    ok += 1;
                } else {
                    failed += 1;
                }
                i += 1;
            }
            Ok::<_, anyhow::Error>((ok, failed))
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await??;
        ok += o;
        failed += f;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_time("self")
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    Ok((figure(ok, elapsed, cpu), failed))
}

pub async fn run_soap(args: SoapBench) -> Result<()> {
    let text = r#"
        [[tenants]]
        id = 101
        name = "Bench"
        [captures.bench-ws]
        adapter = "http"
        default-values = { TenantId = 101, Queue = "Inbound" }
        [nodes]
        max-window = 1000
    "#;
    let served = InProcess::start("soap", text, true).await?;
    let addr = served.addr;
    let sim = Sim::spawn(SimArgs {
        window: 1000,
        ..SimArgs::node(addr, "bench-node", &[101])
    });
    sim.connected(Duration::from_secs(10)).await?;
    println!("{}", machine());
    println!(
        "http capture point: {} keep-alive connections, {} s per measurement, {} interleaved rounds, medians; \
         node-sim in this process answering at once; CPU is this process's (wasp, node-sim and the load)",
        args.connections, args.seconds, args.rounds
    );
    let kinds = [Kind::SoapSubmit, Kind::JsonSubmit, Kind::SoapPing];
    let mut figures: Vec<Vec<Figure>> = vec![Vec::new(); kinds.len()];
    let duration = Duration::from_secs(args.seconds);
    // A short warm-up (first compilations, first connections).
    soap_load(
        addr,
        Kind::SoapSubmit,
        args.connections,
        Duration::from_millis(500),
    )
    .await?;
    for _ in 0..args.rounds {
        for (k, kind) in kinds.iter().enumerate() {
            let (f, failed) = soap_load(addr, *kind, args.connections, duration).await?;
            if failed > 0 {
                bail!("{}: {failed} requests failed", kind.label());
            }
            figures[k].push(f);
        }
    }
    let ping = median(figures[2].clone());
    for (k, kind) in kinds.iter().enumerate() {
        let f = median(figures[k].clone());
        println!(
            "  {:<40} {:>7.0} req/s  {:>6.1} µs CPU/req  ({:.2} of Ping)",
            kind.label(),
            f.per_second,
            f.cpu_us,
            f.per_second / ping.per_second
        );
    }
    served.stop().await;
    Ok(())
}
