//! The Kafka adapter: work items arrive as messages on an `inbound` topic,
//! and leave it by their offset being committed once they are finished;
//! replies and notifications are produced to a `notification` topic, refused
//! messages to an `error` topic, and (optionally) a copy of each finished
//! message to a `processed` topic.
//!
//! It knows nothing about codecs, tenants or nodes, like the file adapter:
//! [`KafkaSource::next_batch`] hands out the raw messages that are ready,
//! and the pipeline finishes each through a [`Finisher`] (which any task
//! may hold) once every operation in it was answered.
//!
//! # At-least-once
//! The consumer group (one per capture point) never commits by itself
//! (`enable.auto.commit=false`). Each partition keeps the offsets handed out
//! and whether they are finished; the offset committed is the end of the
//! *contiguous finished prefix*: message 7 finished before message 5 is not
//! committed until 5 and 6 are. Commits go out every
//! [`KafkaConfig::commit_interval`], when partitions are revoked, and on
//! [`KafkaSource::close`]. A message is finished only after what it produces
//! was acknowledged by the broker (`acks=all`); a message dropped without
//! being finished holds its partition's commits back and comes again after
//! a restart or a rebalance. Consumers downstream of `notification` may
//! therefore see a reply twice (after a crash between the produce and the
//! commit): the `correlation-id` header tells them.
//!
//! # Rebalances
//! Partitions revoked from this consumer commit their finished prefix and
//! forget their bookkeeping; each assignment starts a new *epoch*, and a
//! message of an earlier epoch that finishes later produces its output but
//! commits nothing (the partition's new owner reads it again from the last
//! commit). Messages already fetched for a revoked partition are discarded
//! by librdkafka.
//!
//! # Broker down
//! librdkafka reconnects by itself. Broker state changes (seen in its
//! statistics and errors) are logged once per change. A produce that fails
//! is retried with a backoff from [`KafkaConfig::retry_min`] doubling to
//! [`KafkaConfig::retry_max`] (one log line when producing starts failing,
//! one when it works again); meanwhile the message stays unfinished, so
//! nothing is ever dropped.
//!
//! # Bounds
//! - [`KafkaConfig::max_in_flight`]: messages handed out and not finished
//!   or dropped; each [`Message`] carries the permit. While none is free
//!   for more than a second the source pauses its partitions but keeps
//!   polling the consumer (so the group's heartbeats, rebalances and
//!   `max.poll.interval.ms` are served); a shorter wait does without the
//!   pause, whose every resume costs a fetch.
//! - [`KafkaConfig::max_message_bytes`]: a larger message is never handed
//!   out; it goes to the error topic with a reason giving both sizes.
//! - librdkafka's prefetch queue is bounded by
//!   [`KafkaConfig::max_prefetch_kbytes`] (`queued.max.messages.kbytes`),
//!   its producer queue by its own defaults (100 000 messages, 1 GiB); a
//!   full producer queue makes the produce wait, not fail.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The header that carries a message's correlation id, inbound and out.
pub const CORRELATION_HEADER: &str = "correlation-id";
/// The header that carries the reason on the error topic.
pub const ERROR_HEADER: &str = "wasp-error";
/// Messages per batch by default: as many as a codec call takes.
pub const DEFAULT_BATCH: usize = 16;
/// Messages handed out and not finished, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// The largest message handed out by default (Kafka's own default limit).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Group session timeout by default: a consumer that stops heartbeating
/// loses its partitions after this long. Joins wait about half of it.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// How often finished offsets are committed by default.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Produce retries: the first wait, doubling up to [`DEFAULT_RETRY_MAX`]
/// (CAPTURE.md: 3-30 s).
pub const DEFAULT_RETRY_MIN: Duration = Duration::from_secs(3);
/// The longest wait between produce attempts.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);
/// librdkafka's prefetch queue by default, in KiB.
pub const DEFAULT_MAX_PREFETCH_KBYTES: usize = 16 * 1024;
/// How often librdkafka reports statistics (broker state, lag).
const STATISTICS_INTERVAL: Duration = Duration::from_secs(1);
/// How long a produce may sit in librdkafka (its own retries included)
/// before it counts as failed and is retried by us with our backoff.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Kafka's limit on topic names.
const MAX_TOPIC_LEN: usize = 249;
/// How long the source waits for a free `max_in_flight` place before it
/// pauses its partitions (and polls, serving rebalances, while paused).
const PAUSE_AFTER: Duration = Duration::from_secs(1);
/// How long [`KafkaSource::close`] waits for the consumer to leave its
/// group; past it the close goes on by itself and the source is gone.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// A Kafka capture point's settings: plain data, checked by
/// [`KafkaConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]` (`bootstrap.servers`).
    pub brokers: String,
    /// The topic messages are taken from.
    pub inbound: String,
    /// A copy of each finished message goes here, when set.
    pub processed: Option<String>,
    /// Refused messages go here, with a [`ERROR_HEADER`] reason.
    pub error: String,
    /// Replies and notifications go here.
    pub notification: String,
    /// The consumer group (`group.id`): one per capture point.
    pub group: String,
    /// Most messages per [`KafkaSource::next_batch`].
    pub batch: usize,
    /// Most messages handed out and not finished.
    pub max_in_flight: usize,
    /// Larger messages go to `error` unread.
    pub max_message_bytes: usize,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// How often finished offsets are committed.
    pub commit_interval: Duration,
    /// First wait before a failed produce is tried again.
    pub retry_min: Duration,
    /// Longest wait between produce attempts.
    pub retry_max: Duration,
    /// `queued.max.messages.kbytes`: librdkafka's prefetch per consumer.
    pub max_prefetch_kbytes: usize,
}

