//! The `wasp` command line: `run`, `check`, `call`, `new`, `build`, `bench`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wasp::Host;
use wasp::config::Config;

/// The gateway allocates per request on every worker thread and frees
/// across threads; mimalloc keeps that cheap where glibc's arenas contend.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "wasp", version, about = "WebAssembly-pluggable ESP gateway")]
struct Cli {
    /// Log lines as text (colored on a terminal) or as one JSON object per
    /// line, for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the ESP gateway described by a config file.
    Run {
        /// The TOML config file.
        config: PathBuf,
        /// Address to listen on (overrides `server.listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where capture points keep their folders and state (overrides
        /// `data-dir`; default `./wasp-data`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Kafka brokers (`host:port[,host:port]`) for kafka capture points
        /// that name none; without, those are not started.
        #[arg(long)]
        kafka: Option<String>,
        /// Where the demo's mock peers listen (overrides `[demo]
        /// mock-peers`; port 0 picks a free one): the clusters' config
        /// values and HTTP grants naming the configured address follow.
        #[arg(long)]
        mock_peers: Option<SocketAddr>,
    },
    /// Load and instantiate everything a config names, then exit: non-zero
    /// with the reasons if anything is wrong.
    Check {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Ask a running wasp to reload its config file (or roll back to the
    /// config before its last reload) and print what changed.
    Reload {
        /// The running wasp.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An admin token, when the running wasp has tokens.
        #[arg(long)]
        token: Option<String>,
        /// Roll back instead of reloading.
        #[arg(long)]
        rollback: bool,
    },
    /// A reference Interaction Server node: holds interactions, answers
    /// operations, emits notifications, and can drive ESP load.
    NodeSim(Box<wasp::tools::node_sim::SimArgs>),
    /// Measure ESP over HTTP: a native handler vs pooled vs per-request
    /// Wasm instances, in one run on this machine.
    Bench(wasp::tools::bench::BenchArgs),
    /// Call one method of a component (a .wasm file or builtin:<name>) or
    /// of a config's cluster, without a server, and print the result or
    /// the fault. Without a method, list the methods.
    Call(Box<wasp::call::CallArgs>),
    /// Write a new plugin project (Rust, Python or JavaScript) that builds
    /// on its own: a service, its SDK, a config that serves it, a README.
    New(wasp::new::NewArgs),
    /// Build the plugin project here (or --dir) with its language's
    /// toolchain, installing that on first use; prints the component's path.
    Build(wasp::new::BuildArgs),
    /// Put messages on a Kafka topic or read one, to try a kafka capture
    /// point by hand.
    #[command(subcommand)]
    Kafka(wasp::tools::kafka_cli::KafkaCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        // Color only for a person at a terminal: a log file gets no escape
        // codes.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    // A guest that computes for long yields to tokio every epoch tick, but
    // tokio polls sockets only every `event_interval` task polls: at the
    // default (61) a spinning guest would hold its worker's sockets for
    // 61 ticks. 16 keeps that to ~30 ms at a negligible cost.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(16)
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("wasp: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                listen,
                data_dir,
                kafka,
                mock_peers,
            } => run(config, listen, data_dir, kafka, mock_peers).await,
            Command::Check { config } => check(config).await,
            Command::Bench(args) => wasp::tools::bench::run(args).await,
            Command::Call(args) => wasp::call::run(*args).await,
            Command::New(args) => wasp::new::new(args),
            Command::Build(args) => wasp::new::build(args),
            Command::Kafka(command) => wasp::tools::kafka_cli::run(command).await,
            Command::NodeSim(args) => wasp::tools::node_sim::run(*args).await,
            Command::Reload {
                url,
                token,
                rollback,
            } => reload(&url, token.as_deref(), rollback).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wasp: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))
}

async fn run(
    path: PathBuf,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    kafka: Option<String>,
    mock_peers: Option<SocketAddr>,
) -> Result<()> {
    let mut config = load(&path)?;
    config.kafka = kafka.clone();
    // Relative to where wasp runs, as command-line paths are.
    let data_dir = data_dir.map(|dir| std::path::absolute(&dir).unwrap_or(dir));
    if let Some(dir) = &data_dir {
        config.data_dir = Some(dir.clone());
    }
    let mut addr = listen.unwrap_or(config.server.listen);
    let open = config.tokens.is_empty();
    if open && !addr.ip().is_loopback() {
        let loopback = SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port());
        eprintln!("wasp: no [[tokens]] configured, so not listening on {addr}: loopback only");
        addr = loopback;
    }
    let mocks = match mock_peers.or(config.demo.mock_peers) {
        Some(at) => Some(wasp::tools::demo::Mocks::start(at).await.with_context(|| {
            format!(
                "cannot start the demo's mock peers on {at} \
                         (give another address with --mock-peers 127.0.0.1:0)"
            )
        })?),
        None => None,
    };
    if let Some(mocks) = &mocks {
        config.point_demo_peers_at(mocks.addr);
    }
    let host = Arc::new(Host::start(config).await.context("cannot start")?);
    // Reloads read the same file (with the same --data-dir); the file and
    // the components it names are watched.
    host.reloads.set_source(path.clone(), data_dir, kafka);
    if let Some(mocks) = &mocks {
        host.reloads.set_demo_peers(mocks.addr);
    }
    wasp::reload::watch(host.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    println!("wasp listening on http://{local}");
    if open {
        println!("  no [[tokens]] configured: every call is allowed, loopback only");
    }
    let generation = host.current();
    for cluster in generation.clusters.values() {
        println!(
            "  cluster {:<12} service {} ({} instances, {:?}) for tenants {}",
            cluster.name,
            cluster.service,
            cluster.snapshot().instances.len(),
            cluster.policy,
            cluster
                .tenants
                .iter()
                .map(|t| format!("{} {}", t.id, t.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for cp in generation.captures.values() {
        match cp.config.adapter {
            wasp::capture::config::Adapter::File => println!(
                "  capture point {:<8} file with {}: drop {} files into {}",
                cp.name,
                cp.codec_source,
                cp.pattern,
                cp.directory.join(&cp.config.inbound).display()
            ),
            wasp::capture::config::Adapter::Kafka => match &cp.brokers {
                Some(brokers) => println!(
                    "  capture point {:<8} kafka with {}: topic {} on {brokers}",
                    cp.name,
                    cp.codec_source,
                    cp.config.topic.as_deref().unwrap_or(&cp.name)
                ),
                None => println!(
                    "  capture point {:<8} kafka: not started, no broker (give --kafka HOST:PORT)",
                    cp.name
                ),
            },
            wasp::capture::config::Adapter::Http => println!(
                "  capture point {:<8} http with {}: POST http://{local}/v1/capture/{}/<operation>",
                cp.name, cp.codec_source, cp.name
            ),
        }
    }
    let mut embedded = Vec::new();
    for node in &generation.config.embedded_nodes {
        println!(
            "  embedded node-sim '{}' (a demo stand-in for an Interaction Server node) serving tenants {:?}, media {:?}",
            node.node_id, node.tenants, node.media
        );
        embedded.push(wasp::tools::node_sim::Sim::spawn(embedded_sim(node, local)));
    }
    if let Some(mocks) = &mocks {
        println!(
            "  demo mock peers (stand-ins for an SMS gateway and social APIs) on http://{}",
            mocks.addr
        );
    }
    println!("  Interaction Server nodes connect to ws://{local}/v1/nodes/connect");
    if let Some(line) = try_line(&host, local) {
        println!("try:\n  {line}");
    } else if let Some(cluster) = generation.clusters.keys().next() {
        // No example is known for these services: their methods, each
        // callable without the server.
        println!(
            "try:\n  wasp call {} {cluster}    # lists the methods of cluster {cluster}",
            path.display()
        );
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let serving = wasp::serve(listener, host, shutdown.clone());
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => result,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        } => {
            eprintln!("wasp: the orderly stop did not end within {DRAIN:?}; exiting");
            Ok(())
        }
    }
}

/// `wasp reload`: POSTs to the admin API and prints the report; fails
/// when the reload was refused.
async fn reload(url: &str, token: Option<&str>, rollback: bool) -> Result<()> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("not a URL: {url}"))?;
    let host = uri.host().context("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = if rollback {
        "/v1/admin/rollback"
    } else {
        "/v1/admin/reload"
    };
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("cannot reach wasp at {url}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::post(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::CONTENT_LENGTH, "0");
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(http_body_util::Empty::<hyper::body::Bytes>::new())?)
        .await
        .context("the reload request failed")?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
        Err(_) => println!("{text}"),
    }
    if !status.is_success() {
        anyhow::bail!(
            "{} {}",
            status.as_u16(),
            if status.as_u16() == 422 {
                "reload refused; the running config still serves"
            } else {
                "refused"
            }
        );
    }
    Ok(())
}

/// How long an orderly stop may take in all: the listener's drain of the
/// work in flight, then closing node sessions.
const DRAIN: std::time::Duration =
    wasp::listener::SHUTDOWN_DRAIN.saturating_add(std::time::Duration::from_secs(5));

/// Cancels `shutdown` on Ctrl-C or SIGTERM; a second one exits at once.
async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut signal = async || {
        #[cfg(unix)]
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
    };
    signal().await;
    eprintln!(
        "wasp: stopping: no new work; finishing what is in flight (at most {:?}); a second signal exits at once",
        wasp::listener::SHUTDOWN_DRAIN
    );
    shutdown.cancel();
    signal().await;
    eprintln!(
        "wasp: second signal: exiting at once; unfinished items are taken again at the next start"
    );
    std::process::exit(130);
}

