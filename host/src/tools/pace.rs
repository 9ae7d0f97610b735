//! When the request loops of a load generator (`wasp bench`, `wasp
//! node-sim --rate`) send: as soon as the last answer came (closed loop),
//! or on an evenly spaced schedule at a fixed rate (open loop).
//!
//! The open loop's times come from one thread that sleeps to each of
//! them. Each loop sleeping on tokio's timer to its own next send does
//! not work: the timer has a resolution of one millisecond and is read
//! when a worker goes idle, so the loops drift into step and a load of
//! "half of peak" arrives as bursts of every connection at once. Its p99
//! then measures how long the server takes to drain such a burst, which
//! grows with its CPU per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};

/// When each of a load's request loops sends next; clone one for each
/// loop.
#[derive(Debug, Clone)]
pub enum Sends {
    /// As soon as the last request is answered, until `stop`.
    Closed { stop: Instant },
    /// At the times of a schedule, each taken by the first loop that is
    /// free.
    Open(Arc<Mutex<mpsc::Receiver<Instant>>>),
}

impl Sends {
    /// `rate` requests per second in all from `start` to `stop`, shared by
    /// `loops` loops (`None`: closed loop). A due time that finds every
    /// loop busy waits in a queue of `loops` places; past that the
    /// schedule waits too.
    pub fn new(start: Instant, stop: Instant, rate: Option<f64>, loops: usize) -> Sends {
        match rate {
            None => Sends::Closed { stop },
            Some(rate) => Sends::Open(Arc::new(Mutex::new(schedule(start, stop, rate, loops)))),
        }
    }

    /// The time the next request is due, from which its latency counts
    /// (in an open loop a request that waited for a free loop shows that
    /// wait instead of hiding it); `None` once the load is over.
    pub async fn next(&self) -> Option<Instant> {
        match self {
            Sends::Closed { stop } => {
                let now = Instant::now();
                (now < *stop).then_some(now)
            }
            Sends::Open(due) => due.lock().await.recv().await,
        }
    }
}

/// `rate` evenly spaced times per second from `start` until `stop`, each
/// sent when it is due, into a channel of `places` places. The thread
/// ends at `stop` or when the receiver is gone.
fn schedule(start: Instant, stop: Instant, rate: f64, places: usize) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel(places.max(1));
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let spawned = std::thread::Builder::new()
        .name("wasp-pace".into())
        .spawn(move || {
            let mut due = start;
            while due < stop {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                    continue;
                }
                if tx.blocking_send(due).is_err() {
                    return;
                }
                due += interval;
            }
        });
    if let Err(err) = spawned {
        // The sender went with the closure: the loops see the load over.
        tracing::error!("cannot start the load's pacing thread: {err}");
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_open_loop_hands_out_evenly_spaced_times_until_stop() {
        let start = Instant::now();
        let stop = start + Duration::from_millis(200);
        let sends = Sends::new(start, stop, Some(1000.0), 4);
        let mut times = Vec::new();
        while let Some(due) = sends.next().await {
            times.push(due);
        }
        // 200 ms at 1000/s: 200 times, 1 ms apart, none past stop.
        assert_eq!(times.len(), 200);
        assert_eq!(times[0], start);
        for pair in times.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(1));
        }
        assert!(*times.last().unwrap() < stop);
    }

    #[tokio::test]
    async fn open_loops_share_one_schedule_each_time_taken_once() {
        let start = Instant::now();
        let stop = start + Duration::from_millis(100);
        let sends = Sends::new(start, stop, Some(2000.0), 8);
        let loops: Vec<_> = (0..8)
            .map(|_| {
                let sends = sends.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(due) = sends.next().await {
                        got.push(due);
                    }
                    got
                })
            })
            .collect();
        drop(sends);
        let mut all = Vec::new();
        for l in loops {
            all.extend(l.await.unwrap());
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200, "every time once, none lost or repeated");
    }

    #[tokio::test]
    async fn a_late_loop_sees_the_time_its_request_was_due() {
        // A loop that takes its time late gets the due time, not "now":
        // the wait is part of the request's latency.
        let start = Instant::now();
        let sends = Sends::new(start, start + Duration::from_secs(5), Some(100.0), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = sends.next().await.unwrap();
        assert_eq!(first, start);
        assert!(first.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_closed_loop_sends_now_until_stop() {
        let start = Instant::now();
        let sends = Sends::new(start, start + Duration::from_secs(3600), None, 1);
        let now = sends.next().await.unwrap();
        assert!(now >= start);
        assert!(Sends::new(start, start, None, 1).next().await.is_none());
    }
}