impl KafkaConfig {
    /// The defaults for a capture point reading `inbound` in `group`: errors
    /// to `<inbound>.error`, replies to `<inbound>.notification`, no
    /// processed copy.
    pub fn new(brokers: &str, inbound: &str, group: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.to_string(),
            inbound: inbound.to_string(),
            processed: None,
            error: format!("{inbound}.error"),
            notification: format!("{inbound}.notification"),
            group: group.to_string(),
            batch: DEFAULT_BATCH,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            retry_min: DEFAULT_RETRY_MIN,
            retry_max: DEFAULT_RETRY_MAX,
            max_prefetch_kbytes: DEFAULT_MAX_PREFETCH_KBYTES,
        }
    }

    /// Every problem of these settings, each naming its field as the
    /// config spells it (`max-in-flight`).
    pub fn validate(&self) -> Result<(), Vec<KafkaConfigError>> {
        let mut problems = Vec::new();
        let mut bad = |field: &'static str, problem: String| {
            problems.push(KafkaConfigError { field, problem })
        };
        if self.brokers.split(',').any(|b| {
            let b = b.trim();
            b.is_empty()
                || b.rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        }) {
            bad(
                "brokers",
                format!("{:?} is not a list of host:port", self.brokers),
            );
        }
        let mut topics = vec![
            ("inbound", &self.inbound),
            ("error", &self.error),
            ("notification", &self.notification),
        ];
        if let Some(p) = &self.processed {
            topics.push(("processed", p));
        }
        for (field, topic) in &topics {
            if let Err(problem) = check_topic(topic) {
                bad(field, problem);
            }
        }
        for (field, topic) in &topics[1..] {
            if *topic == &self.inbound {
                bad(
                    field,
                    format!("{topic:?} is also the inbound topic: its output would come back in"),
                );
            }
        }
        if self.group.trim().is_empty() {
            bad("group", "empty".to_string());
        }
        for (field, value) in [
            ("batch", self.batch),
            ("max-in-flight", self.max_in_flight),
            ("max-message-bytes", self.max_message_bytes),
            ("max-prefetch-kbytes", self.max_prefetch_kbytes),
        ] {
            if value == 0 {
                bad(field, "must be at least 1".to_string());
            }
        }
        if self.max_message_bytes > 1_000_000_000 {
            bad(
                "max-message-bytes",
                "more than librdkafka takes (1000000000)".to_string(),
            );
        }
        if self.max_prefetch_kbytes > 2_097_151 {
            bad(
                "max-prefetch-kbytes",
                "more than librdkafka takes (2097151)".to_string(),
            );
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.session_timeout) {
            bad(
                "session-timeout-ms",
                "must be between 1 s and 1 h".to_string(),
            );
        }
        if self.commit_interval.is_zero() {
            bad("commit-interval-ms", "must be more than 0".to_string());
        }
        if self.retry_min.is_zero() || self.retry_max < self.retry_min {
            bad(
                "retry-ms",
                "the first wait must be more than 0 and not more than the last".to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn topics(&self) -> KafkaTopics {
        KafkaTopics {
            inbound: self.inbound.clone(),
            processed: self.processed.clone(),
            error: self.error.clone(),
            notification: self.notification.clone(),
        }
    }
}

/// Kafka's rules for topic names.
fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("empty".to_string());
    }
    if topic == "." || topic == ".." {
        return Err(format!("{topic:?} is not a topic name"));
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!("longer than {MAX_TOPIC_LEN} characters"));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{topic:?} has {c:?}; topic names take ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

fn status_of(shared: &Shared, group: &str) -> KafkaStatus {
    let mut partitions: Vec<i32> = shared.book().parts.keys().map(|(_, p)| *p).collect();
    partitions.sort_unstable();
    KafkaStatus {
        topics: shared.topics.clone(),
        group: group.to_string(),
        broker_up: shared.broker_up.load(Ordering::SeqCst),
        lag: *shared.lag.lock().unwrap_or_else(|e| e.into_inner()),
        in_flight: (shared.max_in_flight - shared.permits.available_permits())
            .saturating_sub(usize::from(shared.waiting.load(Ordering::SeqCst))),
        partitions,
    }
}

/// One problem of a [`KafkaConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct KafkaConfigError {
    /// The field as the config spells it.
    pub field: &'static str,
    pub problem: String,
}

/// The topics of a capture point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KafkaTopics {
    pub inbound: String,
    pub processed: Option<String>,
    pub error: String,
    pub notification: String,
}

/// What `/v1/admin/captures` shows of a Kafka source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KafkaStatus {
    pub topics: KafkaTopics,
    pub group: String,
    /// A broker of the cluster is connected (librdkafka's last statistics,
    /// or the last error it reported).
    pub broker_up: bool,
    /// Messages in the assigned partitions not consumed yet, as the last
    /// statistics saw it; `None` until known.
    pub lag: Option<i64>,
    /// Messages handed out and not finished.
    pub in_flight: usize,
    /// Partitions of `inbound` assigned to this consumer now.
    pub partitions: Vec<i32>,
}

