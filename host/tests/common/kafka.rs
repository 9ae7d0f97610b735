//! A real Kafka-protocol broker for tests: `scripts/kafka-broker` installs
//! the pinned one under `.kafka/` (once, whatever runs in parallel) and
//! runs it on a free port of 127.0.0.1; the [`Broker`] waits until it
//! answers metadata requests and kills it when dropped. Its storage is
//! memory only: every broker starts empty.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::message::{Headers, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

/// How long a broker may take to answer after it started (it is ready in
/// well under a second; this is for loaded machines).
const READY_WITHIN: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// How long a test process with a broker may run in all: past it, the
/// process prints every thread's stack and aborts, so that a hang is a
/// failure naming where it hangs rather than a run that never ends.
const PROCESS_BUDGET: Duration = Duration::from_secs(15 * 60);

/// Arms the process's watchdog (once; see [`PROCESS_BUDGET`]). A detached
/// thread: a process that ends in time ends it too. It covers what a
/// test's own timeouts cannot, like a runtime whose shutdown waits for a
/// blocking call.
fn watchdog() {
    static ARMED: OnceLock<()> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::thread::spawn(|| {
            std::thread::sleep(PROCESS_BUDGET);
            use std::io::Write as _;
            let pid = std::process::id();
            // Straight to the process's stderr: the test harness captures
            // eprintln! of the test threads and would lose it with the abort.
            let _ = writeln!(
                std::io::stderr(),
                "watchdog: test process {pid} still running after {PROCESS_BUDGET:?}; its threads' stacks follow, then it aborts"
            );
            let dumped = Command::new("timeout")
                .args(["120", "gdb", "-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt 40"])
                .stdin(Stdio::null())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .status();
            if !dumped.is_ok_and(|s| s.success()) {
                let _ = writeln!(std::io::stderr(), "watchdog: no stacks (gdb is not installed or could not attach)");
            }
            std::process::abort();
        });
    });
}

/// Runs the install once per test process (the script itself is safe
/// across processes).
fn install() {
    watchdog();
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let out = Command::new(repo().join("scripts/kafka-broker"))
            .arg("install")
            .output()
            .expect("run scripts/kafka-broker install");
        assert!(
            out.status.success(),
            "scripts/kafka-broker install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A message to produce: key, payload, headers.
pub type Record<'a> = (Option<Vec<u8>>, Vec<u8>, Vec<(&'a str, &'a [u8])>);

/// A broker process on 127.0.0.1; killed when dropped.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub addr: String,
}

impl Broker {
    /// Installs (once) and starts a broker on a free port, and waits until
    /// it answers.
    pub fn start() -> Broker {
        install();
        let mut last = String::new();
        // A port found free may be taken before the broker binds it: try
        // another one then.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new(repo().join("scripts/kafka-broker"))
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn scripts/kafka-broker");
            let mut broker = Broker {
                child,
                addr: format!("127.0.0.1:{port}"),
            };
            match broker.wait_ready() {
                Ok(()) => return broker,
                Err(e) => last = e,
            }
        }
        panic!("no broker started: {last}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("log_level", "0")
            .create()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("the broker on {} exited: {status}", self.addr));
            }
            match client.fetch_metadata(None, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("the broker on {} does not answer: {e}", self.addr));
                }
                Err(_) => {}
            }
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is
    /// answered, like a broker that hangs or a network that drops packets.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused broker run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {}", self.child.id());
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .create()
            .expect("admin client");
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    /// A producer of this broker (acks=all).
    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("acks", "all")
            .create()
            .expect("producer")
    }

    /// Produces every message (key, payload, headers) to `partition` of
    /// `topic` (or spread by key when `None`): all sent first, then all
    /// awaited.
    pub async fn produce(&self, topic: &str, partition: Option<i32>, messages: &[Record<'_>]) {
        let producer = self.producer();
        let mut pending = Vec::new();
        for (key, payload, headers) in messages {
            let mut h = OwnedHeaders::new();
            for (k, v) in headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(*v),
                });
            }
            let mut record = FutureRecord::to(topic).payload(payload).headers(h);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            pending.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("enqueue"),
            );
        }
        for p in pending {
            p.await.expect("delivery").expect("delivered");
        }
        producer
            .flush(Timeout::After(Duration::from_secs(10)))
            .expect("flush");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The group's committed offset of `topic`/`partition`, asked of the broker.
pub fn committed(broker: &Broker, group: &str, topic: &str, partition: i32) -> Offset {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = client
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    close_off_thread(client);
    got.find_partition(topic, partition).unwrap().offset()
}

/// Drops a client of a group on a detached thread: rdkafka's drop of a
/// consumer with a `group.id` polls until librdkafka says it closed,
/// without a bound, which must hold neither the test's runtime nor its
/// shutdown.
fn close_off_thread<T: Send + 'static>(client: T) {
    std::thread::spawn(move || drop(client));
}

/// The messages of `topic` until `n` different payloads came, each payload
/// once (at-least-once: a payload may come twice): (key, headers, payload).
pub type Read = (Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>, Vec<u8>);
pub async fn read(broker: &Broker, topic: &str, n: usize) -> Vec<Read> {
    // Every partition assigned from its beginning and nothing committed
    // (librdkafka wants a group id, but the reader never joins the group),
    // so closing the reader neither leaves a group nor waits for the
    // broker.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    // A topic that the adapter creates by producing to it may not be
    // there yet.
    let deadline = Instant::now() + READY_WITHIN;
    let partitions = loop {
        let n = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"))
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if n > 0 {
            break n;
        }
        assert!(Instant::now() < deadline, "{topic} has no partitions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    tokio::time::timeout(READY_WITHIN * 2, async {
        while out.len() < n {
            let m = consumer.recv().await.unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            let payload = m.payload().unwrap_or_default().to_vec();
            if seen.insert(payload.clone()) {
                out.push((m.key().map(<[u8]>::to_vec), headers, payload));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} messages on {topic}", out.len()));
    close_off_thread(consumer);
    out
}
