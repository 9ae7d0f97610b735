//! The key-value store capability (`wasp:esp/store`): one store per
//! cluster, shared by all its instances, keys scoped by tenant. In memory by
//! default; with `persist` in a redb file, so it survives a restart.
//!
//! Bounds: keys up to [`MAX_KEY`] bytes, values up to [`MAX_VALUE`] bytes,
//! at most `max-entries` keys per cluster (all tenants together).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 1 << 20;
/// Most keys `keys` returns.
pub const MAX_LIST: usize = 1000;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// A store error, as the component sees it.
pub type StoreError = String;

pub struct ClusterStore {
    backend: Backend,
    max_entries: usize,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

enum Backend {
    Memory(Mutex<BTreeMap<(u32, String), Vec<u8>>>),
    File(redb::Database),
}

fn scoped(tenant: u32, key: &str) -> Vec<u8> {
    let mut k = tenant.to_be_bytes().to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    format!("store: {e}")
}

impl ClusterStore {
    pub fn memory(max_entries: usize) -> ClusterStore {
        ClusterStore {
            backend: Backend::Memory(Mutex::new(BTreeMap::new())),
            max_entries,
        }
    }

    pub fn file(path: &Path, max_entries: usize) -> anyhow::Result<ClusterStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = redb::Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(TABLE)?;
        tx.commit()?;
        Ok(ClusterStore {
            backend: Backend::File(db),
            max_entries,
        })
    }

    fn check_key(key: &str) -> Result<(), StoreError> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(format!("store: keys are 1 to {MAX_KEY} bytes"));
        }
        Ok(())
    }

    pub fn get(&self, tenant: u32, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Self::check_key(key)?;
        match &self.backend {
            Backend::Memory(map) => Ok(lock(map).get(&(tenant, key.to_string())).cloned()),
            Backend::File(db) => {
                let tx = db.begin_read().map_err(db_err)?;
                let table = tx.open_table(TABLE).map_err(db_err)?;
                let value = table.get(scoped(tenant, key).as_slice()).map_err(db_err)?;
                Ok(value.map(|v| v.value().to_vec()))
            }
        }
    }

    pub fn set(&self, tenant: u32, key: &str, value: &[u8]) -> Result<(), StoreError> {
        Self::check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(format!(
                "store: values are at most {MAX_VALUE} bytes, this one is {}",
                value.len()
            ));
        }
        let full = || {
            format!(
                "store: full ({} keys, the cluster's store.max-entries)",
                self.max_entries
            )
        };
        match &self.backend {
            Backend::Memory(map) => {
                let mut map = lock(map);
                let k = (tenant, key.to_string());
                if !map.contains_key(&k) && map.len() >= self.max_entries {
                    return Err(full());
                }
                map.insert(k, value.to_vec());
                Ok(())
            }
            Backend::File(db) => {
                let tx = db.begin_write().map_err(db_err)?;
                {
                    let mut table = tx.open_table(TABLE).map_err(db_err)?;
                    let k = scoped(tenant, key);
                    let exists = table.get(k.as_slice()).map_err(db_err)?.is_some();
                    if !exists && table.len().map_err(db_err)? as usize >= self.max_entries {
                        return Err(full());
                    }
                    table.insert(k.as_slice(), value).map_err(db_err)?;
                }
                tx.commit().map_err(db_err)
            }
        }
    }

    pub fn delete(&self, tenant: u32, key: &str) -> Result<bool, StoreError> {
        Self::check_key(key)?;
        match &self.backend {
            Backend::Memory(map) => Ok(lock(map).remove(&(tenant, key.to_string())).is_some()),
            Backend::File(db) => {
                let tx = db.begin_write().map_err(db_err)?;
                let existed = {
                    let mut table = tx.open_table(TABLE).map_err(db_err)?;
                    table
                        .remove(scoped(tenant, key).as_slice())
                        .map_err(db_err)?
                        .is_some()
                };
                tx.commit().map_err(db_err)?;
                Ok(existed)
            }
        }
    }

    pub fn keys(&self, tenant: u32, prefix: &str) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Memory(map) => Ok(lock(map)
                .range((tenant, prefix.to_string())..)
                .take_while(|((t, k), _)| *t == tenant && k.starts_with(prefix))
                .take(MAX_LIST)
                .map(|((_, k), _)| k.clone())
                .collect()),
            Backend::File(db) => {
                let tx = db.begin_read().map_err(db_err)?;
                let table = tx.open_table(TABLE).map_err(db_err)?;
                let start = scoped(tenant, prefix);
                let mut out = Vec::new();
                for entry in table.range(start.as_slice()..).map_err(db_err)? {
                    let (k, _) = entry.map_err(db_err)?;
                    let k = k.value();
                    if !k.starts_with(&start) || out.len() >= MAX_LIST {
                        break;
                    }
                    out.push(String::from_utf8_lossy(&k[4..]).into_owned());
                }
                Ok(out)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &ClusterStore) {
        store.set(101, "fax/1", b"Queued").unwrap();
        store.set(101, "fax/2", b"Sent").unwrap();
        store.set(102, "fax/1", b"Other tenant").unwrap();
        assert_eq!(
            store.get(101, "fax/1").unwrap().as_deref(),
            Some(&b"Queued"[..])
        );
        assert_eq!(
            store.get(102, "fax/1").unwrap().as_deref(),
            Some(&b"Other tenant"[..])
        );
        assert_eq!(store.get(103, "fax/1").unwrap(), None);
        assert_eq!(store.keys(101, "fax/").unwrap(), ["fax/1", "fax/2"]);
        assert_eq!(store.keys(102, "").unwrap(), ["fax/1"]);
        assert!(store.delete(101, "fax/2").unwrap());
        assert!(!store.delete(101, "fax/2").unwrap());
        // Bounds: 3 entries at most here.
        store.set(101, "fax/3", b"x").unwrap();
        assert!(store.set(101, "fax/4", b"x").unwrap_err().contains("full"));
        store.set(101, "fax/3", b"overwrite is fine").unwrap();
        assert!(
            store
                .set(101, "big", &vec![0; MAX_VALUE + 1])
                .unwrap_err()
                .contains("at most")
        );
        assert!(store.get(101, "").unwrap_err().contains("keys are"));
    }

    #[test]
    fn memory_store_scopes_by_tenant_and_is_bounded() {
        exercise(&ClusterStore::memory(3));
    }

    #[test]
    fn file_store_scopes_by_tenant_is_bounded_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        exercise(&ClusterStore::file(&path, 3).unwrap());
        let again = ClusterStore::file(&path, 3).unwrap();
        assert_eq!(
            again.get(101, "fax/1").unwrap().as_deref(),
            Some(&b"Queued"[..])
        );
    }
}
