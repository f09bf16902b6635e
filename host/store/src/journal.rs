//! A journaled store: named trees held in memory, every change appended
//! to one log file on disk and made durable by [`Journal::flush`]
//! (ADR 0031). The virtual bank keeps its books here: a booking is a few
//! map updates and one appended record, and a group commit's flush is one
//! `write` and one `fdatasync`, where sled spent several times a balance
//! inquiry's CPU on the same booking.
//!
//! The log is a sequence of records, `len: u32 LE, crc32: u32 LE, payload`;
//! a payload is a list of operations (name a tree, insert, remove). A
//! transaction is one record, so it is replayed whole or not at all. At
//! open the log is replayed; a torn record at its end (a crash during a
//! write that was never acknowledged) is cut off, a bad record before the
//! end refuses to open (the log was damaged: nothing is guessed). When the
//! log outgrows its threshold, a thread reads the state a small chunk at a
//! time (a fuzzy image: see [`image_of`]) and writes it as the next
//! generation's file while flushes go on appending to the current one; it
//! copies what they appended after the image, the last few hundred
//! kilobytes while they wait, renames the new file into place and removes
//! the old one: a crash at any step leaves one complete generation.
//!
//! One process at a time: the directory is locked while it is open.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Bound;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{Abort, AbortKind, Error, Result, Tree, TreeKind, TxError, TxKind, TxTree};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
/// One tree's writes in a transaction: key to the new value, `None` removed.
type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

const INSERT: u8 = 1;
const REMOVE: u8 = 2;
const NAME: u8 = 3;
/// Bytes of a record's header: length and checksum.
const HEADER: usize = 8;
/// A log smaller than this is never compacted.
const COMPACT_AT: u64 = 64 << 20;
/// Records of a compacted image are cut at about this size.
const IMAGE_RECORD: usize = 1 << 20;
/// An image reads about this many bytes of entries at a time under the
/// state's lock.
const IMAGE_CHUNK: usize = if cfg!(test) { 256 } else { 64 << 10 };
/// At most this much of the log's tail is copied after an image while
/// flushes wait ([`copy_tail_ahead`] copies the rest before).
const TAIL_UNDER_LOCK: u64 = 256 << 10;
/// Rounds of copying the tail ahead before the rest is copied under the log.
const TAIL_ROUNDS: usize = 8;
/// An image is written and synced this much at a time.
const IMAGE_SLICE: usize = 2 << 20;

/// An open journaled store. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    state: RwLock<State>,
    /// Records applied to `state` and not yet written to the log, in the
    /// order they were applied (taken under `state`'s write lock).
    pending: Mutex<Vec<u8>>,
    log: Mutex<Log>,
    /// Notified when a compaction ends.
    compacted: Condvar,
    /// The last compaction's thread, joined by [`Journal::wait_for_compaction`]
    /// so that the journal is closed once its last handle goes.
    compactor: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Bytes flushed during compactions and copied after their images.
    tails: std::sync::atomic::AtomicU64,
    /// Held for as long as the journal is open (an exclusive file lock).
    _lock: File,
}

#[derive(Default)]
struct State {
    names: HashMap<String, u16>,
    trees: Vec<Map>,
}

struct Log {
    file: File,
    generation: u64,
    /// Bytes in `file`.
    len: u64,
    /// Compact when `len` passes this.
    compact_at: u64,
    /// The smallest `compact_at`.
    compact_base: u64,
    /// A compaction is writing the next generation.
    compacting: bool,
    /// Why the log can no longer be trusted to be on disk (a write or a
    /// sync failed: after a failed `fdatasync` the kernel may have dropped
    /// the pages it could not write and a later one succeeds regardless).
    /// Every flush fails from then on; a restart replays what is on disk.
    broken: Option<String>,
}

/// A tree of a [`Journal`].
#[derive(Clone)]
pub(crate) struct JTree {
    inner: Arc<Inner>,
    id: u16,
}

impl std::fmt::Debug for JTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JTree").field("id", &self.id).finish()
    }
}

fn io(dir: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Journal {
        path: dir.display().to_string(),
        message: format!("{what}: {e}"),
    }
}

/// A journal error that is not an I/O call's: damage, a lock held, misuse.
fn failure(dir: &Path, message: String) -> Error {
    Error::Journal {
        path: dir.display().to_string(),
        message,
    }
}

fn file_name(generation: u64) -> String {
    format!("journal.{generation}")
}

