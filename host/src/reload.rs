//! Changing what a running wasp serves: reload the config file (on an
//! admin call, `wasp reload`, or when the file or a component it names
//! changes), or roll back to the config before the last reload.
//!
//! A reload builds a whole new [`Generation`] first — parse, validate,
//! compile, instantiate each changed cluster and codec — while the
//! current one serves. Only then is it installed, in one atomic switch:
//! requests in flight finish on the generation they started on; unchanged
//! clusters and capture points are taken over as they are (their
//! instances are not restarted); node sessions stay connected. Capture
//! points that changed or went away are stopped, their items in flight
//! finished (bounded by [`DRAIN`]), and the new ones started. A reload
//! that fails anywhere before the switch changes nothing and says why: in
//! the log, in its answer and in `/v1/admin/reloads`.
//!
//! The sections that shape the process — `[server]`, `[runtime]`,
//! `[nodes]`, `[[embedded-nodes]]`, `[demo]` — take effect at a restart; a
//! reload that changes one is refused, naming it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::generation::{Changes, Generation};
use crate::host::Host;
use crate::store;

/// Reloads remembered for `/v1/admin/reloads`.
pub const HISTORY: usize = 100;

/// How long a stopped capture point's items in flight may take to finish
/// before its successor starts anyway (it then fails to open the state
/// file still held, and says so).
pub const DRAIN: Duration = Duration::from_secs(30);

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// `POST /v1/admin/reload` (also `wasp reload`).
    Admin,
    /// The config file or a component file changed.
    File,
    /// `POST /v1/admin/rollback`.
    Rollback,
}

/// One reload, as `/v1/admin/reloads` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReloadReport {
    /// 1, 2, ... since the process started.
    pub id: u64,
    /// Seconds since the Unix epoch when it finished.
    pub at: u64,
    pub trigger: Trigger,
    /// Whether the new generation serves now.
    pub ok: bool,
    /// Why not, every problem on its own line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub changes: Changes,
    /// Capture points that did not start in the new generation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub took_ms: u64,
}

/// The host's reload bookkeeping.
#[derive(Debug, Default)]
pub struct Reloads {
    /// Where the config comes from, and the `--data-dir` and `--kafka`
    /// given.
    source: Mutex<Option<Source>>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
    history: Mutex<VecDeque<ReloadReport>>,
    next_id: Mutex<u64>,
    /// The config before the last successful reload, for rollback.
    previous: Mutex<Option<Config>>,
    /// Where the demo's mock peers listen, when started: a reloaded
    /// config's clusters are pointed there too.
    demo_peers: Mutex<Option<std::net::SocketAddr>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The config file and what the command line set over it.
#[derive(Debug, Clone)]
struct Source {
    path: PathBuf,
    data_dir: Option<PathBuf>,
    kafka: Option<String>,
}

impl Reloads {
    /// Reloads read `path` (and apply `data_dir` and `kafka` over it, as
    /// at start).
    pub fn set_source(&self, path: PathBuf, data_dir: Option<PathBuf>, kafka: Option<String>) {
        *lock(&self.source) = Some(Source {
            path,
            data_dir,
            kafka,
        });
    }

    /// Reloaded configs' clusters are pointed at the demo's mock peers
    /// at `at` (see [`Config::point_demo_peers_at`]), as at start.
    pub fn set_demo_peers(&self, at: std::net::SocketAddr) {
        *lock(&self.demo_peers) = Some(at);
    }

    /// The config file reloads read, if any.
    pub fn source(&self) -> Option<PathBuf> {
        lock(&self.source).as_ref().map(|s| s.path.clone())
    }

    /// Reloads so far, oldest first.
    pub fn history(&self) -> Vec<ReloadReport> {
        lock(&self.history).iter().cloned().collect()
    }

