//! A capture point's state, kept in one redb file in its data directory
//! ([`FILE_NAME`]) so that it survives a restart, a crash or `kill -9`
//! (every write is one transaction, committed durably before the call
//! returns):
//!
//! - **ExternalId → interaction.** A source names an interaction by its own
//!   id (`ExternalId`); after a restart `stop ord-88` still finds the
//!   interaction and the node that holds it, and a re-submitted ExternalId
//!   is answered "already submitted" instead of creating a second
//!   interaction.
//! - **The item journal.** A source item (a file, a message) may hold
//!   several operations and may be processed again after a crash. Each
//!   answer is recorded under the item's key as it is given; processing
//!   the item again replays the recorded answers instead of running those
//!   operations twice. [`CaptureState::finish`] drops an item's entries
//!   once it is finalized (moved to `processed/`, offset committed).
//!   A submit's answer and its ExternalId are written in one transaction
//!   ([`CaptureState::record_submit`]): a crash never leaves one without
//!   the other.
//!
//! Bounds ([`Limits`]): ExternalIds are at most `max-external-ids`; when
//! full, remembering a new one forgets the one remembered longest ago (an
//! operation on it then gets the "unknown ExternalId" error reply), so a
//! capture point never stops taking new interactions because old ones
//! were never stopped through it. The journal holds at most
//! `journal-max-items` unfinished items and `journal-max-mb` of answers;
//! an item untouched for `journal-max-age-secs` is dropped (a few on every
//! write, all at open), and when a bound is reached the item touched
//! longest ago is dropped to make room. One answer is at most
//! [`MAX_REPLY`] bytes, one item at most [`MAX_REPLIES_PER_ITEM`] answers,
//! every key at most [`MAX_KEY`] bytes; beyond those a call is refused
//! with an error and nothing is written. A bound lowered in the config
//! applies at the next open.
//!
//! The file is locked while open: a second handle — another wasp process
//! running the same capture point on the same data directory — is refused
//! with an error saying so.
//!
//! Every call blocks on disk I/O: async callers run them in
//! `tokio::task::spawn_blocking` (a [`CaptureState`] is `Send + Sync`;
//! share it in an `Arc`).

use crate::store::Clock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;

/// The state file's name in the capture point's data directory.
pub const FILE_NAME: &str = "state.redb";
/// Longest ExternalId, item key, interaction id or node id, in bytes.
pub const MAX_KEY: usize = 1024;
/// Largest recorded answer, in bytes.
pub const MAX_REPLY: usize = 1 << 20;
/// Most answers recorded for one item.
pub const MAX_REPLIES_PER_ITEM: u64 = 100_000;
/// Items past their age every write drops at most (open drops them all).
pub const SWEEP: usize = 64;

/// ExternalId → (order, interaction id, node id, tenant).
const EXT: TableDefinition<&str, (u64, &str, &str, u32)> = TableDefinition::new("external-ids");
/// Order → ExternalId: the ExternalIds from the one remembered longest ago.
const EXT_ORDER: TableDefinition<u64, &str> = TableDefinition::new("external-id-order");
/// Item key → (order, last touched in seconds since the epoch, answer
/// bytes, answers).
const ITEMS: TableDefinition<&str, (u64, u64, u64, u64)> = TableDefinition::new("items");
/// Order → item key: the items from the one touched longest ago.
const ITEM_ORDER: TableDefinition<u64, &str> = TableDefinition::new("item-order");
/// (Item key, operation index) → the answer given.
const REPLIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("replies");
/// Counters: [`JOURNAL_BYTES`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// In `META`: syncs so far (a sync must write to be a commit).
const SYNCS: &str = "syncs";
/// Bytes of answers in the journal, all items together.
const JOURNAL_BYTES: &str = "journal-bytes";

/// What a capture point's state may hold (`[captures.<name>.state]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    /// ExternalIds remembered at most; the oldest is forgotten for a new one.
    pub max_external_ids: u64,
    /// Unfinished items in the journal at most.
    pub journal_max_items: u64,
    /// MiB of recorded answers at most, all items together.
    pub journal_max_mb: u64,
    /// An unfinished item untouched this long is dropped from the journal.
    pub journal_max_age_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_external_ids: 1_000_000,
            journal_max_items: 10_000,
            journal_max_mb: 256,
            journal_max_age_secs: 7 * 24 * 3600,
        }
    }
}

