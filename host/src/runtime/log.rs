//! What plugins write to the host's log (`wasp:esp/log`), bounded: a
//! cluster may write `log-per-second` lines per second (a burst of one
//! second's worth), lines beyond are counted and dropped, and the next line
//! written says how many were. Messages and field values are clipped, so a
//! plugin that logs in a loop or logs whole documents cannot fill the disk
//! of a host that runs for months.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;

/// Longest message written, in bytes.
pub const MAX_MESSAGE: usize = 4096;
/// Longest field value written, in bytes.
pub const MAX_VALUE: usize = 1024;
/// Fields written per line.
pub const MAX_FIELDS: usize = 32;

/// The log budget of one cluster, shared by its instances.
#[derive(Debug)]
pub struct LogLimit {
    per_second: f64,
    bucket: Mutex<Bucket>,
    written: Counter,
    suppressed: Counter,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
}

impl LogLimit {
    /// `written` and `suppressed` count lines (metrics series).
    pub fn new(per_second: u32, written: Counter, suppressed: Counter) -> LogLimit {
        let per_second = f64::from(per_second.max(1));
        LogLimit {
            per_second,
            bucket: Mutex::new(Bucket {
                tokens: per_second,
                refilled: Instant::now(),
                suppressed: 0,
            }),
            written,
            suppressed,
        }
    }

    /// A limit whose counts nobody reads.
    pub fn unmetered(per_second: u32) -> LogLimit {
        LogLimit::new(per_second, Counter::default(), Counter::default())
    }

    /// Whether one more line may be written now: `Some(n)` with the lines
    /// dropped since the last one written, or `None` to drop this one.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`admit`](Self::admit) as of `now`.
    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            self.written.inc();
            Some(std::mem::take(&mut bucket.suppressed))
        } else {
            bucket.suppressed += 1;
            self.suppressed.inc();
            None
        }
    }
}

/// Text a peer gave (a plugin, a node, a client), made safe for a log
/// line: control characters are written as escapes (`\n`, `\u{1b}`), so
/// a newline in a message cannot start a forged line of its own.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes (on a character boundary), saying how
/// much was cut.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [{} more bytes]",
        &text[..end],
        text.len() - end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(escape("plain text"), Cow::Borrowed(_)));
        assert_eq!(
            escape("ok\n2026-12-01T00:00:00Z ERROR forged\r\u{1b}[31m"),
            "ok\\n2026-12-01T00:00:00Z ERROR forged\\r\\u{1b}[31m"
        );
    }

    #[test]
    fn a_burst_beyond_the_budget_is_dropped_and_counted() {
        let limit = LogLimit::unmetered(10);
        let start = Instant::now();
        let admitted = (0..100).filter(|_| limit.admit_at(start).is_some()).count();
        assert_eq!(admitted, 10);
        assert_eq!(limit.suppressed.get(), 90);
        // One token per 100 ms comes back; the next line reports the
        // dropped ones.
        let later = start + std::time::Duration::from_millis(150);
        assert_eq!(limit.admit_at(later), Some(90));
        assert_eq!(limit.admit_at(later), None);
        assert_eq!(limit.written.get(), 11);
        assert_eq!(limit.suppressed.get(), 91);
    }

    #[test]
    fn long_text_is_clipped_on_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        let clipped = clip("ääää", 3);
        assert_eq!(clipped, "ä… [6 more bytes]");
    }
}
