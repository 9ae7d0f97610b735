//! The file adapter: work items arrive as files dropped into a watched
//! `inbound/` directory and leave it for `processed/` or `error/`; replies
//! and notifications are written as files into `notification/`.
//!
//! It knows nothing about codecs, tenants or nodes. [`FileSource::next`]
//! hands out the raw bytes of the next file that is ready, and the pipeline
//! finalizes it through a [`Finalizer`] (which any task may hold) once every
//! operation in it was answered. Until then the file stays in `inbound/`:
//! a file leaves `inbound/` only by a successful move into `processed/` or
//! `error/`, so nothing is lost if the process stops half way.
//!
//! # Finding files
//! Every peer that writes into `inbound/` is treated as hostile, and file
//! system events are treated as hints only:
//! - a [`notify`] watcher on `inbound/` makes the source look at the named
//!   files at once (a look, never a decision);
//! - a full scan runs at the first [`FileSource::next`] and every
//!   [`FileConfig::rescan`], so a missed event, a watcher that could not
//!   start, or a file that was there before start are all found anyway.
//!
//! A file is taken only when its name matches [`FileConfig::pattern`], it
//! has no temporary name (see [`is_temporary_name`]), it is a regular file
//! (not a symlink, a directory or a FIFO), and its size, mtime and inode
//! stayed unchanged for [`FileConfig::settle`]. A file that changes while it
//! is read is put back and waits to settle again.
//!
//! # Bounds
//! - [`FileConfig::max_in_flight`]: files handed out and not finalized yet;
//!   `next()` waits for one to be finalized (or dropped).
//! - [`FileConfig::max_file_bytes`]: a larger file is never read; it is
//!   moved straight to `error/` with a `.reason` giving its size and the
//!   bound.
//! - [`FileConfig::max_pending`]: files remembered while they settle. A
//!   directory holding more is taken in chunks: the rest are counted (for
//!   [`Finalizer::backlog`]) but neither stat'ed nor remembered, and the
//!   next full scan runs as soon as the remembered ones are gone. A full
//!   scan still reads every name in the directory (one `getdents` stream,
//!   no per-file call past the bound).
//! - Watcher events are coalesced into a set of names bounded by
//!   `max_pending`; past it the source falls back to one full scan.
//!
//! # Output names
//! Nothing in `processed/`, `error/` or `notification/` is ever
//! overwritten: `name.xml`, then `name.1.xml`, `name.2.xml`, ... A file in
//! `error/` gets its reason beside it as `<final name>.reason`. Moves are
//! a hard link into the target directory (which fails rather than
//! replace), an fsync of that directory, then the unlink from `inbound/`;
//! where hard links are refused (some file systems, protected hard links)
//! a rename to a name checked free is used instead. Writes into
//! `notification/` go to a dot-named temporary file in the same directory,
//! are fsynced, then linked to a free final name, so a reader never sees a
//! half-written file. All four directories must be on one file system,
//! which [`FileSource::open`] checks.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use glob::{MatchOptions, Pattern};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Files taken by default: the Genesys XML capture format.
pub const DEFAULT_PATTERN: &str = "*.xml";
/// How often `inbound/` is scanned in full by default, whatever the watcher
/// says: the upper bound on how long a file whose event was missed waits.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(5);
/// How long a file must stay unchanged by default before it is taken: long
/// enough for a writer's pauses between writes, short enough not to be
/// noticed by people.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(500);
/// Largest file read into memory by default (16 MiB): a capture file holds
/// a batch of operations, not media.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Files handed out and not finalized yet, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// Files remembered while they settle, by default.
pub const DEFAULT_MAX_PENDING: usize = 4096;

/// A file that could not be moved out of `inbound/` (or whose move failed
/// after it was handed out) is looked at again after this long, unless it
/// changes first.
const STUCK_RETRY: Duration = Duration::from_secs(60);
/// Suffixes tried for a free output name before giving up.
const MAX_SUFFIX: u32 = 100_000;
/// Longest notification stem accepted: leaves room for a suffix and an
/// extension within the usual 255-byte name limit.
const MAX_STEM_BYTES: usize = 200;
/// Longest notification extension accepted.
const MAX_EXTENSION_BYTES: usize = 16;
/// Name endings that writers use while a file is still being written.
const TEMP_SUFFIXES: &[&str] = &[
    ".tmp",
    ".part",
    ".partial",
    ".crdownload",
    ".filepart",
    ".swp",
];

/// Where the file capture point keeps its files and how it takes them.
///
/// Plain data: the capture configuration (`[captures.*]`) builds one, and
/// [`FileSource::open`] validates it.
#[derive(Clone, Debug)]
pub struct FileConfig {
    /// Watched for new files.
    pub inbound: PathBuf,
    /// Files whose every operation was answered.
    pub processed: PathBuf,
    /// Files that could not be parsed or were refused, each with a
    /// `.reason` file beside it.
    pub error: PathBuf,
    /// Replies and notifications written as files.
    pub notification: PathBuf,
    /// Glob on the file name (not the path), e.g. `*.xml`; a leading dot
    /// must be literal, so hidden files never match `*`.
    pub pattern: String,
    /// Full scan interval, events or not.
    pub rescan: Duration,
    /// How long size, mtime and inode must stay unchanged before a file is
    /// taken. Writers that pause longer should write under a temporary
    /// name and rename.
    pub settle: Duration,
    /// Largest file read; larger ones go to `error/` unread.
    pub max_file_bytes: u64,
    /// Files handed out and not finalized yet.
    pub max_in_flight: usize,
    /// Files remembered while they settle (see the module docs).
    pub max_pending: usize,
    /// Whether to watch `inbound/` for events. Turn it off where events do
    /// not arrive (network file systems): the rescan alone finds files.
    pub watch: bool,
}

impl FileConfig {
    /// The four directories under `root` (`inbound`, `processed`, `error`,
    /// `notification`) and every other setting at its default.
    pub fn under(root: impl AsRef<Path>) -> FileConfig {
        let root = root.as_ref();
        FileConfig {
            inbound: root.join("inbound"),
            processed: root.join("processed"),
            error: root.join("error"),
            notification: root.join("notification"),
            pattern: DEFAULT_PATTERN.to_owned(),
            rescan: DEFAULT_RESCAN,
            settle: DEFAULT_SETTLE,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_pending: DEFAULT_MAX_PENDING,
            watch: true,
        }
    }
}