impl Limits {
    /// Each bound out of its range, placed under `place`
    /// (`captures.orders.state`) as config errors are.
    pub fn problems(&self, place: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |key: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                problems.push(format!("{place}.{key}: {value} is not in {min}..={max}"));
            }
        };
        check("max-external-ids", self.max_external_ids, 1, 100_000_000);
        check("journal-max-items", self.journal_max_items, 1, 10_000_000);
        check("journal-max-mb", self.journal_max_mb, 1, 1 << 20);
        check(
            "journal-max-age-secs",
            self.journal_max_age_secs,
            60,
            365 * 24 * 3600,
        );
        problems
    }

    fn journal_max_bytes(&self) -> u64 {
        self.journal_max_mb.saturating_mul(1 << 20)
    }
}

/// An interaction a capture point submitted: what an operation naming it
/// by ExternalId needs to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// The id the node gave the interaction.
    pub interaction_id: String,
    /// The node that holds it.
    pub node_id: String,
    /// Its tenant's id.
    pub tenant: u32,
}

/// What the state holds now (for the admin API and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// ExternalIds remembered.
    pub external_ids: u64,
    /// Unfinished items in the journal.
    pub journal_items: u64,
    /// Bytes of recorded answers, all items together.
    pub journal_bytes: u64,
}

/// One capture point's state file, open and locked (see the module docs).
pub struct CaptureState {
    db: redb::Database,
    path: PathBuf,
    limits: Limits,
    clock: Clock,
    /// Writes are held in memory until the next [`CaptureState::sync`]
    /// (see [`CaptureState::defer_durability`]).
    deferred: std::sync::atomic::AtomicBool,
}

impl Drop for CaptureState {
    fn drop(&mut self) {
        if self.deferred.load(Ordering::Acquire)
            && let Err(e) = self.sync()
        {
            tracing::warn!("{e:#}: the last answers recorded are not durable");
        }
    }
}

impl std::fmt::Debug for CaptureState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureState")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The tables of one write transaction.
struct Txn<'t> {
    ext: redb::Table<'t, &'static str, (u64, &'static str, &'static str, u32)>,
    ext_order: redb::Table<'t, u64, &'static str>,
    items: redb::Table<'t, &'static str, (u64, u64, u64, u64)>,
    item_order: redb::Table<'t, u64, &'static str>,
    replies: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    meta: redb::Table<'t, &'static str, u64>,
}

/// The journal entry of one item: see [`ITEMS`].
#[derive(Debug, Clone, Copy)]
struct ItemRow {
    order: u64,
    touched: u64,
    bytes: u64,
    answers: u64,
}

