//! `wasp bench`: ESP over HTTP, measured in one run on one machine.
//!
//! The command re-runs itself as a server process (`--serve`) holding three
//! servers on loopback, then drives them with a keep-alive HTTP/1.1 load
//! generator from the first process:
//! - (a) a native axum handler doing the same JSON parse/encode and echo;
//! - (b) wasp with a pooled `builtin:echo` cluster;
//! - (c) wasp with a per-request `builtin:echo` cluster.
//!
//! For each: peak req/s with p50/p99 (closed loop; `--rounds` interleaved
//! rounds a b c, a b c ..., the median reported), then p50/p99 at half of
//! that peak (open loop, latency counted from the scheduled send time so a
//! stall is not hidden). Ratios b/a and c/a, and the in-process cost of
//! instantiate + call + drop for (c), are printed at the end, with the CPU
//! time per request of the server process and of the load generator (the
//! two share the machine's cores, so a rate ratio is not a cost ratio).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::Host;
use crate::config::Config;
use crate::esp::{self, ResponseBody};
use crate::runtime::bindings;
use crate::runtime::{ComponentCache, Instance, InstanceSpec, PoolSize, Runtime};
use crate::tools::node_sim::{Pacer, percentile_ms};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure: `esp` (ESP over HTTP: native vs pooled vs
    /// per-request), `capture` (the file capture point: the Wasm codec
    /// vs the same parse native, and files end to end), `kafka` (a kafka
    /// capture point end to end; needs `--brokers`) or `soap` (the http
    /// capture point).
    #[arg(value_enum, default_value_t = Bench::Esp)]
    pub what: Bench,
    /// `kafka`: the broker (`host:port`), e.g. one started with
    /// `scripts/kafka-broker 9092`.
    #[arg(long)]
    pub brokers: Option<String>,
    /// `kafka`: messages per round.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// `capture`: files dropped for the end-to-end run.
    #[arg(long, default_value_t = 2000)]
    pub files: usize,
    /// `capture`: a build of the genesys-xml codec to measure instead of
    /// the bundled one (e.g. one with symbols, for a profiler).
    #[arg(long)]
    pub codec: Option<std::path::PathBuf>,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Interleaved rounds of peak measurements; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Instances of the pooled echo cluster.
    #[arg(long, default_value_t = 4)]
    pub pooled_instances: usize,
    /// Concurrent instances of the per-request echo cluster.
    #[arg(long, default_value_t = 16)]
    pub per_request_instances: usize,
    /// Internal: run the three servers and print their ports.
    #[arg(long, hide = true)]
    pub serve: bool,
}

/// Where every target answers ESP for the echo cluster.
const ECHO_PATH: &str = "/v1/esp/echo";

/// The request every target answers.
const BODY: &str = r#"{"ReferenceId":42,"Request":{"Service":"Echo","Method":"Echo","Version":"1.0","TenantId":101,"Parameters":{"To":"+14155550100","From":"+14155550199","Document":"Quarterly report, page 1 of 3","Pages":3,"Options":{"Resolution":"fine","Retry":2}}},"UserData":{"StrategyId":"s-7"}}"#;

