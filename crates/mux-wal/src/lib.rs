//! `mux-wal`: a durable intent log for mux as append-only segment files with group
//! commit.
//!
//! The coordinator appends every write (with the backends that owe it) before fanning
//! it out and waits for the append to be durable; it marks each backend complete as
//! it lands. [`SegmentIntentLog`] keeps those changes as CRC-checked frames appended
//! to pre-allocated segment files:
//!
//! - **Group commit.** Appends queue their frame and wait; one syncer thread writes
//!   everything queued with one `pwrite` and makes it durable with one `fdatasync` for
//!   every writer waiting, while the next batch forms behind it. Completions are
//!   written with the next batch and never synced on their own: replaying a completed
//!   write is harmless, because writes are versioned.
//! - **Segments and checkpoints.** A segment (16 MiB by default, written in full before
//!   use — zero-filled, or a recycled older segment — so an append changes no
//!   file-system metadata) is sealed when the next frame would not fit. At each
//!   rotation, while the live entries are small, a checkpoint
//!   (`ckpt-N.wal`: every live entry and dead letter as of the start of segment N) is
//!   written, synced and renamed into place, and every older file is deleted (one
//!   segment is kept as the next spare); start-up reads the newest checkpoint and the
//!   segments after it.
//! - **Recovery.** A torn end of the newest segment (a crash mid-append) is found by
//!   the CRC, zeroed and appended over; it holds nothing acknowledged, because an
//!   append is acknowledged only after a sync covering it and everything before it.
//!   Damage anywhere else is refused with the file and offset named.
//!
//! The format is documented in ARCHITECTURE.md ("The segment intent log").

mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod recover;
mod state;
mod syncer;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use mux_core::Result;
use mux_core::resilience::now_ms;
use mux_core::{DeadLetter, Error, ErrorKind, IntentLog, IntentLogStats, PendingIntent, Record};
use tokio::sync::oneshot;

use frame::Body;
use state::{Dead, Entry, Limits, Loc, State, read_at};

/// The default size of a segment file.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;

/// Tuning of a [`SegmentIntentLog`].
#[derive(Clone, Copy, Debug)]
pub struct SegmentLogOptions {
    /// The size a segment is pre-allocated to; a frame that does not fit starts the
    /// next segment (a larger frame gets a segment of its own).
    pub segment_bytes: u64,
    /// A checkpoint copies every live entry; while they take more than this, no
    /// checkpoint is written and older segments stay (an outage's hints are mostly
    /// live anyway).
    pub checkpoint_max_bytes: u64,
}

impl Default for SegmentLogOptions {
    fn default() -> Self {
        SegmentLogOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            checkpoint_max_bytes: 4 * DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Shared by the log's handle and its syncer thread.
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) limits: Limits,
    pub(crate) state: Mutex<State>,
    pub(crate) work: Condvar,
    pub(crate) syncs: AtomicU64,
    appends: AtomicU64,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A durable intent log in a directory of segment files (see the crate docs).
pub struct SegmentIntentLog {
    inner: Arc<Inner>,
    syncer: Option<JoinHandle<()>>,
    // Held for the log's life: a second process on the same directory is refused.
    _lock: File,
}

impl fmt::Debug for SegmentIntentLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentIntentLog")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl SegmentIntentLog {
    /// Opens (or creates) the log in directory `dir` with the default options,
    /// recovering what it holds.
    pub fn open(dir: impl AsRef<Path>) -> Result<SegmentIntentLog> {
        SegmentIntentLog::open_with(dir, SegmentLogOptions::default())
    }