impl Journal {
    /// Opens (creating if needed) the journal in directory `dir`, replaying
    /// its log. Fails if another process has it open, or if the log is
    /// damaged anywhere but in its last, unacknowledged record.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_compacting_at(dir, COMPACT_AT)
    }

    /// [`Journal::open`], compacting once the log passes `compact_at` bytes.
    fn open_compacting_at(dir: &Path, compact_at: u64) -> Result<Self> {
        // The bank's books: for this process's user only.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io(dir, "creating the directory", e))?;
        let lock = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(|e| io(dir, "opening LOCK", e))?;
        lock.try_lock().map_err(|e| {
            failure(
                dir,
                format!("another process has this journal open ({e}); stop it first"),
            )
        })?;
        let mut generations = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io(dir, "listing", e))? {
            let entry = entry.map_err(|e| io(dir, "listing", e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                // An image whose compaction did not finish: the previous
                // generation is complete.
                fs::remove_file(entry.path())
                    .map_err(|e| io(dir, "removing a partial image", e))?;
            } else if let Some(n) = name.strip_prefix("journal.")
                && let Ok(n) = n.parse::<u64>()
            {
                generations.push(n);
            }
        }
        generations.sort_unstable();
        let generation = generations.last().copied().unwrap_or(0);
        let path = dir.join(file_name(generation));
        let mut file = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(dir, "opening the log", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io(dir, "reading the log", e))?;
        let mut state = State::default();
        let valid = replay(dir, &bytes, &mut state)?;
        if valid < bytes.len() {
            tracing::warn!(
                journal = %path.display(),
                dropped = bytes.len() - valid,
                "journal: a torn last record was cut off (never acknowledged)"
            );
            file.set_len(valid as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| io(dir, "cutting a torn record", e))?;
        }
        sync_dir(dir)?;
        for old in generations.iter().filter(|g| **g < generation) {
            fs::remove_file(dir.join(file_name(*old)))
                .map_err(|e| io(dir, "removing a superseded generation", e))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                state: RwLock::new(state),
                pending: Mutex::new(Vec::new()),
                compacted: Condvar::new(),
                compactor: Mutex::new(None),
                tails: std::sync::atomic::AtomicU64::new(0),
                log: Mutex::new(Log {
                    file,
                    generation,
                    len: valid as u64,
                    compact_at,
                    compact_base: compact_at,
                    compacting: false,
                    broken: None,
                }),
                _lock: lock,
            }),
        })
    }

    /// The tree called `name`, created on first use.
    pub fn tree(&self, name: &str) -> Result<Tree> {
        if let Some(id) = self.inner.read().names.get(name) {
            return Ok(self.handle(*id));
        }
        let mut state = self.inner.write();
        if let Some(id) = state.names.get(name) {
            return Ok(self.handle(*id));
        }
        let id = u16::try_from(state.trees.len())
            .map_err(|_| failure(&self.inner.dir, "more than 65,535 trees".to_owned()))?;
        state.names.insert(name.to_owned(), id);
        state.trees.push(Map::new());
        let mut payload = Vec::new();
        put_name(&mut payload, id, name);
        self.inner.append_locked(&payload);
        drop(state);
        Ok(self.handle(id))
    }

    fn handle(&self, id: u16) -> Tree {
        Tree {
            kind: TreeKind::Journal(JTree {
                inner: self.inner.clone(),
                id,
            }),
        }
    }

    /// Whether no tree holds an entry.
    pub fn is_empty(&self) -> bool {
        self.inner.read().trees.iter().all(Map::is_empty)
    }

    /// Waits until everything written so far is durable on disk: one write
    /// and one `fdatasync` for every change made since the last flush.
    /// When the log has outgrown its threshold, starts a compaction.
    pub fn flush(&self) -> Result<()> {
        let mut log = self.inner.log();
        self.inner.write_pending(&mut log)?;
        if log.len > log.compact_at
            && !log.compacting
            && let Err(e) = self.inner.compact(&mut log)
        {
            // The log stays as it was, whole; try again after as much again.
            tracing::error!(journal = %self.inner.dir.display(), error = %e, "journal: compaction failed");
            log.compact_at = log.len.saturating_add(log.compact_base);
        }
        Ok(())
    }

    /// Waits until a compaction in progress has ended, and its thread with
    /// it (which lets go of the journal last).
    pub fn wait_for_compaction(&self) {
        let mut log = self.inner.log();
        while log.compacting {
            log = self
                .inner
                .compacted
                .wait(log)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(log);
        let thread = self
            .inner
            .compactor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Runs `f` over `trees` (trees of this journal) as one atomic
    /// transaction, as [`crate::Store::transaction`] does: every write or
    /// none, also across a crash once flushed. Transactions run one at a
    /// time, so `f` runs exactly once; it sees its own writes. As with sled,
    /// `f` must reach the journal only through its [`TxTree`]s: any other
    /// read or write of it from inside `f` waits for itself forever.
    pub fn transaction<T, E>(
        &self,
        trees: &[&Tree],
        f: impl Fn(&[TxTree<'_>]) -> Result<T, Abort<E>>,
    ) -> Result<T, TxError<E>> {
        let mut ids = Vec::with_capacity(trees.len());
        for tree in trees {
            match &tree.kind {
                TreeKind::Journal(t) if Arc::ptr_eq(&t.inner, &self.inner) => ids.push(t.id),
                _ => {
                    return Err(TxError::Store(failure(
                        &self.inner.dir,
                        "a transaction over a tree of another store".to_owned(),
                    )));
                }
            }
        }
        let mut state = self.inner.write();
        // One write set per tree (a tree named twice shares its set).
        let writes: BTreeMap<u16, RefCell<WriteSet>> =
            ids.iter().map(|id| (*id, RefCell::default())).collect();
        let views: Vec<TxTree<'_>> = ids
            .iter()
            .map(|id| TxTree {
                kind: TxKind::Journal(TxView {
                    tree: &state.trees[usize::from(*id)],
                    writes: &writes[id],
                }),
            })
            .collect();
        let outcome = f(&views);
        drop(views);
        match outcome {
            Ok(value) => {
                let mut payload = Vec::new();
                for (id, set) in writes {
                    let tree = &mut state.trees[usize::from(id)];
                    for (key, value) in set.into_inner() {
                        put_change(&mut payload, id, &key, value.as_deref());
                        apply(tree, key, value);
                    }
                }
                if !payload.is_empty() {
                    self.inner.append_locked(&payload);
                }
                Ok(value)
            }
            Err(Abort(AbortKind::User(e))) => Err(TxError::Abort(e)),
            Err(Abort(AbortKind::Store(e))) => Err(TxError::Store(e)),
            Err(Abort(AbortKind::Sled(e))) => Err(TxError::Store(failure(
                &self.inner.dir,
                format!("a sled error inside a journal transaction: {e}"),
            ))),
        }
    }
}

impl Inner {
    /// Writes and syncs what is pending; holds the log.
    fn write_pending(&self, log: &mut Log) -> Result<()> {
        if let Some(why) = &log.broken {
            return Err(failure(
                &self.dir,
                format!("{why}; restart to replay the log"),
            ));
        }
        let pending = std::mem::take(&mut *self.pending());
        if !pending.is_empty() {
            if let Err(e) = log
                .file
                .write_all(&pending)
                .and_then(|()| log.file.sync_data())
            {
                let e = io(&self.dir, "writing the log", e);
                log.broken = Some(e.to_string());
                return Err(e);
            }
            log.len += pending.len() as u64;
        }
        Ok(())
    }

    /// Starts writing the state as the next generation, on a thread of
    /// its own while flushes go on appending to the current log. The
    /// thread encodes the trees a chunk at a time (bookings wait for one
    /// chunk at most; [`image_of`]), writes and syncs the image, and
    /// [`Inner::switch`] then copies what the flushes appended after the
    /// image and switches, holding the log. A crash before the rename
    /// leaves the current generation whole; after it, the next one.
    fn compact(self: &Arc<Self>, log: &mut Log) -> Result<()> {
        let names = {
            let state = self.read();
            // With the state held nothing more is queued: every change
            // applied so far is in the log up to `cut`, synced.
            self.write_pending(log)?;
            let mut names: Vec<(String, u16)> =
                state.names.iter().map(|(n, id)| (n.clone(), *id)).collect();
            names.sort_by_key(|(_, id)| *id);
            names
        };
        let (cut, next) = (log.len, log.generation + 1);
        let old = log
            .file
            .try_clone()
            .map_err(|e| io(&self.dir, "opening the log for its tail", e))?;
        let (weak, dir) = (Arc::downgrade(self), self.dir.clone());
        let thread = std::thread::Builder::new()
            .name("sfop-journal".into())
            .spawn(move || {
                // The journal was closed meanwhile: its current generation stands.
                let closed = || {
                    let _ = fs::remove_file(tmp_name(&dir, next));
                };
                let Some(image) = image_of(&weak, &names) else {
                    return closed();
                };
                let written = write_image(&dir, next, &image).and_then(|mut file| {
                    let copied = copy_tail_ahead(&weak, &old, &mut file, cut, &dir)?;
                    Ok((file, copied))
                });
                drop(image);
                let Some(inner) = weak.upgrade() else {
                    return closed();
                };
                let mut log = inner.log();
                let switched =
                    written.and_then(|(file, copied)| inner.switch(&mut log, file, copied, next));
                inner.compaction_ended(&mut log, switched);
            })
            .map_err(|e| io(&self.dir, "starting the compaction's thread", e))?;
        *self.compactor.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        // The thread needs the log to finish, which the caller holds.
        log.compacting = true;
        Ok(())
    }

    /// Appends to the image what the current log holds past `cut`, syncs
    /// it, renames it into place and makes it the log.
    fn switch(&self, log: &mut Log, mut file: File, cut: u64, next: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let dir = &self.dir;
        let image_len = file
            .metadata()
            .map_err(|e| io(dir, "reading an image's size", e))?
            .len();
        let tail_len = usize::try_from(log.len - cut)
            .map_err(|_| failure(dir, format!("a log tail of {} bytes", log.len - cut)))?;
        let mut tail = vec![0; tail_len];
        log.file
            .read_exact_at(&mut tail, cut)
            .map_err(|e| io(dir, "reading the log's tail", e))?;
        file.write_all(&tail)
            .and_then(|()| file.sync_all())
            .map_err(|e| io(dir, "writing the log's tail after an image", e))?;
        fs::rename(tmp_name(dir, next), dir.join(file_name(next)))
            .map_err(|e| io(dir, "renaming an image", e))?;
        if let Err(e) = sync_dir(dir) {
            // Whether the rename is on disk is not known: neither log can
            // be appended to safely.
            log.broken = Some(e.to_string());
            return Err(e);
        }
        self.tails
            .fetch_add(tail.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let old = dir.join(file_name(log.generation));
        log.file = file;
        log.generation = next;
        log.len = image_len + tail.len() as u64;
        log.compact_at = log.compact_base.max(image_len.saturating_mul(2));
        // The new generation is in place; the old one is only in the way
        // (and removed at the next open if this fails).
        if let Err(e) = fs::remove_file(&old) {
            tracing::warn!(journal = %dir.display(), error = %e, "journal: the compacted generation stays");
        }
        tracing::info!(journal = %dir.display(), generation = next, image = image_len, tail = tail.len(), "journal: compacted");
        Ok(())
    }

    fn compaction_ended(&self, log: &mut Log, switched: Result<()>) {
        if let Err(e) = switched {
            tracing::error!(journal = %self.dir.display(), error = %e, "journal: compaction failed; the log stays as it was");
            let _ = fs::remove_file(tmp_name(&self.dir, log.generation + 1));
            log.compact_at = log.len.saturating_add(log.compact_base);
        }
        log.compacting = false;
        self.compacted.notify_all();
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `payload` as one record. The caller holds the state's write
    /// lock, so records queue in the order their changes were applied.
    fn append_locked(&self, payload: &[u8]) {
        self.pending().extend_from_slice(&seal(payload));
    }

    /// One change outside a transaction: applied and queued under the
    /// write lock. What it replaced.
    fn change(&self, id: u16, key: &[u8], value: Option<&[u8]>) -> Option<Vec<u8>> {
        let mut state = self.write();
        let mut payload = Vec::new();
        put_change(&mut payload, id, key, value);
        let old = apply(
            &mut state.trees[usize::from(id)],
            key.to_vec(),
            value.map(<[u8]>::to_vec),
        );
        self.append_locked(&payload);
        old
    }
}

fn apply(map: &mut Map, key: Vec<u8>, value: Option<Vec<u8>>) -> Option<Vec<u8>> {
    match value {
        Some(value) => map.insert(key, value),
        None => map.remove(&key),
    }
}

fn tmp_name(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{}.tmp", file_name(generation)))
}

/// The trees `names` as records: their names, then their entries, read
/// [`IMAGE_CHUNK`] bytes at a time under the state's read lock, so that a
/// booking waits for one chunk at most (well under a millisecond), not for
/// the whole image.
/// `None` if the journal was closed meanwhile.
///
/// The image is therefore fuzzy: an entry changed while it is read may be
/// caught before or after the change. That is sound because every change
/// made since the cut is in the log past it, and the switch copies that
/// tail after the image: replayed in order over the image, whole values
/// set or removed, the tail brings every entry to its last value, and an
/// entry it does not touch was not changed during the read, so the image
/// holds it as it is (a tree made meanwhile is named in the tail, before
/// its entries). A transaction is one record of the tail, so it is whole
/// after replay, whichever of its writes the image caught.
///
/// The image is a list of records rather than one buffer: growing a buffer
/// of a hundred megabytes copies it, which under the lock held bookings for
/// hundreds of milliseconds.
fn image_of(inner: &std::sync::Weak<Inner>, names: &[(String, u16)]) -> Option<Vec<Vec<u8>>> {
    let mut image = Vec::new();
    let mut payload = Vec::new();
    for (name, id) in names {
        put_name(&mut payload, *id, name);
    }
    for (_, id) in names {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let inner = inner.upgrade()?;
            let state = inner.read();
            let Some(map) = state.trees.get(usize::from(*id)) else {
                break;
            };
            let lower = match &after {
                Some(key) => Bound::Excluded(key.as_slice()),
                None => Bound::Unbounded,
            };
            let (start, mut last, mut done) = (payload.len(), None, true);
            for (k, v) in map.range::<[u8], _>((lower, Bound::Unbounded)) {
                if payload.len() - start >= IMAGE_CHUNK {
                    done = false;
                    break;
                }
                put_change(&mut payload, *id, k, Some(v));
                last = Some(k);
            }
            after = last.cloned();
            drop(state);
            if payload.len() >= IMAGE_RECORD {
                image.push(seal(&payload));
                payload.clear();
            }
            if done {
                break;
            }
        }
    }
    if !payload.is_empty() {
        image.push(seal(&payload));
    }
    Some(image)
}

/// Copies the log past `from` after an image in rounds, without holding
/// the log, until at most [`TAIL_UNDER_LOCK`] bytes are left for
/// [`Inner::switch`] to copy while flushes wait; where the copy ended.
/// What it reads was written and synced by flushes (the log's length
/// moves only after), and during a compaction the log only grows.
fn copy_tail_ahead(
    inner: &std::sync::Weak<Inner>,
    old: &File,
    image: &mut File,
    mut from: u64,
    dir: &Path,
) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    for _ in 0..TAIL_ROUNDS {
        let Some(len) = inner.upgrade().map(|inner| inner.log().len) else {
            return Ok(from); // closed: nothing will be switched
        };
        if len.saturating_sub(from) <= TAIL_UNDER_LOCK {
            break;
        }
        let n = usize::try_from(len - from)
            .map_err(|_| failure(dir, format!("a log tail of {} bytes", len - from)))?;
        let mut tail = vec![0; n];
        old.read_exact_at(&mut tail, from)
            .map_err(|e| io(dir, "reading the log's tail", e))?;
        write_synced(image, &tail)
            .map_err(|e| io(dir, "writing the log's tail after an image", e))?;
        if let Some(inner) = inner.upgrade() {
            inner
                .tails
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        from = len;
    }
    Ok(from)
}

/// Writes `image` as generation `next`'s file, still under its temporary
/// name, synced; open for appending.
fn write_image(dir: &Path, next: u64, image: &[Vec<u8>]) -> Result<File> {
    let mut file = OpenOptions::new()
        .mode(0o600)
        .create_new(true)
        .read(true)
        .append(true)
        .open(tmp_name(dir, next))
        .map_err(|e| io(dir, "creating an image", e))?;
    let mut slice = Vec::with_capacity(IMAGE_SLICE + IMAGE_RECORD);
    for record in image {
        slice.extend_from_slice(record);
        if slice.len() >= IMAGE_SLICE {
            write_synced(&mut file, &slice).map_err(|e| io(dir, "writing an image", e))?;
            slice.clear();
        }
    }
    write_synced(&mut file, &slice).map_err(|e| io(dir, "writing an image", e))?;
    Ok(file)
}

/// Appends `bytes` to `file` in slices, each synced: on ext4
/// (data=ordered) the log's own `fdatasync` commits the file system's
/// journal, which first writes every dirty page of this file too; unsynced,
/// tens of megabytes would stall the bookings' flushes for as long as it
/// takes the disk to write them.
fn write_synced(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    for slice in bytes.chunks(IMAGE_SLICE) {
        file.write_all(slice)?;
        file.sync_data()?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, "syncing the directory", e))
}

/// Appends "tree `id` is called `name`" to `payload`.
fn put_name(payload: &mut Vec<u8>, id: u16, name: &str) {
    put(payload, NAME, id, name.as_bytes());
}

/// Appends a change to `payload`: `key` set to `value`, or removed.
fn put_change(payload: &mut Vec<u8>, id: u16, key: &[u8], value: Option<&[u8]>) {
    put(
        payload,
        if value.is_some() { INSERT } else { REMOVE },
        id,
        key,
    );
    if let Some(value) = value {
        payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
        payload.extend_from_slice(value);
    }
}

/// An operation's head: its kind, its tree, and a length-prefixed key.
fn put(payload: &mut Vec<u8>, kind: u8, id: u16, key: &[u8]) {
    payload.push(kind);
    payload.extend_from_slice(&id.to_le_bytes());
    payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
    payload.extend_from_slice(key);
}

/// `payload` as a record: its length, its checksum, itself.
fn seal(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Applies every whole record of `bytes` to `state`; how many bytes they
/// take. A record cut short or failing its checksum at the very end is a
/// write the crash interrupted (it was never acknowledged); anywhere else
/// it is damage, and nothing is guessed.
fn replay(dir: &Path, bytes: &[u8], state: &mut State) -> Result<usize> {
    let mut at = 0;
    while at < bytes.len() {
        let (Some(len), Some(crc)) = (u32_at(bytes, at), u32_at(bytes, at + 4)) else {
            return Ok(at);
        };
        let end = at + HEADER + len as usize;
        let Some(payload) = bytes.get(at + HEADER..end) else {
            return Ok(at);
        };
        if crc32fast::hash(payload) != crc {
            if end == bytes.len() {
                return Ok(at);
            }
            return Err(failure(
                dir,
                format!(
                    "the log is damaged at byte {at} (a record fails its checksum and {} bytes \
                     follow it); restore the data dir from a backup",
                    bytes.len() - end
                ),
            ));
        }
        replay_record(payload, state)
            .ok_or_else(|| failure(dir, format!("the record at byte {at} does not decode")))?;
        at = end;
    }
    Ok(at)
}

fn replay_record(mut payload: &[u8], state: &mut State) -> Option<()> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (p.get(..n)?, p.get(n..)?);
        *p = rest;
        Some(head)
    }
    fn len(p: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(p, 4)?.try_into().ok()?) as usize)
    }
    while !payload.is_empty() {
        let kind = take(&mut payload, 1)?[0];
        let id = u16::from_le_bytes(take(&mut payload, 2)?.try_into().ok()?);
        let n = len(&mut payload)?;
        let key = take(&mut payload, n)?.to_vec();
        match kind {
            NAME => {
                let name = String::from_utf8(key).ok()?;
                let index = usize::from(id);
                if state.trees.len() <= index {
                    state.trees.resize_with(index + 1, Map::new);
                }
                state.names.insert(name, id);
            }
            INSERT | REMOVE => {
                let value = if kind == INSERT {
                    let n = len(&mut payload)?;
                    Some(take(&mut payload, n)?.to_vec())
                } else {
                    None
                };
                apply(state.trees.get_mut(usize::from(id))?, key, value);
            }
            _ => return None,
        }
    }
    Some(())
}