/// The benchmarks `wasp bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bench {
    Esp,
    Capture,
    /// A kafka capture point end to end vs a plain consume-produce loop.
    Kafka,
    /// SOAP Submit to an http capture point vs SOAP Ping and JSON.
    Soap,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        Bench::Kafka => {
            let brokers = args.brokers.clone().context(
                "wasp bench kafka needs --brokers HOST:PORT (e.g. scripts/kafka-broker 9092 &)",
            )?;
            return super::bench_kafka::run_kafka(super::bench_kafka::KafkaBench {
                brokers,
                messages: args.messages,
                rounds: args.rounds,
            })
            .await;
        }
        Bench::Soap => {
            return super::bench_kafka::run_soap(super::bench_kafka::SoapBench {
                seconds: args.seconds,
                connections: args.connections,
                rounds: args.rounds,
            })
            .await;
        }
        Bench::Esp | Bench::Capture => {}
    }
    if args.what == Bench::Capture {
        return super::bench_capture::run(super::bench_capture::CaptureBench {
            rounds: args.rounds.max(5),
            files: args.files,
            codec: args.codec.clone(),
        })
        .await;
    }
    if args.serve {
        return serve_targets(&args).await;
    }
    let exe = std::env::current_exe().context("find the wasp executable")?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "bench",
            "--serve",
            "--pooled-instances",
            &args.pooled_instances.to_string(),
            "--per-request-instances",
            &args.per_request_instances.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start the bench server process")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let ports: Vec<u16> = line
        .strip_prefix("PORTS ")
        .context("the bench server did not report its ports")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [native, pooled, per_request] = ports[..] else {
        bail!("expected three ports, got {line}");
    };

    println!("{}", machine());
    println!(
        "load: {} keep-alive connections, {} s per measurement, body {} bytes",
        args.connections,
        args.seconds,
        BODY.len()
    );
    let instantiate = instantiate_cost().await?;
    let in_process = in_process_cost(args.pooled_instances).await?;

    let server_pid = child.id().context("the bench server process id")?;
    let at = |port: u16| Target {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        server_pid,
    };
    let targets = [
        ("a native axum", at(native)),
        ("b wasp pooled", at(pooled)),
        ("c wasp per-request", at(per_request)),
    ];
    // Peaks are measured in interleaved rounds (a b c, a b c, ...) and the
    // median is reported: on a small machine a single run moves by several
    // percent with whatever else the scheduler does at that moment.
    let mut peaks: Vec<Vec<Measured>> = vec![Vec::new(); targets.len()];
    for (name, addr) in targets {
        load(
            addr,
            ECHO_PATH,
            args.connections,
            Duration::from_secs(1),
            None,
        )
        .await
        .with_context(|| format!("warm up {name}"))?;
    }
    for _ in 0..args.rounds.max(1) {
        for ((_, addr), runs) in targets.iter().zip(&mut peaks) {
            let peak = load(
                *addr,
                ECHO_PATH,
                args.connections,
                Duration::from_secs(args.seconds),
                None,
            )
            .await?;
            runs.push(peak);
        }
    }
    let mut rows = Vec::new();
    for ((name, addr), runs) in targets.into_iter().zip(&peaks) {
        let peak = median(runs);
        let half = load(
            addr,
            ECHO_PATH,
            args.connections,
            Duration::from_secs(args.seconds),
            Some(peak.rate / 2.0),
        )
        .await?;
        rows.push((name, peak, half, runs));
    }
    println!();
    println!(
        "{:<20} {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} {:>7}",
        "server", "req/s", "p50 ms", "p99 ms", "half rate", "p50 ms", "p99 ms", "errors"
    );
    for (name, peak, half, _) in &rows {
        println!(
            "{:<20} {:>10.0} {:>10.3} {:>10.3} | {:>10.0} {:>10.3} {:>10.3} {:>7}",
            name,
            peak.rate,
            peak.p50_ms,
            peak.p99_ms,
            half.rate,
            half.p50_ms,
            half.p99_ms,
            peak.errors + half.errors
        );
    }
    println!();
    println!(
        "CPU per request at peak (median round): the server process, and this process generating the load:"
    );
    let us = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1} µs"));
    for (name, peak, _, _) in &rows {
        println!(
            "  {name:<20} server {:>9}   load generator {:>9}",
            us(peak.server_us),
            us(peak.client_us)
        );
    }
    println!();
    println!(
        "ESP over node sessions (node-sim as the load generator, cluster (b), {} requests in flight in all):",
        args.connections
    );
    for sessions in [1usize, 8] {
        let report = over_sessions(pooled, sessions, args.connections, args.seconds).await?;
        println!(
            "  {sessions} session(s): {:>8.0} req/s, p50 {:.3} ms, p99 {:.3} ms, faults {:?}",
            report.rate(),
            report.p50_ms,
            report.p99_ms,
            report.faults
        );
    }
    println!();
    println!("peak req/s of each round:");
    for (name, _, _, runs) in &rows {
        let rates: Vec<String> = runs.iter().map(|m| format!("{:.0}", m.rate)).collect();
        println!("  {name:<20} {}", rates.join("  "));
    }
    let a = rows[0].1.rate;
    println!();
    println!(
        "ratio b/a (pooled / native)      = {:.2}",
        rows[1].1.rate / a
    );
    println!(
        "ratio c/a (per-request / native) = {:.2}",
        rows[2].1.rate / a
    );
    // The generator shares the cores, so the rate ratios above are not the
    // servers' cost ratios; these are what a generator on another machine
    // would see from a server bound by its CPU.
    if let (Some(a), Some(b), Some(c)) = (
        rows[0].1.server_us,
        rows[1].1.server_us,
        rows[2].1.server_us,
    ) {
        println!(
            "server CPU per request, native / wasm: a/b = {:.2}, a/c = {:.2}",
            a / b,
            a / c
        );
    }
    println!(
        "in process: call into a warm instance {:.1} µs; per-request instantiate + call + drop {:.1} µs",
        instantiate.warm_call, instantiate.fresh
    );
    println!(
        "in process, one thread: parse + encode {:.1} µs; parse + dispatch to pooled Wasm + encode {:.1} µs",
        in_process.0, in_process.1
    );
    drop(child.stdin.take());
    let _ = child.wait().await;
    Ok(())
}