    /// Opens (or creates) the log in `dir` with `options`.
    pub fn open_with(dir: impl AsRef<Path>, options: SegmentLogOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if options.segment_bytes < 4096 {
            return Err(Error::invalid_input(format!(
                "intent log segments of {} bytes are too small: use at least 4096",
                options.segment_bytes
            )));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| state::io_error("creating the directory", &dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock =
            File::create(&lock_path).map_err(|e| state::io_error("creating", &lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the intent log in {} is in use by another process (each process needs \
                     a directory of its own)",
                    dir.display()
                ),
            ));
        }
        let limits = Limits {
            segment_bytes: options.segment_bytes,
            checkpoint_max_bytes: options.checkpoint_max_bytes,
        };
        let recovered = recover::recover(&dir, limits)?;
        let cursor = syncer::Cursor {
            segment: recovered.state.segment,
            written: recovered.state.offset,
            file: recovered.file,
            prepared: Some(syncer::spawn_prepare(&dir, limits.segment_bytes)),
        };
        let inner = Arc::new(Inner {
            dir,
            limits,
            state: Mutex::new(recovered.state),
            work: Condvar::new(),
            syncs: AtomicU64::new(0),
            appends: AtomicU64::new(0),
        });
        let for_thread = inner.clone();
        let syncer = std::thread::Builder::new()
            .name("mux-wal-sync".into())
            .spawn(move || syncer::run(for_thread, cursor))
            .map_err(|e| Error::internal(format!("starting the intent log's thread: {e}")))?;
        Ok(SegmentIntentLog {
            inner,
            syncer: Some(syncer),
            _lock: lock,
        })
    }

    /// The directory the log is in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Queues `frame`; with `durable`, returns a receiver answered once it is synced.
    fn queue(
        &self,
        frame: Vec<u8>,
        durable: bool,
        then: impl FnOnce(&mut State, Loc),
    ) -> Result<Option<oneshot::Receiver<Result<()>>>> {
        let mut s = self.inner.lock();
        s.usable(&self.inner.dir)?;
        let loc = s.push(frame, self.inner.limits);
        then(&mut s, loc);
        if !durable {
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        s.waiters.push(tx);
        syncer::notify(&self.inner, s);
        Ok(Some(rx))
    }

    /// Waits for a queued frame to be durable.
    async fn durable(&self, rx: Option<oneshot::Receiver<Result<()>>>) -> Result<()> {
        match rx {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Unavailable,
                    "the intent log's thread stopped before syncing",
                ))
            }),
        }
    }

    /// Waits until everything queued so far is written and synced — completions
    /// included, which are otherwise written unsynced with the next batch.
    pub async fn flush(&self) -> Result<()> {
        let rx = {
            let mut s = self.inner.lock();
            s.usable(&self.inner.dir)?;
            let (tx, rx) = oneshot::channel();
            s.waiters.push(tx);
            syncer::notify(&self.inner, s);
            rx
        };
        self.durable(Some(rx)).await
    }

    /// Reads the frame at `loc` (written: call after [`Self::flush`]).
    fn read(&self, loc: Loc) -> Result<Body> {
        let file = self.inner.lock().file(loc, &self.inner.dir)?;
        read_at(&file, loc, &self.inner.dir)
    }

    fn dead_letter_at(&self, id: u64, loc: Loc) -> Result<DeadLetter> {
        match self.read(loc)? {
            Body::Dead {
                backend,
                error,
                attempts,
                failed_at_ms,
                record,
                ..
            } => Ok(DeadLetter {
                id,
                backend,
                record: frame::decode_record(record)?,
                error,
                attempts,
                failed_at_ms,
            }),
            _ => Err(frame::corrupt(
                &loc.file.path(&self.inner.dir),
                loc.offset,
                "a dead letter's frame is not one",
            )),
        }
    }
}

