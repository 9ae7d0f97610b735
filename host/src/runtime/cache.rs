//! Compiled components cached on disk, keyed by the component's SHA-256 and
//! the engine's compatibility hash: a restart (or a reload of an unchanged
//! component) deserializes native code instead of compiling again.
//!
//! The directory is bounded (`runtime.cache-max-mb`): after a new entry is
//! written, the least recently used entries (a hit refreshes an entry's
//! modification time) are deleted until the rest fits, and write leftovers
//! of a crashed process are removed. Deleting a file a running process has
//! loaded is harmless: its code stays mapped until that process lets go.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components live. `None` disables the cache.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    max_bytes: u64,
}

/// A write leftover (`.<name>.<pid>.tmp`) this old belongs to a process
/// that died while writing it.
const STALE_TMP: Duration = Duration::from_secs(600);

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache {
            dir,
            max_bytes: crate::config::DEFAULT_CACHE_MAX_MB << 20,
        }
    }

    /// Bounds the directory to `max_bytes` of compiled components.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The default cache directory: `$WASP_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/wasp`, else `$HOME/.cache/wasp`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WASP_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("wasp"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("wasp"))
    }

    /// Returns the compiled component, its SHA-256 (hex) and whether it
    /// came from the cache.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> Result<(Component, String, bool)> {
        self.get_or_compile_hashed(engine, bytes, hex(&Sha256::digest(bytes)))
    }

    /// [`ComponentCache::get_or_compile`] for bytes whose SHA-256 (hex)
    /// the caller has already computed (a large component is hashed once).
    pub fn get_or_compile_hashed(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha: String,
    ) -> Result<(Component, String, bool)> {
        let Some(dir) = &self.dir else {
            let component = compiling(&sha, bytes, || {
                Component::new(engine, bytes).map_err(anyhow::Error::from)
            })?;
            return Ok((component, sha, false));
        };
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let path = dir.join(format!("{sha}-{:016x}.cwasm", hasher.finish()));
        if path.exists() {
            match load(engine, &path) {
                Ok(component) => {
                    // Recently used: the last to be evicted.
                    if let Ok(file) = std::fs::File::options().append(true).open(&path) {
                        let _ = file.set_modified(SystemTime::now());
                    }
                    return Ok((component, sha, true));
                }
                Err(err) => tracing::warn!(
                    path = %path.display(),
                    "cached component unusable, compiling again: {err:#}"
                ),
            }
        }
        let compiled = compiling(&sha, bytes, || {
            engine
                .precompile_component(bytes)
                .map_err(anyhow::Error::from)
                .context("compile the component")
        })?;
        match store(dir, &path, &compiled) {
            Ok(()) => evict(dir, self.max_bytes, &path),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), "cannot write the component cache: {err:#}")
            }
        }
        // SAFETY-relevant: deserialize what we just compiled in memory.
        let component = load_bytes(engine, &compiled)?;
        Ok((component, sha, false))
    }
}

fn store(dir: &Path, path: &Path, compiled: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("component"),
        std::process::id()
    ));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Deletes the least recently used entries until the directory holds at
/// most `max_bytes` of them (`keep`, just written, stays even if it alone
/// is larger), and write leftovers older than [`STALE_TMP`].
fn evict(dir: &Path, max_bytes: u64, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut cached = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let modified = meta.modified().unwrap_or(now);
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            if now.duration_since(modified).unwrap_or_default() > STALE_TMP {
                let _ = std::fs::remove_file(&path);
            }
        } else if name.ends_with(".cwasm") && meta.is_file() {
            cached.push((modified, meta.len(), path));
        }
    }
    let mut total: u64 = cached.iter().map(|(_, len, _)| len).sum();
    cached.sort();
    for (_, len, path) in cached {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total -= len;
                tracing::info!(path = %path.display(), "compiled component evicted from the cache");
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), "cannot evict from the cache: {err}")
            }
        }
    }
}

#[allow(unsafe_code)]
fn load(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: wasmtime requires that the file is a trusted artifact of
    // `Engine::precompile_component` for a compatible engine. It is: only
    // wasp writes this directory, names files by the engine compatibility
    // hash, and writes them atomically (write + rename).
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
}