    fn record(&self, report: ReloadReport) -> ReloadReport {
        if report.ok {
            tracing::info!(id = report.id, trigger = ?report.trigger, started = ?report.changes.started,
                kept = report.changes.kept.len(), removed = ?report.changes.removed, took_ms = report.took_ms, "reloaded");
            for w in &report.warnings {
                tracing::warn!(id = report.id, "{w}");
            }
        } else {
            tracing::warn!(id = report.id, trigger = ?report.trigger,
                reason = %report.reason.as_deref().unwrap_or_default(), "reload refused; nothing changed");
        }
        let mut history = lock(&self.history);
        if history.len() >= HISTORY {
            history.pop_front();
        }
        history.push_back(report.clone());
        report
    }

    fn next_id(&self) -> u64 {
        let mut id = lock(&self.next_id);
        *id += 1;
        *id
    }
}

/// The process-level sections a reload may not change.
const PROCESS_SECTIONS: [&str; 5] = ["server", "runtime", "nodes", "embedded-nodes", "demo"];

impl Host {
    /// Reads the config file again and installs what it says (see the
    /// module docs). Without a config file (a host built in a test), the
    /// answer says so.
    pub async fn reload(&self, trigger: Trigger) -> ReloadReport {
        let source = lock(&self.reloads.source).clone();
        let Some(Source {
            path,
            data_dir,
            kafka,
        }) = source
        else {
            return self.refused(
                trigger,
                Instant::now(),
                "this host was not started from a config file".into(),
            );
        };
        let started = Instant::now();
        let _one = self.reloads.running.lock().await;
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        let mut config = match loaded {
            Ok(Ok(config)) => config,
            Ok(Err(e)) => return self.refused(trigger, started, format!("invalid config:\n{e}")),
            Err(e) => {
                return self.refused(trigger, started, format!("the config reader failed: {e}"));
            }
        };
        if let Some(dir) = data_dir {
            config.data_dir = Some(dir);
        }
        config.kafka = kafka;
        if let Some(at) = *lock(&self.reloads.demo_peers) {
            config.point_demo_peers_at(at);
        }
        self.apply(config, trigger, started).await
    }

    /// Returns to the config before the last successful reload.
    pub async fn rollback(&self) -> ReloadReport {
        let started = Instant::now();
        let _one = self.reloads.running.lock().await;
        let Some(config) = lock(&self.reloads.previous).clone() else {
            return self.refused(
                Trigger::Rollback,
                started,
                "no reload to roll back yet".into(),
            );
        };
        self.apply(config, Trigger::Rollback, started).await
    }

    /// Reloads so far, oldest first.
    pub fn reload_history(&self) -> Vec<ReloadReport> {
        self.reloads.history()
    }

