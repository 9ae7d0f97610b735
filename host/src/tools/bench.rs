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
//! that peak (open loop, evenly spaced, latency counted from the time a
//! request was due so a stall is not hidden: see `pace`), beside the
//! machine's own floor under p99 (how late a sleeping thread runs) and the
//! cores both processes kept busy at that rate. Ratios b/a and c/a, and
//! the in-process cost of instantiate + call + drop for (c), are printed
//! at the end, with the CPU time per request of the server process and of
//! the load generator (the two share the machine's cores, so a rate ratio
//! is not a cost ratio).

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
use crate::tools::node_sim::percentile_ms;
use crate::tools::pace::Sends;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure: `esp` (ESP over HTTP: native vs pooled vs
    /// per-request), `capture` (the file capture point: the Wasm codec
    /// vs the same parse native, and files end to end), `kafka` (a kafka
    /// capture point end to end; needs `--brokers`), `soap` (the http
    /// capture point) or `load` (ESP load against a running wasp; needs
    /// `--url`).
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
    /// `load`: the running wasp, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub url: Option<String>,
    /// `load`: requests per second in all, evenly spaced, each one's
    /// latency counted from the moment it was due (default: as fast as
    /// the connections go).
    #[arg(long)]
    pub rate: Option<f64>,
    /// `load`: print the counts so far every this many seconds (0: only
    /// at the end).
    #[arg(long, default_value_t = 0)]
    pub every: u64,
    /// `esp`: also drive the three servers with wrk (`-t1 -c32`, the
    /// Debian package) in interleaved rounds and print each one's req/s
    /// as a share of native's; needs `wrk` on PATH.
    #[arg(long)]
    pub wrk: bool,
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
    /// ESP load against a running wasp (`--url`) for `--seconds`: the
    /// example request of every cluster of a bundled service, for each of
    /// its tenants, in turn. Prints `load elapsed=S ok=N failed=N
    /// refused=N store-full=N` lines (`refused`: answered 503 by
    /// `server.max-connections`; `store-full`: a fault from a store bound;
    /// `scripts/soak` provokes both on purpose).
    Load,
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
        Bench::Load => return run_load(&args).await,
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
    // While the machine is idle, before any load.
    let seconds = Duration::from_secs(args.seconds.clamp(1, 5));
    let stalls = tokio::task::spawn_blocking(move || stalls(seconds)).await?;
    let instantiate = instantiate_cost().await?;
    // One pooled echo gateway in this process for both in-process figures.
    let echo_host = Arc::new(Host::start(echo_config("pooled", args.pooled_instances)?).await?);
    let in_process = in_process_cost(&echo_host, args.seconds).await?;
    let router = in_process_router(&args, echo_host).await?;

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
    let echo: Arc<[Call]> = Arc::new([Call {
        path: ECHO_PATH.to_string(),
        body: Bytes::from_static(BODY.as_bytes()),
    }]);
    for (name, addr) in targets {
        load(
            addr,
            echo.clone(),
            args.connections,
            Duration::from_secs(1),
            None,
        )
        .await
        .with_context(|| format!("warm up {name}"))?;
    }
    let peaks = interleaved_loads(&targets, &echo, &args, None).await?;
    let mut rows = Vec::new();
    for ((name, addr), runs) in targets.into_iter().zip(&peaks) {
        let peak = median(runs);
        let half = load(
            addr,
            echo.clone(),
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
    stalls.print();
    // At half of a closed loop's peak, an open loop is not half the
    // work: requests no longer arrive in batches, so each pays its own
    // wake-ups, on both sides of the socket.
    let cores = |m: &Measured| {
        let busy = |us: Option<f64>| {
            us.map_or_else(|| "n/a".into(), |us| format!("{:.2}", us * m.rate / 1e6))
        };
        let waited = |us: Option<f64>| us.map_or_else(|| "n/a".into(), |us| format!("{us:.1}"));
        format!(
            "server {} + load generator {}; waiting for a core: {} + {} µs per request",
            busy(m.server_us),
            busy(m.client_us),
            waited(m.server_wait_us),
            waited(m.client_wait_us)
        )
    };
    println!(
        "cores busy at half rate, of {}, and the time their threads were runnable but not running:",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (name, _, half, _) in &rows {
        println!("  {name:<20} {}", cores(half));
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
    let peak_cpu = [0, 1, 2].map(|i| rows[i].1.server_us);
    if let [Some(a), Some(b), Some(c)] = peak_cpu {
        print_tax(
            "  tax at peak (server CPU per request over native)",
            a,
            b,
            c,
        );
    }
    // At peak the slower server also pays for being preempted by the load
    // generator on the shared cores (the faster one parks instead), so
    // the same work is measured again at one rate all three sustain.
    let common = rows.iter().map(|r| r.1.rate).fold(f64::MAX, f64::min) / 2.0;
    let equal: Vec<Option<f64>> = interleaved_loads(&targets, &echo, &args, Some(common))
        .await?
        .iter()
        .map(|runs| median_of(&runs.iter().filter_map(|m| m.server_us).collect::<Vec<_>>()))
        .collect();
    println!();
    println!(
        "server CPU per request at one rate for all three ({common:.0} req/s, open loop, median of {} rounds):",
        args.rounds.max(1)
    );
    for ((name, _), cpu) in targets.iter().zip(&equal) {
        println!("  {name:<20} {:>9}", us(*cpu));
    }
    if let [Some(a), Some(b), Some(c)] = equal[..] {
        print_tax("  tax at that rate", a, b, c);
    }
    if args.wrk {
        println!();
        match wrk_comparison(&targets, &args).await {
            Ok(()) => {}
            Err(err) => println!("wrk comparison not run: {err:#}"),
        }
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
    if let [Some(a), Some(b), Some(c)] = peak_cpu {
        println!(
            "server CPU per request, native / wasm: a/b = {:.2}, a/c = {:.2}",
            a / b,
            a / c
        );
    }
    println!(
        "in process, the floor wasmtime sets, per request: pooled ≥ {:.1} µs (a call into a warm instance), per-request ≥ {:.1} µs (instantiate + call + drop)",
        instantiate.warm_call, instantiate.fresh
    );
    println!(
        "in process, one thread: parse + encode {:.1} µs; parse + dispatch to pooled Wasm + encode {:.1} µs",
        in_process.0, in_process.1
    );
    println!(
        "in process, one thread, a whole HTTP request through the router (no sockets): native {:.1} µs, pooled {:.1} µs, per-request {:.1} µs",
        router[0], router[1], router[2]
    );
    println!(
        "  user-space tax: pooled {:.1} µs, per-request {:.1} µs",
        router[1] - router[0],
        router[2] - router[0]
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
    let spec = Arc::new(InstanceSpec {
        cluster: Arc::from("bench"),
        memory_limit: 64 << 20,
        config: Arc::default(),
        store: None,
        http: Arc::default(),
        log: Arc::new(crate::runtime::log::LogLimit::unmetered(100)),
        store_refused: None,
    });
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
    // Five rounds of each, the first a warm-up, the median of the others
    // reported: the first thousands of calls run with cold caches.
    let (mut warm_calls, mut fresh_calls) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let calls = 10_000u32;
        let start = Instant::now();
        for _ in 0..calls {
            let deadline = Instant::now() + Duration::from_secs(1);
            let _ = warm.handle(&wit, deadline).await;
        }
        warm_calls.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(calls));
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
        fresh_calls.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds));
    }
    let warm_call = median_of(&warm_calls[1..]).unwrap_or(0.0);
    let fresh = median_of(&fresh_calls[1..]).unwrap_or(0.0);
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
/// and the same with dispatch to `host`'s pooled echo cluster.
async fn in_process_cost(host: &Host, seconds: u64) -> Result<(f64, f64)> {
    let generation = host.current();
    // About a second of work per 10 000 on this kind of machine.
    let rounds = 10_000 * seconds.clamp(1, 10) as u32;
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

/// The tax targets of the performance work, in µs of server CPU per
/// request over the native handler.
const POOLED_TAX_TARGET: f64 = 3.0;
const PER_REQUEST_TAX_TARGET: f64 = 10.0;

/// One tax line: what (b) and (c) cost per request over (a), in µs, with
/// the targets.
fn print_tax(label: &str, a: f64, b: f64, c: f64) {
    println!(
        "{label}: pooled {:.1} µs (target ≤ {POOLED_TAX_TARGET} µs), per-request {:.1} µs (target ≤ {PER_REQUEST_TAX_TARGET} µs)",
        b - a,
        c - a
    );
}

/// The median of `values`, `None` when empty.
fn median_of(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// What one wrk run measured.
struct WrkRun {
    rate: f64,
    p99_ms: f64,
    server_us: Option<f64>,
}

/// Drives each target with wrk (`-t1 -c32`) for `--seconds`, in
/// `--rounds` interleaved rounds, and prints the medians with req/s as a
/// share of the native server's.
async fn wrk_comparison(targets: &[(&str, Target)], args: &BenchArgs) -> Result<()> {
    let script = std::env::temp_dir().join(format!("wasp-bench-{}.lua", std::process::id()));
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{BODY}]]\n"
    );
    std::fs::write(&script, lua).context("write the wrk script")?;
    let outcome = interleaved(targets, args.rounds, |target| {
        wrk_run(target, &script, args.seconds)
    })
    .await;
    let _ = std::fs::remove_file(&script);
    let runs = outcome?;
    println!(
        "wrk -t1 -c32 ({} s, median of {} interleaved rounds):",
        args.seconds,
        args.rounds.max(1)
    );
    let med = |runs: &[WrkRun], f: fn(&WrkRun) -> Option<f64>| {
        median_of(&runs.iter().filter_map(f).collect::<Vec<_>>())
    };
    let native = med(&runs[0], |r| Some(r.rate)).unwrap_or(1.0);
    let targets_share = [None, Some(0.95), Some(0.75)];
    for (((name, _), runs), target) in targets.iter().zip(&runs).zip(targets_share) {
        let rate = med(runs, |r| Some(r.rate)).unwrap_or(0.0);
        let p99 = med(runs, |r| Some(r.p99_ms)).unwrap_or(0.0);
        let cpu = med(runs, |r| r.server_us);
        let share = match target {
            Some(t) => format!("{:.2} of native (target ≥ {t:.2})", rate / native),
            None => String::new(),
        };
        println!(
            "  {name:<20} {rate:>9.0} req/s  p99 {p99:.2} ms  server {:>9}  {share}",
            cpu.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1} µs"))
        );
    }
    Ok(())
}

/// One wrk run against `target`.
async fn wrk_run(target: Target, script: &std::path::Path, seconds: u64) -> Result<WrkRun> {
    let before = cpu_time(&target.server_pid.to_string());
    let out = tokio::process::Command::new("wrk")
        .args(["-t1", "-c32", "--latency", &format!("-d{seconds}s"), "-s"])
        .arg(script)
        .arg(format!("http://{}{ECHO_PATH}", target.addr))
        .output()
        .await
        .context("run wrk (install it with: apt-get install wrk)")?;
    let after = cpu_time(&target.server_pid.to_string());
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let parsed = parse_wrk(&text).with_context(|| format!("read wrk's output:\n{text}"))?;
    let server_us = match (before, after) {
        (Some(b), Some(a)) if parsed.0 > 0 => Some((a - b).as_secs_f64() * 1e6 / parsed.0 as f64),
        _ => None,
    };
    Ok(WrkRun {
        rate: parsed.1,
        p99_ms: parsed.2,
        server_us,
    })
}

/// Requests, req/s and p99 (ms) from wrk's `--latency` output; a run
/// with non-2xx answers or socket errors is refused.
fn parse_wrk(text: &str) -> Result<(u64, f64, f64)> {
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        bail!("wrk saw failures: {}", line.trim());
    }
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        .context("no request count")?;
    let rate = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("no Requests/sec")?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .and_then(wrk_duration_ms)
        .context("no 99% latency")?;
    Ok((requests, rate, p99))
}