#[allow(unsafe_code)]
fn load_bytes(engine: &Engine, compiled: &[u8]) -> Result<Component> {
    // SAFETY: the bytes were produced a moment ago by
    // `precompile_component` on this very engine.
    unsafe { Component::deserialize(engine, compiled) }.map_err(anyhow::Error::from)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `compile`, saying in the log which component it compiles before
/// (a large Python or JavaScript component takes seconds) and how long it
/// took after: `wasp check`, `wasp run` and a reload show both.
fn compiling<T>(sha: &str, bytes: &[u8], compile: impl FnOnce() -> Result<T>) -> Result<T> {
    let component = &sha[..sha.len().min(12)];
    let mb = format!("{:.1}", bytes.len() as f64 / (1 << 20) as f64);
    tracing::info!(component, mb = %mb, "compiling a component (not in the compile cache)");
    let start = std::time::Instant::now();
    let compiled = compile();
    let took = format!("{:.2} s", start.elapsed().as_secs_f64());
    match &compiled {
        Ok(_) => tracing::info!(component, took = %took, "compiled"),
        Err(err) => tracing::info!(component, took = %took, "compile failed: {err:#}"),
    }
    compiled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    fn cwasm_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cwasm"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_entries_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let echo = crate::builtin::get("echo").unwrap();
        let im = crate::builtin::get("im").unwrap();
        let fax = crate::builtin::get("fax").unwrap();
        // Compiled sizes, measured in a scratch cache.
        let scratch = tempfile::tempdir().unwrap();
        let unbounded = ComponentCache::new(Some(scratch.path().to_path_buf()));
        let size = |bytes: &[u8]| {
            let (_, sha, _) = unbounded.get_or_compile(&engine, bytes).unwrap();
            std::fs::read_dir(scratch.path())
                .unwrap()
                .map(|e| e.unwrap())
                .find(|e| e.file_name().to_string_lossy().starts_with(&sha))
                .unwrap()
                .metadata()
                .unwrap()
                .len()
        };
        // Room for echo and fax, not for all three.
        let cache = ComponentCache::new(Some(dir.path().to_path_buf()))
            .with_max_bytes(size(echo) + size(fax));

        // Entries are aged by hand (their use time is their mtime), so the
        // order does not depend on how fast this runs.
        let age = |sha: &str, seconds: u64| {
            let entry = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(sha))
                })
                .unwrap();
            std::fs::File::options()
                .append(true)
                .open(entry)
                .unwrap()
                .set_modified(SystemTime::now() - Duration::from_secs(seconds))
                .unwrap();
        };
        let (_, echo_sha, hit) = cache.get_or_compile(&engine, echo).unwrap();
        assert!(!hit);
        age(&echo_sha, 30);
        let (_, im_sha, _) = cache.get_or_compile(&engine, im).unwrap();
        age(&im_sha, 20);
        // A hit makes echo the most recently used one (its mtime now).
        let (_, _, hit) = cache.get_or_compile(&engine, echo).unwrap();
        assert!(hit);
        let (_, fax_sha, _) = cache.get_or_compile(&engine, fax).unwrap();
        let names = cwasm_files(dir.path());
        let holds = |sha: &str| names.iter().any(|n| n.starts_with(sha));
        assert!(holds(&echo_sha), "{names:?}");
        assert!(holds(&fax_sha), "{names:?}");
        assert!(
            !holds(&im_sha),
            "the least recently used entry stays: {names:?}"
        );
        // The evicted one compiles again, and is cached again.
        let (_, _, hit) = cache.get_or_compile(&engine, im).unwrap();
        assert!(!hit);
        let (_, _, hit) = cache.get_or_compile(&engine, im).unwrap();
        assert!(hit);
    }

    #[test]
    fn stale_write_leftovers_are_removed_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".x.cwasm.1.tmp");
        let fresh = dir.path().join(".y.cwasm.2.tmp");
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&fresh, b"half").unwrap();
        std::fs::File::options()
            .append(true)
            .open(&stale)
            .unwrap()
            .set_modified(SystemTime::now() - STALE_TMP * 2)
            .unwrap();
        let cache = ComponentCache::new(Some(dir.path().to_path_buf()));
        cache
            .get_or_compile(&engine(), crate::builtin::get("echo").unwrap())
            .unwrap();
        assert!(!stale.exists());
        assert!(fresh.exists());
    }
}