/// Why a file could not be finalized or a notification written. The file
/// concerned stays where it was (in `inbound/` for a move).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The move out of `inbound/` failed; the file is still there.
    #[error("cannot move {name} from {from} to {to}: {source}")]
    Move {
        /// The file's name in `inbound/`.
        name: String,
        /// The directory it is still in.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// Writing a file (a notification, a `.reason`, a copy) failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file that could not be written.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// Every suffix up to the limit is taken in the target directory.
    #[error("no free name for {name} in {dir} after {MAX_SUFFIX} suffixes")]
    NoFreeName {
        /// The name wanted.
        name: String,
        /// The directory that is full of it.
        dir: PathBuf,
    },
    /// A notification name that would escape its directory, look like a
    /// temporary file, or is empty or too long.
    #[error(
        "invalid notification name {stem:?}.{extension:?}: the stem must be 1..={MAX_STEM_BYTES} bytes without '/', '\\\\' or NUL and not start with '.' or '~'; the extension 1..={MAX_EXTENSION_BYTES} ASCII letters or digits"
    )]
    InvalidName {
        /// The stem given.
        stem: String,
        /// The extension given.
        extension: String,
    },
}

/// Whether `name` looks like a file still being written: it starts with
/// `.` or `~`, or ends with `.tmp`, `.part`, `.partial`, `.crdownload`,
/// `.filepart` or `.swp` (any case). Such files are never taken, whatever
/// the pattern says.
pub fn is_temporary_name(name: &str) -> bool {
    if name.starts_with('.') || name.starts_with('~') {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    TEMP_SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// Which file a name pointed to when it was taken, so that a file replaced
/// under the same name is never mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(m: &Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// What a look at a file saw; any change restarts its settle time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
    id: FileId,
}

impl Seen {
    fn of(m: &Metadata) -> Seen {
        Seen {
            size: m.len(),
            mtime: m.modified().ok(),
            id: FileId::of(m),
        }
    }
}

/// State shared by the source, the finalizers and every [`Taken`].
struct Shared {
    cfg: FileConfig,
    pattern: Pattern,
    permits: Arc<Semaphore>,
    /// Names handed out and not finalized or dropped yet.
    in_flight: Mutex<HashSet<String>>,
    /// Names whose finalization failed, for the scanner to hold back for
    /// [`STUCK_RETRY`]. At most one per `Taken`, so bounded by
    /// `max_in_flight`.
    stuck: Mutex<Vec<String>>,
    backlog: AtomicUsize,
    temp_counter: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind,
    // still consistent enough to go on with.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn eligible_name(&self, name: &str) -> bool {
        !is_temporary_name(name)
            && self.pattern.matches_with(
                name,
                MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: true,
                    require_literal_leading_dot: true,
                },
            )
    }

    fn is_in_flight(&self, name: &str) -> bool {
        lock(&self.in_flight).contains(name)
    }

    /// Moves `inbound/<name>` (still the file `id`) into `dir` under a free
    /// name, with `reason` beside it when given. When the name in
    /// `inbound/` now points to another file (a peer replaced it), `copy`
    /// is written instead and the newcomer is left alone.
    fn move_out(
        &self,
        name: &str,
        id: FileId,
        dir: &Path,
        reason: Option<&str>,
        copy: Option<&[u8]>,
    ) -> Result<PathBuf, FileError> {
        let src = self.cfg.inbound.join(name);
        let move_err = |source: io::Error| FileError::Move {
            name: name.to_owned(),
            from: self.cfg.inbound.clone(),
            to: dir.to_owned(),
            source,
        };
        let current = fs::symlink_metadata(&src).map(|m| FileId::of(&m));
        if current.as_ref().ok() != Some(&id) {
            let Some(bytes) = copy else {
                return Err(move_err(match current {
                    Err(e) => e,
                    Ok(_) => io::Error::other("the file was replaced under the same name"),
                }));
            };
            tracing::warn!(
                file = name,
                "the file was replaced or removed in inbound while it was processed; \
                 keeping the bytes that were processed, leaving the newcomer"
            );
            return self.write_new(dir, name, bytes, reason);
        }
        // A move a crash cut short after the link: the same file is in
        // `dir` already. Finish that move instead of making a second copy.
        if let Some(dst) = linked_already(id, dir, name) {
            if let Some(reason) = reason
                && fs::symlink_metadata(reason_path(&dst)).is_err()
            {
                self.write_reason(&dst, reason)?;
            }
            match fs::remove_file(&src) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(move_err(e)),
                _ => {}
            }
            tracing::info!(file = name, to = %dst.display(), "finished a move a stop had interrupted");
            return Ok(dst);
        }
        let (dst, renamed) = place(&src, dir, name, reason.is_some()).map_err(|e| match e {
            Placed::Io(e) => move_err(e),
            Placed::Full => FileError::NoFreeName {
                name: name.to_owned(),
                dir: dir.to_owned(),
            },
        })?;
        // Puts things back as they were: the file in inbound/ only.
        let undo = |e: FileError| {
            if renamed {
                if let Err(back) = fs::rename(&dst, &src) {
                    tracing::error!(file = name, at = %dst.display(), error = %back,
                        "cannot put the file back into inbound; it stays where it is");
                }
            } else {
                let _ = fs::remove_file(&dst);
            }
            e
        };
        sync_dir(dir).map_err(|e| undo(move_err(e)))?;
        if let Some(reason) = reason {
            self.write_reason(&dst, reason).map_err(undo)?;
        }
        match fs::remove_file(&src) {
            // Already gone: the hard link fell back to a rename.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                if reason.is_some() {
                    let _ = fs::remove_file(reason_path(&dst));
                }
                // Only a hard link can get here (a rename left no `src`).
                return Err(undo(move_err(e)));
            }
            Ok(()) => {}
        }
        Ok(dst)
    }

    /// Writes `bytes` as a new file in `dir` under a free name derived from
    /// `name`, atomically, with `reason` beside it when given.
    fn write_new(
        &self,
        dir: &Path,
        name: &str,
        bytes: &[u8],
        reason: Option<&str>,
    ) -> Result<PathBuf, FileError> {
        let tmp = self.write_temp(dir, bytes)?;
        let placed = place(&tmp, dir, name, reason.is_some());
        let _ = fs::remove_file(&tmp);
        let (dst, _) = placed.map_err(|e| match e {
            Placed::Io(source) => FileError::Write {
                path: dir.join(name),
                source,
            },
            Placed::Full => FileError::NoFreeName {
                name: name.to_owned(),
                dir: dir.to_owned(),
            },
        })?;
        if let Some(reason) = reason
            && let Err(e) = self.write_reason(&dst, reason)
        {
            let _ = fs::remove_file(&dst);
            return Err(e);
        }
        sync_dir(dir).map_err(|source| FileError::Write {
            path: dst.clone(),
            source,
        })?;
        Ok(dst)
    }

    /// Writes `<dst>.reason`, whose name [`place`] made sure was free.
    fn write_reason(&self, dst: &Path, reason: &str) -> Result<(), FileError> {
        let dir = dst.parent().unwrap_or(Path::new("."));
        let path = reason_path(dst);
        let mut text = reason.to_owned();
        text.push('\n');
        let tmp = self.write_temp(dir, text.as_bytes())?;
        fs::rename(&tmp, &path).map_err(|source| {
            let _ = fs::remove_file(&tmp);
            FileError::Write { path, source }
        })
    }

    /// A dot-named file in `dir` holding `bytes`, fsynced.
    fn write_temp(&self, dir: &Path, bytes: &[u8]) -> Result<PathBuf, FileError> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".wasp-{}-{n}.tmp", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        match result {
            Ok(()) => Ok(path),
            Err(source) => {
                let _ = fs::remove_file(&path);
                Err(FileError::Write { path, source })
            }
        }
    }
}