/// `812.00us`, `4.38ms`, `1.02s` in milliseconds.
fn wrk_duration_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

/// Per-request CPU in this process of a whole HTTP request through each
/// target's router, without sockets (µs; median of interleaved rounds):
/// native, pooled, per-request. What the wasp targets add here is their
/// user-space tax: the layers, the dispatch and the Wasm call, without the
/// kernel's and the scheduler's share. `pooled` is the pooled echo gateway.
async fn in_process_router(args: &BenchArgs, pooled: Arc<Host>) -> Result<[f64; 3]> {
    use tower_service::Service;
    let native = axum::Router::new().route("/v1/esp/{cluster}", axum::routing::post(native_echo));
    let pooled = crate::app(pooled);
    let per_request = crate::app(Arc::new(
        Host::start(echo_config("per-request", args.per_request_instances)?).await?,
    ));
    let routers = [native, pooled, per_request];
    let requests = 4_000 * args.seconds.clamp(1, 10) as u32;
    let mut rounds: [Vec<f64>; 3] = Default::default();
    for _ in 0..5 {
        for (router, runs) in routers.iter().zip(&mut rounds) {
            let mut router = router.clone();
            let start = Instant::now();
            for _ in 0..requests {
                let req = Request::post(ECHO_PATH)
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(BODY))?;
                let resp = router.call(req).await?;
                if resp.status() != StatusCode::OK {
                    bail!("in-process request answered {}", resp.status());
                }
                let body = resp.into_body().collect().await?.to_bytes();
                std::hint::black_box(body);
            }
            runs.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(requests));
        }
    }
    Ok(rounds.map(|r| median_of(&r).unwrap_or(0.0)))
}