/// One inbound message, handed out by [`KafkaSource::next_batch`]. It holds
/// one of the source's `max_in_flight` permits until it is finished through
/// a [`Finisher`] or dropped (dropped: not committed, it comes again).
pub struct Message {
    pub key: Option<Vec<u8>>,
    /// The headers whose values are UTF-8 (a header without a value has
    /// ""); headers whose value is not UTF-8 are left out of this list but
    /// are kept, byte for byte, on the copies to `error` and `processed`.
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The inbound `correlation-id` header (when UTF-8 and not empty),
    /// else `topic/partition/offset`.
    pub correlation_id: String,
    /// The message's timestamp (milliseconds since the epoch), if it has one.
    pub timestamp: Option<i64>,
    raw_headers: Vec<(String, Option<Vec<u8>>)>,
    epoch: u64,
    _permit: OwnedSemaphorePermit,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("correlation_id", &self.correlation_id)
            .field("bytes", &self.payload.len())
            .finish()
    }
}

/// A finishing call gave up because the source was closed before the
/// broker took what it had to produce: the message stays uncommitted and
/// comes again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Kafka capture point stopped before the broker took the message; it stays uncommitted")]
pub struct Unfinished;

/// The offsets of one assigned partition: handed out, and finished or not.
#[derive(Debug)]
struct Track {
    epoch: u64,
    /// Offsets handed out and not yet part of the committed-to prefix:
    /// `true` once finished.
    outstanding: BTreeMap<i64, bool>,
    /// The offset to commit (one past the contiguous finished prefix).
    commit_to: Option<i64>,
    /// The last offset the broker acknowledged as committed.
    committed: Option<i64>,
}

impl Track {
    fn finish(&mut self, offset: i64) {
        if let Some(done) = self.outstanding.get_mut(&offset) {
            *done = true;
        }
        while let Some(entry) = self.outstanding.first_entry() {
            if !*entry.get() {
                break;
            }
            self.commit_to = Some(*entry.key() + 1);
            entry.remove();
        }
    }
}

#[derive(Debug, Default)]
struct Book {
    /// Bumped on every assignment.
    epoch: u64,
    parts: HashMap<(String, i32), Track>,
}

/// What the source, its finishers, its committer and librdkafka's
/// callbacks share.
struct Shared {
    group: String,
    topics: KafkaTopics,
    book: Mutex<Book>,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    /// The source paused its partitions (no permit free); partitions
    /// assigned meanwhile are paused too.
    paused: AtomicBool,
    broker_up: AtomicBool,
    /// The source waits for the next message, holding a place for it.
    waiting: AtomicBool,
    produce_failing: AtomicBool,
    lag: Mutex<Option<i64>>,
    closing: CancellationToken,
    /// Runs before each commit; a commit goes out only if it succeeded
    /// (the pipeline makes its journal durable here).
    before_commit: std::sync::OnceLock<BeforeCommit>,
}

/// See [`KafkaSource::before_commit`].
pub type BeforeCommit = Box<dyn Fn() -> anyhow::Result<()> + Send + Sync>;

impl Shared {
    /// Whether offsets may be committed now (see `before_commit`).
    fn ready_to_commit(&self) -> bool {
        match self.before_commit.get().map(|f| f()) {
            None | Some(Ok(())) => true,
            Some(Err(e)) => {
                tracing::warn!(group = %self.group, "kafka: not committing: {e:#}; those messages come again unless a later commit succeeds");
                false
            }
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_broker_up(&self, up: bool, why: &str) {
        if self.broker_up.swap(up, Ordering::SeqCst) != up {
            if up {
                tracing::info!(group = %self.group, "kafka: broker connected");
            } else {
                tracing::warn!(group = %self.group, "kafka: broker unreachable ({why}); retrying");
            }
        }
    }

    /// Marks an offset finished, if its partition is still ours in the
    /// epoch it was handed out in.
    fn finish(&self, msg: &Message) {
        let mut book = self.book();
        match book.parts.get_mut(&(msg.topic.clone(), msg.partition)) {
            Some(track) if track.epoch == msg.epoch => track.finish(msg.offset),
            _ => tracing::debug!(
                group = %self.group,
                topic = %msg.topic, partition = msg.partition, offset = msg.offset,
                "kafka: finished after its partition was revoked; its new owner reads it again"
            ),
        }
    }

    /// The offsets to commit now: every partition whose finished prefix
    /// moved past the last commit acknowledged.
    fn to_commit(&self) -> TopicPartitionList {
        let book = self.book();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), track) in &book.parts {
            if let Some(to) = track.commit_to
                && track.committed.is_none_or(|c| c < to)
            {
                // Only fails for an invalid offset, which `to` is not.
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(to));
            }
        }
        tpl
    }

    fn committed(&self, offsets: &TopicPartitionList) {
        let mut book = self.book();
        for e in offsets.elements() {
            if let (Some(track), Offset::Offset(o)) = (
                book.parts.get_mut(&(e.topic().to_string(), e.partition())),
                e.offset(),
            ) && track.committed.is_none_or(|c| c < o)
            {
                track.committed = Some(o);
            }
        }
    }
}