enum Placed {
    Io(io::Error),
    Full,
}

/// `name` with suffix `n` before its extension: `a.xml`, `a.1.xml`, ...
fn suffixed(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{n}.{ext}"),
        _ => format!("{name}.{n}"),
    }
}

/// The name in `dir` that is the very file `id` (a hard link made by a
/// move that did not get to unlink its source), if any.
fn linked_already(id: FileId, dir: &Path, name: &str) -> Option<PathBuf> {
    for n in 0..MAX_SUFFIX {
        let dst = dir.join(suffixed(name, n));
        match fs::symlink_metadata(&dst) {
            Ok(m) if FileId::of(&m) == id => return Some(dst),
            Ok(_) => continue,
            // Names are given in order; a gap may only be a name skipped
            // because its `.reason` was taken.
            Err(_) if fs::symlink_metadata(reason_path(&dst)).is_ok() => continue,
            Err(_) => return None,
        }
    }
    None
}

fn reason_path(dst: &Path) -> PathBuf {
    let mut s = dst.as_os_str().to_owned();
    s.push(".reason");
    PathBuf::from(s)
}

/// Gives `src` a free name in `dir` derived from `name`, never replacing
/// anything: a hard link fails if the name exists. With `with_reason`, the
/// `.reason` name beside it must be free too. Returns the new path and
/// whether `src` was renamed there (the fallback where hard links are
/// refused) rather than linked (`src` still in place).
fn place(src: &Path, dir: &Path, name: &str, with_reason: bool) -> Result<(PathBuf, bool), Placed> {
    for n in 0..MAX_SUFFIX {
        let dst = dir.join(suffixed(name, n));
        if with_reason && fs::symlink_metadata(reason_path(&dst)).is_ok() {
            continue;
        }
        match fs::hard_link(src, &dst) {
            Ok(()) => return Ok((dst, false)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if link_refused(&e) => {
                // Checked free just now; the window is a rename away.
                if fs::symlink_metadata(&dst).is_ok() {
                    continue;
                }
                return fs::rename(src, &dst)
                    .map(|()| (dst, true))
                    .map_err(Placed::Io);
            }
            Err(e) => return Err(Placed::Io(e)),
        }
    }
    Err(Placed::Full)
}

/// Errors for which a hard link is not possible here but a rename may be.
fn link_refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK)
        )
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Wake-ups from the watcher: a coalescing signal and the names it saw.
struct Wake {
    notify: Notify,
    dirty: Mutex<Dirty>,
    cap: usize,
    warned: AtomicBool,
}

#[derive(Default)]
struct Dirty {
    names: HashSet<OsString>,
    /// More names than the bound, or an event that lost names: do a full
    /// scan instead.
    full: bool,
}

impl Wake {
    fn event(&self, result: notify::Result<notify::Event>) {
        {
            let mut dirty = lock(&self.dirty);
            match result {
                Ok(event) => {
                    // Our own reads show up as access events: only a writer
                    // closing a file says something new.
                    if let EventKind::Access(kind) = event.kind
                        && kind != AccessKind::Close(AccessMode::Write)
                        && !event.need_rescan()
                    {
                        return;
                    }
                    if event.need_rescan() {
                        dirty.full = true;
                    }
                    for path in event.paths {
                        if let Some(name) = path.file_name()
                            && !dirty.full
                        {
                            if dirty.names.len() >= self.cap {
                                dirty.full = true;
                                dirty.names.clear();
                            } else {
                                dirty.names.insert(name.to_owned());
                            }
                        }
                    }
                }
                Err(e) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "inbound watcher error; relying on the rescan");
                    }
                    dirty.full = true;
                }
            }
        }
        self.notify.notify_one();
    }

    fn take(&self) -> Dirty {
        std::mem::take(&mut *lock(&self.dirty))
    }
}

/// A file seen in `inbound/`, waiting to settle.
struct Candidate {
    seen: Seen,
    since: Instant,
    generation: u64,
    /// Could not be moved out; held back until then unless it changes.
    stuck_until: Option<Instant>,
}

/// What the scanner remembers between looks. Only [`FileSource::next`]
/// touches it, on a blocking thread.
#[derive(Default)]
struct Scan {
    pending: BTreeMap<String, Candidate>,
    /// The last full scan met more files than `max_pending`.
    truncated: bool,
    generation: u64,
    odd_names: usize,
    dir_error: bool,
}

/// A file read whole and handed out, before the source wraps it in a
/// [`Taken`].
struct Found {
    name: String,
    path: PathBuf,
    bytes: Vec<u8>,
    id: FileId,
    guard: InFlight,
}

enum ReadOutcome {
    Read(Vec<u8>),
    /// It changed while it was opened or read: let it settle again.
    Changed(Seen),
    Failed(io::Error),
}

/// Marks a name as handed out; dropping it gives the name back (the file,
/// if still in `inbound/`, is found again by the next scan).
struct InFlight {
    name: String,
    shared: Arc<Shared>,
    finalize_failed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.shared.in_flight).remove(&self.name);
        if self.finalize_failed {
            lock(&self.shared.stuck).push(std::mem::take(&mut self.name));
        }
    }
}

/// One file handed out by [`FileSource::next`]: its bytes, and a permit of
/// `max_in_flight` that is given back when it is finalized or dropped.
///
/// Dropping it without finalizing leaves the file in `inbound/`, to be
/// handed out again after the next full scan.
pub struct Taken {
    /// The file's name in `inbound/`.
    pub name: String,
    /// Its path in `inbound/` (for messages; it is moved only through a
    /// [`Finalizer`]).
    pub path: PathBuf,
    /// The whole file, at most `max_file_bytes`.
    pub bytes: Vec<u8>,
    id: FileId,
    guard: InFlight,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taken")
            .field("name", &self.name)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Finalizes taken files and writes notifications, from any task: the
/// pipeline works on several files at once. Cheap to clone.
#[derive(Clone)]
pub struct Finalizer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Finalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finalizer")
            .field("inbound", &self.shared.cfg.inbound)
            .finish()
    }
}