/// One tree inside [`Journal::transaction`]: the tree as it was, and the
/// transaction's writes to it.
pub(crate) struct TxView<'a> {
    tree: &'a Map,
    writes: &'a RefCell<WriteSet>,
}

impl TxView<'_> {
    pub(crate) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.writes.borrow().get(key) {
            Some(written) => written.clone(),
            None => self.tree.get(key).cloned(),
        }
    }

    pub(crate) fn set(&self, key: &[u8], value: Option<&[u8]>) {
        self.writes
            .borrow_mut()
            .insert(key.to_vec(), value.map(<[u8]>::to_vec));
    }
}

impl JTree {
    pub(crate) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.read().trees[usize::from(self.id)]
            .get(key)
            .cloned()
    }

    /// Sets (`Some`) or removes (`None`) `key`; what it held.
    pub(crate) fn set(&self, key: &[u8], value: Option<&[u8]>) -> Option<Vec<u8>> {
        self.inner.change(self.id, key, value)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inner.read().trees[usize::from(self.id)].is_empty()
    }

    /// Entries between `lower` and `upper`, read one at a time (the tree is
    /// not held between them: later changes may show, as in sled).
    pub(crate) fn range(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        reverse: bool,
    ) -> Cursor {
        Cursor {
            tree: self.clone(),
            lower,
            upper,
            reverse,
        }
    }
}

