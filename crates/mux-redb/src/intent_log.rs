//! A durable intent log on redb, with group commit.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use async_trait::async_trait;
use bytes::Bytes;
use mux_core::{
    DeadLetter, Error, ErrorKind, IntentLog, IntentLogStats, Operation, PendingIntent, Record,
    Result, codec,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

/// Entry id → the record (envelope format).
const INTENTS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("mux_intents");
/// (entry id, backend) → nothing: what is still owed.
const OWED: TableDefinition<'static, (u64, &'static str), ()> =
    TableDefinition::new("mux_intent_owed");
/// Dead-letter id → a JSON line (backend, error, attempts, time), `\n`, the record envelope.
const DEAD: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("mux_dead_letters");

/// The most operations one group commit takes.
const MAX_BATCH: usize = 4096;

enum Op {
    Append {
        id: u64,
        record: Vec<u8>,
        owed: Vec<Arc<str>>,
        done: oneshot::Sender<Result<()>>,
    },
    Complete {
        id: u64,
        backend: Arc<str>,
    },
    DeadLetter {
        id: u64,
        backend: String,
        dead: u64,
        entry: Vec<u8>,
        done: oneshot::Sender<Result<()>>,
    },
    TakeDead {
        dead: u64,
        done: oneshot::Sender<Result<Option<Vec<u8>>>>,
    },
}

/// A durable intent log in a redb file: appends are fsynced before they return, with
/// group commit — every append waiting while a commit is in progress shares the next
/// one, so at high concurrency far fewer fsyncs than writes are needed. Completions
/// ride along in the same commits without forcing a sync (replaying a completed entry is
/// harmless: writes are versioned).
///
/// Tables: `mux_intents` (id → record envelope), `mux_intent_owed` ((id, backend) →
/// ()), `mux_dead_letters` (id → JSON line + record envelope).
pub struct RedbIntentLog {
    path: PathBuf,
    db: Arc<Database>,
    tx: Option<mpsc::Sender<Op>>,
    writer: Option<thread::JoinHandle<()>>,
    next: AtomicU64,
    next_dead: AtomicU64,
    appends: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
}

impl fmt::Debug for RedbIntentLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbIntentLog")
            .field("path", &self.path)
            .finish()
    }
}

fn err(op: Operation) -> impl Fn(redb::Error) -> Error {
    move |e| {
        Error::new(ErrorKind::Unavailable, "intent log (redb) error")
            .with_source(e)
            .with_backend("intent-log")
            .with_operation(op)
    }
}

fn closed() -> Error {
    Error::internal("the intent log writer has stopped").with_backend("intent-log")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DeadHeader {
    backend: String,
    error: String,
    attempts: u32,
    failed_at_ms: u64,
}

impl RedbIntentLog {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbIntentLog> {
        let path = path.as_ref().to_path_buf();
        let e = err(Operation::Open);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(Error::from)?;
        }
        let db = Database::create(&path).map_err(|x| e(x.into()))?;
        let txn = db.begin_write().map_err(|x| e(x.into()))?;
        let (next, next_dead) = {
            let intents = txn.open_table(INTENTS).map_err(|x| e(x.into()))?;
            txn.open_table(OWED).map_err(|x| e(x.into()))?;
            let dead = txn.open_table(DEAD).map_err(|x| e(x.into()))?;
            let last = |t: &redb::Table<u64, &[u8]>| -> Result<u64> {
                Ok(t.last()
                    .map_err(|x| e(x.into()))?
                    .map_or(0, |(k, _)| k.value() + 1))
            };
            (last(&intents)?, last(&dead)?)
        };
        txn.commit().map_err(|x| e(x.into()))?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let appends = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicU64::new(0));
        let writer_db = db.clone();
        let writer_syncs = syncs.clone();
        let writer = thread::Builder::new()
            .name("mux-intent-log".into())
            .spawn(move || writer(writer_db, rx, writer_syncs))
            .map_err(|x| Error::internal(format!("cannot start the intent log writer: {x}")))?;
        Ok(RedbIntentLog {
            path,
            db,
            tx: Some(tx),
            writer: Some(writer),
            next: AtomicU64::new(next),
            next_dead: AtomicU64::new(next_dead),
            appends,
            syncs,
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, op: Op) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or_else(closed)?
            .send(op)
            .map_err(|_| closed())
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|x| Error::internal(format!("intent log task failed: {x}")))?
    }
}

