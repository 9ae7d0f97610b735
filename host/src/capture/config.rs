//! `[captures.<name>]`: one capture point's config, beside the capture
//! code (the section lives with its module; `config.rs` composes it).
//!
//! ```toml
//! [captures.orders]
//! adapter = "file"                  # or "kafka", "http"
//! codec = "builtin:genesys-xml"     # builtin:json, or a path to a codec .wasm
//! # directory = "orders"            # default <data-dir>/<name>
//! # pattern = "*.xml"               # default "*.<the codec's extension>"
//! default-values = { TenantId = 101, Queue = "Inbound" }
//! rules = [{ property = "Customer.Segment", equals = "gold", tenant = 102 }]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tenant::{DefaultValues, RuleConfig, TenantConfig, TenantMapper};

/// Where a capture point's items come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Adapter {
    /// Files in an inbound folder.
    File,
    /// Requests to wasp's HTTP listener: the Genesys SOAP web service
    /// and JSON (`/v1/capture/{name}/...`), answered once the node did.
    Http,
    /// Messages on a Kafka topic (the JMS-style capture point), shared by
    /// every wasp in the consumer group.
    Kafka,
}

impl Adapter {
    pub fn as_str(self) -> &'static str {
        match self {
            Adapter::File => "file",
            Adapter::Http => "http",
            Adapter::Kafka => "kafka",
        }
    }
}

/// One `[captures.<name>]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CaptureConfig {
    pub adapter: Adapter,
    /// `builtin:genesys-xml`, `builtin:json`, or a path to a codec
    /// component relative to the config file.
    #[serde(default = "default_codec")]
    pub codec: String,
    /// The capture point's folder: default `<data-dir>/<name>`; relative
    /// to the data directory. Its state file (`state.redb`) lives here.
    pub directory: Option<PathBuf>,
    /// Folders under `directory` (or absolute).
    #[serde(default = "default_inbound")]
    pub inbound: PathBuf,
    #[serde(default = "default_processed")]
    pub processed: PathBuf,
    #[serde(default = "default_error")]
    pub error: PathBuf,
    #[serde(default = "default_notification")]
    pub notification: PathBuf,
    /// Names taken from `inbound` (a glob): default `*.<extension>` of
    /// the codec (`*.xml`, `*.json`).
    pub pattern: Option<String>,
    /// Properties an operation lacks are filled from here; `TenantId` is
    /// the tenant of last resort.
    #[serde(default)]
    pub default_values: DefaultValues,
    /// Tenant rules, first match wins (after the operation's own
    /// `TenantId`).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// A larger file is moved to `error/` unread.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Files being processed at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Items handed to the codec in one call.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Operations one item may hold; a larger item is refused whole.
    #[serde(default = "default_max_operations")]
    pub max_operations: usize,
    /// Full rescans of `inbound` besides change events.
    #[serde(default = "default_rescan_ms")]
    pub rescan_ms: u64,
    /// A file is taken once its size and time stayed the same this long.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// How long an item may wait in all for nodes (no node for its tenant
    /// and media type, or its interaction's node not connected) before
    /// the waiting operation is answered with the fault and the item is
    /// finished. Meanwhile the item stays in `inbound/`.
    #[serde(default = "default_node_wait_ms")]
    pub node_wait_ms: u64,
    /// kafka: `host:port[,host:port]`; without it (and without
    /// `--kafka`), a kafka capture point is not started.
    pub brokers: Option<String>,
    /// kafka: the inbound topic (default the capture point's name).
    pub topic: Option<String>,
    /// kafka: a copy of each finished message goes here, when set.
    pub processed_topic: Option<String>,
    /// kafka: refused messages (default `<topic>.error`).
    pub error_topic: Option<String>,
    /// kafka: replies and notifications (default `<topic>.notification`).
    pub notification_topic: Option<String>,
    /// kafka: the consumer group (default `wasp-<name>`).
    pub group: Option<String>,
    /// What the capture point's state file may hold
    /// (`[captures.<name>.state]`).
    #[serde(default)]
    pub state: crate::capture::state::Limits,
    /// Linear memory of a codec instance, in MiB.
    #[serde(default = "default_codec_memory_mb")]
    pub codec_memory_mb: u64,
    /// Time for one codec call (a batch).
    #[serde(default = "default_codec_timeout_ms")]
    pub codec_timeout_ms: u64,
}

