//! Compiled components cached on disk, keyed by the component's SHA-256 and
//! the engine's compatibility hash: a restart (or a reload of an unchanged
//! component) deserializes native code instead of compiling again.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components live. `None` disables the cache.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache { dir }
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
        let sha = hex(&Sha256::digest(bytes));
        let Some(dir) = &self.dir else {
            let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
            return Ok((component, sha, false));
        };
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let path = dir.join(format!("{sha}-{:016x}.cwasm", hasher.finish()));
        if path.exists() {
            match load(engine, &path) {
                Ok(component) => return Ok((component, sha, true)),
                Err(err) => tracing::warn!(
                    path = %path.display(),
                    "cached component unusable, compiling again: {err:#}"
                ),
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
            .context("compile the component")?;
        if let Err(err) = store(dir, &path, &compiled) {
            tracing::warn!(dir = %dir.display(), "cannot write the component cache: {err:#}");
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