/// librdkafka's callbacks: rebalances, commits, statistics, errors, logs.
struct Context {
    shared: Arc<Shared>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, line: &str) {
        let group = &self.shared.group;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(%group, "librdkafka {fac}: {line}"),
            RDKafkaLogLevel::Warning => tracing::warn!(%group, "librdkafka {fac}: {line}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(%group, "librdkafka {fac}: {line}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(%group, "librdkafka {fac}: {line}"),
        }
    }

    fn stats(&self, stats: Statistics) {
        // Bootstrap entries have no node id (-1); a real broker "UP" means
        // connected.
        let known: Vec<_> = stats.brokers.values().filter(|b| b.nodeid >= 0).collect();
        if !known.is_empty() {
            let up = known.iter().any(|b| b.state == "UP");
            self.shared.set_broker_up(up, "no broker connection is up");
        }
        let lag = stats.topics.get(&self.shared.topics.inbound).map(|t| {
            t.partitions
                .values()
                .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                .map(|p| p.consumer_lag)
                .sum::<i64>()
        });
        *self.shared.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => self.shared.set_broker_up(false, reason),
            // Every lost connection is reported; the state change says it once.
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!(group = %self.shared.group, "kafka: {error}: {reason}")
            }
            _ => tracing::warn!(group = %self.shared.group, "kafka: {error}: {reason}"),
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // Commit what is finished while the partitions are still
                // ours, then forget them: whatever finishes later commits
                // nothing (see `Shared::finish`). Sent, not waited for:
                // this runs where the consumer is polled, a runtime worker,
                // and a synchronous commit waits for the broker without a
                // bound. librdkafka sends it before it rejoins the group;
                // should it fail, those messages come again (and their
                // ExternalIds are known).
                let commit = self.shared.to_commit();
                if commit.count() > 0
                    && self.shared.ready_to_commit()
                    && let Err(e) = consumer.commit(&commit, CommitMode::Async)
                {
                    tracing::warn!(group = %self.shared.group, "kafka: commit before a rebalance failed: {e}; those messages come again");
                }
                let mut book = self.shared.book();
                for e in tpl.elements() {
                    book.parts.remove(&(e.topic().to_string(), e.partition()));
                }
                tracing::info!(group = %self.shared.group, revoked = tpl.count(), "kafka: partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                let mut book = self.shared.book();
                book.epoch += 1;
                let epoch = book.epoch;
                for e in tpl.elements() {
                    book.parts.insert(
                        (e.topic().to_string(), e.partition()),
                        Track {
                            epoch,
                            outstanding: BTreeMap::new(),
                            commit_to: None,
                            committed: None,
                        },
                    );
                }
                tracing::info!(group = %self.shared.group, assigned = tpl.count(), "kafka: partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.shared.group, "kafka: rebalance failed: {e}")
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // librdkafka keeps a partition's pause across its revocation and
        // assignment: one paused before a rebalance and resumed while it
        // was not assigned would stay paused for good. New partitions
        // take the source's state, whatever they were.
        if let Rebalance::Assign(tpl) = rebalance {
            let paused = self.shared.paused.load(Ordering::SeqCst);
            let result = if paused {
                consumer.pause(tpl)
            } else {
                consumer.resume(tpl)
            };
            if let Err(e) = result {
                tracing::warn!(group = %self.shared.group, paused, "kafka: pause/resume new partitions: {e}");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.shared.committed(offsets),
            // Nothing to commit is not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::debug!(group = %self.shared.group, "kafka: commit failed: {e}; tried again")
            }
        }
    }
}

/// The consumer, closed on a thread of its own when its last reference
/// goes: librdkafka's close leaves the group and waits for the broker,
/// which must never hold a runtime worker (the commit task or the source
/// may hold the last reference), nor, with the broker gone for good, the
/// process or the runtime's shutdown.
struct ClosingConsumer {
    inner: Option<StreamConsumer<Context>>,
    closed: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::ops::Deref for ClosingConsumer {
    type Target = StreamConsumer<Context>;
    fn deref(&self) -> &StreamConsumer<Context> {
        self.inner.as_ref().expect("taken only on drop")
    }
}

impl Drop for ClosingConsumer {
    fn drop(&mut self) {
        let (Some(consumer), closed) = (self.inner.take(), self.closed.take()) else {
            return;
        };
        let close = move || {
            drop(consumer);
            if let Some(closed) = closed {
                let _ = closed.send(());
            }
        };
        // A detached thread: the runtime's shutdown does not wait for it,
        // and the process exits past it. Should no thread start, the
        // closure, dropped with the error, has closed the consumer here.
        if let Err(e) = std::thread::Builder::new()
            .name("wasp-kafka-close".into())
            .spawn(close)
        {
            tracing::warn!("kafka: no thread to close a consumer on ({e}); closed in place");
        }
    }
}

/// Runs `f` on a detached thread of its own and waits for its result up to
/// `within` (`None` past it, or when no thread starts). For librdkafka's
/// blocking calls: a synchronous commit waits for the broker without a
/// bound, and must hold neither a runtime worker nor the blocking pool,
/// whose threads a runtime's shutdown waits for. Past the bound the call
/// goes on by itself and ends when the broker answers or the consumer
/// closes.
async fn off_runtime<T: Send + 'static>(
    within: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = std::thread::Builder::new()
        .name("wasp-kafka-commit".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
    {
        tracing::warn!("kafka: no thread for a commit: {e}");
        return None;
    }
    tokio::time::timeout(within, rx).await.ok()?.ok()
}

/// Where messages come from: the consumer of one capture point.
pub struct KafkaSource {
    cfg: KafkaConfig,
    consumer: Arc<ClosingConsumer>,
    /// Told when the consumer closed (see [`ClosingConsumer`]).
    closed: Option<tokio::sync::oneshot::Receiver<()>>,
    shared: Arc<Shared>,
    finisher: Finisher,
    /// A message fetched while paused, handed out next.
    held: Option<Message>,
}

/// What waiting for a permit gave.
enum Ready {
    Permit(OwnedSemaphorePermit),
    Held,
    Stopped,
}

impl fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSource")
            .field("group", &self.cfg.group)
            .field("inbound", &self.cfg.inbound)
            .finish()
    }
}

