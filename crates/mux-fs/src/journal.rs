//! The store's write-ahead journal: group commit for record files.
//!
//! A write is made durable by appending the record to a [`SegmentIntentLog`] (mux-wal:
//! CRC-framed, one `fdatasync` for every writer waiting) *before* its file is written;
//! the file is then written and swapped into place without an fsync of its own. A
//! checkpoint thread makes the files durable in bulk — one `syncfs` of the store's file
//! system covers every file written before it started — and only then marks their
//! journal entries complete. Opening the store replays every entry not complete,
//! rewriting its file where the stored version is older, missing or unreadable (a
//! crash can leave a renamed but unsynced file empty or torn). So an acknowledged write
//! is always either in a synced file or in the journal, and the per-write cost is one
//! shared `fdatasync` instead of two fsyncs of its own.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_executor::block_on;
use mux_core::{Error, IntentLog, Record, Result};
use mux_wal::{SegmentIntentLog, SegmentLogOptions};

/// How often written files are made durable and their entries completed.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// The journal's segment size: entries live for one checkpoint interval, so segments
/// are recycled quickly and small ones keep a new store's footprint small.
const SEGMENT_BYTES: u64 = 4 << 20;
/// What each entry is owed to. Not the backend's name, which a configuration can change
/// between runs: an entry owed to an old name would never complete.
const OWED: &str = "files";
/// A checkpoint starts early once this many writes wait for one.
const CHECKPOINT_AFTER: usize = 4096;

#[derive(Default)]
struct Written {
    /// Entries whose files are written (renamed into place) but not yet synced.
    ids: Vec<u64>,
    shutdown: bool,
    /// Stop without a last checkpoint (tests: what a crash leaves).
    abandon: bool,
}

struct Shared {
    log: SegmentIntentLog,
    /// The one party every entry is owed to: the record files.
    owed: Arc<str>,
    data: PathBuf,
    every: Duration,
    written: Mutex<Written>,
    wake: Condvar,
    /// Held by a checkpoint from taking its entries to completing them.
    checkpointing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The journal of one store (see the module docs).
pub(crate) struct Journal {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.shared.log.dir())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens the journal in `dir` for the record files under `data`, replays every
    /// entry not complete through `apply`, makes the result durable and starts the
    /// checkpoint thread, which checkpoints `every` so often.
    pub(crate) fn open(
        dir: &Path,
        data: &Path,
        every: Duration,
        apply: impl Fn(&Record) -> io::Result<()>,
    ) -> Result<Journal> {
        let log = SegmentIntentLog::open_with(
            dir,
            SegmentLogOptions {
                segment_bytes: SEGMENT_BYTES,
                checkpoint_max_bytes: 4 * SEGMENT_BYTES,
            },
        )?;
        let shared = Arc::new(Shared {
            log,
            owed: Arc::from(OWED),
            data: data.to_path_buf(),
            every,
            written: Mutex::default(),
            wake: Condvar::new(),
            checkpointing: Mutex::new(()),
        });
        let pending = block_on(shared.log.pending())?;
        let mut ids = Vec::with_capacity(pending.len());
        for intent in pending {
            apply(&intent.record).map_err(|e| {
                Error::from(e).context(format!(
                    "replaying the journal in {}: the write of {} at version {}",
                    dir.display(),
                    intent.record.key(),
                    intent.record.version()
                ))
            })?;
            ids.push(intent.id);
        }
        shared.checkpoint(&ids)?;
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mux-fs-checkpoint".into())
            .spawn(move || for_thread.run())
            .map_err(|e| Error::internal(format!("starting the fs checkpoint thread: {e}")))?;
        Ok(Journal {
            shared,
            thread: Some(thread),
        })
    }

    /// Appends `record` and waits until it is durable; returns its entry's id.
    pub(crate) async fn append(&self, record: &Record) -> Result<u64> {
        let owed = [self.shared.owed.clone()];
        self.shared.log.append(record, &owed).await
    }

    /// Records that entry `id`'s file is written (or that it needs none): the next
    /// checkpoint completes it.
    pub(crate) fn written(&self, id: u64) {
        let mut w = lock(&self.shared.written);
        w.ids.push(id);
        if w.ids.len() >= CHECKPOINT_AFTER {
            self.shared.wake.notify_one();
        }
    }

    /// Makes every file written so far durable and completes their entries durably
    /// (before a purge removes a file, so no replay brings an older write back).
    pub(crate) fn checkpoint_now(&self) -> Result<()> {
        self.shared.checkpoint_written()?;
        block_on(self.shared.log.flush())
    }

    /// Stops the checkpoint thread without a last checkpoint, as a crash would.
    #[cfg(test)]
    pub(crate) fn abandon(mut self) {
        lock(&self.shared.written).abandon = true;
        self.stop();
    }

    fn stop(&mut self) {
        lock(&self.shared.written).shutdown = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    /// Syncs the file system holding the record files, then completes `ids`.
    fn checkpoint(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sync_filesystem(&self.data).map_err(|e| {
            Error::from(e).context(format!(
                "syncing the file system of {} (the journal keeps the writes)",
                self.data.display()
            ))
        })?;
        for &id in ids {
            // Never waits: a completion is queued and written with the next batch.
            block_on(self.log.complete(id, &self.owed))?;
        }
        Ok(())
    }

    /// Checkpoints every entry written so far; on failure they wait for the next one.
    fn checkpoint_written(&self) -> Result<()> {
        let _one_at_a_time = lock(&self.checkpointing);
        let ids = std::mem::take(&mut lock(&self.written).ids);
        if let Err(e) = self.checkpoint(&ids) {
            lock(&self.written).ids.extend(ids);
            return Err(e);
        }
        Ok(())
    }

    fn run(&self) {
        loop {
            let shutdown = {
                let mut w = lock(&self.written);
                if !w.shutdown && w.ids.len() < CHECKPOINT_AFTER {
                    w = self
                        .wake
                        .wait_timeout(w, self.every)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                if w.abandon {
                    return;
                }
                w.shutdown
            };
            if let Err(e) = self.checkpoint_written() {
                // The entries stay in the journal (a later start replays them) and in
                // the list (the next checkpoint tries again).
                tracing::warn!(error = %e, "mux-fs: a checkpoint failed");
                if !shutdown {
                    std::thread::sleep(self.every);
                }
            }
            if shutdown {
                let _ = block_on(self.log.flush());
                return;
            }
        }
    }
}

/// Flushes every dirty file of the file system holding `dir`.
fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    #[cfg(target_os = "linux")]
    rustix::fs::syncfs(&f)?;
    #[cfg(not(target_os = "linux"))]
    {
        drop(f);
        rustix::fs::sync();
    }
    Ok(())
}