impl<'t> Txn<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Txn<'t>, redb::Error> {
        Ok(Txn {
            ext: tx.open_table(EXT)?,
            ext_order: tx.open_table(EXT_ORDER)?,
            items: tx.open_table(ITEMS)?,
            item_order: tx.open_table(ITEM_ORDER)?,
            replies: tx.open_table(REPLIES)?,
            meta: tx.open_table(META)?,
        })
    }

    fn journal_bytes(&self) -> Result<u64, redb::Error> {
        Ok(self.meta.get(JOURNAL_BYTES)?.map_or(0, |v| v.value()))
    }

    fn set_journal_bytes(&mut self, bytes: u64) -> Result<(), redb::Error> {
        self.meta.insert(JOURNAL_BYTES, bytes)?;
        Ok(())
    }

    fn next_order(table: &redb::Table<'t, u64, &'static str>) -> Result<u64, redb::Error> {
        Ok(table.last()?.map_or(0, |(k, _)| k.value() + 1))
    }

    /// Remembers `ext`, first forgetting the oldest ExternalIds while the
    /// table is full; returns those forgotten.
    fn remember(
        &mut self,
        ext: &str,
        i: &Interaction,
        max: u64,
    ) -> Result<Vec<String>, redb::Error> {
        let mut forgotten = Vec::new();
        if let Some(old) = self.ext.remove(ext)? {
            let order = old.value().0;
            self.ext_order.remove(order)?;
        } else {
            forgotten = self.shrink_external_ids(max.saturating_sub(1))?;
        }
        let order = Self::next_order(&self.ext_order)?;
        self.ext_order.insert(order, ext)?;
        self.ext.insert(
            ext,
            (
                order,
                i.interaction_id.as_str(),
                i.node_id.as_str(),
                i.tenant,
            ),
        )?;
        Ok(forgotten)
    }

    /// Forgets the oldest ExternalIds until at most `keep` are left.
    fn shrink_external_ids(&mut self, keep: u64) -> Result<Vec<String>, redb::Error> {
        let mut forgotten = Vec::new();
        while self.ext.len()? > keep {
            let Some((_, oldest)) = self.ext_order.pop_first()? else {
                break;
            };
            let oldest = oldest.value().to_string();
            self.ext.remove(oldest.as_str())?;
            forgotten.push(oldest);
        }
        Ok(forgotten)
    }

    fn item(&self, item: &str) -> Result<Option<ItemRow>, redb::Error> {
        Ok(self.items.get(item)?.map(|v| {
            let (order, touched, bytes, answers) = v.value();
            ItemRow {
                order,
                touched,
                bytes,
                answers,
            }
        }))
    }

    /// Drops one item's journal entries.
    fn drop_item(&mut self, item: &str) -> Result<(), redb::Error> {
        let Some(row) = self.item(item)? else {
            return Ok(());
        };
        self.items.remove(item)?;
        self.item_order.remove(row.order)?;
        self.replies
            .retain_in((item, 0)..=(item, u64::MAX), |_, _| false)?;
        let bytes = self.journal_bytes()?.saturating_sub(row.bytes);
        self.set_journal_bytes(bytes)
    }

    /// The item touched longest ago other than `keep`, if it matches `pick`.
    fn oldest_item(
        &self,
        keep: Option<&str>,
        pick: impl Fn(&ItemRow) -> bool,
    ) -> Result<Option<String>, redb::Error> {
        for entry in self.item_order.iter()?.take(2) {
            let (_, item) = entry?;
            let item = item.value();
            if Some(item) == keep {
                continue;
            }
            return Ok(match self.item(item)? {
                Some(row) if pick(&row) => Some(item.to_string()),
                _ => None,
            });
        }
        Ok(None)
    }

    /// Drops up to `limit` items untouched since before `cutoff`, oldest
    /// first, never `keep`; returns how many.
    fn sweep_aged(
        &mut self,
        keep: Option<&str>,
        cutoff: u64,
        limit: usize,
    ) -> Result<usize, redb::Error> {
        let mut dropped = 0;
        while dropped < limit {
            let Some(item) = self.oldest_item(keep, |row| row.touched < cutoff)? else {
                break;
            };
            self.drop_item(&item)?;
            dropped += 1;
        }
        Ok(dropped)
    }

    /// Drops the items touched longest ago, never `keep`, until `items`
    /// more items and `bytes` more bytes fit; false when they cannot.
    fn make_room(
        &mut self,
        keep: Option<&str>,
        items: u64,
        bytes: u64,
        limits: &Limits,
    ) -> Result<bool, redb::Error> {
        loop {
            let count = self.items.len()?;
            let used = self.journal_bytes()?;
            let fits = count + items <= limits.journal_max_items
                && used.saturating_add(bytes) <= limits.journal_max_bytes();
            if fits {
                return Ok(true);
            }
            let Some(item) = self.oldest_item(keep, |_| true)? else {
                return Ok(false);
            };
            tracing::warn!(item = %item, "capture state: journal full, dropping the entries of the item touched longest ago");
            self.drop_item(&item)?;
        }
    }

    /// Records answer `index` of `item`, making room as the bounds say.
    fn record(
        &mut self,
        item: &str,
        index: u64,
        reply: &[u8],
        now: u64,
        limits: &Limits,
    ) -> Result<()> {
        self.sweep_aged(
            Some(item),
            now.saturating_sub(limits.journal_max_age_secs),
            SWEEP,
        )?;
        let row = self.item(item)?;
        let previous = self
            .replies
            .get((item, index))?
            .map(|v| v.value().len() as u64);
        let answers = row.map_or(0, |r| r.answers) + u64::from(previous.is_none());
        if answers > MAX_REPLIES_PER_ITEM {
            bail!(
                "item '{item}' already has the {MAX_REPLIES_PER_ITEM} answers one item may record"
            );
        }
        let bytes = row
            .map_or(0, |r| r.bytes)
            .saturating_sub(previous.unwrap_or(0))
            + reply.len() as u64;
        let too_big = || {
            anyhow::anyhow!(
                "item '{item}' needs more than the journal's {} MiB (journal-max-mb)",
                limits.journal_max_mb
            )
        };
        // Checked before anything is dropped to make room for it.
        if bytes > limits.journal_max_bytes() {
            return Err(too_big());
        }
        let added = (reply.len() as u64).saturating_sub(previous.unwrap_or(0));
        let new_item = u64::from(row.is_none());
        if !self.make_room(Some(item), new_item, added, limits)? {
            return Err(too_big());
        }
        if let Some(row) = row {
            self.item_order.remove(row.order)?;
        }
        let order = Self::next_order(&self.item_order)?;
        self.item_order.insert(order, item)?;
        self.items.insert(item, (order, now, bytes, answers))?;
        self.replies.insert((item, index), reply)?;
        let total =
            self.journal_bytes()?.saturating_sub(previous.unwrap_or(0)) + reply.len() as u64;
        self.set_journal_bytes(total)?;
        Ok(())
    }
}