/// The group-commit loop: take everything queued, apply it in one transaction, sync
/// once if anything in it must be durable, answer everyone.
fn writer(db: Arc<Database>, rx: mpsc::Receiver<Op>, syncs: Arc<AtomicU64>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(|op| {
            matches!(
                op,
                Op::Append { .. } | Op::DeadLetter { .. } | Op::TakeDead { .. }
            )
        });
        let mut taken: Vec<Option<Vec<u8>>> = Vec::new();
        let result = (|| -> std::result::Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            if !durable {
                txn.set_durability(Durability::None)?;
            }
            {
                let mut intents = txn.open_table(INTENTS)?;
                let mut owed = txn.open_table(OWED)?;
                let mut dead = txn.open_table(DEAD)?;
                let release = |id: u64,
                               backend: &str,
                               intents: &mut redb::Table<u64, &[u8]>,
                               owed: &mut redb::Table<(u64, &str), ()>|
                 -> std::result::Result<(), redb::Error> {
                    owed.remove((id, backend))?;
                    let more = owed.range((id, "")..(id + 1, ""))?.next().is_some();
                    if !more {
                        intents.remove(id)?;
                    }
                    Ok(())
                };
                for op in &batch {
                    match op {
                        Op::Append {
                            id,
                            record,
                            owed: names,
                            ..
                        } => {
                            intents.insert(*id, record.as_slice())?;
                            for name in names {
                                owed.insert((*id, &**name), ())?;
                            }
                        }
                        Op::Complete { id, backend } => {
                            release(*id, backend, &mut intents, &mut owed)?
                        }
                        Op::DeadLetter {
                            id,
                            backend,
                            dead: d,
                            entry,
                            ..
                        } => {
                            dead.insert(*d, entry.as_slice())?;
                            release(*id, backend, &mut intents, &mut owed)?;
                        }
                        Op::TakeDead { dead: d, .. } => {
                            taken.push(dead.remove(*d)?.map(|v| v.value().to_vec()));
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })();
        if durable && result.is_ok() {
            syncs.fetch_add(1, Ordering::Relaxed);
        }
        let fail = |e: &redb::Error| {
            Error::new(
                ErrorKind::Unavailable,
                format!("intent log commit failed: {e}"),
            )
            .with_backend("intent-log")
        };
        let mut taken = taken.into_iter();
        for op in batch {
            match op {
                Op::Append { done, .. } | Op::DeadLetter { done, .. } => {
                    let _ = done.send(result.as_ref().map(|_| ()).map_err(fail));
                }
                Op::TakeDead { done, .. } => {
                    let _ = done.send(match &result {
                        Ok(()) => Ok(taken.next().flatten()),
                        Err(e) => Err(fail(e)),
                    });
                }
                Op::Complete { .. } => {
                    if let Err(e) = &result {
                        tracing_warn(e);
                    }
                }
            }
        }
    }
}

impl Drop for RedbIntentLog {
    /// Stops the writer after it has committed what was queued, and releases the file.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn tracing_warn(e: &redb::Error) {
    eprintln!("mux intent log: a completion was not recorded ({e}); the entry will be replayed");
}

fn decode_dead(id: u64, bytes: &[u8]) -> Result<DeadLetter> {
    let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("dead letter {id} has no header line"),
        )
    })?;
    let header: DeadHeader = serde_json::from_slice(&bytes[..newline])
        .map_err(|e| Error::new(ErrorKind::Corrupt, format!("dead letter {id}: {e}")))?;
    let record = codec::decode(Bytes::copy_from_slice(&bytes[newline + 1..]))?;
    Ok(DeadLetter {
        id,
        backend: header.backend,
        record,
        error: header.error,
        attempts: header.attempts,
        failed_at_ms: header.failed_at_ms,
    })
}

#[async_trait]
impl IntentLog for RedbIntentLog {
    fn is_durable(&self) -> bool {
        true
    }

