//! `wasp kafka produce` and `wasp kafka consume`: put messages on a topic
//! and read a topic, to try a kafka capture point by hand without another
//! client (some packaged Kafka command-line clients cannot talk to every
//! Kafka-protocol broker; this one uses the librdkafka wasp itself uses).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Debug, clap::Subcommand)]
pub enum KafkaCommand {
    /// Produce each file (or standard input) as one message, acks=all.
    Produce {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// The messages' key.
        #[arg(long)]
        key: Option<String>,
        /// Files, one message each; none: standard input.
        files: Vec<PathBuf>,
    },
    /// Print the messages of a topic from its beginning: key, headers,
    /// then the payload; stops after `--count` messages or when nothing
    /// came for `--idle-secs`. Joins no group, commits nothing.
    Consume {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: Option<usize>,
        #[arg(long, default_value_t = 5)]
        idle_secs: u64,
    },
}

pub async fn run(command: KafkaCommand) -> Result<()> {
    match command {
        KafkaCommand::Produce {
            brokers,
            topic,
            key,
            files,
        } => produce(&brokers, &topic, key.as_deref(), &files).await,
        KafkaCommand::Consume {
            brokers,
            topic,
            count,
            idle_secs,
        } => consume(&brokers, &topic, count, Duration::from_secs(idle_secs)).await,
    }
}

async fn produce(brokers: &str, topic: &str, key: Option<&str>, files: &[PathBuf]) -> Result<()> {
    let mut payloads = Vec::new();
    if files.is_empty() {
        let mut all = Vec::new();
        std::io::stdin().read_to_end(&mut all)?;
        payloads.push(all);
    }
    for f in files {
        payloads.push(std::fs::read(f).with_context(|| format!("read {}", f.display()))?);
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()?;
    for payload in &payloads {
        let mut record = FutureRecord::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        let delivered = producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce to {topic} on {brokers}: {e}"))?;
        println!("{topic}/{}/{}", delivered.partition, delivered.offset);
    }
    Ok(())
}

async fn consume(brokers: &str, topic: &str, count: Option<usize>, idle: Duration) -> Result<()> {
    // Assigned, not subscribed: no group joined, nothing committed.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "wasp-kafka-consume")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("metadata of {topic} on {brokers}"))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    anyhow::ensure!(partitions > 0, "{topic} has no partitions on {brokers}");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = std::io::stdout().lock();
    let mut seen = 0;
    while count.is_none_or(|c| seen < c) {
        let Ok(m) = tokio::time::timeout(idle, consumer.recv()).await else {
            break;
        };
        let m = m?;
        let key = String::from_utf8_lossy(m.key().unwrap_or_default());
        let headers: Vec<String> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        format!(
                            "{}={}",
                            h.key,
                            String::from_utf8_lossy(h.value.unwrap_or_default())
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{}/{}/{} key={key} {}",
            m.topic(),
            m.partition(),
            m.offset(),
            headers.join(" ")
        )?;
        out.write_all(m.payload().unwrap_or_default())?;
        writeln!(out)?;
        seen += 1;
    }
    drop(out);
    tokio::task::spawn_blocking(move || drop(consumer)).await?;
    Ok(())
}
