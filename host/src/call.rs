//! `wasp call`: one request to a component, without a server.
//!
//! The component runs as it would in a cluster: the cluster code starts it
//! ([`Cluster::start`]) with a cluster's limits (memory, deadline, log
//! budget), its `config` values, a store (in memory, so nothing of a
//! running wasp's state is touched) and the HTTP hosts it is granted. The
//! answer is printed as a JSON KV list; a fault is printed with its code
//! and message, and the command fails.
//!
//! ```text
//! wasp call builtin:fax SendFax --param To=+14155550100 --param Document=Hello
//! wasp call plugin.wasm --describe
//! wasp call wasp.toml fax GetFaxStatus --tenant 101 --param FaxJobId=...
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::admin::metrics::Metrics;
use crate::cluster::Cluster;
use crate::config::{Config, TenantConfig};
use crate::kv::{Kv, Value};
use crate::runtime::bindings;
use crate::runtime::{InstanceSpec, Runtime};

/// What `wasp call` takes.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    wasp call builtin:fax --describe\n  \
    wasp call builtin:fax SendFax --param To=+14155550100 --param Document='Hello from wasp'\n  \
    wasp call target/wasm32-wasip2/release/greeter.wasm Greet --param-json '{\"Name\":\"Ada\"}'\n  \
    wasp call wasp.toml fax SendFax --tenant 101 --param To=+14155550100 --param Document=Hi")]
pub struct CallArgs {
    /// A component (`.wasm` file or `builtin:<name>`), or a config file
    /// (`.toml`) followed by the name of one of its clusters.
    pub target: String,
    /// The method to call (after the cluster name for a config file).
    /// Without one, the methods are listed.
    #[arg(value_name = "[CLUSTER] METHOD")]
    pub rest: Vec<String>,
    /// The tenant the request is made for (id, or a name of the config's
    /// tenants). Default: 101 for a component, the cluster's first tenant
    /// for a config.
    #[arg(long)]
    pub tenant: Option<String>,
    /// A parameter, `KEY=VALUE` (a string); repeat for more. Given after
    /// `--param-json`, it replaces a key of the same name.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Parameters as a JSON object (integers, strings, nested objects; a
    /// binary as `{"$binary": "<base64>"}`), as in an ESP request.
    #[arg(long, value_name = "JSON")]
    pub param_json: Option<String>,
    /// `UserData` as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub user_data_json: Option<String>,
    /// List the service type, version and methods (as when no method is
    /// given).
    #[arg(long)]
    pub describe: bool,
    /// A value the component reads through `wasp:esp/config`, `KEY=VALUE`;
    /// for a config file it adds to (or replaces one of) the cluster's.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// A host (`host` or `host:port`) the component may call over HTTP;
    /// repeat for more. A component gets none unless given; a config's
    /// cluster keeps its own grant.
    #[arg(long, value_name = "HOST")]
    pub allow_http: Vec<String>,
    /// Linear memory limit of the instance, in MiB (default: the cluster's,
    /// or a cluster's default).
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Deadline of the call in milliseconds (default: the cluster's, or a
    /// cluster's default).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Where compiled components are cached (default: the config's
    /// `runtime.cache-dir`, else `$WASP_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/wasp` or `~/.cache/wasp`).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// Example parameters of the methods of the bundled services: what the
/// start-up "try" line sends and what `wasp call --describe` suggests, so
/// a pasted line succeeds. Each is harmless (nothing leaves the machine,
/// nothing grows without bound).
pub const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "Fax",
        "SendFax",
        r#"{"To":"+14155550100","Document":"Hello from wasp"}"#,
    ),
    (
        "Classification",
        "Classify",
        r#"{"Text":"my parcel never arrived"}"#,
    ),
    (
        "Classification",
        "Screen",
        r#"{"Text":"my card number is 4111 1111 1111 1111"}"#,
    ),
    (
        "IM",
        "SendMessage",
        r#"{"To":"agent-7","Text":"Hello from wasp"}"#,
    ),
    ("Echo", "Echo", r#"{"Text":"Hello from wasp"}"#),
];

/// The example parameters (JSON) of a method of a bundled service.
pub fn example(service: &str, method: &str) -> Option<&'static str> {
    EXAMPLES
        .iter()
        .find(|(s, m, _)| *s == service && *m == method)
        .map(|(_, _, params)| *params)
}

/// The first method a cluster serves that has example parameters, with
/// them (a component of a bundled service type may not have every method
/// of the bundled one).
pub fn first_example(
    service: &str,
    methods: &std::collections::HashSet<String>,
) -> Option<(&'static str, &'static str)> {
    EXAMPLES
        .iter()
        .find(|(s, m, _)| *s == service && methods.contains(*m))
        .map(|(_, m, p)| (*m, *p))
}