    fn next_id(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    async fn append(&self, record: &Record, owed: &[Arc<str>]) -> Result<u64> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (done, wait) = oneshot::channel();
        self.send(Op::Append {
            id,
            record: codec::encode(record),
            owed: owed.to_vec(),
            done,
        })?;
        wait.await.map_err(|_| closed())??;
        self.appends.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    async fn complete(&self, id: u64, backend: &str) -> Result<()> {
        self.send(Op::Complete {
            id,
            backend: Arc::from(backend),
        })
    }

    async fn pending(&self) -> Result<Vec<PendingIntent>> {
        self.read(|db| {
            let e = err(Operation::List);
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let intents = txn.open_table(INTENTS).map_err(|x| e(x.into()))?;
            let owed = txn.open_table(OWED).map_err(|x| e(x.into()))?;
            let mut out = Vec::new();
            for item in intents.iter().map_err(|x| e(x.into()))? {
                let (id, bytes) = item.map_err(|x| e(x.into()))?;
                let id = id.value();
                let names: Vec<String> = owed
                    .range((id, "")..(id + 1, ""))
                    .map_err(|x| e(x.into()))?
                    .map(|kv| kv.map(|(k, _)| k.value().1.to_owned()))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|x| e(x.into()))?;
                if names.is_empty() {
                    continue;
                }
                let record = codec::decode(Bytes::copy_from_slice(bytes.value()))?;
                out.push(PendingIntent {
                    id,
                    record,
                    owed: names,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn dead_letter(
        &self,
        id: u64,
        backend: &str,
        record: &Record,
        error: &str,
        attempts: u32,
    ) -> Result<u64> {
        let dead = self.next_dead.fetch_add(1, Ordering::SeqCst);
        let header = DeadHeader {
            backend: backend.to_owned(),
            error: error.to_owned(),
            attempts,
            failed_at_ms: mux_core::resilience::now_ms(),
        };
        let mut entry = serde_json::to_vec(&header).expect("a dead letter header serialises");
        entry.push(b'\n');
        entry.extend_from_slice(&codec::encode(record));
        let (done, wait) = oneshot::channel();
        self.send(Op::DeadLetter {
            id,
            backend: backend.to_owned(),
            dead,
            entry,
            done,
        })?;
        wait.await.map_err(|_| closed())??;
        Ok(dead)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.read(|db| {
            let e = err(Operation::List);
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let dead = txn.open_table(DEAD).map_err(|x| e(x.into()))?;
            let mut out = Vec::new();
            for item in dead.iter().map_err(|x| e(x.into()))? {
                let (id, bytes) = item.map_err(|x| e(x.into()))?;
                out.push(decode_dead(id.value(), bytes.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn take_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        let (done, wait) = oneshot::channel();
        self.send(Op::TakeDead { dead: id, done })?;
        match wait.await.map_err(|_| closed())?? {
            Some(bytes) => Ok(Some(decode_dead(id, &bytes)?)),
            None => Ok(None),
        }
    }

    fn stats(&self) -> IntentLogStats {
        IntentLogStats {
            appends: self.appends.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::{Key, Version};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_reopen_and_releases_completed_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents.redb");
        let r1 = Record::new(Key::new("a").unwrap(), "1", Version::new(1, 0, 1));
        let r2 = Record::new(Key::new("b").unwrap(), "2", Version::new(2, 0, 1));
        let owed: Vec<Arc<str>> = vec![Arc::from("x"), Arc::from("y")];
        {
            let log = RedbIntentLog::open(&path).unwrap();
            let a = log.append(&r1, &owed).await.unwrap();
            let b = log.append(&r2, &owed).await.unwrap();
            log.complete(a, "x").await.unwrap();
            log.complete(a, "y").await.unwrap();
            log.complete(b, "x").await.unwrap();
            log.dead_letter(b, "y", &r2, "boom", 3).await.unwrap();
            let c = log.append(&r1, &owed[..1]).await.unwrap();
            assert_eq!(c, 2);
        }
        let log = RedbIntentLog::open(&path).unwrap();
        assert_eq!(log.next_id(), 3);
        let pending = log.pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, 2);
        assert_eq!(pending[0].owed, ["x"]);
        assert_eq!(pending[0].record, r1);
        let dead = log.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (
                dead[0].backend.as_str(),
                dead[0].error.as_str(),
                dead[0].attempts
            ),
            ("y", "boom", 3)
        );
        assert_eq!(dead[0].record, r2);
        assert!(log.take_dead_letter(dead[0].id).await.unwrap().is_some());
        assert!(log.dead_letters().await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(RedbIntentLog::open(dir.path().join("i.redb")).unwrap());
        let owed: Arc<[Arc<str>]> = Arc::from(vec![Arc::from("x")]);
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let (log, owed) = (log.clone(), owed.clone());
                tokio::spawn(async move {
                    for i in 0..20 {
                        let r = Record::new(
                            Key::new(format!("k{t}/{i}")).unwrap(),
                            "v",
                            Version::new(1, i, t),
                        );
                        log.append(&r, &owed).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let stats = log.stats();
        assert_eq!(stats.appends, 1280);
        assert!(stats.syncs < stats.appends / 4, "group commit: {stats:?}");
    }
}