fn embedded_sim(
    node: &wasp::config::EmbeddedNode,
    local: SocketAddr,
) -> wasp::tools::node_sim::SimArgs {
    wasp::tools::node_sim::SimArgs {
        media: node.media.clone(),
        token: node.token.clone(),
        stop_after_ms: node.stop_after_ms,
        ..wasp::tools::node_sim::SimArgs::node(local, &node.node_id, &node.tenants)
    }
}

/// One curl line that works against the demo's fax cluster, or else the
/// first cluster of a bundled service whose example call is known and
/// harmless; with tokens configured it carries a node token that allows
/// the tenant. No line for other services: guessing a method could
/// suggest one that is expensive.
fn try_line(host: &Host, addr: SocketAddr) -> Option<String> {
    let generation = host.current();
    // The fax cluster first, else the first cluster with an example.
    let fax = generation
        .clusters
        .get("fax")
        .filter(|c| c.service == "Fax");
    let (cluster, (method, params)) = fax
        .into_iter()
        .chain(generation.clusters.values())
        .find_map(|c| {
            let declared = generation.config.clusters.get(&*c.name);
            Some((
                c,
                wasp::call::first_example_of(declared, &c.service, &c.methods)?,
            ))
        })?;
    let tenant = cluster.tenants.first()?.id;
    let auth = if generation.config.tokens.is_empty() {
        String::new()
    } else {
        // A node token for the tenant (what an IS node uses), else admin.
        let node = |t: &&wasp::config::TokenConfig| {
            t.role == wasp::config::Role::Node
                && t.tenants
                    .iter()
                    .any(|r| generation.config.tenant(r).is_some_and(|c| c.id == tenant))
        };
        let tokens = &generation.config.tokens;
        let token = tokens
            .iter()
            .find(node)
            .or_else(|| tokens.iter().find(|t| t.role == wasp::config::Role::Admin))?;
        format!(" -H 'authorization: Bearer {}'", token.token)
    };
    Some(format!(
        "curl -s http://{addr}/v1/esp/{} -H 'content-type: application/json'{auth} \\\n    -d '{{\"ReferenceId\":1,\"Request\":{{\"Service\":\"{}\",\"Method\":\"{method}\",\"TenantId\":{tenant},\"Parameters\":{params}}}}}'",
        cluster.name, cluster.service
    ))
}

