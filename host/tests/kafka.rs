//! The Kafka adapter against a real Kafka-protocol broker, started by each
//! test (see `common/kafka.rs`): what is committed when, what comes again,
//! what goes to which topic, and what a frozen broker costs (nothing).

#[path = "common/kafka.rs"]
mod broker;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use broker::{Broker, committed, read};
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;
use wasp::capture::kafka::{KafkaConfig, KafkaSource, Message};

/// The longest any awaited event may take before the test fails (generous:
/// group joins take seconds, loaded machines more).
const EVENT_WITHIN: Duration = Duration::from_secs(120);

fn config(broker: &Broker, inbound: &str) -> KafkaConfig {
    let mut cfg = KafkaConfig::new(&broker.addr, inbound, &format!("wasp-{inbound}"));
    cfg.commit_interval = Duration::from_millis(200);
    cfg.retry_min = Duration::from_millis(200);
    cfg.retry_max = Duration::from_secs(1);
    cfg
}

fn messages(n: usize) -> Vec<broker::Record<'static>> {
    (0..n)
        .map(|i| {
            (
                Some(format!("k{i}").into_bytes()),
                format!("m{i}").into_bytes(),
                vec![],
            )
        })
        .collect()
}

/// Takes messages until `n` are held.
async fn take(source: &mut KafkaSource, n: usize) -> Vec<Message> {
    let stop = CancellationToken::new();
    let mut got = Vec::new();
    tokio::time::timeout(EVENT_WITHIN, async {
        while got.len() < n {
            got.extend(source.next_batch(&stop).await);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} messages came", got.len()));
    got
}

fn header<'a>(headers: &'a [(String, Option<Vec<u8>>)], key: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_only_the_finished_prefix_and_the_rest_comes_again() {
    let broker = Broker::start();
    broker.create_topic("orders", 1).await;
    broker.produce("orders", Some(0), &messages(10)).await;
    let cfg = config(&broker, "orders");

    let mut source = KafkaSource::open(cfg.clone()).unwrap();
    let finisher = source.finisher();
    let mut held: HashMap<i64, Message> = take(&mut source, 10)
        .await
        .into_iter()
        .map(|m| (m.offset, m))
        .collect();
    assert_eq!(
        held.keys().copied().collect::<BTreeSet<_>>(),
        (0..10).collect()
    );
    // Out of order, and from other tasks: 1, 2, 3, 5, 7, then 0.
    for o in [1, 2, 3, 5, 7] {
        let f = finisher.clone();
        let m = held.remove(&o).unwrap();
        tokio::spawn(async move { f.processed(m, None).await })
            .await
            .unwrap()
            .unwrap();
    }
    source.commit().await.unwrap();
    assert_eq!(
        committed(&broker, &cfg.group, "orders", 0),
        Offset::Invalid,
        "0 is not finished: nothing committed"
    );
    finisher
        .processed(held.remove(&0).unwrap(), None)
        .await
        .unwrap();
    source.commit().await.unwrap();
    assert_eq!(
        committed(&broker, &cfg.group, "orders", 0),
        Offset::Offset(4),
        "0-3 finished, 4 not"
    );
    // The rest are dropped unfinished: not committed.
    drop(held);
    source.close().await;
    assert_eq!(
        committed(&broker, &cfg.group, "orders", 0),
        Offset::Offset(4)
    );

    // The next consumer of the group starts at 4: 4-9 again (5 and 7 too,
    // finished past a hole), then the message produced after them.
    broker
        .produce("orders", Some(0), &[(None, b"after".to_vec(), vec![])])
        .await;
    let mut again = KafkaSource::open(cfg.clone()).unwrap();
    let got = take(&mut again, 7).await;
    let offsets: Vec<i64> = got.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, vec![4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(got[6].payload, b"after");
    assert_eq!(got[0].key.as_deref(), Some(&b"k4"[..]));
    let f = again.finisher();
    for m in got {
        f.processed(m, None).await.unwrap();
    }
    again.close().await;
    assert_eq!(
        committed(&broker, &cfg.group, "orders", 0),
        Offset::Offset(11),
        "close commits what is finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_errors_copies_and_notifications_go_to_their_topics() {
    let broker = Broker::start();
    broker.create_topic("in", 1).await;
    let not_utf8: &[u8] = &[0xff, 0xfe];
    broker
        .produce(
            "in",
            Some(0),
            &[
                (
                    Some(b"k0".to_vec()),
                    b"<a/>".to_vec(),
                    vec![("correlation-id", &b"c-0"[..]), ("x", &b"1"[..])],
                ),
                (
                    Some(b"k1".to_vec()),
                    b"not xml".to_vec(),
                    vec![("bin", not_utf8), ("y", &b"2"[..])],
                ),
                (None, b"<c/>".to_vec(), vec![]),
            ],
        )
        .await;
    let mut cfg = config(&broker, "in");
    cfg.processed = Some("in.done".into());
    let mut source = KafkaSource::open(cfg.clone()).unwrap();
    let finisher = source.finisher();
    let mut got = take(&mut source, 3).await.into_iter();
    let (m0, m1, m2) = (
        got.next().unwrap(),
        got.next().unwrap(),
        got.next().unwrap(),
    );

    assert_eq!(m0.correlation_id, "c-0");
    assert_eq!(
        m1.correlation_id, "in/0/1",
        "no correlation-id header: topic/partition/offset"
    );
    assert_eq!(
        m1.headers,
        vec![("y".to_string(), "2".to_string())],
        "a value not UTF-8 is left out of `headers`"
    );
    assert_eq!(m2.key, None);

    finisher
        .processed(m0, Some(b"<replies/>".to_vec()))
        .await
        .unwrap();
    finisher
        .failed(m1, "not well-formed XML at line 1")
        .await
        .unwrap();
    finisher.processed(m2, None).await.unwrap();
    finisher
        .notify(Some(b"k9"), "c-9", b"<stopped/>")
        .await
        .unwrap();

    let notes = read(&broker, "in.notification", 2).await;
    assert_eq!(
        notes[0].0.as_deref(),
        Some(&b"k0"[..]),
        "the reply keeps the inbound key"
    );
    assert_eq!(header(&notes[0].1, "correlation-id"), Some(&b"c-0"[..]));
    assert_eq!(notes[0].2, b"<replies/>");
    assert_eq!(notes[1].0.as_deref(), Some(&b"k9"[..]));
    assert_eq!(header(&notes[1].1, "correlation-id"), Some(&b"c-9"[..]));

    let errors = read(&broker, "in.error", 1).await;
    let (key, headers, payload) = &errors[0];
    assert_eq!(key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(payload, b"not xml");
    assert_eq!(
        header(headers, "bin"),
        Some(not_utf8),
        "headers copied byte for byte"
    );
    assert_eq!(header(headers, "y"), Some(&b"2"[..]));
    assert_eq!(
        header(headers, "wasp-error"),
        Some(&b"not well-formed XML at line 1"[..])
    );

    let copies = read(&broker, "in.done", 2).await;
    assert_eq!(copies[0].2, b"<a/>");
    assert_eq!(header(&copies[0].1, "x"), Some(&b"1"[..]));
    assert_eq!(copies[1].2, b"<c/>");

    source.commit().await.unwrap();
    assert_eq!(committed(&broker, &cfg.group, "in", 0), Offset::Offset(3));
    let status = source.status();
    assert_eq!(status.in_flight, 0);
    assert_eq!(status.partitions, vec![0]);
    source.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_goes_to_the_error_topic_unread() {
    let broker = Broker::start();
    broker.create_topic("big", 1).await;
    broker
        .produce(
            "big",
            Some(0),
            &[
                (Some(b"huge".to_vec()), vec![b'x'; 5000], vec![]),
                (Some(b"small".to_vec()), b"ok".to_vec(), vec![]),
            ],
        )
        .await;
    let mut cfg = config(&broker, "big");
    cfg.max_message_bytes = 1000;
    let mut source = KafkaSource::open(cfg.clone()).unwrap();
    let got = take(&mut source, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].key.as_deref(),
        Some(&b"small"[..]),
        "the large one is never handed out"
    );
    let errors = read(&broker, "big.error", 1).await;
    assert_eq!(errors[0].0.as_deref(), Some(&b"huge"[..]));
    assert_eq!(errors[0].2.len(), 5000, "the message is kept whole");
    let reason = String::from_utf8(header(&errors[0].1, "wasp-error").unwrap().to_vec()).unwrap();
    assert!(
        reason.contains("5000") && reason.contains("1000"),
        "{reason}"
    );
    source
        .finisher()
        .processed(got.into_iter().next().unwrap(), None)
        .await
        .unwrap();
    source.commit().await.unwrap();
    assert_eq!(
        committed(&broker, &cfg.group, "big", 0),
        Offset::Offset(2),
        "the refused one counts as finished"
    );
    source.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_max_in_flight_messages_are_out() {
    let broker = Broker::start();
    broker.create_topic("bounded", 1).await;
    broker.produce("bounded", Some(0), &messages(10)).await;
    let mut cfg = config(&broker, "bounded");
    cfg.max_in_flight = 3;
    cfg.batch = 10;
    let mut source = KafkaSource::open(cfg).unwrap();
    let mut held = take(&mut source, 3).await;
    assert_eq!(held.len(), 3, "a batch never passes max-in-flight");
    assert_eq!(source.status().in_flight, 3);
    let stop = CancellationToken::new();
    // Nothing more while all three are out (a window that can only miss a
    // bug, never invent one).
    let more = tokio::time::timeout(Duration::from_millis(500), source.next_batch(&stop)).await;
    assert!(more.is_err(), "handed out past the bound: {more:?}");
    // One finished: exactly one more.
    source
        .finisher()
        .processed(held.pop().unwrap(), None)
        .await
        .unwrap();
    let next = tokio::time::timeout(EVENT_WITHIN, source.next_batch(&stop))
        .await
        .unwrap();
    assert_eq!(next.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![3]);
    assert_eq!(source.status().in_flight, 3);
    // A message dropped unfinished frees its permit too.
    drop(held.pop());
    let next = tokio::time::timeout(EVENT_WITHIN, source.next_batch(&stop))
        .await
        .unwrap();
    assert_eq!(next.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![4]);
    source.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_taken_away_commits_nothing_of_its_unfinished_messages() {
    let broker = Broker::start();
    broker.create_topic("split", 2).await;
    broker.produce("split", Some(0), &messages(4)).await;
    broker.produce("split", Some(1), &messages(4)).await;
    let cfg = config(&broker, "split");
    let mut a = KafkaSource::open(cfg.clone()).unwrap();
    let held = take(&mut a, 8).await;

    // B joins: the group rebalances while A keeps polling, and B gets one
    // partition from its start (nothing of it was committed).
    let mut b = KafkaSource::open(cfg.clone()).unwrap();
    let stop_a = CancellationToken::new();
    let a_polls = {
        let stop_a = stop_a.clone();
        async move {
            let mut again = Vec::new();
            while !stop_a.is_cancelled() {
                again.extend(a.next_batch(&stop_a).await);
            }
            (a, again)
        }
    };
    let b_takes = async {
        let got = take(&mut b, 4).await;
        stop_a.cancel();
        got
    };
    let ((a, _again), b_got) = tokio::join!(a_polls, b_takes);
    let moved = b_got[0].partition;
    assert!(b_got.iter().all(|m| m.partition == moved));
    assert_eq!(
        b_got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );

    // A finishes what it held, the moved partition's messages too: they
    // are produced, but A commits nothing for a partition it lost.
    let fa = a.finisher();
    for m in held {
        fa.processed(m, None).await.unwrap();
    }
    a.commit().await.unwrap();
    assert_eq!(
        committed(&broker, &cfg.group, "split", moved),
        Offset::Invalid
    );
    let fb = b.finisher();
    for m in b_got {
        fb.processed(m, None).await.unwrap();
    }
    b.commit().await.unwrap();
    assert_eq!(
        committed(&broker, &cfg.group, "split", moved),
        Offset::Offset(4)
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_loses_nothing() {
    const N: i64 = 300;
    let broker = Broker::start();
    broker.create_topic("flow", 1).await;
    broker.produce("flow", Some(0), &messages(N as usize)).await;
    let mut cfg = config(&broker, "flow");
    cfg.max_in_flight = 16;
    let group = cfg.group.clone();
    let mut source = KafkaSource::open(cfg).unwrap();
    let finisher = source.finisher();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    let stop = CancellationToken::new();
    let mut finished = BTreeSet::new();
    let mut paused = false;
    tokio::time::timeout(EVENT_WITHIN * 2, async {
        while finished.len() < N as usize {
            tokio::select! {
                batch = source.next_batch(&stop) => {
                    for m in batch {
                        // Each finished from its own task, with a reply.
                        let f = finisher.clone();
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let offset = m.offset;
                            let reply = format!("r{offset}").into_bytes();
                            if f.processed(m, Some(reply)).await.is_ok() {
                                let _ = done.send(offset);
                            }
                        });
                    }
                }
                Some(offset) = done_rx.recv() => {
                    finished.insert(offset);
                    if finished.len() == N as usize / 3 && !paused {
                        // Mid-stream: freeze the broker past the group's
                        // session timeout, then let it go.
                        paused = true;
                        broker.pause();
                        tokio::time::sleep(Duration::from_secs(8)).await;
                        broker.resume();
                    }
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {N} finished", finished.len()));
    assert_eq!(finished, (0..N).collect::<BTreeSet<_>>());
    // Everything finished is committed, eventually (the group may have
    // rebalanced: some messages came twice, none was lost).
    tokio::time::timeout(EVENT_WITHIN, async {
        loop {
            let _ = source.commit().await;
            if committed(&broker, &group, "flow", 0) == Offset::Offset(N) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("all offsets committed");
    let replies = read(&broker, "flow.notification", N as usize).await;
    let replies: BTreeSet<Vec<u8>> = replies.into_iter().map(|(_, _, p)| p).collect();
    assert_eq!(
        replies,
        (0..N).map(|o| format!("r{o}").into_bytes()).collect(),
        "a reply for every message"
    );
    source.close().await;
}