/// The example parameters (JSON) of `method` for a cluster: its config's
/// `[clusters.<name>.examples]` (`declared`), else the bundled service's.
pub fn example_of(
    declared: Option<&crate::config::ClusterConfig>,
    service: &str,
    method: &str,
) -> Option<String> {
    declared
        .and_then(|c| c.example(method)?.ok())
        .or_else(|| example(service, method).map(str::to_string))
}

/// The first method a cluster serves that has example parameters, with
/// them: those its config declares (`declared`) first, else the bundled
/// service's ([`first_example`]).
pub fn first_example_of(
    declared: Option<&crate::config::ClusterConfig>,
    service: &str,
    methods: &std::collections::HashSet<String>,
) -> Option<(String, String)> {
    declared
        .and_then(|c| {
            c.examples
                .keys()
                .filter(|m| methods.contains(*m))
                .find_map(|m| Some((m.clone(), c.example(m)?.ok()?)))
        })
        .or_else(|| first_example(service, methods).map(|(m, p)| (m.to_string(), p.to_string())))
}

/// What is called: a component with a cluster made up for it, or a
/// cluster of a config file.
enum Target {
    Component {
        component: String,
        method: Option<String>,
    },
    Cluster {
        config: PathBuf,
        cluster: String,
        method: Option<String>,
    },
}

impl Target {
    fn of(args: &CallArgs) -> Result<Target> {
        let is_config = args.target.ends_with(".toml");
        let mut rest = args.rest.iter().cloned();
        let target = if is_config {
            let cluster = rest.next().with_context(|| {
                format!(
                    "name the cluster of {} to call: wasp call {} <cluster> <method>",
                    args.target, args.target
                )
            })?;
            Target::Cluster {
                config: PathBuf::from(&args.target),
                cluster,
                method: rest.next(),
            }
        } else {
            Target::Component {
                component: args.target.clone(),
                method: rest.next(),
            }
        };
        if let Some(extra) = rest.next() {
            bail!(
                "unexpected argument '{extra}' (parameters go in --param KEY=VALUE or --param-json)"
            );
        }
        Ok(target)
    }
}

/// `KEY=VALUE`.
fn key_value(text: &str, flag: &str) -> Result<(String, String)> {
    let (key, value) = text
        .split_once('=')
        .with_context(|| format!("{flag} {text:?}: expected KEY=VALUE"))?;
    if key.is_empty() {
        bail!("{flag} {text:?}: the key is empty");
    }
    Ok((key.to_string(), value.to_string()))
}

/// The request's parameters: `--param-json`, then each `--param`.
fn parameters(args: &CallArgs) -> Result<Kv> {
    let mut kv = match &args.param_json {
        Some(text) => Kv::from_json_text(text, "--param-json").map_err(|e| anyhow!("{e}"))?,
        None => Kv::new(),
    };
    for param in &args.params {
        let (key, value) = key_value(param, "--param")?;
        kv.0.retain(|(k, _)| *k != key);
        kv.0.push((key, Value::Str(value)));
    }
    Ok(kv)
}

/// A cluster name made from a component's file name (it names the
/// cluster in log lines).
fn cluster_name(component: &str) -> String {
    let stem = match component.strip_prefix("builtin:") {
        Some(name) => name.to_string(),
        None => Path::new(component)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "call".to_string()
    } else {
        name
    }
}