/// ESP load over `sessions` node sessions at once, `in_flight` requests in
/// all, against the wasp server on `port`.
async fn over_sessions(
    port: u16,
    sessions: usize,
    in_flight: usize,
    seconds: u64,
) -> Result<crate::tools::node_sim::LoadReport> {
    use crate::tools::node_sim::{LoadReport, Sim, SimArgs};
    let params =
        serde_json::from_str::<serde_json::Value>(BODY)?["Request"]["Parameters"].to_string();
    let mut sims = Vec::new();
    for n in 0..sessions {
        sims.push(Sim::spawn(SimArgs {
            connect: vec![format!("ws://127.0.0.1:{port}")],
            node_id: format!("bench-{n}"),
            tenants: vec![101],
            media: vec!["workitem".into()],
            window: 1_000,
            token: None,
            stop_after_ms: None,
            answer_delay_ms: 0,
            load_cluster: Some("echo".into()),
            load_service: "Echo".into(),
            load_method: "Echo".into(),
            load_params: params.clone(),
            rate: 0,
            concurrency: (in_flight / sessions).max(1),
            duration: seconds,
        }));
    }
    let mut all = LoadReport::default();
    for sim in sims {
        let report = sim
            .finished()
            .await?
            .context("the load run gave no report")?;
        all.sent += report.sent;
        all.ok += report.ok;
        all.seconds = all.seconds.max(report.seconds);
        for (code, n) in report.faults {
            *all.faults.entry(code).or_default() += n;
        }
        all.latencies_us.extend(report.latencies_us);
    }
    all.summarize();
    Ok(all)
}

/// Serves (a), (b), (c) on loopback; prints `PORTS a b c`; exits when
/// stdin closes (the parent is done or gone).
async fn serve_targets(args: &BenchArgs) -> Result<()> {
    let native = axum::Router::new().route("/v1/esp/{cluster}", axum::routing::post(native_echo));
    let pooled = Arc::new(Host::start(echo_config("pooled", args.pooled_instances)?).await?);
    let per_request =
        Arc::new(Host::start(echo_config("per-request", args.per_request_instances)?).await?);
    let mut ports = Vec::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    ports.push(listener.local_addr()?.port());
    tokio::spawn(async move { axum::serve(listener, native).await });
    // The gateways as `wasp run` serves them: through the listener, with
    // its connection cap and timeouts.
    for host in [pooled, per_request] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        ports.push(listener.local_addr()?.port());
        tokio::spawn(crate::serve(
            listener,
            host,
            tokio_util::sync::CancellationToken::new(),
        ));
    }
    println!("PORTS {} {} {}", ports[0], ports[1], ports[2]);
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    Ok(())
}

/// The baseline: the same parse and encode as the gateway, no Wasm.
async fn native_echo(body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    match esp::parse(&body) {
        Ok(req) => {
            let out = serde_json::to_vec(&ResponseBody::new(
                req.reference_id,
                &req.parameters,
                req.user_data.as_ref(),
            ))
            .unwrap_or_default();
            (StatusCode::OK, [("content-type", "application/json")], out).into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

fn echo_config(policy: &str, instances: usize) -> Result<Config> {
    let text = format!(
        r#"
        [runtime]
        [[tenants]]
        id = 101
        name = "Bench"
        [clusters.echo]
        service = "Echo"
        component = "builtin:echo"
        tenants = [101]
        instances = {instances}
        policy = "{policy}"
        window = 64
        queue = 4096
        "#
    );
    Config::parse(&text, std::path::Path::new(".")).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Mean cost of a call into a warm instance, and of a fresh per-request
/// instance: instantiate, call, drop.
async fn instantiate_cost() -> Result<InstanceCost> {
    let runtime = Runtime::new(
        PoolSize {
            instances: 64,
            concurrent_calls: 64,
            max_memory: 64 << 20,
        },
        ComponentCache::new(ComponentCache::default_dir()),
    )?;
    let spec = InstanceSpec {
        cluster: Arc::from("bench"),
        memory_limit: 64 << 20,
        config: Arc::default(),
        store: None,
        http: Arc::default(),
        log: Arc::new(crate::runtime::log::LogLimit::unmetered(100)),
        store_refused: None,
    };
    let bytes = crate::builtin::get("echo").context("builtin echo")?;
    let loaded = runtime.load(bytes, &spec).await?;
    let req = esp::parse(BODY.as_bytes()).map_err(|r| anyhow::anyhow!("{}", r.fault))?;
    let parameters = req.parameters.to_wit();
    let parameters = parameters.lists();
    let wit = bindings::Request {
        service: &req.service,
        method: &req.method,
        version: &req.version,
        tenant: bindings::Tenant {
            id: 101,
            name: "Bench",
        },
        media_type: None,
        parameters: bindings::KvListParam { lists: &parameters },
        user_data: bindings::KvListParam { lists: &[] },
    };
    let mut warm = Instance::new(&loaded.pre, &spec, 0).await?;
    let start = Instant::now();
    for _ in 0..20_000 {
        let deadline = Instant::now() + Duration::from_secs(1);
        let _ = warm.handle(&wit, deadline).await;
    }
    let warm_call = start.elapsed().as_secs_f64() * 1e6 / 20_000.0;
    let rounds = 2_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut instance = Instance::new(&loaded.pre, &spec, 0).await?;
        let deadline = Instant::now() + Duration::from_secs(1);
        instance
            .handle(&wit, deadline)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map_err(|f| anyhow::anyhow!("{}", f.message))?;
    }
    let fresh = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    Ok(InstanceCost { warm_call, fresh })
}

/// In-process cost of calls, in microseconds.
struct InstanceCost {
    /// A call into a warm (pooled) instance.
    warm_call: f64,
    /// Instantiate + call + drop (per-request).
    fresh: f64,
}

/// Per-request CPU in this process, without HTTP: the native work alone,
/// and the same with dispatch to a pooled echo cluster.
async fn in_process_cost(instances: usize) -> Result<(f64, f64)> {
    let host = Host::start(echo_config("pooled", instances)?).await?;
    let generation = host.current();
    let rounds = 50_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        let req = esp::parse(BODY.as_bytes()).map_err(|r| anyhow::anyhow!("{}", r.fault))?;
        let out = serde_json::to_vec(&ResponseBody::new(
            req.reference_id,
            &req.parameters,
            req.user_data.as_ref(),
        ))?;
        std::hint::black_box(out);
    }
    let native = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let req = esp::parse(BODY.as_bytes()).map_err(|r| anyhow::anyhow!("{}", r.fault))?;
        let result = esp::dispatch(&generation, &host.metrics, "echo", &req, None).await?;
        let out = serde_json::to_vec(&ResponseBody::new(
            req.reference_id,
            &result,
            req.user_data.as_ref(),
        ))?;
        std::hint::black_box(out);
    }
    let wasm = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    Ok((native, wasm))
}

/// The run with the median rate (runs is never empty).
fn median(runs: &[Measured]) -> Measured {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|x, y| x.rate.total_cmp(&y.rate));
    sorted[sorted.len() / 2]
}

