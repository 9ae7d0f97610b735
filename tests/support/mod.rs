//! What the end-to-end scenarios in the top-level `tests/` share: the `wasp` binary built and run as
//! a child process (its stderr kept for a failure's message), and waiting
//! on folders.

#![allow(dead_code)] // each scenario file uses a part of it

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `wasp` binary of this build: these scenarios are test targets of
/// the `wasp` package (host/Cargo.toml points at them), so cargo builds
/// the binary for them.
pub fn wasp_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_wasp"))
}

/// A running `wasp run`.
pub struct Wasp {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub addr: std::net::SocketAddr,
    stderr: PathBuf,
}

impl Wasp {
    /// Runs `wasp run <config> --listen <listen> --data-dir <data_dir>`
    /// and waits until it listens. `listen` may have port 0.
    pub async fn start(config: &Path, listen: &str, data_dir: &Path) -> Result<Wasp> {
        let stderr = data_dir.with_extension(format!(
            "stderr.{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        ));
        let mut child = Command::new(wasp_bin())
            .arg("run")
            .arg(config)
            .args(["--listen", listen])
            .arg("--data-dir")
            .arg(data_dir)
            .env("WASP_CACHE_DIR", cache_dir())
            .env("RUST_LOG", "info,wasmtime=warn,cranelift=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .kill_on_drop(true)
            .spawn()
            .context("spawn wasp")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("wasp listening on ") {
                    return Ok::<_, anyhow::Error>(Some(url.trim().to_string()));
                }
            }
            Ok(None)
        })
        .await;
        let url = match found {
            Ok(Ok(Some(url))) => url,
            other => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                bail!(
                    "wasp did not start ({other:?}); its stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        };
        // Keep reading stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr = url
            .trim_start_matches("http://")
            .parse()
            .context("the listening address")?;
        Ok(Wasp {
            child,
            url,
            addr,
            stderr,
        })
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (as [`until`]) until `ready` holds; fails with this wasp's
    /// stderr when it does not within `within`.
    pub async fn until_ok(&self, what: &str, within: Duration, ready: impl FnMut() -> Option<()>) {
        if let Err(e) = until(what, within, ready).await {
            panic!("{e}\nwasp stderr:\n{}", self.stderr());
        }
    }

    /// `kill -9`: no chance to finish anything.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A compile cache shared by the scenarios of one test run (never the
/// user's).
pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("wasp-e2e-cache")
}

/// Waits (polling every 20 ms, at most `within`) until `ready` gives a
/// value; on timeout the error names `what`.
pub async fn until<T>(
    what: &str,
    within: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("never happened within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Names of the regular files in `dir`, sorted (none if it is missing).
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The bundled fax component with `tag` in a custom section: another
/// SHA-256 (a new version, as the compile cache and the `wasp-component`
/// header see it), the same behaviour.
pub fn fax_tagged(tag: &[u8]) -> Vec<u8> {
    let mut bytes = wasp::builtin::get("fax").expect("the bundled fax").to_vec();
    let name = b"wasp-test-version";
    bytes.push(0); // a custom section
    bytes.push((1 + name.len() + tag.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag);
    bytes
}

/// What the `wasp-component` header says for a component's bytes.
pub fn component_id(bytes: &[u8]) -> String {
    wasp::runtime::sha256_hex(bytes)[..wasp::esp::http::COMPONENT_ID_LEN].to_string()
}

/// Replaces `path` whole: written beside it, then renamed over it, as an
/// operator deploys a file.
pub fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The ExternalIds a node-sim holds interactions for; fails if one was
/// submitted twice.
pub fn submitted_once(node: &wasp::tools::node_sim::Sim) -> std::collections::BTreeSet<String> {
    let all: Vec<String> = node
        .state
        .interactions
        .lock()
        .unwrap()
        .values()
        .filter_map(|i| i.external_id.clone())
        .collect();
    let distinct: std::collections::BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), all.len(), "an ExternalId submitted twice");
    distinct
}

/// Drops a file as a careful writer does: written in `staging` (on the
/// same file system), then renamed into `inbound`.
pub fn drop_file(staging: &Path, inbound: &Path, name: &str, bytes: &[u8]) {
    let staged = staging.join(name);
    std::fs::write(&staged, bytes).unwrap();
    std::fs::rename(&staged, inbound.join(name)).unwrap();
}

/// A capture file with one submit of `external_id`.
pub fn submit_doc(external_id: &str) -> Vec<u8> {
    format!(
        r#"<interaction operation="submit" ExternalId="{external_id}"><properties><Subject>test</Subject></properties></interaction>"#
    )
    .into_bytes()
}