impl Finalizer {
    /// Moves a file whose every operation was answered into `processed/`,
    /// under a free name. On error the file stays in `inbound/` and is
    /// held back for a while before it is handed out again.
    pub fn processed(&self, taken: Taken) -> Result<PathBuf, FileError> {
        self.finish(taken, &self.shared.cfg.processed, None)
    }

    /// Moves a file that could not be parsed or was refused into `error/`,
    /// with `reason` in `<final name>.reason` beside it. On error the file
    /// stays in `inbound/` as for [`Finalizer::processed`].
    pub fn failed(&self, taken: Taken, reason: &str) -> Result<PathBuf, FileError> {
        self.finish(taken, &self.shared.cfg.error, Some(reason))
    }

    fn finish(
        &self,
        mut taken: Taken,
        dir: &Path,
        reason: Option<&str>,
    ) -> Result<PathBuf, FileError> {
        let result = self
            .shared
            .move_out(&taken.name, taken.id, dir, reason, Some(&taken.bytes));
        match &result {
            Ok(dst) => tracing::debug!(file = %taken.name, to = %dst.display(), "finalized"),
            Err(e) => {
                tracing::warn!(file = %taken.name, error = %e, "cannot finalize; the file stays in inbound");
                taken.guard.finalize_failed = true;
            }
        }
        result
    }

    /// Writes a reply or notification into `notification/` as
    /// `<stem>.<extension>` (or `<stem>.1.<extension>`, ... if taken),
    /// atomically: readers never see a partial file.
    pub fn write_notification(
        &self,
        stem: &str,
        extension: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, FileError> {
        let stem_ok = !stem.is_empty()
            && stem.len() <= MAX_STEM_BYTES
            && !stem.starts_with(['.', '~'])
            && !stem.contains(['/', '\\', '\0']);
        let ext_ok = !extension.is_empty()
            && extension.len() <= MAX_EXTENSION_BYTES
            && extension.bytes().all(|b| b.is_ascii_alphanumeric());
        if !stem_ok || !ext_ok {
            return Err(FileError::InvalidName {
                stem: stem.to_owned(),
                extension: extension.to_owned(),
            });
        }
        let name = format!("{stem}.{extension}");
        self.shared
            .write_new(&self.shared.cfg.notification, &name, bytes, None)
    }

    /// Matching files waiting in `inbound/` as of the last look, not
    /// counting those in flight.
    pub fn backlog(&self) -> usize {
        self.shared.backlog.load(Ordering::Relaxed)
    }

    /// Files handed out and not finalized yet.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.in_flight).len()
    }
}

/// The taking side of a file capture point: one task calls
/// [`FileSource::next`] in a loop and passes each [`Taken`] on.
pub struct FileSource {
    shared: Arc<Shared>,
    wake: Arc<Wake>,
    scan: Arc<Mutex<Scan>>,
    next_full: Instant,
    /// Kept alive for as long as the source: dropping it stops the events.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("inbound", &self.shared.cfg.inbound)
            .field("watching", &self._watcher.is_some())
            .finish()
    }
}

/// Removes the temporary files (`.wasp-<pid>-<n>.tmp`) another process
/// left in an output directory when it died half way through a write:
/// they never became a file anyone reads. This process's own are kept.
fn remove_stale_temps(dir: &Path) {
    let ours = format!(".wasp-{}-", std::process::id());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(".wasp-") && name.ends_with(".tmp") && !name.starts_with(&ours) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a temporary file a stopped process left")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a temporary file a stopped process left")
                }
            }
        }
    }
}

impl FileSource {
    /// Validates `cfg`, creates the four directories if missing and starts
    /// the watcher (if it cannot start, that is logged once and the rescan
    /// does its work). Nothing is scanned until the first
    /// [`FileSource::next`].
    pub fn open(cfg: FileConfig) -> Result<FileSource> {
        if cfg.max_in_flight == 0 || cfg.max_pending == 0 || cfg.max_file_bytes == 0 {
            bail!("max-in-flight, max-pending and max-file-bytes must be at least 1");
        }
        if cfg.rescan.is_zero() {
            bail!("rescan must be longer than zero");
        }
        if cfg.pattern.contains('/') {
            bail!(
                "pattern {:?} must match a file name, not a path",
                cfg.pattern
            );
        }
        let pattern = Pattern::new(&cfg.pattern)
            .with_context(|| format!("invalid file pattern {:?}", cfg.pattern))?;
        let mut device = None;
        for (what, dir) in [
            ("inbound", &cfg.inbound),
            ("processed", &cfg.processed),
            ("error", &cfg.error),
            ("notification", &cfg.notification),
        ] {
            fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the {what} directory {}", dir.display()))?;
            let meta = fs::metadata(dir)
                .with_context(|| format!("cannot read the {what} directory {}", dir.display()))?;
            if !meta.is_dir() {
                bail!("the {what} path {} is not a directory", dir.display());
            }
            match device {
                None => device = Some(meta.dev()),
                Some(dev) if dev != meta.dev() => bail!(
                    "the {what} directory {} is not on the same file system as {}: \
                     files are moved by rename",
                    dir.display(),
                    cfg.inbound.display()
                ),
                Some(_) => {}
            }
            if what != "inbound" {
                remove_stale_temps(dir);
            }
        }
        let wake = Arc::new(Wake {
            notify: Notify::new(),
            dirty: Mutex::default(),
            cap: cfg.max_pending,
            warned: AtomicBool::new(false),
        });
        let watcher = if cfg.watch {
            start_watcher(&cfg.inbound, &wake)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            permits: Arc::new(Semaphore::new(cfg.max_in_flight)),
            pattern,
            in_flight: Mutex::default(),
            stuck: Mutex::default(),
            backlog: AtomicUsize::new(0),
            temp_counter: AtomicU64::new(0),
            cfg,
        });
        Ok(FileSource {
            shared,
            wake,
            scan: Arc::default(),
            next_full: Instant::now(),
            _watcher: watcher,
        })
    }

    /// The finalizing side, for the tasks that work on taken files.
    pub fn finalizer(&self) -> Finalizer {
        Finalizer {
            shared: self.shared.clone(),
        }
    }

    /// Matching files waiting in `inbound/` as of the last look, not
    /// counting those in flight.
    pub fn backlog(&self) -> usize {
        self.shared.backlog.load(Ordering::Relaxed)
    }

    /// Waits for the next file that is ready and hands it out, read whole;
    /// `None` once `shutdown` is cancelled. Waits first for a permit of
    /// `max_in_flight`. Files too large or unreadable are moved to
    /// `error/` on the way, with their reason.
    ///
    /// Cancel-safe: a file taken by a call that is dropped stays in
    /// `inbound/` and is handed out again.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<Taken> {
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            permit = self.shared.permits.clone().acquire_owned() => permit.ok()?,
        };
        loop {
            let now = Instant::now();
            let dirty = self.wake.take();
            let full = now >= self.next_full;
            if full {
                self.next_full = now + self.shared.cfg.rescan;
            }
            let shared = self.shared.clone();
            let scan = self.scan.clone();
            let (found, ready_at) = tokio::task::spawn_blocking(move || {
                let mut scan = lock(&scan);
                let found = step(&shared, &mut scan, full, dirty);
                // A truncated scan whose remembered files are all gone
                // continues at once with the next chunk.
                let ready_at = if scan.truncated && scan.pending.is_empty() {
                    Some(Instant::now())
                } else {
                    scan.ready_at(shared.cfg.settle)
                };
                (found, ready_at)
            })
            .await
            .expect("the inbound scan does not panic");
            if let Some(found) = found {
                return Some(Taken {
                    name: found.name,
                    path: found.path,
                    bytes: found.bytes,
                    id: found.id,
                    guard: found.guard,
                    _permit: permit,
                });
            }
            let deadline = ready_at.map_or(self.next_full, |t| t.min(self.next_full));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                _ = self.wake.notify.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }
}