impl Drop for SegmentIntentLog {
    fn drop(&mut self) {
        self.inner.lock().shutdown = true;
        self.inner.work.notify_one();
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

#[async_trait]
impl IntentLog for SegmentIntentLog {
    fn is_durable(&self) -> bool {
        true
    }

    fn next_id(&self) -> u64 {
        self.inner.lock().next_id
    }

    async fn append(&self, record: &Record, owed: &[Arc<str>]) -> Result<u64> {
        self.inner.appends.fetch_add(1, Ordering::Relaxed);
        let record_bytes = frame::record_bytes(record);
        let mut frame = Vec::with_capacity(record_bytes.len() + 64);
        let id;
        let rx = {
            let mut s = self.inner.lock();
            s.usable(&self.inner.dir)?;
            id = s.next_id;
            s.next_id += 1;
            drop(s);
            let body = Body::Append {
                id,
                owed: owed.iter().map(|b| b.to_string()).collect(),
                record: record_bytes,
            };
            frame::encode(&mut frame, &body);
            self.queue(frame, true, |s, loc| {
                s.live_bytes += u64::from(loc.len);
                s.entries.insert(
                    id,
                    Entry {
                        loc,
                        owed: owed.to_vec(),
                    },
                );
            })?
        };
        self.durable(rx).await?;
        Ok(id)
    }

    async fn complete(&self, id: u64, backend: &str) -> Result<()> {
        let mut frame = Vec::with_capacity(32);
        frame::encode(
            &mut frame,
            &Body::Complete {
                id,
                backend: backend.to_owned(),
            },
        );
        self.queue(frame, false, |s, _| s.complete(id, backend))?;
        Ok(())
    }

    async fn pending(&self) -> Result<Vec<PendingIntent>> {
        self.flush().await?;
        let live: Vec<(u64, Loc, Vec<Arc<str>>)> = self
            .inner
            .lock()
            .entries
            .iter()
            .map(|(id, e)| (*id, e.loc, e.owed.clone()))
            .collect();
        let mut out = Vec::with_capacity(live.len());
        for (id, loc, owed) in live {
            let Body::Append { record, .. } = self.read(loc)? else {
                return Err(frame::corrupt(
                    &loc.file.path(&self.inner.dir),
                    loc.offset,
                    "an entry's frame is not an append",
                ));
            };
            out.push(PendingIntent {
                id,
                record: frame::decode_record(record)?,
                owed: owed.iter().map(|b| b.to_string()).collect(),
            });
        }
        Ok(out)
    }

    async fn dead_letter(
        &self,
        id: u64,
        backend: &str,
        record: &Record,
        error: &str,
        attempts: u32,
    ) -> Result<u64> {
        let dead = {
            let mut s = self.inner.lock();
            s.usable(&self.inner.dir)?;
            let dead = s.next_dead;
            s.next_dead += 1;
            dead
        };
        let mut frame = Vec::new();
        frame::encode(
            &mut frame,
            &Body::Dead {
                dead,
                id,
                backend: backend.to_owned(),
                error: error.to_owned(),
                attempts,
                failed_at_ms: now_ms(),
                record: frame::record_bytes(record),
            },
        );
        let rx = self.queue(frame, true, |s, loc| {
            s.complete(id, backend);
            s.live_bytes += u64::from(loc.len);
            s.dead.insert(dead, Dead { loc });
        })?;
        self.durable(rx).await?;
        Ok(dead)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.flush().await?;
        let dead: Vec<(u64, Loc)> = self
            .inner
            .lock()
            .dead
            .iter()
            .map(|(id, d)| (*id, d.loc))
            .collect();
        dead.into_iter()
            .map(|(id, loc)| self.dead_letter_at(id, loc))
            .collect()
    }

    async fn take_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        self.flush().await?;
        let Some(loc) = self.inner.lock().dead.get(&id).map(|d| d.loc) else {
            return Ok(None);
        };
        let letter = self.dead_letter_at(id, loc)?;
        let mut frame = Vec::with_capacity(24);
        frame::encode(&mut frame, &Body::Take { dead: id });
        let mut taken = false;
        let rx = self.queue(frame, true, |s, _| taken = s.take(id).is_some())?;
        self.durable(rx).await?;
        Ok(taken.then_some(letter))
    }

    fn stats(&self) -> IntentLogStats {
        IntentLogStats {
            appends: self.inner.appends.load(Ordering::Relaxed),
            syncs: self.inner.syncs.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
