//! The intent log: what each backend still owes, durably, until it lands.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::error::Result;
use crate::record::Record;

/// A write some backends still owe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingIntent {
    /// The log's id of the write.
    pub id: u64,
    /// The record (its version included).
    pub record: Record,
    /// The backends that have not applied it yet.
    pub owed: Vec<String>,
}

/// A write a backend could not apply within the retry limits, kept until replayed or
/// discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead letter's id.
    pub id: u64,
    /// The backend that owes the write.
    pub backend: String,
    /// The record.
    pub record: Record,
    /// The last error.
    pub error: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// When it was dead-lettered (ms since the Unix epoch).
    pub failed_at_ms: u64,
}

/// Counters of an intent log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntentLogStats {
    /// Writes appended.
    pub appends: u64,
    /// Durable syncs (fsyncs) made; with group commit, far fewer than appends.
    pub syncs: u64,
}

/// A write-ahead log of what each backend still owes.
///
/// The coordinator appends a write (with every target backend) **before** fanning it
/// out, marks each backend complete as it applies the write, and on start replays every
/// unfinished entry. `append` must be durable when it returns (for a durable log);
/// `complete` may be lazily durable, because replaying a completed write is harmless:
/// writes are versioned. An entry is released once every backend completed it (or was
/// dead-lettered).
#[async_trait]
pub trait IntentLog: Send + Sync + fmt::Debug + 'static {
    /// Whether entries survive a crash of the process.
    fn is_durable(&self) -> bool;

    /// The id the next append will get (entries below it existed before). A log shared
    /// by several nodes returns `u64::MAX`: its `pending` hands out only entries no live
    /// node holds.
    fn next_id(&self) -> u64;

    /// For a log shared by several nodes: how often a `Mux` should scan it again for
    /// entries a dead node left behind. `None` (the default) scans once, on start.
    fn rescan_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// Records that `owed` must apply `record`; returns the entry's id.
    async fn append(&self, record: &Record, owed: &[Arc<str>]) -> Result<u64>;

    /// Records that `backend` applied entry `id`.
    async fn complete(&self, id: u64, backend: &str) -> Result<()>;

    /// The unfinished entries this node should deliver (for a single-node log: all).
    async fn pending(&self) -> Result<Vec<PendingIntent>>;

    /// Moves `backend`'s part of entry `id` to the dead-letter queue, with the error.
    async fn dead_letter(
        &self,
        id: u64,
        backend: &str,
        record: &Record,
        error: &str,
        attempts: u32,
    ) -> Result<u64>;

    /// The dead-letter queue.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>>;

    /// Removes and returns a dead letter (to replay or discard it).
    async fn take_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>>;

    /// Counters.
    fn stats(&self) -> IntentLogStats;
}

/// Milliseconds since the Unix epoch (for dead-letter timestamps).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct MemoryState {
    entries: BTreeMap<u64, (Record, BTreeSet<String>)>,
    dead: BTreeMap<u64, DeadLetter>,
    next_dead: u64,
}

/// An intent log in memory: hints survive backend outages but not a crash of the
/// process (`durability = "none"`).
#[derive(Debug, Default)]
pub struct MemoryIntentLog {
    next: AtomicU64,
    appends: AtomicU64,
    state: Mutex<MemoryState>,
}

impl MemoryIntentLog {
    /// An empty log.
    pub fn new() -> MemoryIntentLog {
        MemoryIntentLog::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl IntentLog for MemoryIntentLog {
    fn is_durable(&self) -> bool {
        false
    }

    fn next_id(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    async fn append(&self, record: &Record, owed: &[Arc<str>]) -> Result<u64> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        self.appends.fetch_add(1, Ordering::Relaxed);
        let owed = owed.iter().map(|s| s.to_string()).collect();
        self.lock().entries.insert(id, (record.clone(), owed));
        Ok(id)
    }

    async fn complete(&self, id: u64, backend: &str) -> Result<()> {
        let mut s = self.lock();
        if let Some((_, owed)) = s.entries.get_mut(&id) {
            owed.remove(backend);
            if owed.is_empty() {
                s.entries.remove(&id);
            }
        }
        Ok(())
    }

    async fn pending(&self) -> Result<Vec<PendingIntent>> {
        Ok(self
            .lock()
            .entries
            .iter()
            .map(|(id, (record, owed))| PendingIntent {
                id: *id,
                record: record.clone(),
                owed: owed.iter().cloned().collect(),
            })
            .collect())
    }

    async fn dead_letter(
        &self,
        id: u64,
        backend: &str,
        record: &Record,
        error: &str,
        attempts: u32,
    ) -> Result<u64> {
        self.complete(id, backend).await?;
        let mut s = self.lock();
        let dl = s.next_dead;
        s.next_dead += 1;
        s.dead.insert(
            dl,
            DeadLetter {
                id: dl,
                backend: backend.to_owned(),
                record: record.clone(),
                error: error.to_owned(),
                attempts,
                failed_at_ms: now_ms(),
            },
        );
        Ok(dl)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        Ok(self.lock().dead.values().cloned().collect())
    }

    async fn take_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        Ok(self.lock().dead.remove(&id))
    }

    fn stats(&self) -> IntentLogStats {
        IntentLogStats {
            appends: self.appends.load(Ordering::Relaxed),
            syncs: 0,
        }
    }
}