/// The config of a cluster made up for one component: one instance, a
/// store in memory, the `config` values and HTTP hosts given.
fn component_config(args: &CallArgs, component: &str, service: &str) -> Result<(Config, String)> {
    let name = cluster_name(component);
    let tenant: u32 = match &args.tenant {
        None => 101,
        Some(t) => t
            .parse()
            .with_context(|| format!("--tenant {t}: a tenant id (a number) is needed"))?,
    };
    let component = match component.strip_prefix("builtin:") {
        Some(_) => component.to_string(),
        None => std::path::absolute(component)
            .with_context(|| format!("component {component}"))?
            .to_string_lossy()
            .into_owned(),
    };
    let mut cluster = toml::Table::new();
    cluster.insert("service".into(), service.into());
    cluster.insert("component".into(), component.clone().into());
    cluster.insert(
        "tenants".into(),
        toml::Value::Array(vec![i64::from(tenant).into()]),
    );
    cluster.insert("instances".into(), 1.into());
    if let Some(mb) = args.memory_mb {
        cluster.insert("memory-mb".into(), toml::Value::Integer(mb as i64));
    }
    if let Some(ms) = args.timeout_ms {
        cluster.insert("timeout-ms".into(), toml::Value::Integer(ms as i64));
    }
    let mut values = toml::Table::new();
    for item in &args.config {
        let (key, value) = key_value(item, "--config")?;
        values.insert(key, value.into());
    }
    cluster.insert("config".into(), values.into());
    cluster.insert("store".into(), toml::Table::new().into());
    if !args.allow_http.is_empty() {
        let mut http = toml::Table::new();
        http.insert(
            "allow".into(),
            toml::Value::Array(args.allow_http.iter().map(|h| h.as_str().into()).collect()),
        );
        cluster.insert("http".into(), http.into());
    }
    let mut tenant_table = toml::Table::new();
    tenant_table.insert("id".into(), i64::from(tenant).into());
    tenant_table.insert("name".into(), format!("Tenant {tenant}").into());
    let mut root = toml::Table::new();
    root.insert(
        "tenants".into(),
        toml::Value::Array(vec![tenant_table.into()]),
    );
    let mut clusters = toml::Table::new();
    clusters.insert(name.clone(), cluster.into());
    root.insert("clusters".into(), clusters.into());
    if let Some(dir) = &args.cache_dir {
        let mut runtime = toml::Table::new();
        runtime.insert(
            "cache-dir".into(),
            dir.to_string_lossy().into_owned().into(),
        );
        root.insert("runtime".into(), runtime.into());
    }
    let text = toml::to_string(&root)?;
    let config = Config::parse(&text, Path::new("."))
        .map_err(|e| anyhow!("cannot make a cluster for {component}:\n{e}"))?;
    Ok((config, name))
}