/// The run with the median rate (runs is never empty).
fn median(runs: &[Measured]) -> Measured {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|x, y| x.rate.total_cmp(&y.rate));
    sorted[sorted.len() / 2]
}

/// `rounds` interleaved rounds (a b c, a b c, ...) of `run` against each
/// target: each target's runs, in order.
async fn interleaved<T, F, Fut>(
    targets: &[(&str, Target)],
    rounds: usize,
    mut run: F,
) -> Result<Vec<Vec<T>>>
where
    F: FnMut(Target) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut runs: Vec<Vec<T>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds.max(1) {
        for ((_, target), runs) in targets.iter().zip(&mut runs) {
            runs.push(run(*target).await?);
        }
    }
    Ok(runs)
}

/// `--rounds` interleaved rounds of `load` with `calls` against each
/// target, closed loop or at `rate`.
async fn interleaved_loads(
    targets: &[(&str, Target)],
    calls: &Arc<[Call]>,
    args: &BenchArgs,
    rate: Option<f64>,
) -> Result<Vec<Vec<Measured>>> {
    let seconds = Duration::from_secs(args.seconds);
    interleaved(targets, args.rounds, |target| {
        load(target, calls.clone(), args.connections, seconds, rate)
    })
    .await
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
    /// Time per answered request that the threads of each process spent
    /// runnable but waiting for a core, in microseconds.
    server_wait_us: Option<f64>,
    client_wait_us: Option<f64>,
}