    async fn apply(&self, config: Config, trigger: Trigger, started: Instant) -> ReloadReport {
        let current = self.current();
        let changed: Vec<&str> = PROCESS_SECTIONS
            .into_iter()
            .filter(|s| current.config.section(s) != config.section(s))
            .collect();
        if !changed.is_empty() {
            return self.refused(
                trigger,
                started,
                format!(
                    "the section(s) {} changed; they shape the process and take effect at a \
                     restart (nothing was changed)",
                    changed
                        .iter()
                        .map(|s| format!("[{s}]"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let built = Generation::build_next(
            config,
            &self.runtime,
            &self.metrics,
            store::Open::Persisted,
            Some(&current),
        )
        .await;
        let (next, changes) = match built {
            Ok(built) => built,
            Err(e) => return self.refused(trigger, started, format!("{e:#}")),
        };
        drop(current);
        let old = self.install(next);
        // Capture points the new generation did not take over: let their
        // items in flight finish so their files are free for successors.
        let mut warnings = Vec::new();
        let now = self.current();
        for (name, cp) in &old.captures {
            if !now
                .captures
                .get(name)
                .is_some_and(|n| std::sync::Arc::ptr_eq(n, cp))
                && !cp.stop_and_wait(DRAIN).await
            {
                warnings.push(format!(
                    "captures.{name}: its items in flight did not finish within {DRAIN:?}"
                ));
            }
        }
        if let Err(e) = now.start_captures(&self.nodes, &self.stopping) {
            warnings.push(format!("{e:#}"));
        }
        *lock(&self.reloads.previous) = Some(old.config.clone());
        let report = ReloadReport {
            id: self.reloads.next_id(),
            at: unix_now(),
            trigger,
            ok: true,
            reason: None,
            changes,
            warnings,
            took_ms: started.elapsed().as_millis() as u64,
        };
        self.reloads.record(report)
    }

    fn refused(&self, trigger: Trigger, started: Instant, reason: String) -> ReloadReport {
        self.keep_loaded_of(&self.current());
        self.reloads.record(ReloadReport {
            id: self.reloads.next_id(),
            at: unix_now(),
            trigger,
            ok: false,
            reason: Some(reason),
            changes: Changes::default(),
            warnings: Vec::new(),
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}

fn unix_now() -> u64 {
    crate::store::Clock::System.now()
}

/// How long the watcher waits after a change before it reloads, so an
/// editor's several writes (or a build writing a component) count once.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// The files a config depends on: itself and every component and codec
/// file it names (builtins have none).
fn watched_files(config_path: &std::path::Path, config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config_path.to_path_buf()];
    let names = config
        .clusters
        .values()
        .map(|c| c.component.as_str())
        .chain(config.captures.values().map(|c| c.codec.as_str()));
    for name in names {
        if let Ok(crate::config::ComponentSource::File(path)) = config.component_source(name) {
            files.push(path);
        }
    }
    files
}

/// Canonical form of a path for comparing with watcher events (which
/// carry absolute paths); the path itself when it cannot be resolved.
fn canonical(path: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// Watches the folders of `config`'s files (new ones only) and makes
/// `files` the set of files that trigger a reload.
fn arm(
    watcher: &mut notify::RecommendedWatcher,
    dirs: &mut std::collections::HashSet<PathBuf>,
    files: &mut std::collections::HashSet<PathBuf>,
    config_path: &std::path::Path,
    config: &Config,
) {
    use notify::Watcher;
    files.clear();
    for file in watched_files(config_path, config) {
        let file = canonical(&file);
        if let Some(dir) = file.parent()
            && dirs.insert(dir.to_path_buf())
            && let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a folder of the config's files");
        }
        files.insert(file);
    }
}

/// Watches the config file and every component file it names and reloads
/// (debounced) when one changes. Runs until `host.stopping`. If watching
/// cannot start, that is logged and reloads are left to the admin API.
pub fn watch(host: std::sync::Arc<Host>) {
    let Some(config_path) = host.reloads.source() else {
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<PathBuf>(64);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            for path in event.paths {
                // Full: a reload is coming anyway.
                let _ = tx.try_send(path);
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with POST /v1/admin/reload or `wasp reload`");
            return;
        }
    };
    // Armed before this returns: a change right after start is seen.
    let mut dirs = std::collections::HashSet::new();
    let mut files = std::collections::HashSet::new();
    arm(
        &mut watcher,
        &mut dirs,
        &mut files,
        &config_path,
        &host.current().config,
    );
    tokio::spawn(async move {
        loop {
            let path = tokio::select! {
                p = rx.recv() => p,
                () = host.stopping.cancelled() => None,
            };
            let Some(path) = path else { break };
            if !files.contains(&canonical(&path)) {
                continue;
            }
            // Let the writer finish, then take every change at once.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            tracing::info!(file = %path.display(), "a file the config depends on changed; reloading");
            let report = host.reload(Trigger::File).await;
            if report.ok {
                arm(
                    &mut watcher,
                    &mut dirs,
                    &mut files,
                    &config_path,
                    &host.current().config,
                );
            }
        }
    });
}
