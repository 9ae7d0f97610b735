//! `Chaos` service: a misbehaving component for wasp's own tests.
//!
//! - `Echo` returns its parameters (the cluster still serves).
//! - `Trap` traps every time.
//! - `Flaky` traps on an instance that already served a call, and succeeds
//!   on a fresh one: a retry on a new instance answers it.
//! - `Loop` never returns (stopped by the host's deadline).
//! - `Alloc` allocates without bound (stopped by the memory limit).
//! - `Spin` busy-waits `Millis` milliseconds, then answers.
//! - `Fail` returns a component fault with `Code` and `Message`.
//! - `Peek` reports what the sandbox lets it see: environment variables,
//!   a file, a socket (a connection to `Socket`, default 127.0.0.1:9),
//!   and its `config` values.
//! - `Put` / `Get` write and read the cluster's store (`Key`, `Value`;
//!   `Put` with `Seconds` sets a TTL).
//! - `Incr` adds `Delta` to `Key` (`Value`: the sum); `Cas` sets `Key` to
//!   `Value` if it holds `Expected` (absent: the key must be absent)
//!   (`Swapped`: 1 or 0).
//! - `Fetch` GETs `Url` and returns `Status` and `Body`.
//! - `Log` writes `Lines` warnings of `Bytes` bytes each (or `Text`) to the
//!   host's log.
//! - `Deep` returns a result whose lists nest `Depth` levels deep, built as
//!   a raw arena (no recursion in the guest).
//! - `Wide` returns a result of `Pairs` pairs.
//! - `Big` answers a `Text` of `Bytes` bytes (a large answer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasp_sdk::{Fault, Kv, Request, Service};

struct Chaos;

static CALLS: AtomicU64 = AtomicU64::new(0);

impl Service for Chaos {
    const SERVICE_TYPE: &'static str = "Chaos";
    const VERSION: &'static str = "1.0";
    const METHODS: &'static [&'static str] = &[
        "Echo", "Trap", "Flaky", "Loop", "Alloc", "Spin", "Fail", "Peek", "Put", "Get", "Incr",
        "Cas", "Fetch", "Log", "Deep", "Wide", "Big",
    ];

    fn handle(req: Request) -> Result<Kv, Fault> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        match req.method.as_str() {
            "Echo" => Ok(req.parameters.with("Calls", calls as i64)),
            "Trap" => panic!("chaos: Trap asked for"),
            "Flaky" if calls > 1 => panic!("chaos: Flaky on a used instance"),
            "Flaky" => Ok(Kv::new().with("Calls", calls as i64)),
            "Loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "Alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "Spin" => {
                let ms = req.parameters.require_int("Millis")?;
                let until = Instant::now() + Duration::from_millis(ms.max(0) as u64);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                Ok(Kv::new().with("Spun", ms))
            }
            "Fail" => {
                let code = req.parameters.int("Code").unwrap_or(7) as i32;
                let msg = req.parameters.str("Message").unwrap_or("asked to fail");
                Err(Fault::new(code, msg))
            }
            "Peek" => {
                let env = std::env::vars().count() as i64;
                let file = match std::fs::read("/etc/hostname") {
                    Ok(_) => "allowed".to_string(),
                    Err(e) => format!("denied: {e}"),
                };
                let target = req.parameters.str("Socket").unwrap_or("127.0.0.1:9");
                let socket = match std::net::TcpStream::connect(target) {
                    Ok(_) => "allowed".to_string(),
                    Err(e) => format!("denied: {e}"),
                };
                let mut config = Kv::new();
                for (k, v) in wasp_sdk::config::all() {
                    config.push(k, v);
                }
                Ok(Kv::new()
                    .with("Env", env)
                    .with("File", file)
                    .with("Socket", socket)
                    .with("Config", config))
            }
            "Put" => {
                let key = req.parameters.require_str("Key")?;
                let value = req.parameters.require_str("Value")?;
                match req.parameters.int("Seconds") {
                    Some(s) => wasp_sdk::store::set_str_with_ttl(
                        key,
                        value,
                        u32::try_from(s).unwrap_or(0),
                    )?,
                    None => wasp_sdk::store::set_str(key, value)?,
                }
                Ok(Kv::new().with("Calls", calls as i64))
            }
            "Incr" => {
                let key = req.parameters.require_str("Key")?;
                let delta = req.parameters.require_int("Delta")?;
                Ok(Kv::new().with("Value", wasp_sdk::store::increment(key, delta)?))
            }
            "Cas" => {
                let key = req.parameters.require_str("Key")?;
                let expected = req.parameters.str("Expected").map(str::as_bytes);
                let value = req.parameters.require_str("Value")?;
                let swapped = wasp_sdk::store::compare_and_swap(key, expected, value.as_bytes())?;
                Ok(Kv::new().with("Swapped", i64::from(swapped)))
            }
            "Get" => {
                let key = req.parameters.require_str("Key")?;
                let mut out = Kv::new().with("Calls", calls as i64);
                if let Some(v) = wasp_sdk::store::get_str(key)? {
                    out.push("Value", v);
                }
                Ok(out)
            }
            "Fetch" => {
                let url = req.parameters.require_str("Url")?;
                let response = wasp_sdk::http::get(url, &[])?;
                Ok(Kv::new()
                    .with("Status", i64::from(response.status))
                    .with("Body", response.text()))
            }
            "Big" => {
                let bytes = req.parameters.require_int("Bytes")?.max(0) as usize;
                Ok(Kv::new().with("Text", "x".repeat(bytes)))
            }
            "Log" => {
                let lines = req.parameters.require_int("Lines")?;
                let bytes = req.parameters.int("Bytes").unwrap_or(10).max(0) as usize;
                let text = match req.parameters.str("Text") {
                    Some(text) => text.to_string(),
                    None => "x".repeat(bytes),
                };
                for i in 0..lines {
                    wasp_sdk::log::warn(&text, &[("line", &i.to_string())]);
                }
                Ok(Kv::new().with("Logged", lines))
            }
            "Wide" => {
                let n = req.parameters.require_int("Pairs")?.max(0);
                let mut out = Kv::new();
                for i in 0..n {
                    out.push("p", i);
                }
                Ok(out)
            }
            other => Err(Fault::unknown_method(other)),
        }
    }
}

use wasp_sdk::bindings::wasp::esp::types as wit;

/// The export: `Deep` builds its arena by hand, the rest go through the SDK.
struct Export;

impl wasp_sdk::bindings::exports::wasp::esp::service::Guest for Export {
    fn describe() -> wit::ServiceInfo {
        wasp_sdk::__describe::<Chaos>()
    }

    fn handle(req: wit::Request) -> Result<wit::KvList, wit::Fault> {
        if req.method != "Deep" {
            return wasp_sdk::__handle::<Chaos>(req);
        }
        let depth = req
            .parameters
            .lists
            .first()
            .and_then(|pairs| pairs.iter().find(|p| p.key == "Depth"))
            .and_then(|p| match p.value {
                wit::Value::Int(i) => Some(i.clamp(1, 1_000_000) as u32),
                _ => None,
            })
            .unwrap_or(1);
        let lists = (0..depth)
            .map(|i| {
                vec![wit::Pair {
                    key: "n".into(),
                    value: if i + 1 < depth {
                        wit::Value::Nested(i + 1)
                    } else {
                        wit::Value::Int(i64::from(depth))
                    },
                }]
            })
            .collect();
        Ok(wit::KvList { lists })
    }
}

wasp_sdk::bindings::export_raw!(Export with_types_in wasp_sdk::bindings);