fn default_codec() -> String {
    "builtin:genesys-xml".into()
}
fn default_inbound() -> PathBuf {
    "inbound".into()
}
fn default_processed() -> PathBuf {
    "processed".into()
}
fn default_error() -> PathBuf {
    "error".into()
}
fn default_notification() -> PathBuf {
    "notification".into()
}
const fn default_max_file_bytes() -> u64 {
    16 << 20
}
const fn default_max_in_flight() -> usize {
    16
}
const fn default_batch() -> usize {
    16
}
const fn default_max_operations() -> usize {
    10_000
}
const fn default_rescan_ms() -> u64 {
    5_000
}
const fn default_settle_ms() -> u64 {
    250
}
const fn default_node_wait_ms() -> u64 {
    600_000
}
const fn default_codec_memory_mb() -> u64 {
    64
}
const fn default_codec_timeout_ms() -> u64 {
    10_000
}

impl CaptureConfig {
    /// The capture point's folder under `data_dir`.
    pub fn directory(&self, name: &str, data_dir: &Path) -> PathBuf {
        data_dir.join(self.directory.as_deref().unwrap_or(Path::new(name)))
    }

    pub fn rescan(&self) -> Duration {
        Duration::from_millis(self.rescan_ms)
    }

    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }

    pub fn node_wait(&self) -> Duration {
        Duration::from_millis(self.node_wait_ms)
    }

    pub fn codec_timeout(&self) -> Duration {
        Duration::from_millis(self.codec_timeout_ms)
    }

    /// Every problem of this section, placed under `captures.<name>`.
    /// `codec_source` checks the codec reference as clusters' components
    /// are checked.
    pub fn validate(
        &self,
        name: &str,
        tenants: &[TenantConfig],
        codec_source: impl Fn(&str) -> Result<(), String>,
        problems: &mut Vec<String>,
    ) {
        let at = format!("captures.{name}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(format!(
                "{at}: capture point names may use 1 to 64 letters, digits, '-' and '_' only \
                 (they name folders and appear in URLs)"
            ));
        }
        if let Err(e) = codec_source(&self.codec) {
            problems.push(format!("{at}.codec: {e}"));
        }
        if let Some(p) = &self.pattern
            && let Err(e) = glob::Pattern::new(p)
        {
            problems.push(format!("{at}.pattern: {e}"));
        }
        for (field, dir) in [
            ("inbound", &self.inbound),
            ("processed", &self.processed),
            ("error", &self.error),
            ("notification", &self.notification),
        ] {
            if dir.as_os_str().is_empty() {
                problems.push(format!("{at}.{field}: is empty"));
            }
        }
        let dirs = [
            &self.inbound,
            &self.processed,
            &self.error,
            &self.notification,
        ];
        for (i, a) in dirs.iter().enumerate() {
            if dirs[i + 1..].contains(a) {
                problems.push(format!(
                    "{at}: the folder '{}' is given for two purposes (inbound, processed, \
                     error and notification must differ)",
                    a.display()
                ));
            }
        }
        let ranges: [(&str, u64, u64, u64); 8] = [
            ("max-file-bytes", self.max_file_bytes, 1, 1 << 30),
            ("max-in-flight", self.max_in_flight as u64, 1, 10_000),
            ("batch", self.batch as u64, 1, 1_000),
            ("max-operations", self.max_operations as u64, 1, 99_999),
            ("rescan-ms", self.rescan_ms, 10, 3_600_000),
            ("settle-ms", self.settle_ms, 0, 600_000),
            ("node-wait-ms", self.node_wait_ms, 0, 7 * 24 * 3_600_000),
            ("codec-timeout-ms", self.codec_timeout_ms, 1, 600_000),
        ];
        for (field, value, min, max) in ranges {
            if value < min || value > max {
                problems.push(format!("{at}.{field}: {value} is outside {min}..={max}"));
            }
        }
        if !(1..=4096).contains(&self.codec_memory_mb) {
            problems.push(format!(
                "{at}.codec-memory-mb: {} is outside 1..=4096",
                self.codec_memory_mb
            ));
        }
        problems.extend(self.state.problems(&format!("{at}.state")));
        if self.adapter == Adapter::Kafka {
            let brokers = self.brokers.as_deref().unwrap_or("127.0.0.1:9092");
            if let Err(found) = self.kafka(name, brokers).validate() {
                for p in found {
                    let field = match p.field {
                        "inbound" => "topic",
                        "processed" => "processed-topic",
                        "error" => "error-topic",
                        "notification" => "notification-topic",
                        "max-message-bytes" => "max-file-bytes",
                        other => other,
                    };
                    problems.push(format!("{at}.{field}: {}", p.problem));
                }
            }
        }
        if let Err(mut found) = self.mapper(name, tenants) {
            problems.append(&mut found);
        }
    }

    /// The Kafka adapter's settings for this capture point.
    pub fn kafka(&self, name: &str, brokers: &str) -> crate::capture::kafka::KafkaConfig {
        let topic = self.topic.clone().unwrap_or_else(|| name.to_string());
        let group = self.group.clone().unwrap_or_else(|| format!("wasp-{name}"));
        let mut k = crate::capture::kafka::KafkaConfig::new(brokers, &topic, &group);
        k.processed = self.processed_topic.clone();
        if let Some(t) = &self.error_topic {
            k.error = t.clone();
        }
        if let Some(t) = &self.notification_topic {
            k.notification = t.clone();
        }
        k.batch = self.batch;
        k.max_in_flight = self.max_in_flight.max(self.batch);
        k.max_message_bytes = self.max_file_bytes as usize;
        k
    }

    /// The tenant mapper of this capture point.
    pub fn mapper(
        &self,
        name: &str,
        tenants: &[TenantConfig],
    ) -> Result<TenantMapper, Vec<String>> {
        TenantMapper::new(
            &format!("captures.{name}"),
            &self.rules,
            &self.default_values,
            tenants,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const TENANTS: &str = "[[tenants]]\nid = 101\nname = \"T\"\n";

    fn problems(section: &str) -> String {
        Config::parse(&format!("{TENANTS}{section}"), Path::new("."))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_good_capture_point_parses_with_its_defaults() {
        let config = Config::parse(
            &format!(
                "{TENANTS}[captures.orders]\nadapter = \"file\"\n\
                 default-values = {{ TenantId = 101 }}\n"
            ),
            Path::new("."),
        )
        .unwrap();
        let c = &config.captures["orders"];
        assert_eq!(c.codec, "builtin:genesys-xml");
        assert_eq!(c.max_in_flight, 16);
        assert_eq!(
            c.directory("orders", Path::new("/data")),
            Path::new("/data/orders")
        );
        assert_eq!(
            config.data_dir(),
            Path::new(crate::config::DEFAULT_DATA_DIR)
        );
    }

    #[test]
    fn every_problem_of_a_capture_point_is_reported_with_its_place() {
        let all = problems(
            "[captures.\"bad name\"]\nadapter = \"file\"\ncodec = \"builtin:nope\"\n\
             pattern = \"[\"\nprocessed = \"inbound\"\nbatch = 0\nmax-operations = 100000\n\
             rules = [{ property = \"A..B\", equals = \"x\", tenant = 999 },\n\
                      { property = \"A\", equals = \"x\", matches = \"y\", tenant = 101 },\n\
                      { property = \"A\", matches = \"(\", tenant = 101 }]\n\
             default-values = { TenantId = 555 }\n\
             [captures.\"bad name\".state]\nmax-external-ids = 0\n",
        );
        for expected in [
            "captures.bad name: capture point names may use",
            "captures.bad name.codec: no builtin component 'nope'",
            "captures.bad name.pattern:",
            "the folder 'inbound' is given for two purposes",
            "captures.bad name.batch: 0 is outside 1..=1000",
            "captures.bad name.max-operations: 100000 is outside 1..=99999",
            "captures.bad name.rules[0].property",
            "captures.bad name.rules[0].tenant: tenant 999",
            "captures.bad name.rules[1]: give exactly one of equals and matches",
            "captures.bad name.rules[2].matches:",
            "captures.bad name.default-values.TenantId: tenant 555",
            "captures.bad name.state.max-external-ids",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn an_unknown_adapter_or_field_is_refused_with_its_line() {
        let all = problems("[captures.orders]\nadapter = \"ftp\"\n");
        assert!(all.contains("ftp") && all.contains("line"), "{all}");
        let all = problems("[captures.orders]\nadapter = \"file\"\ninbox = \"x\"\n");
        assert!(all.contains("inbox") && all.contains("line"), "{all}");
    }
}