impl KafkaSource {
    /// Checks `cfg`, creates the consumer (subscribed to `inbound`) and the
    /// producer, and starts committing. Does not wait for the broker:
    /// librdkafka connects (and reconnects) by itself. Must run in a Tokio
    /// runtime.
    pub fn open(cfg: KafkaConfig) -> anyhow::Result<KafkaSource> {
        if let Err(problems) = cfg.validate() {
            let all: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            anyhow::bail!("kafka capture point: {}", all.join("; "));
        }
        let permits = Arc::new(Semaphore::new(cfg.max_in_flight));
        let shared = Arc::new(Shared {
            group: cfg.group.clone(),
            topics: cfg.topics(),
            book: Mutex::new(Book::default()),
            permits,
            max_in_flight: cfg.max_in_flight,
            paused: AtomicBool::new(false),
            broker_up: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            produce_failing: AtomicBool::new(false),
            lag: Mutex::new(None),
            closing: CancellationToken::new(),
            before_commit: std::sync::OnceLock::new(),
        });
        let ms = |d: Duration| d.as_millis().to_string();
        let consumer: StreamConsumer<Context> = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("client.id", format!("wasp-{}", cfg.group))
            .set("group.id", &cfg.group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", ms(cfg.session_timeout))
            .set("statistics.interval.ms", ms(STATISTICS_INTERVAL))
            .set(
                "queued.max.messages.kbytes",
                cfg.max_prefetch_kbytes.to_string(),
            )
            .set("enable.partition.eof", "false")
            // An inbound topic created after the start (by its first
            // message, on a broker that auto-creates) is seen within
            // seconds, not librdkafka's default five minutes.
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create_with_context(Context {
                shared: shared.clone(),
            })
            .map_err(|e| anyhow::anyhow!("kafka consumer for {}: {e}", cfg.brokers))?;
        consumer
            .subscribe(&[&cfg.inbound])
            .map_err(|e| anyhow::anyhow!("kafka subscribe to {}: {e}", cfg.inbound))?;
        // A refused message is copied whole to the error topic, so the
        // producer takes more than the largest message handed out.
        let max_produce = (cfg.max_message_bytes.saturating_mul(2) + (1 << 20)).min(1_000_000_000);
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("client.id", format!("wasp-{}", cfg.group))
            .set("acks", "all")
            .set("message.timeout.ms", ms(MESSAGE_TIMEOUT))
            .set("message.max.bytes", max_produce.to_string())
            .create()
            .map_err(|e| anyhow::anyhow!("kafka producer for {}: {e}", cfg.brokers))?;
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        let consumer = Arc::new(ClosingConsumer {
            inner: Some(consumer),
            closed: Some(closed_tx),
        });
        let finisher = Finisher {
            inner: Arc::new(FinisherInner {
                producer,
                shared: shared.clone(),
                retry_min: cfg.retry_min,
                retry_max: cfg.retry_max,
            }),
        };
        tokio::spawn(commit_periodically(
            consumer.clone(),
            shared.clone(),
            cfg.commit_interval,
        ));
        Ok(KafkaSource {
            cfg,
            consumer,
            closed: Some(closed),
            shared,
            finisher,
            held: None,
        })
    }

    /// Up to `batch` messages ready now: waits for the first (and for a
    /// free `max_in_flight` permit), then takes only what is already
    /// fetched. Empty only when `stop` is cancelled. Messages too large are
    /// sent to the error topic here and not handed out.
    pub async fn next_batch(&mut self, stop: &CancellationToken) -> Vec<Message> {
        let mut batch = Vec::new();
        while batch.is_empty() {
            if let Some(held) = self.held.take() {
                batch.push(held);
            } else {
                let permit = match self.permit(stop).await {
                    Ready::Permit(permit) => permit,
                    Ready::Held => continue,
                    Ready::Stopped => return batch,
                };
                // The place taken for the next message is not in flight.
                self.shared.waiting.store(true, Ordering::SeqCst);
                let received = tokio::select! {
                    biased;
                    _ = stop.cancelled() => None,
                    m = self.consumer.recv() => Some(m),
                };
                self.shared.waiting.store(false, Ordering::SeqCst);
                let Some(received) = received else {
                    return batch;
                };
                self.take(received, permit, &mut batch);
            }
            while batch.len() < self.cfg.batch {
                let Ok(permit) = self.shared.permits.clone().try_acquire_owned() else {
                    break;
                };
                let Some(received) = futures_util::FutureExt::now_or_never(self.consumer.recv())
                else {
                    break;
                };
                self.take(received, permit, &mut batch);
            }
        }
        batch
    }

    /// A free permit; while there is none, partitions are paused and the
    /// consumer is still polled (rebalances, `max.poll.interval.ms`).
    async fn permit(&mut self, stop: &CancellationToken) -> Ready {
        if let Ok(p) = self.shared.permits.clone().try_acquire_owned() {
            self.set_paused(false);
            return Ready::Permit(p);
        }
        // A short wait (messages finishing all the time) does without a
        // pause: pausing drops librdkafka's prefetched messages and each
        // resume costs a fetch from the broker. Only a longer one pauses
        // and polls, to serve rebalances meanwhile.
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ready::Stopped,
            p = self.shared.permits.clone().acquire_owned() => {
                return match p {
                    Ok(p) => Ready::Permit(p),
                    Err(_) => Ready::Stopped,
                };
            }
            () = tokio::time::sleep(PAUSE_AFTER) => {}
        }
        self.set_paused(true);
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ready::Stopped,
            p = self.shared.permits.clone().acquire_owned() => p,
            m = self.consumer.recv() => {
                // Fetched before the pause took effect: it waits for a
                // permit and is the next one handed out (the consumer is
                // not polled meanwhile: one message, not a queue).
                let permit = tokio::select! {
                    _ = stop.cancelled() => return Ready::Stopped,
                    p = self.shared.permits.clone().acquire_owned() => p,
                };
                let Ok(permit) = permit else { return Ready::Stopped };
                let mut one = Vec::new();
                self.take(m, permit, &mut one);
                self.set_paused(false);
                self.held = one.pop();
                return Ready::Held;
            }
        };
        self.set_paused(false);
        match permit {
            Ok(p) => Ready::Permit(p),
            // The semaphore is never closed.
            Err(_) => Ready::Stopped,
        }
    }

    fn set_paused(&self, paused: bool) {
        if self.shared.paused.swap(paused, Ordering::SeqCst) == paused {
            return;
        }
        let result = self.consumer.assignment().and_then(|tpl| {
            if paused {
                self.consumer.pause(&tpl)
            } else {
                self.consumer.resume(&tpl)
            }
        });
        if let Err(e) = result {
            tracing::warn!(group = %self.cfg.group, paused, "kafka: pause/resume: {e}");
        }
    }

    /// Turns what the consumer gave into a message handed out (or refused
    /// to the error topic when too large).
    fn take(
        &self,
        received: KafkaResult<rdkafka::message::BorrowedMessage<'_>>,
        permit: OwnedSemaphorePermit,
        out: &mut Vec<Message>,
    ) {
        let m = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(group = %self.cfg.group, "kafka: consume: {e}");
                return;
            }
        };
        let (topic, partition, offset) = (m.topic().to_string(), m.partition(), m.offset());
        let epoch = {
            let mut book = self.shared.book();
            match book.parts.get_mut(&(topic.clone(), partition)) {
                Some(track)
                    if !track.outstanding.contains_key(&offset)
                        && track.commit_to.is_none_or(|c| c <= offset) =>
                {
                    track.outstanding.insert(offset, false);
                    track.epoch
                }
                _ => {
                    tracing::debug!(group = %self.cfg.group, %topic, partition, offset, "kafka: message of a partition not assigned here (or seen already); skipped");
                    return;
                }
            }
        };
        let mut headers = Vec::new();
        let mut raw_headers = Vec::new();
        if let Some(hs) = m.headers() {
            for h in hs.iter() {
                let value = h.value.map(<[u8]>::to_vec);
                match &value {
                    None => headers.push((h.key.to_string(), String::new())),
                    Some(v) => {
                        if let Ok(s) = std::str::from_utf8(v) {
                            headers.push((h.key.to_string(), s.to_string()));
                        }
                    }
                }
                raw_headers.push((h.key.to_string(), value));
            }
        }
        let correlation_id = headers
            .iter()
            .find(|(k, v)| k == CORRELATION_HEADER && !v.is_empty())
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("{topic}/{partition}/{offset}"));
        let msg = Message {
            key: m.key().map(<[u8]>::to_vec),
            headers,
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            topic,
            partition,
            offset,
            correlation_id,
            timestamp: m.timestamp().to_millis(),
            raw_headers,
            epoch,
            _permit: permit,
        };
        if msg.payload.len() > self.cfg.max_message_bytes {
            let reason = format!(
                "message of {} bytes, more than max-message-bytes ({})",
                msg.payload.len(),
                self.cfg.max_message_bytes
            );
            tracing::warn!(group = %self.cfg.group, topic = %msg.topic, partition = msg.partition, offset = msg.offset, "kafka: {reason}; to the error topic");
            let finisher = self.finisher.clone();
            tokio::spawn(async move {
                let _ = finisher.failed(msg, &reason).await;
            });
            return;
        }
        out.push(msg);
    }

    /// Runs `f` before each commit of offsets (from the commit task, a
    /// rebalance or the close, never on a runtime worker); when it fails,
    /// nothing is committed then. Set once.
    pub fn before_commit(&self, f: BeforeCommit) {
        if self.shared.before_commit.set(f).is_err() {
            tracing::warn!(group = %self.shared.group, "kafka: before_commit set twice; the first kept");
        }
    }

    /// The handle that finishes messages; clone it freely.
    pub fn finisher(&self) -> Finisher {
        self.finisher.clone()
    }

    /// Commits every partition's finished prefix not acknowledged yet and
    /// waits for the broker's answer, at most [`CLOSE_WITHIN`]: a broker
    /// that does not answer makes it an error, and the commit goes on by
    /// itself.
    pub async fn commit(&self) -> anyhow::Result<()> {
        let consumer = self.consumer.clone();
        let shared = self.shared.clone();
        off_runtime(CLOSE_WITHIN, move || commit_now(&consumer, &shared, true))
            .await
            .ok_or_else(|| anyhow::anyhow!("kafka commit: no answer within {CLOSE_WITHIN:?}"))?
            .map_err(|e| anyhow::anyhow!("kafka commit: {e}"))
    }

    /// Its figures now.
    pub fn status(&self) -> KafkaStatus {
        status_of(&self.shared, &self.cfg.group)
    }

    /// Reads [`KafkaSource::status`] from anywhere, while the source itself
    /// is busy in another task.
    pub fn status_reader(&self) -> std::sync::Arc<dyn Fn() -> KafkaStatus + Send + Sync> {
        let (shared, group) = (self.shared.clone(), self.cfg.group.clone());
        std::sync::Arc::new(move || status_of(&shared, &group))
    }

    /// Stops: commits what is finished, leaves the group (its partitions
    /// go to the others at once) and stops the finishers' retries. Messages
    /// not finished by then are not committed and come again.
    pub async fn close(mut self) {
        let consumer = self.consumer.clone();
        let shared = self.shared.clone();
        let closed = self.closed.take();
        let group = self.cfg.group.clone();
        drop(self);
        let start = tokio::time::Instant::now();
        let sh = shared.clone();
        let committed = off_runtime(CLOSE_WITHIN, move || {
            if let Err(e) = commit_now(&consumer, &sh, true) {
                tracing::warn!(group = %sh.group, "kafka: commit on stop: {e}");
            }
        })
        .await;
        shared.closing.cancel();
        shared.book().parts.clear();
        if committed.is_none() {
            tracing::warn!(%group, "kafka: the last commit got no answer within {CLOSE_WITHIN:?}; what it held comes again");
        }
        // The commit waits for the broker's answer, the close for the
        // group's: both bounded, so a broker gone does not hold a stop.
        let waited = tokio::time::timeout_at(start + CLOSE_WITHIN, async {
            if let Some(closed) = closed {
                let _ = closed.await;
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(%group, "kafka: the consumer did not leave its group within {CLOSE_WITHIN:?}; it goes on closing by itself");
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.shared.closing.cancel();
    }
}

/// Commits the finished prefixes not acknowledged yet: `sync`, waiting for
/// the answer (without a bound: run it with [`off_runtime`]); else the
/// answer comes to `Context::commit_callback`.
fn commit_now(consumer: &StreamConsumer<Context>, shared: &Shared, sync: bool) -> KafkaResult<()> {
    let tpl = shared.to_commit();
    if tpl.count() == 0 || !shared.ready_to_commit() {
        return Ok(());
    }
    consumer.commit(
        &tpl,
        if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        },
    )?;
    if sync {
        shared.committed(&tpl);
    }
    Ok(())
}

/// Commits finished prefixes every `every` until the source closes.
async fn commit_periodically(consumer: Arc<ClosingConsumer>, shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.closing.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Async: the answer comes to `commit_callback`; a failed commit is
        // simply sent again at the next tick. Off the workers: the hook
        // before it may write to disk.
        let (c, sh) = (consumer.clone(), shared.clone());
        let committed = tokio::task::spawn_blocking(move || commit_now(&c, &sh, false)).await;
        if let Ok(Err(e)) = committed {
            tracing::debug!(group = %shared.group, "kafka: commit: {e}");
        }
    }
}