fn start_watcher(inbound: &Path, wake: &Arc<Wake>) -> Option<notify::RecommendedWatcher> {
    let sink = wake.clone();
    let started = notify::recommended_watcher(move |event| sink.event(event)).and_then(|mut w| {
        w.watch(inbound, RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match started {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                inbound = %inbound.display(), error = %e,
                "cannot watch the inbound directory; new files are found by the rescan only"
            );
            None
        }
    }
}

impl Scan {
    /// When the earliest remembered file will have settled.
    fn ready_at(&self, settle: Duration) -> Option<Instant> {
        self.pending
            .values()
            .map(|c| {
                let settled = c.since + settle;
                c.stuck_until.map_or(settled, |s| s.max(settled))
            })
            .min()
    }

    /// Records what a look saw; a change restarts the settle time.
    fn observe(&mut self, name: &str, seen: Seen, now: Instant, cap: usize) {
        if let Some(c) = self.pending.get_mut(name) {
            if c.seen != seen {
                c.seen = seen;
                c.since = now;
                c.stuck_until = None;
            }
            c.generation = self.generation;
        } else if self.pending.len() < cap {
            self.pending.insert(
                name.to_owned(),
                Candidate {
                    seen,
                    since: now,
                    generation: self.generation,
                    stuck_until: None,
                },
            );
        } else {
            self.truncated = true;
        }
    }

    fn hold_back(&mut self, name: String, seen: Seen, now: Instant) {
        self.pending.insert(
            name,
            Candidate {
                seen,
                since: now,
                generation: self.generation,
                stuck_until: Some(now + STUCK_RETRY),
            },
        );
    }
}

/// One look at `inbound/` (full or at the names the watcher saw), then the
/// first file that is ready, if any.
fn step(shared: &Arc<Shared>, scan: &mut Scan, full: bool, dirty: Dirty) -> Option<Found> {
    let now = Instant::now();
    for name in std::mem::take(&mut *lock(&shared.stuck)) {
        if let Ok(m) = fs::symlink_metadata(shared.cfg.inbound.join(&name)) {
            scan.hold_back(name, Seen::of(&m), now);
        }
    }
    if full || dirty.full || (scan.truncated && scan.pending.is_empty()) {
        full_scan(shared, scan, now);
    } else {
        for name in dirty.names {
            if let Ok(name) = name.into_string() {
                look(shared, scan, &name, now);
            }
        }
    }
    take_ready(shared, scan, now)
}

fn full_scan(shared: &Shared, scan: &mut Scan, now: Instant) {
    let cfg = &shared.cfg;
    scan.generation += 1;
    scan.truncated = false;
    let entries = match fs::read_dir(&cfg.inbound) {
        Ok(entries) => entries,
        Err(e) => {
            if !scan.dir_error {
                tracing::warn!(inbound = %cfg.inbound.display(), error = %e, "cannot read the inbound directory");
                scan.dir_error = true;
            }
            return;
        }
    };
    if std::mem::take(&mut scan.dir_error) {
        tracing::info!(inbound = %cfg.inbound.display(), "the inbound directory can be read again");
    }
    let mut count = 0usize;
    let mut odd = 0usize;
    for entry in entries {
        let Ok(entry) = entry else { break };
        let Ok(name) = entry.file_name().into_string() else {
            odd += 1;
            continue;
        };
        if !shared.eligible_name(&name)
            || !entry.file_type().is_ok_and(|t| t.is_file())
            || shared.is_in_flight(&name)
        {
            continue;
        }
        count += 1;
        if scan.pending.contains_key(&name) || scan.pending.len() < cfg.max_pending {
            if let Ok(m) = entry.metadata()
                && m.is_file()
            {
                scan.observe(&name, Seen::of(&m), now, cfg.max_pending);
            }
        } else {
            scan.truncated = true;
        }
    }
    let generation = scan.generation;
    scan.pending.retain(|_, c| c.generation == generation);
    shared.backlog.store(count, Ordering::Relaxed);
    if odd != scan.odd_names {
        if odd > 0 {
            tracing::warn!(inbound = %cfg.inbound.display(), files = odd, "files whose names are not UTF-8 are left in inbound");
        }
        scan.odd_names = odd;
    }
}

fn look(shared: &Shared, scan: &mut Scan, name: &str, now: Instant) {
    if !shared.eligible_name(name) || shared.is_in_flight(name) {
        return;
    }
    match fs::symlink_metadata(shared.cfg.inbound.join(name)) {
        Ok(m) if m.is_file() => {
            let known = scan.pending.contains_key(name);
            scan.observe(name, Seen::of(&m), now, shared.cfg.max_pending);
            if !known && scan.pending.contains_key(name) {
                shared.backlog.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => {
            if scan.pending.remove(name).is_some() {
                decrement(&shared.backlog);
            }
        }
    }
}

fn decrement(n: &AtomicUsize) {
    let _ = n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

fn take_ready(shared: &Arc<Shared>, scan: &mut Scan, now: Instant) -> Option<Found> {
    let cfg = &shared.cfg;
    let ready: Vec<String> = scan
        .pending
        .iter()
        .filter(|(_, c)| c.since + cfg.settle <= now && c.stuck_until.is_none_or(|s| s <= now))
        .map(|(name, _)| name.clone())
        .collect();
    for name in ready {
        let Some(candidate) = scan.pending.remove(&name) else {
            continue;
        };
        if shared.is_in_flight(&name) {
            continue;
        }
        let path = cfg.inbound.join(&name);
        let seen = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Seen::of(&m),
            _ => {
                decrement(&shared.backlog);
                continue;
            }
        };
        if seen != candidate.seen {
            scan.observe(&name, seen, now, cfg.max_pending);
            continue;
        }
        if seen.size > cfg.max_file_bytes {
            let reason = format!(
                "the file is {} bytes, over the bound of {} bytes (max-file-bytes); it was not read",
                seen.size, cfg.max_file_bytes
            );
            reject(shared, scan, name, seen, &reason, now);
            continue;
        }
        lock(&shared.in_flight).insert(name.clone());
        let guard = InFlight {
            name: name.clone(),
            shared: shared.clone(),
            finalize_failed: false,
        };
        match read(&path, seen, cfg.max_file_bytes) {
            ReadOutcome::Read(bytes) => {
                decrement(&shared.backlog);
                return Some(Found {
                    name,
                    path,
                    bytes,
                    id: seen.id,
                    guard,
                });
            }
            ReadOutcome::Changed(now_seen) => {
                drop(guard);
                scan.observe(&name, now_seen, now, cfg.max_pending);
            }
            ReadOutcome::Failed(e) => {
                drop(guard);
                let reason = format!("the file cannot be read: {e}");
                reject(shared, scan, name, seen, &reason, now);
            }
        }
    }
    None
}

/// Moves a file that will never be handed out to `error/`; if even that
/// fails, holds it back for a while.
fn reject(shared: &Shared, scan: &mut Scan, name: String, seen: Seen, reason: &str, now: Instant) {
    match shared.move_out(&name, seen.id, &shared.cfg.error, Some(reason), None) {
        Ok(dst) => {
            decrement(&shared.backlog);
            tracing::warn!(file = %name, to = %dst.display(), reason, "moved to error");
        }
        Err(e) => {
            tracing::warn!(file = %name, reason, error = %e, "cannot move to error; the file stays in inbound");
            scan.hold_back(name, seen, now);
        }
    }
}

/// Reads the file that `seen` describes, whole. Opens without following
/// symlinks and without blocking (a FIFO swapped in is refused), checks it
/// is still the same file, and that nothing changed while reading.
fn read(path: &Path, seen: Seen, max: u64) -> ReadOutcome {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return ReadOutcome::Changed(Seen {
                size: 0,
                mtime: None,
                id: FileId { dev: 0, ino: 0 },
            });
        }
        Err(e) => return ReadOutcome::Failed(e),
    };
    let before = match file.metadata() {
        Ok(m) if m.is_file() => Seen::of(&m),
        Ok(m) => {
            return ReadOutcome::Changed(Seen {
                size: m.len(),
                mtime: None,
                id: FileId::of(&m),
            });
        }
        Err(e) => return ReadOutcome::Failed(e),
    };
    if before != seen {
        return ReadOutcome::Changed(before);
    }
    let mut bytes = Vec::with_capacity(seen.size.min(max) as usize);
    if let Err(e) = (&mut file).take(max + 1).read_to_end(&mut bytes) {
        return ReadOutcome::Failed(e);
    }
    match file.metadata() {
        Ok(m) if Seen::of(&m) == seen && bytes.len() as u64 == seen.size => {
            ReadOutcome::Read(bytes)
        }
        Ok(m) => ReadOutcome::Changed(Seen::of(&m)),
        Err(e) => ReadOutcome::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::future::Future;
    use tokio::time::timeout;

    /// Long enough for any test machine; a test that hits it has failed.
    const GUARD: Duration = Duration::from_secs(30);

    fn config(root: &Path) -> FileConfig {
        let mut cfg = FileConfig::under(root);
        cfg.settle = Duration::from_millis(50);
        // Long: a test that needs the rescan sets it.
        cfg.rescan = Duration::from_secs(3600);
        cfg
    }

    async fn take(source: &mut FileSource) -> Taken {
        timeout(GUARD, source.next(&CancellationToken::new()))
            .await
            .expect("a file is handed out")
            .expect("not shut down")
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn temporary_names_and_suffixes() {
        for name in [
            ".a.xml",
            "~a.xml",
            "a.xml.tmp",
            "a.PART",
            "a.partial",
            "a.crdownload",
            "a.filepart",
            "a.swp",
        ] {
            assert!(is_temporary_name(name), "{name}");
        }
        assert!(!is_temporary_name("a.xml"));
        assert_eq!(suffixed("a.xml", 0), "a.xml");
        assert_eq!(suffixed("a.xml", 2), "a.2.xml");
        assert_eq!(suffixed("a.b.xml", 1), "a.b.1.xml");
        assert_eq!(suffixed("noext", 3), "noext.3");
    }

    #[test]
    fn open_creates_the_directories_and_says_why_it_cannot() {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(&root.path().join("deep/capture"));
        FileSource::open(cfg.clone()).unwrap();
        for dir in [&cfg.inbound, &cfg.processed, &cfg.error, &cfg.notification] {
            assert!(dir.is_dir(), "{}", dir.display());
        }

        let mut blocked = config(root.path());
        blocked.error = root.path().join("a-file");
        fs::write(&blocked.error, b"").unwrap();
        let e = FileSource::open(blocked).unwrap_err();
        assert!(format!("{e:#}").contains("a-file"), "{e:#}");

        let mut bad = config(root.path());
        bad.pattern = "[".into();
        let e = FileSource::open(bad).unwrap_err();
        assert!(format!("{e:#}").contains("pattern"), "{e:#}");
    }

    #[tokio::test]
    async fn takes_only_matching_regular_files_with_final_names() {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path());
        fs::create_dir_all(&cfg.inbound).unwrap();
        let junk = [
            ".hidden.xml",
            "~lock.xml",
            "a.xml.tmp",
            "b.xml.part",
            "c.xml.partial",
            "d.xml.crdownload",
            "e.xml.filepart",
            "f.xml.swp",
            "g.txt",
        ];
        for name in junk {
            fs::write(cfg.inbound.join(name), b"<junk/>").unwrap();
        }
        fs::create_dir(cfg.inbound.join("dir.xml")).unwrap();
        let outside = root.path().join("outside.xml");
        fs::write(&outside, b"<secret/>").unwrap();
        std::os::unix::fs::symlink(&outside, cfg.inbound.join("link.xml")).unwrap();
        fs::write(cfg.inbound.join("good.xml"), b"<good/>").unwrap();

        let mut source = FileSource::open(cfg.clone()).unwrap();
        let first = take(&mut source).await;
        assert_eq!(first.name, "good.xml");
        assert_eq!(first.bytes, b"<good/>");
        // Dropped after everything else: had any junk been a candidate, it
        // would have settled first and been handed out before this one.
        fs::write(cfg.inbound.join("sentinel.xml"), b"<s/>").unwrap();
        let second = take(&mut source).await;
        assert_eq!(second.name, "sentinel.xml");
        for name in junk.iter().chain(&["link.xml", "dir.xml"]) {
            assert!(
                fs::symlink_metadata(cfg.inbound.join(name)).is_ok(),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_growing_file_is_taken_only_once_it_is_complete() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = config(root.path());
        cfg.settle = Duration::from_millis(1500);
        let mut source = FileSource::open(cfg.clone()).unwrap();
        let path = cfg.inbound.join("grow.xml");
        let writer = std::thread::spawn(move || {
            let mut f = File::create(&path).unwrap();
            for i in 0..10 {
                writeln!(f, "<chunk n='{i}'/>").unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let taken = take(&mut source).await;
        writer.join().unwrap();
        let expected: String = (0..10).map(|i| format!("<chunk n='{i}'/>\n")).collect();
        assert_eq!(String::from_utf8(taken.bytes).unwrap(), expected);
    }

    /// kill -9 between the link into processed/ (or error/) and the unlink
    /// from inbound/: finishing the file again completes that move instead
    /// of making a second copy; a temporary file the dead process left in
    /// an output directory is removed at the next open.
    #[tokio::test]
    async fn a_move_cut_short_by_a_crash_is_finished_not_repeated() {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path());
        fs::create_dir_all(&cfg.inbound).unwrap();
        fs::create_dir_all(&cfg.notification).unwrap();
        fs::write(cfg.inbound.join("a.xml"), b"<a/>").unwrap();
        fs::write(cfg.inbound.join("b.xml"), b"<b/>").unwrap();
        fs::create_dir_all(&cfg.processed).unwrap();
        fs::create_dir_all(&cfg.error).unwrap();
        // What the crashed process left: links, and a temp from pid 1.
        fs::hard_link(cfg.inbound.join("a.xml"), cfg.processed.join("a.xml")).unwrap();
        fs::hard_link(cfg.inbound.join("b.xml"), cfg.error.join("b.xml")).unwrap();
        fs::write(cfg.notification.join(".wasp-1-7.tmp"), b"half").unwrap();
        let mut source = FileSource::open(cfg.clone()).unwrap();
        assert!(
            names(&cfg.notification).is_empty(),
            "the stale temp is gone"
        );
        let finalizer = source.finalizer();
        for _ in 0..2 {
            let taken = take(&mut source).await;
            match taken.name.as_str() {
                "a.xml" => {
                    let at = finalizer.processed(taken).unwrap();
                    assert_eq!(at, cfg.processed.join("a.xml"));
                }
                _ => {
                    let at = finalizer.failed(taken, "bad").unwrap();
                    assert_eq!(at, cfg.error.join("b.xml"));
                }
            }
        }
        assert!(names(&cfg.inbound).is_empty());
        assert_eq!(names(&cfg.processed), ["a.xml"]);
        assert_eq!(names(&cfg.error), ["b.xml", "b.xml.reason"]);
    }

    #[tokio::test]
    async fn files_present_before_open_are_found_by_the_start_scan() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = config(root.path());
        cfg.watch = false;
        fs::create_dir_all(&cfg.inbound).unwrap();
        fs::write(cfg.inbound.join("early.xml"), b"<e/>").unwrap();
        let mut source = FileSource::open(cfg).unwrap();
        assert_eq!(take(&mut source).await.name, "early.xml");
    }

    #[tokio::test]
    async fn a_file_dropped_while_running_is_found_by_the_watcher() {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path()); // rescan: an hour
        fs::create_dir_all(&cfg.inbound).unwrap();
        fs::write(cfg.inbound.join("a.xml"), b"<a/>").unwrap();
        let mut source = FileSource::open(cfg.clone()).unwrap();
        assert!(source._watcher.is_some(), "the watcher started");
        // The start scan has run once this is handed out.
        let a = take(&mut source).await;
        assert_eq!(a.name, "a.xml");
        fs::write(cfg.inbound.join(".b.xml.tmp"), b"<b/>").unwrap();
        fs::rename(cfg.inbound.join(".b.xml.tmp"), cfg.inbound.join("b.xml")).unwrap();
        assert_eq!(take(&mut source).await.name, "b.xml");
    }

    #[tokio::test]
    async fn without_the_watcher_the_rescan_finds_new_files() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = config(root.path());
        cfg.watch = false;
        cfg.rescan = Duration::from_millis(100);
        fs::create_dir_all(&cfg.inbound).unwrap();
        fs::write(cfg.inbound.join("a.xml"), b"<a/>").unwrap();
        let mut source = FileSource::open(cfg.clone()).unwrap();
        assert!(source._watcher.is_none());
        let a = take(&mut source).await;
        assert_eq!(a.name, "a.xml");
        fs::write(cfg.inbound.join("b.xml"), b"<b/>").unwrap();
        assert_eq!(take(&mut source).await.name, "b.xml");
    }

    #[tokio::test]
    async fn finalized_files_never_overwrite_and_errors_carry_their_reason() {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path());
        for dir in [&cfg.inbound, &cfg.processed, &cfg.error] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(cfg.processed.join("a.xml"), b"old 0").unwrap();
        fs::write(cfg.processed.join("a.1.xml"), b"old 1").unwrap();
        // A stale reason with no file: its name is not reused either.
        fs::write(cfg.error.join("b.xml.reason"), b"stale").unwrap();
        fs::write(cfg.inbound.join("a.xml"), b"new a").unwrap();
        fs::write(cfg.inbound.join("b.xml"), b"new b").unwrap();
        let mut source = FileSource::open(cfg.clone()).unwrap();
        let finalizer = source.finalizer();

        let a = take(&mut source).await;
        assert_eq!(a.name, "a.xml");
        let dst = finalizer.processed(a).unwrap();
        assert_eq!(dst, cfg.processed.join("a.2.xml"));
        assert_eq!(fs::read(&dst).unwrap(), b"new a");
        assert_eq!(fs::read(cfg.processed.join("a.xml")).unwrap(), b"old 0");
        assert_eq!(fs::read(cfg.processed.join("a.1.xml")).unwrap(), b"old 1");

        let b = take(&mut source).await;
        // Finalized from another task, as the pipeline does.
        let other = finalizer.clone();
        let dst = tokio::spawn(async move { other.failed(b, "no such queue: Q9") })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dst, cfg.error.join("b.1.xml"));
        assert_eq!(fs::read(&dst).unwrap(), b"new b");
        assert_eq!(
            fs::read_to_string(cfg.error.join("b.1.xml.reason")).unwrap(),
            "no such queue: Q9\n"
        );
        assert_eq!(fs::read(cfg.error.join("b.xml.reason")).unwrap(), b"stale");
        assert_eq!(names(&cfg.inbound), Vec::<String>::new());
        assert_eq!(finalizer.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_failed_move_leaves_the_file_in_inbound_and_says_why() {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path());
        let mut source = FileSource::open(cfg.clone()).unwrap();
        fs::write(cfg.inbound.join("a.xml"), b"<a/>").unwrap();
        let a = take(&mut source).await;
        fs::remove_dir(&cfg.processed).unwrap();
        fs::write(&cfg.processed, b"in the way").unwrap();
        let e = source.finalizer().processed(a).unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains("a.xml") && message.contains("processed"),
            "{message}"
        );
        assert_eq!(fs::read(cfg.inbound.join("a.xml")).unwrap(), b"<a/>");
    }

    #[tokio::test]
    async fn a_file_replaced_while_in_flight_keeps_both_versions() {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path());
        let mut source = FileSource::open(cfg.clone()).unwrap();
        fs::write(cfg.inbound.join("a.xml"), b"first").unwrap();
        let a = take(&mut source).await;
        fs::write(cfg.inbound.join("next"), b"second").unwrap();
        fs::rename(cfg.inbound.join("next"), cfg.inbound.join("a.xml")).unwrap();
        let dst = source.finalizer().processed(a).unwrap();
        assert_eq!(fs::read(dst).unwrap(), b"first");
        assert_eq!(fs::read(cfg.inbound.join("a.xml")).unwrap(), b"second");
        // The newcomer is a file of its own and is handed out in turn.
        let again = take(&mut source).await;
        assert_eq!(
            (again.name.as_str(), again.bytes.as_slice()),
            ("a.xml", &b"second"[..])
        );
    }

    #[tokio::test]
    async fn a_file_over_the_bound_goes_to_error_unread() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = config(root.path());
        cfg.max_file_bytes = 1024 * 1024;
        fs::create_dir_all(&cfg.inbound).unwrap();
        // Sparse: a GiB on paper, nothing on disk.
        File::create(cfg.inbound.join("big.xml"))
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        fs::write(cfg.inbound.join("small.xml"), b"<s/>").unwrap();
        let mut source = FileSource::open(cfg.clone()).unwrap();
        // "big" sorts first: it is dealt with on the way to "small".
        assert_eq!(take(&mut source).await.name, "small.xml");
        assert_eq!(
            fs::metadata(cfg.error.join("big.xml")).unwrap().len(),
            1 << 30
        );
        let reason = fs::read_to_string(cfg.error.join("big.xml.reason")).unwrap();
        assert!(
            reason.contains("1073741824") && reason.contains("1048576"),
            "{reason}"
        );
        assert!(!cfg.inbound.join("big.xml").exists());
    }

    #[tokio::test]
    async fn max_in_flight_bounds_next_until_one_is_finalized() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = config(root.path());
        cfg.max_in_flight = 2;
        fs::create_dir_all(&cfg.inbound).unwrap();
        for name in ["a.xml", "b.xml", "c.xml"] {
            fs::write(cfg.inbound.join(name), name).unwrap();
        }
        let mut source = FileSource::open(cfg.clone()).unwrap();
        let finalizer = source.finalizer();
        let a = take(&mut source).await;
        let _b = take(&mut source).await;
        assert_eq!(finalizer.in_flight(), 2);
        let shutdown = CancellationToken::new();
        let mut third = Box::pin(source.next(&shutdown));
        // Without a permit it cannot make progress at all.
        assert!(
            third
                .as_mut()
                .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
                .is_pending(),
            "a third file while two are in flight"
        );
        finalizer.processed(a).unwrap();
        let c = timeout(GUARD, third).await.unwrap().unwrap();
        assert_eq!(c.name, "c.xml");
    }

    #[tokio::test]
    async fn a_dropped_file_comes_back_and_shutdown_ends_next() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = config(root.path());
        cfg.watch = false;
        cfg.rescan = Duration::from_millis(100);
        cfg.max_in_flight = 1;
        let mut source = FileSource::open(cfg.clone()).unwrap();
        fs::write(cfg.inbound.join("a.xml"), b"<a/>").unwrap();
        drop(take(&mut source).await);
        let again = take(&mut source).await;
        assert_eq!(again.name, "a.xml");
        source.finalizer().processed(again).unwrap();

        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(source.next(&shutdown).await.is_none());
    }

    #[tokio::test]
    async fn a_thousand_files_are_each_handed_out_exactly_once() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = config(root.path());
        cfg.max_in_flight = 2000;
        // Ten chunks' worth: the pending bound is hit and the directory is
        // taken chunk by chunk.
        cfg.max_pending = 100;
        let mut source = FileSource::open(cfg.clone()).unwrap();
        let want: HashSet<String> = (0..1000).map(|i| format!("f{i:04}.xml")).collect();
        for name in &want {
            fs::write(cfg.inbound.join(name), name).unwrap();
        }
        let mut taken = Vec::new();
        let mut got = HashSet::new();
        for _ in 0..1000 {
            let t = take(&mut source).await;
            assert_eq!(t.bytes, t.name.as_bytes());
            assert!(got.insert(t.name.clone()), "{} handed out twice", t.name);
            taken.push(t);
        }
        assert_eq!(got, want);
        let finalizer = source.finalizer();
        assert_eq!(finalizer.in_flight(), 1000);
        for t in taken {
            finalizer.processed(t).unwrap();
        }
        assert_eq!(names(&cfg.processed).len(), 1000);
        assert!(names(&cfg.inbound).is_empty());
    }

    #[test]
    fn notifications_are_written_whole_under_free_names() {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path());
        let source = FileSource::open(cfg.clone()).unwrap();
        let finalizer = source.finalizer();
        let first = finalizer
            .write_notification("reply-1", "xml", b"<one/>")
            .unwrap();
        let second = finalizer
            .write_notification("reply-1", "xml", b"<two/>")
            .unwrap();
        assert_eq!(first, cfg.notification.join("reply-1.xml"));
        assert_eq!(second, cfg.notification.join("reply-1.1.xml"));
        assert_eq!(fs::read(&first).unwrap(), b"<one/>");
        assert_eq!(fs::read(&second).unwrap(), b"<two/>");
        // No temporary file is left behind.
        assert_eq!(names(&cfg.notification), ["reply-1.1.xml", "reply-1.xml"]);

        for (stem, ext) in [
            ("", "xml"),
            ("../escape", "xml"),
            ("a/b", "xml"),
            (".hidden", "xml"),
            ("~lock", "xml"),
            ("ok", ""),
            ("ok", "x/y"),
            ("ok", "tmp.part"),
        ] {
            let e = finalizer.write_notification(stem, ext, b"x").unwrap_err();
            assert!(
                matches!(e, FileError::InvalidName { .. }),
                "{stem}.{ext}: {e}"
            );
        }
        assert_eq!(names(&cfg.notification).len(), 2);
    }
}