async fn check(path: PathBuf) -> Result<()> {
    let config = load(&path)?;
    // A running host may hold the stores' files: check opens none (and
    // so creates none); each cluster gets an empty store in memory.
    let host = Host::start_for_check(config)
        .await
        .context("the config does not start")?;
    let generation = host.current();
    for cluster in generation.clusters.values() {
        let mut methods: Vec<_> = cluster.methods.iter().cloned().collect();
        methods.sort();
        println!(
            "cluster {}: service {} {} ({}) from {}, {} instance(s) {:?}, tenants {}{}",
            cluster.name,
            cluster.service,
            cluster.version,
            methods.join(", "),
            cluster.source,
            cluster.live_instances(),
            cluster.policy,
            cluster
                .tenants
                .iter()
                .map(|t| t.id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if cluster.from_cache {
                " [compiled code from cache]"
            } else {
                ""
            }
        );
        if let Some(store) = &generation.config.clusters[&*cluster.name].store {
            match (&store.persist, store.backend()) {
                (_, wasp::config::StoreBackend::Redis) => println!(
                    "  store: Redis, keys under '{}', not connected (check touches no state)",
                    store.prefix(&cluster.name)
                ),
                (Some(file), _) => println!(
                    "  store: {} not opened (check touches no state)",
                    generation.config.base_dir.join(file).display()
                ),
                (None, _) => println!("  store: in memory"),
            }
        }
    }
    for cp in generation.captures.values() {
        let source = match cp.config.adapter {
            wasp::capture::config::Adapter::File => format!("files {} in", cp.pattern),
            wasp::capture::config::Adapter::Kafka => format!(
                "topic {} on {}, state in",
                cp.config.topic.as_deref().unwrap_or(&cp.name),
                cp.brokers.as_deref().unwrap_or("(no broker: give --kafka)")
            ),
            wasp::capture::config::Adapter::Http => "HTTP requests, state in".to_string(),
        };
        println!(
            "capture point {}: {} adapter, codec {} {} from {}, {source} {} (not opened: check touches no state)",
            cp.name,
            cp.config.adapter.as_str(),
            cp.codec.info().name,
            cp.codec.info().version,
            cp.codec_source,
            cp.directory.display()
        );
    }
    println!("{}: OK", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn gateway(text: &str) -> Host {
        let text =
            format!("[runtime]\nno-cache = true\n[[tenants]]\nid = 101\nname = \"T\"\n{text}");
        Host::start(Config::parse(&text, std::path::Path::new(".")).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_try_line_suggests_no_method_it_does_not_know() {
        // The chaos component's first method is Alloc, which allocates
        // without bound: it must never be suggested.
        let chaos = format!(
            "[clusters.chaos]\nservice = \"Chaos\"\ncomponent = {:?}\ntenants = [101]\n",
            env!("WASP_FIXTURE_CHAOS")
        );
        let host = gateway(&chaos).await;
        assert_eq!(try_line(&host, "127.0.0.1:8080".parse().unwrap()), None);
    }

    #[tokio::test]
    async fn the_try_line_sends_the_examples_the_config_declares() {
        // The chaos component's Echo, declared in the config: suggested
        // with its parameters; a declared method it does not serve is not.
        let chaos = format!(
            "[clusters.chaos]\nservice = \"Chaos\"\ncomponent = {:?}\ntenants = [101]\n\
             [clusters.chaos.examples]\nNoSuchMethod = {{ A = 1 }}\nEcho = {{ Text = \"hi\", N = 2 }}\n",
            env!("WASP_FIXTURE_CHAOS")
        );
        let host = gateway(&chaos).await;
        let line = try_line(&host, "127.0.0.1:8080".parse().unwrap()).unwrap();
        assert!(
            line.contains(r#""Method":"Echo","TenantId":101,"Parameters":{"Text":"hi","N":2}"#),
            "{line}"
        );
    }

    #[tokio::test]
    async fn the_try_line_carries_a_token_when_tokens_are_configured() {
        let host = gateway(
            "[[tokens]]\ntoken = \"an-admin-token-that-is-long\"\nrole = \"admin\"\n\
             [[tokens]]\ntoken = \"a-node-token-for-tenant-101\"\nrole = \"node\"\ntenants = [101]\n\
             [clusters.fax]\nservice = \"Fax\"\ncomponent = \"builtin:fax\"\ntenants = [101]\n",
        )
        .await;
        let line = try_line(&host, "127.0.0.1:8080".parse().unwrap()).unwrap();
        assert!(
            line.contains("-H 'authorization: Bearer a-node-token-for-tenant-101'"),
            "{line}"
        );
        assert!(line.contains("\"Method\":\"SendFax\""), "{line}");
    }
}