/// One measurement's outcome.
#[derive(Debug, Clone, Copy)]
struct Measured {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// CPU time per answered request of the server process and of this
    /// (load generating) process, in microseconds; `None` where `/proc`
    /// cannot tell.
    server_us: Option<f64>,
    client_us: Option<f64>,
}

/// Drives `connections` keep-alive connections for `duration`: as fast as
/// possible, or at `rate` requests per second in all.
async fn load(
    target: Target,
    path: &'static str,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Result<Measured> {
    let Target { addr, server_pid } = target;
    let server_before = cpu_time(&server_pid.to_string());
    let client_before = cpu_time("self");
    let start = Instant::now();
    let stop = start + duration;
    let mut tasks = Vec::new();
    for i in 0..connections {
        let pacer = Pacer::new(start, stop, rate, connections, i);
        tasks.push(tokio::spawn(connection(addr, path, pacer)));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (lat, err) = task.await??;
        latencies.extend(lat);
        errors += err;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let answered = latencies.len().max(1) as f64;
    let per_request = |before: Option<Duration>, after: Option<Duration>| {
        Some((after? - before?).as_secs_f64() * 1e6 / answered)
    };
    let server_us = per_request(server_before, cpu_time(&server_pid.to_string()));
    let client_us = per_request(client_before, cpu_time("self"));
    latencies.sort_unstable();
    Ok(Measured {
        rate: latencies.len() as f64 / elapsed,
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        errors,
        server_us,
        client_us,
    })
}

/// A server to load: its address and the process serving it.
#[derive(Debug, Clone, Copy)]
struct Target {
    addr: SocketAddr,
    server_pid: u32,
}

/// CPU time used so far by every thread of process `pid` (`self` for this
/// one), from `/proc/<pid>/task/*/schedstat` (Linux); `None` elsewhere.
pub(crate) fn cpu_time(pid: &str) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else {
            continue; // the thread ended meanwhile
        };
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// One connection's loop; latencies in microseconds.
async fn connection(
    addr: SocketAddr,
    path: &'static str,
    mut pacer: Pacer,
) -> Result<(Vec<u64>, u64)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = Bytes::from_static(BODY.as_bytes());
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    while let Some(sent_at) = pacer.next().await {
        let req = Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))?;
        let resp = sender.send_request(req).await?;
        let ok = resp.status() == StatusCode::OK;
        resp.into_body().collect().await?;
        if ok {
            latencies.push(sent_at.elapsed().as_micros() as u64);
        } else {
            errors += 1;
        }
    }
    Ok((latencies, errors))
}

/// The machine the figures come from.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("machine: {cores} cores, {cpu}")
}