pub(crate) struct Cursor {
    tree: JTree,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    reverse: bool,
}

/// Whether no key lies between `lower` and `upper` (`BTreeMap::range`
/// panics on such bounds).
fn empty(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    use Bound::{Excluded, Included};
    match (lower, upper) {
        (Included(l), Included(u)) => l > u,
        (Included(l) | Excluded(l), Included(u) | Excluded(u)) => l >= u,
        _ => false,
    }
}

impl Iterator for Cursor {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if empty(&self.lower, &self.upper) {
            return None;
        }
        let state = self.tree.inner.read();
        let mut range = state.trees[usize::from(self.tree.id)]
            .range::<Vec<u8>, _>((self.lower.clone(), self.upper.clone()));
        let (key, value) = if self.reverse {
            range.next_back()?
        } else {
            range.next()?
        };
        let entry = (key.clone(), value.clone());
        if self.reverse {
            self.upper = Bound::Excluded(entry.0.clone());
        } else {
            self.lower = Bound::Excluded(entry.0.clone());
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "LOCK")
            .collect();
        names.sort();
        names
    }

    fn log_path(dir: &Path) -> PathBuf {
        dir.join(files(dir).pop().unwrap_or_default())
    }

    #[test]
    fn what_was_flushed_is_there_after_a_reopen_and_what_was_not_is_not() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let j = Journal::open(dir.path())?;
            let (a, b) = (j.tree("a")?, j.tree("b")?);
            a.insert_json("k1", &1)?;
            b.insert_json("k2", &"two")?;
            a.insert_json("gone", &0)?;
            a.remove(b"gone")?;
            j.transaction(&[&a, &b], |tx| {
                tx[0].insert_json::<_, ()>("k3", &3)?;
                // A transaction reads its own writes.
                assert_eq!(tx[0].get_json::<u32, ()>("k3")?, Some(3));
                tx[1].remove::<()>(b"k2")
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            j.flush()?;
            a.insert_json("unflushed", &9)?;
            // Dropped without a flush: a crash before the write was
            // acknowledged.
        }
        let j = Journal::open(dir.path())?;
        let (a, b) = (j.tree("a")?, j.tree("b")?);
        assert_eq!(a.get_json::<u32>("k1")?, Some(1));
        assert_eq!(a.get_json::<u32>("k3")?, Some(3));
        assert_eq!(a.get_json::<u32>("gone")?, None);
        assert_eq!(a.get_json::<u32>("unflushed")?, None);
        assert!(b.is_empty());
        Ok(())
    }

    #[test]
    fn an_aborted_transaction_writes_nothing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let j = Journal::open(dir.path())?;
        let a = j.tree("a")?;
        a.insert_json("balance", &100)?;
        let refused = j.transaction(&[&a], |tx| {
            tx[0].insert_json::<_, &str>("balance", &0)?;
            Err::<(), _>(Abort::with("no"))
        });
        assert!(matches!(refused, Err(TxError::Abort("no"))));
        assert_eq!(a.get_json::<u32>("balance")?, Some(100));
        // A tree named twice is one tree: each view reads the other's write.
        j.transaction(&[&a, &a], |tx| {
            tx[0].insert_json::<_, ()>("balance", &90)?;
            assert_eq!(tx[1].get_json::<u32, ()>("balance")?, Some(90));
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        a.insert_json("balance", &100)?;
        j.flush()?;
        drop((a, j));
        let j = Journal::open(dir.path())?;
        assert_eq!(j.tree("a")?.get_json::<u32>("balance")?, Some(100));
        // A tree of another store is refused, not mixed in.
        let other = crate::Store::open(&dir.path().join("sled"))?.tree("x")?;
        assert!(matches!(
            j.transaction(&[&other], |_| Ok::<(), Abort<()>>(())),
            Err(TxError::Store(Error::Journal { .. }))
        ));
        Ok(())
    }

    #[test]
    fn a_torn_last_record_is_cut_and_damage_before_the_end_refuses_to_open() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let j = Journal::open(dir.path())?;
            let a = j.tree("a")?;
            for n in 0..10 {
                a.insert_json(&format!("k{n}"), &n)?;
                j.flush()?;
            }
        }
        let path = log_path(dir.path());
        let whole = fs::read(&path)?;
        // A crash in the middle of the next record's write.
        let mut torn = whole.clone();
        torn.extend_from_slice(&seal(b"\x01\x00\x00 partial")[..11]);
        fs::write(&path, &torn)?;
        {
            let j = Journal::open(dir.path())?;
            assert_eq!(j.tree("a")?.get_json::<u32>("k9")?, Some(9));
            j.tree("a")?.insert_json("after", &1)?;
            j.flush()?;
        }
        let after = fs::read(&path)?;
        assert_eq!(
            &after[..whole.len()],
            &whole[..],
            "the torn bytes were cut off"
        );
        assert!(
            Journal::open(dir.path())?
                .tree("a")?
                .get_json::<u32>("after")?
                .is_some()
        );

        // One flipped bit in the middle: acknowledged records follow it,
        // so nothing is guessed.
        let mut damaged = fs::read(&path)?;
        damaged[HEADER + 3] ^= 0x40;
        fs::write(&path, &damaged)?;
        let refused = Journal::open(dir.path()).map(drop);
        assert!(
            matches!(&refused, Err(Error::Journal { message, .. }) if message.contains("damaged at byte 0")),
            "{refused:?}"
        );
        Ok(())
    }

    #[test]
    fn one_process_at_a_time() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let j = Journal::open(dir.path())?;
        let again = Journal::open(dir.path()).map(drop);
        assert!(
            matches!(&again, Err(Error::Journal { message, .. }) if message.contains("another process")),
            "{again:?}"
        );
        drop(j);
        Journal::open(dir.path())?;
        // Nobody but this user reads the books.
        use std::os::unix::fs::PermissionsExt;
        for name in files(dir.path()).iter().chain(["LOCK".to_owned()].iter()) {
            let mode = fs::metadata(dir.path().join(name))?.permissions().mode();
            assert_eq!(mode & 0o077, 0, "{name}: {mode:o}");
        }
        Ok(())
    }

    #[test]
    fn compaction_keeps_the_state_in_one_generation() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let j = Journal::open_compacting_at(dir.path(), 4 << 10)?;
            let (a, b) = (j.tree("a")?, j.tree("b")?);
            for n in 0..500u32 {
                a.insert_json(&format!("k{:04}", n % 50), &n)?;
                if n % 7 == 0 {
                    b.insert_json(&format!("r{n}"), &n)?;
                    b.remove(format!("r{}", n.saturating_sub(7)).as_bytes())?;
                }
                j.flush()?;
                j.wait_for_compaction();
            }
            let generation = j.inner.log().generation;
            assert!(generation > 3, "compacted {generation} times");
            assert_eq!(files(dir.path()), [file_name(generation)]);
        }
        let j = Journal::open(dir.path())?;
        let (a, b) = (j.tree("a")?, j.tree("b")?);
        assert_eq!(a.values_json::<u32>()?.len(), 50);
        assert_eq!(a.get_json::<u32>("k0049")?, Some(499));
        assert_eq!(
            b.values_json::<u32>()?,
            [("r497".to_owned(), 497)],
            "removals survive compaction"
        );
        // A compaction that a crash interrupted leaves its image behind:
        // the complete generation wins, the partial image goes.
        let partial = dir.path().join(format!("{}.tmp", file_name(99)));
        fs::write(&partial, b"half an image")?;
        drop((a, b, j));
        let j = Journal::open(dir.path())?;
        assert!(!partial.exists());
        assert_eq!(files(dir.path()).len(), 1, "one generation");
        assert_eq!(j.tree("a")?.get_json::<u32>("k0049")?, Some(499));
        Ok(())
    }

    #[test]
    fn ranges_prefixes_and_reverse_read_one_entry_at_a_time() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let j = Journal::open(dir.path())?;
        let t = j.tree("t")?;
        for k in ["a/1", "a/2", "a/3", "a\u{ff}", "b/1", "c"] {
            t.insert_json(k, &k)?;
        }
        let keys = |it: &mut dyn Iterator<Item = Result<(String, String)>>| -> Result<Vec<String>> {
            it.map(|e| e.map(|(k, _)| k)).collect()
        };
        assert_eq!(keys(&mut t.prefix_json("a/"))?, ["a/1", "a/2", "a/3"]);
        assert_eq!(
            keys(&mut t.range_json(b"a/2", Some(b"b"), false))?,
            ["a/2", "a/3", "a\u{ff}"]
        );
        assert_eq!(
            keys(&mut t.range_json(b"a/2", Some(b"b/1"), true))?,
            ["a\u{ff}", "a/3", "a/2"]
        );
        assert_eq!(
            keys(&mut t.range_json(b"b", Some(b"a"), false))?,
            Vec::<String>::new()
        );
        assert_eq!(
            keys(&mut t.range_json(b"c", Some(b"c"), true))?,
            Vec::<String>::new()
        );
        // Changes made while iterating show as in sled: the cursor moves on
        // from the last key it gave.
        let mut it = t.prefix_json::<String>("");
        assert_eq!(
            it.next().transpose()?.map(|(k, _)| k).as_deref(),
            Some("a/1")
        );
        t.remove(b"a/2")?;
        assert_eq!(
            it.next().transpose()?.map(|(k, _)| k).as_deref(),
            Some("a/3")
        );
        assert_eq!(
            crate::prefix_end(b"a\xff\xff"),
            Bound::Excluded(b"b".to_vec())
        );
        assert_eq!(crate::prefix_end(b"\xff"), Bound::Unbounded);
        Ok(())
    }

    #[test]
    fn a_store_moves_its_sled_trees_into_its_journal_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let store = crate::Store::open(dir.path())?;
            store.tree("bank.accounts")?.insert_json("097/1", &5_000)?;
            store.tree("bank.meta")?.insert_json("seq", &7)?;
            store.tree("other")?.insert_json("stays", &1)?;
            let j = store.journal("bank")?;
            assert_eq!(j.tree("accounts")?.get_json::<u64>("097/1")?, Some(5_000));
            j.tree("meta")?.insert_json("seq", &8)?;
            j.flush()?;
            // Every clone shares the one journal.
            assert_eq!(
                store
                    .clone()
                    .journal("bank")?
                    .tree("meta")?
                    .get_json::<u64>("seq")?,
                Some(8)
            );
            store.flush()?;
        }
        let store = crate::Store::open(dir.path())?;
        let names: Vec<String> = store
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with("bank.")), "{names:?}");
        assert_eq!(store.tree("other")?.get_json::<u64>("stays")?, Some(1));
        let j = store.journal("bank")?;
        assert_eq!(
            j.tree("meta")?.get_json::<u64>("seq")?,
            Some(8),
            "not moved twice"
        );
        Ok(())
    }

    #[test]
    fn a_move_from_sled_torn_by_a_crash_runs_again() -> anyhow::Result<()> {
        let seeded = |dir: &Path| -> anyhow::Result<crate::Store> {
            let store = crate::Store::open(dir)?;
            for n in 0..100 {
                store
                    .tree("bank.accounts")?
                    .insert_json(&format!("097/{n}"), &n)?;
            }
            store.tree("bank.meta")?.insert_json("seq", &7)?;
            Ok(store)
        };
        // The log a whole move writes.
        let whole = tempfile::tempdir()?;
        drop(seeded(whole.path())?.journal("bank")?);
        let log = fs::read(whole.path().join("bank.journal").join(file_name(0)))?;
        // The same move, the crash cutting its last record short.
        let torn = tempfile::tempdir()?;
        let store = seeded(torn.path())?;
        fs::create_dir_all(torn.path().join("bank.journal"))?;
        fs::write(
            torn.path().join("bank.journal").join(file_name(0)),
            &log[..log.len() - 10],
        )?;
        let j = store.journal("bank")?;
        assert_eq!(j.tree("accounts")?.values_json::<u32>()?.len(), 100);
        assert_eq!(j.tree("meta")?.get_json::<u32>("seq")?, Some(7));
        Ok(())
    }

    #[test]
    fn what_is_flushed_while_a_compaction_writes_its_image_is_kept() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut acknowledged = 0u32;
        {
            let j = Journal::open_compacting_at(dir.path(), 64 << 10)?;
            let t = j.tree("t")?;
            // Flushes go on while images are written, until some were
            // copied after an image (bounded: a compaction's image takes a
            // write and a sync, many flushes' time).
            while j.inner.tails.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                anyhow::ensure!(acknowledged < 200_000, "no flush ever met a compaction");
                t.insert_json(&format!("k{acknowledged:07}"), &acknowledged)?;
                j.flush()?;
                acknowledged += 1;
            }
            j.wait_for_compaction();
        }
        let j = Journal::open(dir.path())?;
        let entries = j.tree("t")?.values_json::<u32>()?;
        assert_eq!(
            entries.len() as u32,
            acknowledged,
            "every acknowledged entry"
        );
        assert!(entries.iter().all(|(k, v)| *k == format!("k{v:07}")));
        Ok(())
    }

    /// Entries overwritten, removed and added while images are read a
    /// chunk at a time, and trees made meanwhile, end as last written: the
    /// tail copied after each fuzzy image replays every change made since
    /// its cut.
    #[test]
    fn an_image_read_while_writes_change_it_replays_to_their_last_values() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut model: BTreeMap<(String, String), Option<u64>> = BTreeMap::new();
        {
            let j = Journal::open_compacting_at(dir.path(), 32 << 10)?;
            let mut trees = vec![("a".to_owned(), j.tree("a")?)];
            let mut n = 0u64;
            // Flushes go on while images are read and written (the writes
            // never wait for a compaction), until several generations were
            // made and some flushes met an image.
            while j.inner.log().generation < 6
                || j.inner.tails.load(std::sync::atomic::Ordering::Relaxed) == 0
            {
                anyhow::ensure!(n < 400_000, "compactions did not run");
                let (name, tree) = &trees[usize::try_from(n)? % trees.len()];
                // 600 keys a tree: an image reads each in many chunks.
                let key = format!("k{:04}", (n * 7919) % 600);
                let value = (!n.is_multiple_of(5)).then_some(n);
                match value {
                    Some(v) => tree.insert_json(&key, &v)?,
                    None => {
                        tree.remove(key.as_bytes())?;
                    }
                }
                model.insert((name.clone(), key), value);
                if n % 1500 == 1499 {
                    let name = format!("t{n}");
                    trees.push((name.clone(), j.tree(&name)?));
                }
                j.flush()?;
                n += 1;
            }
            j.wait_for_compaction();
        }
        let j = Journal::open(dir.path())?;
        let mut on_disk = BTreeMap::new();
        for name in model
            .keys()
            .map(|(name, _)| name.clone())
            .collect::<std::collections::BTreeSet<_>>()
        {
            for (key, value) in j.tree(&name)?.values_json::<u64>()? {
                on_disk.insert((name.clone(), key), value);
            }
        }
        let expected: BTreeMap<(String, String), u64> = model
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        assert_eq!(on_disk, expected);
        Ok(())
    }

    #[test]
    fn after_a_failed_write_or_sync_no_flush_succeeds() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let j = Journal::open(dir.path())?;
        let t = j.tree("t")?;
        t.insert_json("before", &1)?;
        j.flush()?;
        // What `write_pending` records when the disk refuses a write or a
        // sync.
        j.inner.log().broken = Some("writing the log: Input/output error".into());
        t.insert_json("after", &2)?;
        for _ in 0..2 {
            let refused = j.flush();
            assert!(
                matches!(&refused, Err(Error::Journal { message, .. }) if message.contains("restart")),
                "{refused:?}"
            );
        }
        drop((t, j));
        let j = Journal::open(dir.path())?;
        assert_eq!(j.tree("t")?.get_json::<u32>("before")?, Some(1));
        assert_eq!(
            j.tree("t")?.get_json::<u32>("after")?,
            None,
            "never acknowledged"
        );
        Ok(())
    }

    const CHILD_ENV: &str = "SFOP_JOURNAL_CHILD_DIR";
    /// Keys the child cycles through: the state stays small, so its log
    /// passes 16 KiB (a compaction) every couple of hundred flushes.
    const SLOTS: u64 = 50;

    /// Not a test on its own: run by the next one as a child process, it
    /// writes and flushes without end, compacting every 16 KiB of log: write
    /// `n` goes to slot `n % SLOTS` and to `last`, then `ACK n` is printed
    /// once the flush made it durable.
    #[test]
    fn child_writes_and_compacts() -> anyhow::Result<()> {
        let Some(dir) = std::env::var_os(CHILD_ENV) else {
            return Ok(());
        };
        let j = Journal::open_compacting_at(Path::new(&dir), 16 << 10)?;
        let t = j.tree("t")?;
        let mut n = t.get_json::<u64>("last")?.map_or(0, |last| last + 1);
        let mut out = std::io::stdout().lock();
        loop {
            t.insert_json(&format!("k{:02}", n % SLOTS), &n)?;
            t.insert_json("last", &n)?;
            j.flush()?;
            writeln!(out, "ACK {n}")?;
            out.flush()?;
            n += 1;
        }
    }

    /// A process killed at any moment, compactions included (every couple
    /// of hundred flushes here), loses no acknowledged write and keeps
    /// nothing half: after each SIGKILL the journal opens with `last` at or
    /// past the last acknowledged write and every slot holding the latest
    /// write to it up to `last`, in one generation.
    #[test]
    fn a_sigkill_at_any_moment_of_a_compaction_loses_nothing_acknowledged() -> anyhow::Result<()> {
        use std::io::BufRead;
        let dir = tempfile::tempdir()?;
        for round in 0..8u64 {
            let mut child = std::process::Command::new(std::env::current_exe()?)
                .args([
                    "--exact",
                    "journal::tests::child_writes_and_compacts",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let stdout = child.stdout.take().context("child stdout")?;
            let mut acknowledged = None;
            // A different number of acknowledgements each round, so the
            // kill meets the writer at different points of its cycle.
            let wanted = 400 + round * 97;
            let mut seen = 0;
            for line in std::io::BufReader::new(stdout).lines() {
                if let Some(n) = line?.strip_prefix("ACK ") {
                    acknowledged = Some(n.parse::<u64>()?);
                    seen += 1;
                    if seen == wanted {
                        break;
                    }
                }
            }
            child.kill()?; // SIGKILL
            child.wait()?;
            let acknowledged = acknowledged.context("the child acknowledged nothing")?;
            let j = Journal::open(dir.path())?;
            let t = j.tree("t")?;
            let last = t.get_json::<u64>("last")?.context("no last")?;
            anyhow::ensure!(
                last >= acknowledged,
                "round {round}: acknowledged {acknowledged}, on disk {last}"
            );
            for slot in 0..SLOTS {
                let expected = (0..=last).rev().find(|n| n % SLOTS == slot);
                anyhow::ensure!(
                    t.get_json::<u64>(&format!("k{slot:02}"))? == expected,
                    "round {round}: slot {slot} is not the latest write up to {last}"
                );
            }
            anyhow::ensure!(
                files(dir.path())
                    .iter()
                    .filter(|f| f.starts_with("journal."))
                    .count()
                    == 1,
                "round {round}: {:?}",
                files(dir.path())
            );
        }
        Ok(())
    }
}