struct FinisherInner {
    producer: FutureProducer,
    shared: Arc<Shared>,
    retry_min: Duration,
    retry_max: Duration,
}

/// Finishes messages of one [`KafkaSource`]: produces what they leave
/// behind, then marks them done for the commit. Cloneable, usable from
/// any task. Each call waits until the broker acknowledged (`acks=all`),
/// retrying with backoff while it cannot; it gives up ([`Unfinished`])
/// only when the source is closed.
#[derive(Clone)]
pub struct Finisher {
    inner: Arc<FinisherInner>,
}

impl fmt::Debug for Finisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finisher")
            .field("group", &self.inner.shared.group)
            .finish()
    }
}

/// One record to produce.
struct Out<'a> {
    topic: &'a str,
    key: Option<&'a [u8]>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
    payload: &'a [u8],
}

impl Finisher {
    /// The message was handled: its replies document (if any) goes to the
    /// notification topic with the inbound key and a `correlation-id`
    /// header, a copy of the message to the processed topic (if
    /// configured); then it is done.
    pub async fn processed(
        &self,
        msg: Message,
        replies: Option<Vec<u8>>,
    ) -> Result<(), Unfinished> {
        let topics = &self.inner.shared.topics;
        let reply = replies.as_deref().map(|doc| Out {
            topic: &topics.notification,
            key: msg.key.as_deref(),
            headers: vec![(CORRELATION_HEADER, Some(msg.correlation_id.as_bytes()))],
            payload: doc,
        });
        let copy = topics.processed.as_deref().map(|topic| Out {
            topic,
            key: msg.key.as_deref(),
            headers: raw(&msg.raw_headers),
            payload: &msg.payload,
        });
        let (a, b) = tokio::join!(self.deliver_opt(reply), self.deliver_opt(copy));
        a?;
        b?;
        self.inner.shared.finish(&msg);
        Ok(())
    }