fn check_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        bail!("{what} is empty");
    }
    if key.len() > MAX_KEY {
        bail!("{what} is {} bytes, more than {MAX_KEY}", key.len());
    }
    Ok(())
}

fn check_interaction(i: &Interaction) -> Result<()> {
    check_key("interaction id", &i.interaction_id)?;
    check_key("node id", &i.node_id)
}

fn check_reply(reply: &[u8]) -> Result<()> {
    if reply.len() > MAX_REPLY {
        bail!(
            "an answer of {} bytes is more than {MAX_REPLY}",
            reply.len()
        );
    }
    Ok(())
}

/// An operation index as the journal keys it.
fn as_key(index: usize) -> u64 {
    index as u64
}

impl CaptureState {
    /// Opens (or creates) the state file in `dir`, creating `dir` if
    /// missing, and applies the bounds at once: ExternalIds over
    /// `max-external-ids` are forgotten oldest first, journal items past
    /// their age or over the journal's bounds are dropped. Refused when the
    /// file is open elsewhere.
    pub fn open(dir: &Path, limits: Limits) -> Result<CaptureState> {
        Self::open_with(dir, limits, Clock::System)
    }

    fn open_with(dir: &Path, limits: Limits, clock: Clock) -> Result<CaptureState> {
        let path = dir.join(FILE_NAME);
        std::fs::create_dir_all(dir)
            .with_context(|| format!("capture state: cannot create {}", dir.display()))?;
        let db = match redb::Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => bail!(
                "capture state {}: already open: another wasp process (or capture point) \
                 uses this data directory; each capture point needs its own",
                path.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("capture state {}", path.display()));
            }
        };
        let state = CaptureState {
            db,
            path,
            limits,
            clock,
            deferred: std::sync::atomic::AtomicBool::new(false),
        };
        state.write(|t, now, limits| {
            let forgotten = t.shrink_external_ids(limits.max_external_ids)?;
            if !forgotten.is_empty() {
                tracing::warn!(
                    forgotten = forgotten.len(),
                    "capture state: more ExternalIds than max-external-ids, the oldest forgotten"
                );
            }
            let cutoff = now.saturating_sub(limits.journal_max_age_secs);
            t.sweep_aged(None, cutoff, usize::MAX)?;
            t.make_room(None, 0, 0, limits)?;
            Ok(())
        })?;
        Ok(state)
    }

    #[cfg(test)]
    fn set_now(&self, now: u64) {
        if let Clock::Manual(t) = &self.clock {
            t.store(now, Ordering::Relaxed);
        }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bounds it was opened with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// From now on, writes are atomic and seen at once but made durable
    /// only by the next [`CaptureState::sync`] (a crash loses those since
    /// the last one): for a source that can give its items again, such as
    /// Kafka, whose offsets are committed only after a sync. It saves an
    /// fsync per operation.
    pub fn defer_durability(&self) {
        self.deferred.store(true, Ordering::Release);
    }

    /// Makes every write so far durable (one fsync).
    pub fn sync(&self) -> Result<()> {
        let run = || -> Result<()> {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(redb::Durability::Immediate)?;
            {
                let mut meta = tx.open_table(META)?;
                let n = meta.get(SYNCS)?.map_or(0, |v| v.value());
                meta.insert(SYNCS, n.wrapping_add(1))?;
            }
            tx.commit()?;
            Ok(())
        };
        run().with_context(|| format!("capture state {}", self.path.display()))
    }

    /// Runs `f` in one write transaction and commits it durably (unless
    /// [deferred](CaptureState::defer_durability)); an error names the
    /// file and nothing of `f` is written.
    fn write<T>(&self, f: impl FnOnce(&mut Txn<'_>, u64, &Limits) -> Result<T>) -> Result<T> {
        let now = self.clock.now();
        let run = || -> Result<T> {
            let mut tx = self.db.begin_write()?;
            if self.deferred.load(Ordering::Acquire) {
                tx.set_durability(redb::Durability::None)?;
            }
            let out = {
                let mut t = Txn::open(&tx)?;
                f(&mut t, now, &self.limits)?
            };
            tx.commit()?;
            Ok(out)
        };
        run().with_context(|| format!("capture state {}", self.path.display()))
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let run = || -> Result<T> { f(&self.db.begin_read()?) };
        run().with_context(|| format!("capture state {}", self.path.display()))
    }

    /// Remembers which interaction `ext` names (replacing what it named
    /// before). When `max-external-ids` are remembered already, the one
    /// remembered longest ago is forgotten and returned.
    pub fn remember(&self, ext: &str, interaction: &Interaction) -> Result<Option<String>> {
        check_key("ExternalId", ext)?;
        check_interaction(interaction)?;
        self.write(|t, _, limits| Ok(t.remember(ext, interaction, limits.max_external_ids)?.pop()))
    }

    /// The interaction `ext` names, if remembered.
    pub fn lookup(&self, ext: &str) -> Result<Option<Interaction>> {
        self.read(|tx| {
            let table = tx.open_table(EXT)?;
            let found = table.get(ext)?.map(|v| {
                let (_, interaction_id, node_id, tenant) = v.value();
                Interaction {
                    interaction_id: interaction_id.to_string(),
                    node_id: node_id.to_string(),
                    tenant,
                }
            });
            Ok(found)
        })
    }

    /// Forgets `ext` (its interaction ended); whether it was remembered.
    pub fn forget(&self, ext: &str) -> Result<bool> {
        self.write(|t, _, _| {
            let Some(old) = t.ext.remove(ext)? else {
                return Ok(false);
            };
            let order = old.value().0;
            drop(old);
            t.ext_order.remove(order)?;
            Ok(true)
        })
    }

    /// Records that operation `index` of `item` was answered with `reply`
    /// (bytes the caller gives back to itself on replay). Recording an
    /// index again replaces its answer.
    pub fn record(&self, item: &str, index: usize, reply: &[u8]) -> Result<()> {
        check_key("item key", item)?;
        check_reply(reply)?;
        self.write(|t, now, limits| t.record(item, as_key(index), reply, now, limits))
    }

    /// [`CaptureState::record`] and [`CaptureState::remember`] in one
    /// transaction: a submit's answer and its ExternalId are both written
    /// or neither is. Returns the ExternalId forgotten to make room, if any.
    pub fn record_submit(
        &self,
        item: &str,
        index: usize,
        reply: &[u8],
        ext: &str,
        interaction: &Interaction,
    ) -> Result<Option<String>> {
        check_key("item key", item)?;
        check_reply(reply)?;
        check_key("ExternalId", ext)?;
        check_interaction(interaction)?;
        self.write(|t, now, limits| {
            t.record(item, as_key(index), reply, now, limits)?;
            Ok(t.remember(ext, interaction, limits.max_external_ids)?.pop())
        })
    }

    /// [`CaptureState::remember`] for each pair, in one transaction;
    /// returns the ExternalIds forgotten to make room.
    pub fn remember_all(&self, pairs: &[(String, Interaction)]) -> Result<Vec<String>> {
        for (ext, interaction) in pairs {
            check_key("ExternalId", ext)?;
            check_interaction(interaction)?;
        }
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|t, _, limits| {
            let mut forgotten = Vec::new();
            for (ext, interaction) in pairs {
                forgotten.extend(t.remember(ext, interaction, limits.max_external_ids)?);
            }
            Ok(forgotten)
        })
    }

    /// The answers recorded for `item`, by operation index: what to replay
    /// when the item is processed again. Empty for an item never recorded,
    /// finished or dropped.
    pub fn recorded(&self, item: &str) -> Result<BTreeMap<usize, Vec<u8>>> {
        self.read(|tx| {
            let table = tx.open_table(REPLIES)?;
            let mut out = BTreeMap::new();
            for entry in table.range((item, 0)..=(item, u64::MAX))? {
                let (k, v) = entry?;
                let index = usize::try_from(k.value().1).context("operation index")?;
                out.insert(index, v.value().to_vec());
            }
            Ok(out)
        })
    }

    /// Drops `item`'s journal entries: it was finalized and will not be
    /// processed again.
    pub fn finish(&self, item: &str) -> Result<()> {
        self.write(|t, _, _| Ok(t.drop_item(item)?))
    }

    /// What the state holds now.
    pub fn usage(&self) -> Result<Usage> {
        self.read(|tx| {
            Ok(Usage {
                external_ids: tx.open_table(EXT)?.len()?,
                journal_items: tx.open_table(ITEMS)?.len()?,
                journal_bytes: tx
                    .open_table(META)?
                    .get(JOURNAL_BYTES)?
                    .map_or(0, |v| v.value()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_at(dir: &Path, limits: Limits, now: u64) -> CaptureState {
        CaptureState::open_with(dir, limits, Clock::Manual(AtomicU64::new(now))).unwrap()
    }

    fn interaction(id: &str) -> Interaction {
        Interaction {
            interaction_id: id.to_string(),
            node_id: "node-a".into(),
            tenant: 101,
        }
    }

    fn replies(pairs: &[(usize, &[u8])]) -> BTreeMap<usize, Vec<u8>> {
        pairs.iter().map(|(i, b)| (*i, b.to_vec())).collect()
    }

    #[test]
    fn deferred_writes_are_seen_at_once_and_kept_by_a_sync_or_the_close() {
        let dir = tempfile::tempdir().unwrap();
        let state = CaptureState::open(dir.path(), Limits::default()).unwrap();
        state.defer_durability();
        state.remember("ord-1", &interaction("i-1")).unwrap();
        state.record("kafka:t/0/7", 0, b"reply").unwrap();
        assert_eq!(state.lookup("ord-1").unwrap(), Some(interaction("i-1")));
        state.sync().unwrap();
        state.remember("ord-2", &interaction("i-2")).unwrap();
        // No sync after ord-2: closing makes it durable.
        drop(state);
        let state = CaptureState::open(dir.path(), Limits::default()).unwrap();
        assert_eq!(state.lookup("ord-1").unwrap(), Some(interaction("i-1")));
        assert_eq!(state.lookup("ord-2").unwrap(), Some(interaction("i-2")));
        assert_eq!(
            state.recorded("kafka:t/0/7").unwrap()[&0],
            b"reply".to_vec()
        );
    }

    #[test]
    fn external_ids_survive_closing_and_reopening_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let state = CaptureState::open(dir.path(), Limits::default()).unwrap();
        assert_eq!(state.path(), dir.path().join(FILE_NAME));
        assert_eq!(state.remember("ord-88", &interaction("i-1")).unwrap(), None);
        assert_eq!(state.remember("ord-89", &interaction("i-2")).unwrap(), None);
        drop(state);

        let state = CaptureState::open(dir.path(), Limits::default()).unwrap();
        assert_eq!(state.lookup("ord-88").unwrap(), Some(interaction("i-1")));
        assert_eq!(state.lookup("ord-90").unwrap(), None);
        // Remembering again replaces what it named.
        let moved = Interaction {
            node_id: "node-b".into(),
            ..interaction("i-3")
        };
        state.remember("ord-88", &moved).unwrap();
        assert!(state.forget("ord-89").unwrap());
        assert!(!state.forget("ord-89").unwrap());
        drop(state);

        let state = CaptureState::open(dir.path(), Limits::default()).unwrap();
        assert_eq!(state.lookup("ord-88").unwrap(), Some(moved));
        assert_eq!(state.lookup("ord-89").unwrap(), None);
        assert_eq!(state.usage().unwrap().external_ids, 1);
    }

    #[test]
    fn when_external_ids_are_full_the_one_remembered_longest_ago_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_external_ids: 3,
            ..Limits::default()
        };
        let state = CaptureState::open(dir.path(), limits).unwrap();
        for ext in ["a", "b", "c"] {
            assert_eq!(state.remember(ext, &interaction(ext)).unwrap(), None);
        }
        // Remembering "a" again makes it the newest: "b" goes first.
        assert_eq!(state.remember("a", &interaction("a2")).unwrap(), None);
        assert_eq!(
            state.remember("d", &interaction("d")).unwrap(),
            Some("b".to_string())
        );
        assert_eq!(state.lookup("b").unwrap(), None);
        for ext in ["a", "c", "d"] {
            assert!(state.lookup(ext).unwrap().is_some(), "{ext}");
        }
        assert_eq!(state.usage().unwrap().external_ids, 3);
        drop(state);

        // A bound lowered in the config applies at the next open.
        let state = CaptureState::open(
            dir.path(),
            Limits {
                max_external_ids: 2,
                ..limits
            },
        )
        .unwrap();
        assert_eq!(state.usage().unwrap().external_ids, 2);
        assert_eq!(state.lookup("c").unwrap(), None);
        assert_eq!(state.lookup("a").unwrap(), Some(interaction("a2")));
    }

    #[test]
    fn the_journal_replays_after_reopening_and_a_finished_item_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let state = CaptureState::open(dir.path(), Limits::default()).unwrap();
        state.record("sha-1 orders.xml", 0, b"submitted").unwrap();
        state.record("sha-1 orders.xml", 2, b"stopped").unwrap();
        state.record("sha-2 other.xml", 0, b"other").unwrap();
        drop(state);

        let state = CaptureState::open(dir.path(), Limits::default()).unwrap();
        assert_eq!(
            state.recorded("sha-1 orders.xml").unwrap(),
            replies(&[(0, b"submitted"), (2, b"stopped")])
        );
        // Recording an index again replaces its answer, and its bytes.
        state.record("sha-1 orders.xml", 2, b"held").unwrap();
        assert_eq!(
            state.usage().unwrap(),
            Usage {
                external_ids: 0,
                journal_items: 2,
                journal_bytes: (b"submitted".len() + b"held".len() + b"other".len()) as u64,
            }
        );
        state.finish("sha-1 orders.xml").unwrap();
        drop(state);

        let state = CaptureState::open(dir.path(), Limits::default()).unwrap();
        assert!(state.recorded("sha-1 orders.xml").unwrap().is_empty());
        assert_eq!(
            state.recorded("sha-2 other.xml").unwrap(),
            replies(&[(0, b"other")])
        );
        assert_eq!(state.usage().unwrap().journal_items, 1);
        assert_eq!(state.usage().unwrap().journal_bytes, 5);
        // Finishing an unknown item is no error.
        state.finish("never").unwrap();
    }

    #[test]
    fn a_submit_records_its_answer_and_its_external_id_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            journal_max_mb: 1,
            ..Limits::default()
        };
        let state = CaptureState::open(dir.path(), limits).unwrap();
        state
            .record_submit("item", 0, b"submitted", "ord-88", &interaction("i-1"))
            .unwrap();
        drop(state);
        let state = CaptureState::open(dir.path(), limits).unwrap();
        assert_eq!(
            state.recorded("item").unwrap(),
            replies(&[(0, b"submitted")])
        );
        assert_eq!(state.lookup("ord-88").unwrap(), Some(interaction("i-1")));

        // The item's answers would pass the journal's MiB: the submit is
        // refused, and its ExternalId is not remembered either.
        let big = vec![7u8; 600 << 10];
        state.record("item", 1, &big).unwrap();
        let err = state
            .record_submit("item", 2, &big, "ord-89", &interaction("i-2"))
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("journal-max-mb"), "{text}");
        assert!(text.contains(FILE_NAME), "{text}");
        assert_eq!(state.lookup("ord-89").unwrap(), None);
        assert_eq!(state.recorded("item").unwrap().len(), 2);
    }

    #[test]
    fn items_untouched_past_their_age_are_swept_and_touching_keeps_one() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            journal_max_age_secs: 1000,
            ..Limits::default()
        };
        let state = open_at(dir.path(), limits, 0);
        state.record("old", 0, b"x").unwrap();
        state.record("touched", 0, b"x").unwrap();
        state.set_now(100);
        state.record("young", 0, b"x").unwrap();
        state.set_now(900);
        state.record("touched", 1, b"y").unwrap();
        // At 1050 "old" (touched at 0) is past its age; a write sweeps it.
        state.set_now(1050);
        state.record("new", 0, b"x").unwrap();
        assert!(state.recorded("old").unwrap().is_empty());
        for item in ["touched", "young", "new"] {
            assert!(!state.recorded(item).unwrap().is_empty(), "{item}");
        }
        drop(state);

        // Opening sweeps every item past its age.
        let state = open_at(dir.path(), limits, 1850);
        assert!(state.recorded("young").unwrap().is_empty());
        assert_eq!(
            state.recorded("touched").unwrap(),
            replies(&[(0, b"x"), (1, b"y")])
        );
        assert_eq!(state.recorded("new").unwrap(), replies(&[(0, b"x")]));
        assert_eq!(state.usage().unwrap().journal_items, 2);
        assert_eq!(state.usage().unwrap().journal_bytes, 3);
    }

    #[test]
    fn a_full_journal_drops_the_item_touched_longest_ago() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            journal_max_items: 2,
            journal_max_mb: 1,
            ..Limits::default()
        };
        let state = CaptureState::open(dir.path(), limits).unwrap();
        state.record("a", 0, b"1").unwrap();
        state.record("b", 0, b"1").unwrap();
        state.record("a", 1, b"2").unwrap();
        // Two items at most: "b" was touched longest ago.
        state.record("c", 0, b"1").unwrap();
        assert!(state.recorded("b").unwrap().is_empty());
        assert_eq!(state.recorded("a").unwrap().len(), 2);
        assert_eq!(state.usage().unwrap().journal_items, 2);

        // One MiB at most: a large answer drops "a" (2 bytes) to make room.
        let big = vec![1u8; (1 << 20) - 2];
        state.record("c", 1, &big).unwrap();
        assert!(state.recorded("a").unwrap().is_empty());
        assert_eq!(state.usage().unwrap().journal_bytes, (1 << 20) - 1);
        // An answer that cannot fit even alone is refused; nothing changes.
        let err = state.record("c", 2, &big).unwrap_err();
        assert!(format!("{err:#}").contains("journal-max-mb"));
        assert_eq!(state.recorded("c").unwrap().len(), 2);
        drop(state);

        // Bounds lowered in the config apply at the next open.
        let state = CaptureState::open(
            dir.path(),
            Limits {
                journal_max_items: 1,
                ..limits
            },
        )
        .unwrap();
        assert_eq!(state.usage().unwrap().journal_items, 1);
    }

    #[test]
    fn bad_keys_and_answers_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let state = CaptureState::open(dir.path(), Limits::default()).unwrap();
        let long = "k".repeat(MAX_KEY + 1);
        let cases = [
            (state.remember("", &interaction("i")), "ExternalId is empty"),
            (
                state.remember(&long, &interaction("i")),
                "ExternalId is 1025 bytes",
            ),
            (
                state.remember("ord", &interaction(&long)),
                "interaction id is 1025 bytes",
            ),
            (
                state.record("", 0, b"x").map(|()| None),
                "item key is empty",
            ),
            (
                state
                    .record("item", 0, &vec![0; MAX_REPLY + 1])
                    .map(|()| None),
                "more than 1048576",
            ),
            (
                state.record_submit("item", 0, b"x", "", &interaction("i")),
                "ExternalId is empty",
            ),
        ];
        for (result, want) in cases {
            let err = format!("{:#}", result.unwrap_err());
            assert!(err.contains(want), "{err}");
        }
        assert_eq!(state.usage().unwrap(), Usage::default());
    }

    #[test]
    fn one_state_file_cannot_be_open_twice() {
        let dir = tempfile::tempdir().unwrap();
        let first = CaptureState::open(dir.path(), Limits::default()).unwrap();
        first.remember("ord-88", &interaction("i-1")).unwrap();
        let err = CaptureState::open(dir.path(), Limits::default()).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("already open"), "{text}");
        assert!(text.contains(&dir.path().join(FILE_NAME).display().to_string()));
        // The first handle is unharmed, and once closed the file opens.
        assert!(first.lookup("ord-88").unwrap().is_some());
        drop(first);
        let again = CaptureState::open(dir.path(), Limits::default()).unwrap();
        assert!(again.lookup("ord-88").unwrap().is_some());
    }

    #[test]
    fn a_file_that_is_not_a_state_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"not a database at all").unwrap();
        let err = format!(
            "{:#}",
            CaptureState::open(dir.path(), Limits::default()).unwrap_err()
        );
        assert!(err.contains(FILE_NAME), "{err}");
        // Nothing was overwritten.
        assert_eq!(
            std::fs::read(dir.path().join(FILE_NAME)).unwrap(),
            b"not a database at all"
        );
    }

    #[test]
    fn limits_read_from_toml_with_defaults_and_are_checked() {
        let limits: Limits = toml::from_str("max-external-ids = 5").unwrap();
        assert_eq!(
            limits,
            Limits {
                max_external_ids: 5,
                ..Limits::default()
            }
        );
        assert!(toml::from_str::<Limits>("max-ids = 5").is_err());
        assert!(
            Limits::default()
                .problems("captures.orders.state")
                .is_empty()
        );
        let bad = Limits {
            max_external_ids: 0,
            journal_max_age_secs: 1,
            ..Limits::default()
        };
        assert_eq!(
            bad.problems("captures.orders.state"),
            [
                "captures.orders.state.max-external-ids: 0 is not in 1..=100000000",
                "captures.orders.state.journal-max-age-secs: 1 is not in 60..=31536000",
            ]
        );
    }
}