/// The config file with only the named cluster left (nothing else is
/// started), the command line's overrides applied.
fn cluster_config(args: &CallArgs, path: &Path, name: &str) -> Result<Config> {
    let mut config = Config::load(path).map_err(|e| anyhow!("invalid config:\n{e}"))?;
    if !config.clusters.contains_key(name) {
        bail!(
            "{} has no cluster '{name}' (clusters: {})",
            path.display(),
            config
                .clusters
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    config.clusters.retain(|n, _| n == name);
    config.captures.clear();
    config.embedded_nodes.clear();
    let cluster = config.clusters.get_mut(name).expect("kept");
    for item in &args.config {
        let (key, value) = key_value(item, "--config")?;
        cluster.config.insert(key, value);
    }
    if !args.allow_http.is_empty() {
        let http = cluster.http.get_or_insert(crate::config::HttpConfig {
            allow: Vec::new(),
            timeout_ms: 10_000,
        });
        http.allow.extend(args.allow_http.iter().cloned());
    }
    if let Some(mb) = args.memory_mb {
        cluster.memory_mb = mb;
    }
    if let Some(ms) = args.timeout_ms {
        cluster.timeout_ms = ms;
    }
    // One instance is enough for one call.
    cluster.instances = 1;
    if let Some(dir) = &args.cache_dir {
        config.runtime.cache_dir = Some(dir.clone());
        config.runtime.no_cache = false;
    }
    Ok(config)
}

/// The service type a component declares (its `describe`), for the
/// cluster made up for it.
async fn service_type(runtime: &Runtime, config: &Config, name: &str) -> Result<String> {
    let source = config
        .component_source(&config.clusters[name].component)
        .map_err(anyhow::Error::msg)?;
    let bytes = source
        .bytes()
        .with_context(|| format!("read component {source}"))?;
    let spec = InstanceSpec {
        cluster: name.into(),
        memory_limit: (config.clusters[name].memory_mb << 20) as usize,
        config: std::sync::Arc::default(),
        store: None,
        http: std::sync::Arc::default(),
        log: std::sync::Arc::new(crate::runtime::log::LogLimit::unmetered(10)),
        store_refused: None,
    };
    let loaded = runtime
        .load(&bytes, &std::sync::Arc::new(spec))
        .await
        .with_context(|| format!("cannot load {source}"))?;
    Ok(loaded.info.service_type)
}

/// The cluster to call, started; the config it was started from; and
/// the runtime, which must outlive the call (dropping it stops the epoch
/// ticker, and with it the call's deadline).
async fn start(args: &CallArgs, target: &Target) -> Result<(Cluster, Config, Runtime)> {
    let (config, name) = match target {
        Target::Component { component, .. } => {
            // The service type is the component's own: ask it first (the
            // compiled code is cached, so the cluster loads it again
            // quickly).
            let (probe, name) = component_config(args, component, "?")?;
            let runtime = crate::host::runtime_for(&probe)?;
            let service = service_type(&runtime, &probe, &name).await?;
            let (config, name) = component_config(args, component, &service)?;
            let cluster = Cluster::start(
                &runtime,
                &config,
                &name,
                &Metrics::new(),
                crate::store::Open::MemoryOnly,
            )
            .await?;
            return Ok((cluster, config, runtime));
        }
        Target::Cluster {
            config, cluster, ..
        } => (cluster_config(args, config, cluster)?, cluster.clone()),
    };
    if config.clusters[&name].store.is_some() {
        tracing::info!(
            cluster = %name,
            "the store is in memory for this call: the configured one is not opened"
        );
    }
    let runtime = crate::host::runtime_for(&config)?;
    // The same store rule as `wasp check`: a running wasp may hold the
    // store's file, so this call gets an empty store in memory.
    let cluster = Cluster::start(
        &runtime,
        &config,
        &name,
        &Metrics::new(),
        crate::store::Open::MemoryOnly,
    )
    .await
    .with_context(|| format!("cannot start cluster '{name}'"))?;
    Ok((cluster, config, runtime))
}

/// The tenant of the call: the one asked for, else the cluster's first.
fn tenant(args: &CallArgs, cluster: &Cluster, config: &Config) -> Result<TenantConfig> {
    let Some(asked) = &args.tenant else {
        return cluster
            .tenants
            .first()
            .cloned()
            .with_context(|| format!("cluster '{}' serves no tenant", cluster.name));
    };
    let found = crate::tenant::find(&config.tenants, crate::tenant::Key::Name(asked))
        .with_context(|| format!("--tenant {asked}: no such tenant in the config"))?;
    if !cluster.serves(found.id) {
        bail!(
            "cluster '{}' does not serve tenant {} (it serves {})",
            cluster.name,
            found.id,
            cluster
                .tenants
                .iter()
                .map(|t| t.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(found.clone())
}

/// How to call `method` again from the command line, with its example
/// parameters when it has some.
fn call_line(
    args: &CallArgs,
    target: &Target,
    config: &Config,
    service: &str,
    method: &str,
) -> String {
    let mut line = match target {
        Target::Component { component, .. } => format!("wasp call {component} {method}"),
        Target::Cluster {
            config, cluster, ..
        } => format!("wasp call {} {cluster} {method}", config.display()),
    };
    if let Some(t) = &args.tenant {
        line.push_str(&format!(" --tenant {t}"));
    }
    let declared = match target {
        Target::Cluster { cluster, .. } => config.clusters.get(cluster),
        Target::Component { .. } => None,
    };
    if let Some(params) = example_of(declared, service, method) {
        line.push_str(&format!(" --param-json '{params}'"));
    }
    line
}

/// Lists what the component serves: its `describe`.
fn describe(args: &CallArgs, target: &Target, config: &Config, cluster: &Cluster) {
    let mut methods: Vec<&String> = cluster.methods.iter().collect();
    methods.sort();
    println!(
        "{}: service {} {}, {} method(s):",
        cluster.source,
        cluster.service,
        cluster.version,
        methods.len()
    );
    for method in methods {
        println!(
            "  {method:<16} {}",
            call_line(args, target, config, &cluster.service, method)
        );
    }
}

/// A fault as `wasp call` prints it: the fields of `Event3rdServerFault`.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct FaultBody<'a> {
    fault_code: u16,
    fault_string: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    component_fault_code: Option<i32>,
}

/// Runs `wasp call`: prints the result as JSON; a fault is printed (as
/// JSON, and on stderr with its code) and makes the command fail.
pub async fn run(args: CallArgs) -> Result<()> {
    let target = Target::of(&args)?;
    let method = match &target {
        Target::Component { method, .. } | Target::Cluster { method, .. } => method.clone(),
    };
    // Read the parameters before starting anything: a typo fails fast.
    let parameters = parameters(&args)?;
    let user_data = match &args.user_data_json {
        Some(text) => {
            Some(Kv::from_json_text(text, "--user-data-json").map_err(|e| anyhow!("{e}"))?)
        }
        None => None,
    };
    let (cluster, config, _runtime) = start(&args, &target).await?;
    let method = match method {
        Some(method) if !args.describe => method,
        _ => {
            describe(&args, &target, &config, &cluster);
            return Ok(());
        }
    };
    if !cluster.methods.contains(&method) {
        let mut methods: Vec<_> = cluster.methods.iter().map(String::as_str).collect();
        methods.sort_unstable();
        bail!(
            "service {} has no method '{method}' (methods: {}; list them with --describe)",
            cluster.service,
            methods.join(", ")
        );
    }
    let tenant = tenant(&args, &cluster, &config)?;
    let outcome = match cluster.check_fits(&parameters, user_data.as_ref()) {
        Err(fault) => Err(fault),
        Ok(()) => {
            let params = parameters.to_wit();
            let params = params.lists();
            let user = user_data.as_ref().map(Kv::to_wit).unwrap_or_default();
            let user = user.lists();
            let request = bindings::Request {
                service: &cluster.service,
                method: &method,
                version: "",
                tenant: bindings::Tenant {
                    id: tenant.id,
                    name: &tenant.name,
                },
                media_type: None,
                parameters: bindings::KvListParam { lists: &params },
                user_data: bindings::KvListParam { lists: &user },
            };
            cluster.call(&request).await
        }
    };
    match outcome {
        Ok(result) => {
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(())
        }
        Err(fault) => {
            let body = FaultBody {
                fault_code: fault.code.as_u16(),
                fault_string: &fault.message,
                component_fault_code: fault.component_code,
            };
            println!("{}", serde_json::to_string_pretty(&body)?);
            let component = fault
                .component_code
                .map(|c| format!(" (component code {c})"))
                .unwrap_or_default();
            bail!(
                "{} {method} answered fault {}{component}: {}",
                cluster.service,
                fault.code.as_u16(),
                fault.message
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_come_from_the_file_name() {
        assert_eq!(cluster_name("builtin:fax"), "fax");
        assert_eq!(cluster_name("target/x/my.plugin.wasm"), "my-plugin");
        assert_eq!(cluster_name(""), "call");
    }

    #[test]
    fn params_after_the_json_replace_its_keys() {
        let args = CallArgs {
            target: "builtin:fax".into(),
            rest: vec![],
            tenant: None,
            params: vec!["To=+1415".into(), "Empty=".into()],
            param_json: Some(r#"{"To":"x","Pages":3}"#.into()),
            user_data_json: None,
            describe: false,
            config: vec![],
            allow_http: vec![],
            memory_mb: None,
            timeout_ms: None,
            cache_dir: None,
        };
        let kv = parameters(&args).unwrap();
        assert_eq!(kv.get("To"), Some(&Value::Str("+1415".into())));
        assert_eq!(kv.get("Pages"), Some(&Value::Int(3)));
        assert_eq!(kv.get("Empty"), Some(&Value::Str(String::new())));
        assert_eq!(kv.0.len(), 3);
    }

    /// Every example is accepted by the bundled component it is for: a
    /// pasted try line or `--describe` suggestion succeeds.
    #[tokio::test]
    async fn every_example_succeeds_against_its_bundled_component() {
        let text = "[runtime]\nno-cache = true\n[[tenants]]\nid = 101\nname = \"T\"\n\
            [clusters.fax]\nservice = \"Fax\"\ncomponent = \"builtin:fax\"\ntenants = [101]\ninstances = 1\n\
            [clusters.classification]\nservice = \"Classification\"\ncomponent = \"builtin:classification\"\ntenants = [101]\ninstances = 1\n\
            [clusters.im]\nservice = \"IM\"\ncomponent = \"builtin:im\"\ntenants = [101]\ninstances = 1\n\
            [clusters.echo]\nservice = \"Echo\"\ncomponent = \"builtin:echo\"\ntenants = [101]\ninstances = 1\n";
        let config = Config::parse(text, Path::new(".")).unwrap();
        let runtime = crate::host::runtime_for(&config).unwrap();
        let metrics = Metrics::new();
        for (service, method, params) in EXAMPLES {
            let name = service.to_ascii_lowercase();
            let cluster = Cluster::start(
                &runtime,
                &config,
                &name,
                &metrics,
                crate::store::Open::MemoryOnly,
            )
            .await
            .unwrap();
            assert!(cluster.methods.contains(*method), "{service} {method}");
            let kv = Kv::from_json_text(params, "example").unwrap();
            let wit = kv.to_wit();
            let lists = wit.lists();
            let request = bindings::Request {
                service,
                method,
                version: "",
                tenant: bindings::Tenant { id: 101, name: "T" },
                media_type: None,
                parameters: bindings::KvListParam { lists: &lists },
                user_data: bindings::KvListParam { lists: &[] },
            };
            let result = cluster.call(&request).await;
            assert!(result.is_ok(), "{service} {method} {params}: {result:?}");
        }
    }
}