    /// The message was refused: it goes to the error topic as it came (key,
    /// headers, payload) plus a `wasp-error` header giving `reason`; then it
    /// is done.
    pub async fn failed(&self, msg: Message, reason: &str) -> Result<(), Unfinished> {
        let mut headers = raw(&msg.raw_headers);
        headers.push((ERROR_HEADER, Some(reason.as_bytes())));
        self.deliver(&Out {
            topic: &self.inner.shared.topics.error,
            key: msg.key.as_deref(),
            headers,
            payload: &msg.payload,
        })
        .await?;
        self.inner.shared.finish(&msg);
        Ok(())
    }

    /// A notification from a node (no inbound message behind it): `doc` to
    /// the notification topic with `key` and a `correlation-id` header.
    pub async fn notify(
        &self,
        key: Option<&[u8]>,
        correlation_id: &str,
        doc: &[u8],
    ) -> Result<(), Unfinished> {
        self.deliver(&Out {
            topic: &self.inner.shared.topics.notification,
            key,
            headers: vec![(CORRELATION_HEADER, Some(correlation_id.as_bytes()))],
            payload: doc,
        })
        .await
    }

    async fn deliver_opt(&self, out: Option<Out<'_>>) -> Result<(), Unfinished> {
        match out {
            Some(out) => self.deliver(&out).await,
            None => Ok(()),
        }
    }