/// Drives `connections` keep-alive connections for `duration`: as fast as
/// possible, or at `rate` requests per second in all.
async fn load(
    target: Target,
    calls: Arc<[Call]>,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Result<Measured> {
    let Target { addr, server_pid } = target;
    let server = server_pid.to_string();
    let server_before = sched_times(&server);
    let client_before = sched_times("self");
    let start = Instant::now();
    let stop = start + duration;
    let tally = Arc::new(Tally::default());
    let tasks = spawn_connections(addr, &calls, connections, (start, stop), rate, &tally);
    let mut latencies = joined(tasks).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let answered = latencies.len().max(1) as f64;
    // On a core, and waiting for one, per answered request.
    let per_request = |before: Option<SchedTimes>, after: Option<SchedTimes>| {
        let (before, after) = (before?, after?);
        let us = |b: Duration, a: Duration| (a - b).as_secs_f64() * 1e6 / answered;
        Some((
            us(before.running, after.running),
            us(before.waiting, after.waiting),
        ))
    };
    let server = per_request(server_before, sched_times(&server));
    let client = per_request(client_before, sched_times("self"));
    let (server_us, server_wait_us) = (server.map(|t| t.0), server.map(|t| t.1));
    let (client_us, client_wait_us) = (client.map(|t| t.0), client.map(|t| t.1));
    latencies.sort_unstable();
    let (_, failed, refused, _) = tally.counts();
    Ok(Measured {
        rate: latencies.len() as f64 / elapsed,
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        errors: failed + refused,
        server_us,
        client_us,
        server_wait_us,
        client_wait_us,
    })
}

/// How long a moment picked at random waits for a sleeping thread of
/// this machine to run again. No request is answered sooner than its
/// server and its client each wake up, so this is the machine's own
/// floor under the p99 figures.
#[derive(Debug, Clone, Copy)]
struct Stalls {
    p50_ms: f64,
    p99_ms: f64,
    /// Share of moments that wait more than 1 ms, in percent.
    over_1ms: f64,
    seconds: f64,
}

/// A thread sleeping 0.1 ms at a time for `duration`, its wake-ups timed.
fn stalls(duration: Duration) -> Stalls {
    let start = Instant::now();
    let mut last = start;
    let mut gaps = Vec::with_capacity(1 << 16);
    while last - start < duration {
        std::thread::sleep(Duration::from_micros(100));
        let now = Instant::now();
        gaps.push((now - last).as_secs_f64());
        last = now;
    }
    let total: f64 = gaps.iter().sum();
    Stalls {
        p50_ms: wait_quantile(&gaps, 0.50) * 1e3,
        p99_ms: wait_quantile(&gaps, 0.99) * 1e3,
        over_1ms: 100.0 * waits_over(&gaps, 1e-3) / total.max(f64::MIN_POSITIVE),
        seconds: total,
    }
}

impl Stalls {
    fn print(&self) {
        println!(
            "this machine's floor under p99: a thread sleeping 0.1 ms at a time (idle machine, {:.0} s) runs again after p50 {:.3} ms, p99 {:.3} ms from a moment picked at random ({:.2}% of moments wait over 1 ms); each request waits for at least one such wake-up",
            self.seconds, self.p50_ms, self.p99_ms, self.over_1ms
        );
    }
}

/// Total time, over `gaps` between a thread's wake-ups (seconds), from
/// which the next wake-up is more than `x` away: `Σ max(0, gap - x)`.
fn waits_over(gaps: &[f64], x: f64) -> f64 {
    gaps.iter().map(|g| (g - x).max(0.0)).sum()
}

/// The `q` quantile of the wait from a moment picked at random to the
/// thread's next wake-up, given the gaps between its wake-ups.
fn wait_quantile(gaps: &[f64], q: f64) -> f64 {
    let total: f64 = gaps.iter().sum();
    let (mut lo, mut hi) = (0.0, gaps.iter().copied().fold(0.0, f64::max));
    // The share waiting over x falls as x grows: bisect to 1 - q.
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if waits_over(gaps, mid) > (1.0 - q) * total {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
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
    sched_times(pid).map(|t| t.running)
}

/// What the threads of a process spent so far, summed.
#[derive(Debug, Clone, Copy)]
struct SchedTimes {
    /// On a core.
    running: Duration,
    /// Runnable but waiting for a core.
    waiting: Duration,
}

/// The first two fields of `schedstat`, summed over the threads of
/// process `pid` (Linux); `None` elsewhere.
fn sched_times(pid: &str) -> Option<SchedTimes> {
    let (mut running, mut waiting) = (0u64, 0u64);
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else {
            continue; // the thread ended meanwhile
        };
        let mut fields = stat.split_whitespace().map(str::parse::<u64>);
        running += fields.next()?.ok()?;
        waiting += fields.next()?.ok()?;
    }
    Some(SchedTimes {
        running: Duration::from_nanos(running),
        waiting: Duration::from_nanos(waiting),
    })
}

/// One request of a load: where it goes and its body.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    body: Bytes,
}

/// What a load's connections got so far.
#[derive(Debug, Default)]
struct Tally {
    ok: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    /// Answered 503 by `server.max-connections`.
    refused: std::sync::atomic::AtomicU64,
    /// Answered with a fault because the cluster's store is full (a write
    /// refused by a `store.max-*` bound): a limit holding, not a failure.
    store_full: std::sync::atomic::AtomicU64,
    /// The first failures, to say what went wrong.
    samples: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    /// ok, failed, refused, store-full.
    fn counts(&self) -> (u64, u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.ok.load(Relaxed),
            self.failed.load(Relaxed),
            self.refused.load(Relaxed),
            self.store_full.load(Relaxed),
        )
    }

    fn fail(&self, what: String) {
        self.failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < 10 {
            samples.push(what);
        }
    }
}

/// `connections` connection loops from `start` to `stop`, as fast as
/// they go or at `rate` requests per second in all.
fn spawn_connections(
    addr: SocketAddr,
    calls: &Arc<[Call]>,
    connections: usize,
    (start, stop): (Instant, Instant),
    rate: Option<f64>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<Vec<u64>>> {
    let sends = Sends::new(start, stop, rate, connections);
    (0..connections)
        .map(|_| {
            tokio::spawn(connection(
                addr,
                calls.clone(),
                sends.clone(),
                tally.clone(),
            ))
        })
        .collect()
}

/// The latencies of every connection loop, once all have ended.
async fn joined(tasks: Vec<tokio::task::JoinHandle<Vec<u64>>>) -> Result<Vec<u64>> {
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    Ok(latencies)
}

/// One connection's loop, the calls in turn; latencies in microseconds
/// of the requests answered 200. A connection that fails or is closed is
/// opened again (the failure counted).
async fn connection(
    addr: SocketAddr,
    calls: Arc<[Call]>,
    sends: Sends,
    tally: Arc<Tally>,
) -> Vec<u64> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut sender = None;
    let mut n = 0usize;
    while let Some(sent_at) = sends.next().await {
        let call = &calls[n % calls.len()];
        n += 1;
        if sender.is_none() {
            match connect(addr).await {
                Ok(open) => sender = Some(open),
                Err(err) => {
                    tally.fail(format!("connect to {addr}: {err:#}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some(open) = sender.as_mut() else {
            continue;
        };
        match exchange(open, call).await {
            Ok((status, close, body)) => {
                if close {
                    sender = None;
                }
                if status == StatusCode::OK {
                    tally.ok.fetch_add(1, Relaxed);
                    latencies.push(sent_at.elapsed().as_micros() as u64);
                    continue;
                }
                // Read only when it is not a success.
                let text = String::from_utf8_lossy(&body);
                if status == StatusCode::SERVICE_UNAVAILABLE
                    && text.contains("server.max-connections")
                {
                    tally.refused.fetch_add(1, Relaxed);
                } else if text.contains("(store.max-") {
                    tally.store_full.fetch_add(1, Relaxed);
                } else {
                    let body = String::from_utf8_lossy(&body[..body.len().min(300)]);
                    tally.fail(format!("{} answered {status}: {body}", call.path));
                }
            }
            Err(err) => {
                sender = None;
                tally.fail(format!("{}: {err:#}", call.path));
            }
        }
    }
    latencies
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends `call`; its status, whether the server closes the connection,
/// and the body.
async fn exchange(sender: &mut Sender, call: &Call) -> Result<(StatusCode, bool, Bytes)> {
    sender.ready().await?;
    let req = Request::post(call.path.as_str())
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(call.body.clone()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let close = resp
        .headers()
        .get(hyper::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, close, body))
}

/// `wasp bench load`: ESP load against a running wasp, counted.
async fn run_load(args: &BenchArgs) -> Result<()> {
    let url = args
        .url
        .as_deref()
        .context("wasp bench load needs --url http://HOST:PORT (a running wasp)")?;
    let uri: hyper::Uri = url.parse().with_context(|| format!("not a URL: {url}"))?;
    let host = uri.host().context("the URL has no host")?;
    let addr = tokio::net::lookup_host((host, uri.port_u16().unwrap_or(80)))
        .await?
        .next()
        .with_context(|| format!("cannot resolve {host}"))?;
    let calls = load_mix(addr).await?;
    eprintln!(
        "load: {} connections, {}, {} s, requests in turn: {}",
        args.connections,
        args.rate.map_or_else(
            || "as fast as they go".to_string(),
            |r| format!("{r} req/s")
        ),
        args.seconds,
        calls
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let start = Instant::now();
    let stop = start + Duration::from_secs(args.seconds);
    let tally = Arc::new(Tally::default());
    let calls: Arc<[Call]> = calls.into();
    let connections = args.connections.max(1);
    let tasks = spawn_connections(addr, &calls, connections, (start, stop), args.rate, &tally);
    fn line(tally: &Tally, start: Instant) {
        let (ok, failed, refused, store_full) = tally.counts();
        println!(
            "load elapsed={} ok={ok} failed={failed} refused={refused} store-full={store_full}",
            start.elapsed().as_secs()
        );
    }
    let every = (args.every > 0).then(|| Duration::from_secs(args.every));
    let reporter = every.map(|every| {
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at((start + every).into(), every);
            loop {
                tick.tick().await;
                line(&tally, start);
            }
        })
    });
    let mut latencies = joined(tasks).await?;
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    latencies.sort_unstable();
    line(&tally, start);
    let (ok, failed, _, _) = tally.counts();
    println!(
        "load done: {:.0} req/s answered 200, p50 {:.3} ms, p99 {:.3} ms",
        ok as f64 / start.elapsed().as_secs_f64(),
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99)
    );
    for sample in tally
        .samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        eprintln!("load: failed: {sample}");
    }
    if failed > 0 {
        bail!("{failed} request(s) failed");
    }
    Ok(())
}

/// The example request of every cluster of `addr` whose service has one
/// (`wasp call`'s examples), once for each of the cluster's tenants.
async fn load_mix(addr: SocketAddr) -> Result<Vec<Call>> {
    let mut sender = connect(addr).await?;
    sender.ready().await?;
    let req = Request::get("/v1/admin/clusters")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        bail!(
            "GET /v1/admin/clusters answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let clusters: Vec<serde_json::Value> =
        serde_json::from_slice(&body).context("the clusters' JSON")?;
    let mut calls = Vec::new();
    for cluster in &clusters {
        let text = |key: &str| cluster[key].as_str().unwrap_or_default().to_string();
        let methods: std::collections::HashSet<String> = cluster["methods"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        let service = text("service");
        let Some((method, params)) = crate::call::first_example(&service, &methods) else {
            continue;
        };
        for tenant in cluster["tenants"].as_array().into_iter().flatten() {
            let body = serde_json::json!({
                "ReferenceId": 1,
                "Request": {
                    "Service": service,
                    "Method": method,
                    "TenantId": tenant["id"],
                    "Parameters": serde_json::from_str::<serde_json::Value>(params)?,
                },
            });
            calls.push(Call {
                path: format!("/v1/esp/{}", text("name")),
                body: Bytes::from(serde_json::to_vec(&body)?),
            });
        }
    }
    if calls.is_empty() {
        bail!("no cluster of {addr} has a service with an example request");
    }
    Ok(calls)
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

#[cfg(test)]
mod wrk_tests {
    use super::*;

    /// wrk 4.1's `--latency` output, as printed on this kind of machine.
    const OUTPUT: &str = "Running 4s test @ http://127.0.0.1:41361/v1/esp/echo
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   452.12us  602.35us  12.71ms   94.62%
    Req/Sec    74.67k     3.05k   79.10k    80.00%
  Latency Distribution
     50%  317.00us
     75%  402.00us
     90%  571.00us
     99%    4.13ms
  297263 requests in 4.00s, 96.39MB read
Requests/sec:  74300.54
Transfer/sec:     24.09MB
";

    #[test]
    fn reads_wrk_output() {
        let (n, rate, p99) = parse_wrk(OUTPUT).unwrap();
        assert_eq!(n, 297_263);
        assert!((rate - 74_300.54).abs() < 1e-6);
        assert!((p99 - 4.13).abs() < 1e-9);
        assert_eq!(wrk_duration_ms("812.00us"), Some(0.812));
        assert_eq!(wrk_duration_ms("1.50s"), Some(1500.0));
        assert_eq!(wrk_duration_ms("fast"), None);
    }

    #[test]
    fn a_run_with_failures_is_refused() {
        let failed = OUTPUT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 12\nRequests/sec",
        );
        let err = parse_wrk(&failed).unwrap_err().to_string();
        assert!(err.contains("Non-2xx"), "{err}");
        assert!(parse_wrk("wrk: nothing").is_err());
    }
}

#[cfg(test)]
mod stall_tests {
    use super::*;

    #[test]
    fn a_thread_waking_on_time_is_waited_for_in_proportion() {
        // Wake-ups every 0.1 ms: a random moment waits uniformly 0..0.1 ms.
        let gaps = vec![1e-4; 1000];
        assert!((wait_quantile(&gaps, 0.5) - 0.5e-4).abs() < 1e-9);
        assert!((wait_quantile(&gaps, 0.99) - 0.99e-4).abs() < 1e-9);
        assert_eq!(waits_over(&gaps, 1e-3), 0.0);
    }

    #[test]
    fn one_long_stall_sets_the_tail_by_the_time_it_covers() {
        // 99 gaps of 0.1 ms and one of 10 ms: 19.9 ms in all, of which
        // 9 ms are more than 1 ms from the next wake-up (45%), and the
        // p99 moment is 9.801 ms from it ((10 - x) / 19.9 = 1%).
        let mut gaps = vec![1e-4; 99];
        gaps.push(1e-2);
        let total: f64 = gaps.iter().sum();
        assert!((waits_over(&gaps, 1e-3) / total - 9.0 / 19.9).abs() < 1e-9);
        assert!((wait_quantile(&gaps, 0.99) - 9.801e-3).abs() < 1e-9);
    }

    #[test]
    fn the_probe_times_real_wake_ups() {
        let s = stalls(Duration::from_millis(50));
        assert!(s.seconds >= 0.05, "{s:?}");
        assert!(s.p50_ms > 0.0 && s.p50_ms <= s.p99_ms, "{s:?}");
        assert!((0.0..=100.0).contains(&s.over_1ms), "{s:?}");
    }
}