    /// Produces `out` until the broker acknowledges it, waiting
    /// `retry_min`, doubling to `retry_max`, between attempts.
    async fn deliver(&self, out: &Out<'_>) -> Result<(), Unfinished> {
        let inner = &self.inner;
        let shared = &inner.shared;
        let mut wait = inner.retry_min;
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
            for (key, value) in &out.headers {
                headers = headers.insert(Header { key, value: *value });
            }
            let mut record = FutureRecord::to(out.topic)
                .payload(out.payload)
                .headers(headers);
            if let Some(key) = out.key {
                record = record.key(key);
            }
            let result = tokio::select! {
                _ = shared.closing.cancelled() => return Err(Unfinished),
                r = inner.producer.send(record, Timeout::Never) => r,
            };
            match result {
                Ok(_) => {
                    if shared.produce_failing.swap(false, Ordering::SeqCst) {
                        tracing::info!(group = %shared.group, "kafka: producing again");
                    }
                    return Ok(());
                }
                Err((e, _)) => {
                    if !shared.produce_failing.swap(true, Ordering::SeqCst) {
                        tracing::warn!(group = %shared.group, topic = out.topic, "kafka: produce failed: {e}; retrying every {}-{} s, the message stays unfinished", inner.retry_min.as_secs(), inner.retry_max.as_secs());
                    } else {
                        tracing::debug!(group = %shared.group, topic = out.topic, "kafka: produce failed again: {e}");
                    }
                    tokio::select! {
                        _ = shared.closing.cancelled() => return Err(Unfinished),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(inner.retry_max);
                }
            }
        }
    }
}

fn raw(headers: &[(String, Option<Vec<u8>>)]) -> Vec<(&str, Option<&[u8]>)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        KafkaConfig::new("127.0.0.1:9092", "orders", "wasp-orders")
            .validate()
            .unwrap();
    }

    #[test]
    fn every_problem_names_its_field() {
        let mut cfg = KafkaConfig::new("nohost", "bad topic", "");
        cfg.error = "bad topic".into();
        cfg.notification = String::new();
        cfg.processed = Some("x".repeat(250));
        cfg.batch = 0;
        cfg.max_in_flight = 0;
        cfg.session_timeout = Duration::from_millis(10);
        cfg.retry_max = Duration::from_millis(1);
        let fields: Vec<&str> = cfg
            .validate()
            .unwrap_err()
            .iter()
            .map(|p| p.field)
            .collect();
        for field in [
            "brokers",
            "inbound",
            "error",
            "notification",
            "processed",
            "group",
            "batch",
            "max-in-flight",
            "session-timeout-ms",
            "retry-ms",
        ] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
    }

    #[test]
    fn output_topics_may_not_be_the_inbound_one() {
        let mut cfg = KafkaConfig::new("a:1,b:2", "orders", "g");
        cfg.notification = "orders".into();
        let problems = cfg.validate().unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "notification");
        assert!(
            problems[0].to_string().contains("inbound"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn the_commit_moves_over_the_finished_prefix_only() {
        let mut t = Track {
            epoch: 1,
            outstanding: BTreeMap::new(),
            commit_to: None,
            committed: None,
        };
        for o in [10, 11, 13, 14] {
            t.outstanding.insert(o, false);
        }
        t.finish(11);
        t.finish(14);
        assert_eq!(t.commit_to, None, "10 is not finished");
        t.finish(10);
        assert_eq!(t.commit_to, Some(12), "a gap in offsets (12) is not a hole");
        t.finish(13);
        assert_eq!(t.commit_to, Some(15));
        assert!(t.outstanding.is_empty());
        t.finish(99);
        assert_eq!(
            t.commit_to,
            Some(15),
            "an offset never handed out changes nothing"
        );
    }
}
