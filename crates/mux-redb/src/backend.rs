//! [`RedbBackend`]: the `Backend` implementation on a redb file.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use mux_core::digest::{DigestChunk, DigestRequest, entry_hash};
use mux_core::{
    Backend, BackendInfo, Capability, Error, Key, ListEntry, ListPage, ListRequest, Operation,
    PutOutcome, Record, Result, Version, codec,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::blocks::{self, BLOCKS};
use crate::config::DEFAULT_MAX_VALUE_SIZE;
use crate::error::map_err;
use crate::group::GroupCommit;

/// The table that holds the records.
pub const TABLE: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("mux_records");

/// A backend storing records in a redb database file.
pub struct RedbBackend {
    info: BackendInfo,
    path: PathBuf,
    db: Arc<Database>,
    /// Concurrent puts and deletes share transactions (and fsyncs).
    group: Arc<GroupCommit>,
}

impl fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbBackend")
            .field("name", &self.info.name)
            .field("path", &self.path)
            .finish()
    }
}

impl RedbBackend {
    /// The capability of a redb backend with the default value limit.
    pub const CAPABILITY: Capability = Capability {
        list: true,
        batch: true,
        atomic_conditional_write: true,
        history: false,
        tags: true,
        content_type: true,
        purge: true,
        durable: true,
        digest: true,
        max_value_size: Some(DEFAULT_MAX_VALUE_SIZE),
    };

    /// Opens (or creates) the database file at `path`, creating parent directories.
    pub fn open(name: impl AsRef<str>, path: impl AsRef<Path>) -> Result<RedbBackend> {
        let name = name.as_ref();
        let path = path.as_ref().to_path_buf();
        let err = map_err(name, Operation::Open);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::from(e)
                    .with_backend(name)
                    .with_operation(Operation::Open)
            })?;
        }
        let db = Database::create(&path).map_err(|e| err(e.into()))?;
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        {
            let records = txn.open_table(TABLE).map_err(|e| err(e.into()))?;
            let mut blocks = txn.open_table(BLOCKS).map_err(|e| err(e.into()))?;
            blocks::ensure_built(&records, &mut blocks)
                .map_err(|e| e.with_backend(name).with_operation(Operation::Open))?;
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(RedbBackend {
            info: BackendInfo::new(name, "redb", Self::CAPABILITY),
            path,
            db: Arc::new(db),
            group: Arc::default(),
        })
    }

    /// Sets the largest value accepted, in bytes.
    pub fn with_max_value_size(mut self, max: usize) -> RedbBackend {
        self.info.capability.max_value_size = Some(max);
        self
    }

    /// The open database (for this crate's tests).
    #[cfg(test)]
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking redb work on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        op: Operation,
        work: impl FnOnce(&Database, &dyn Fn(redb::Error) -> Error) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        let name = self.info.name.clone();
        tokio::task::spawn_blocking(move || {
            let err = map_err(&name, op);
            work(&db, &err)
        })
        .await
        .map_err(|e| {
            Error::internal(format!("redb task failed: {e}"))
                .with_backend(&self.info.name)
                .with_operation(op)
        })?
    }

    /// Writes one record in the next group commit.
    async fn grouped(&self, op: Operation, record: Record) -> Result<PutOutcome> {
        // Weak: the committing thread holds the database only while it commits, so a
        // store dropped right after its last write can be opened again at once.
        let db = Arc::downgrade(&self.db);
        let name = self.info.name.clone();
        self.group
            .write(record, move |records| {
                let db = db.upgrade().ok_or_else(|| {
                    Error::new(
                        mux_core::ErrorKind::Unavailable,
                        "the redb store was closed",
                    )
                })?;
                Self::write_records(&db, &map_err(&name, op), records)
            })
            .await
            .map_err(|e| e.with_backend(&self.info.name).with_operation(op))
    }

    fn write_records(
        db: &Database,
        err: &dyn Fn(redb::Error) -> Error,
        records: &[Record],
    ) -> Result<Vec<PutOutcome>> {
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        let mut outcomes = Vec::with_capacity(records.len());
        {
            let mut table = txn.open_table(TABLE).map_err(|e| err(e.into()))?;
            let mut sums = txn.open_table(BLOCKS).map_err(|e| err(e.into()))?;
            let mut cache = blocks::SumCache::default();
            for record in records {
                let key = record.key().as_str();
                let stored = match table.get(key).map_err(|e| err(e.into()))? {
                    Some(bytes) => Some(codec::decode_header(bytes.value())?.1),
                    None => None,
                };
                let outcome =
                    PutOutcome::decide(stored.as_ref().map(|m| m.version), record.version());
                if outcome.is_applied() {
                    table
                        .insert(key, codec::encode(record).as_slice())
                        .map_err(|e| err(e.into()))?;
                    let old = stored.map(|m| entry_hash(key, m.version, m.tombstone));
                    let new = entry_hash(key, record.version(), record.is_tombstone());
                    cache.write(&table, &mut sums, key, old, new)?;
                }
                outcomes.push(outcome);
            }
            cache.flush(&mut sums)?;
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(outcomes)
    }
}

#[async_trait]
impl Backend for RedbBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        self.grouped(Operation::Put, record.clone()).await
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        let key = key.clone();
        let name = self.info.name.clone();
        self.blocking(Operation::Get, move |db, err| {
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let table = txn.open_table(TABLE).map_err(|e| err(e.into()))?;
            match table.get(key.as_str()).map_err(|e| err(e.into()))? {
                None => Ok(None),
                Some(bytes) => {
                    let record = codec::decode(Bytes::copy_from_slice(bytes.value()))
                        .map_err(|e| e.with_backend(&name).with_operation(Operation::Get))?;
                    Ok(Some(record))
                }
            }
        })
        .await
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request
            .effective_limit()
            .map_err(|e| e.with_backend(&self.info.name))?;
        let request = request.clone();
        self.blocking(Operation::List, move |db, err| {
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let table = txn.open_table(TABLE).map_err(|e| err(e.into()))?;
            let start: &str = match &request.cursor {
                Some(c) if c.as_str() >= request.prefix.scan_start() => c.as_str(),
                _ => request.prefix.scan_start(),
            };
            let range = table
                .range::<&str>((Bound::Included(start), Bound::Unbounded))
                .map_err(|e| err(e.into()))?;
            let mut page = ListPage::default();
            for item in range {
                let (k, v) = item.map_err(|e| err(e.into()))?;
                let key = k.value();
                if request.prefix.is_past(key) {
                    break;
                }
                if !request.wants(key) {
                    continue;
                }
                if page.entries.len() == limit {
                    page.next_cursor = page.entries.last().map(|e| e.key.clone());
                    break;
                }
                let bytes = v.value();
                let (key, meta, start) = codec::decode_header(bytes)?;
                page.entries.push(ListEntry {
                    key,
                    meta,
                    size: (bytes.len() - start) as u64,
                });
            }
            Ok(page)
        })
        .await
    }

    /// Native: from the per-block sums ([`crate::blocks`]) in one read transaction,
    /// reading records only at the chunks' edges.
    async fn digest(&self, request: &DigestRequest) -> Result<Vec<DigestChunk>> {
        let name = self.info.name.clone();
        let tag = move |e: Error| e.with_backend(&name).with_operation(Operation::Digest);
        // Refuse a malformed request before going to the blocking pool.
        request.check().map_err(&tag)?;
        let request = request.clone();
        self.blocking(Operation::Digest, move |db, err| {
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let table = txn.open_table(TABLE).map_err(|e| err(e.into()))?;
            let sums = txn.open_table(BLOCKS).map_err(|e| err(e.into()))?;
            blocks::digest(&table, &sums, &request).map_err(tag)
        })
        .await
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.grouped(Operation::Delete, Record::tombstone(key.clone(), version))
            .await
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        for r in records {
            self.info.check_value_size(r, Operation::PutBatch)?;
        }
        let records = records.to_vec();
        self.blocking(Operation::PutBatch, move |db, err| {
            Self::write_records(db, err, &records)
        })
        .await
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let key = key.clone();
        self.blocking(Operation::Purge, move |db, err| {
            let txn = db.begin_write().map_err(|e| err(e.into()))?;
            let removed = {
                let mut table = txn.open_table(TABLE).map_err(|e| err(e.into()))?;
                let mut sums = txn.open_table(BLOCKS).map_err(|e| err(e.into()))?;
                let stored = match table.get(key.as_str()).map_err(|e| err(e.into()))? {
                    Some(bytes) => Some(codec::decode_header(bytes.value())?.1),
                    None => None,
                };
                match stored {
                    Some(m) if m.version <= up_to => {
                        table.remove(key.as_str()).map_err(|e| err(e.into()))?;
                        let old = entry_hash(key.as_str(), m.version, m.tombstone);
                        blocks::on_remove(&mut sums, key.as_str(), old)?;
                        true
                    }
                    _ => false,
                }
            };
            txn.commit().map_err(|e| err(e.into()))?;
            Ok(removed)
        })
        .await
    }

    async fn health(&self) -> Result<()> {
        self.blocking(Operation::Health, |db, err| {
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            txn.open_table(TABLE).map_err(|e| err(e.into()))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_core::BackendExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Backend> =
            Arc::new(RedbBackend::open("redb", dir.path().join("mux.redb")).unwrap());
        let report = mux_conformance::run(store).await;
        println!("{report}");
        assert!(report.all_passed(), "{report}");
        // This store keeps no history: only the history cases may skip.
        assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mux.redb");
        let key = Key::new("a/b").unwrap();
        // Reopened right after the last write, again and again: the group commit's
        // thread must not keep the file open past the write it answered.
        for n in 1..=20 {
            let store = RedbBackend::open("redb", &path).unwrap();
            store
                .put(&Record::new(key.clone(), "v", Version::new(n, 0, 1)))
                .await
                .unwrap();
        }
        let store = RedbBackend::open("redb", &path).unwrap();
        let r = store.get(&key).await.unwrap().unwrap();
        assert_eq!(r.version(), Version::new(20, 0, 1));
        assert_eq!(r.value(), "v".as_bytes());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_each_gets_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbBackend::open("redb", dir.path().join("mux.redb")).unwrap());
        let hot = Key::new("hot").unwrap();
        // 200 versions of one key in a scrambled order, and 200 keys of their own.
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let (store, hot) = (store.clone(), hot.clone());
                tokio::spawn(async move {
                    let v = Version::new(1 + (i * 7919) % 200, 0, 1);
                    let hot = store.put(&Record::new(hot, "x", v)).await.unwrap();
                    let own = Key::new(format!("own/{i}")).unwrap();
                    let mine = store.put(&Record::new(own, "y", v)).await.unwrap();
                    (v, hot, mine)
                })
            })
            .collect();
        let mut applied_hot = Vec::new();
        for t in tasks {
            let (v, hot, mine) = t.await.unwrap();
            assert_eq!(mine, PutOutcome::Applied);
            if hot.is_applied() {
                applied_hot.push(v);
            } else {
                assert!(matches!(hot, PutOutcome::Superseded { stored } if stored > v));
            }
        }
        let top = store.get(&hot).await.unwrap().unwrap().version();
        assert_eq!(top, Version::new(200, 0, 1));
        assert_eq!(applied_hot.iter().max(), Some(&top));
        assert_eq!(
            store
                .list_all(&mux_core::Prefix::new("own/").unwrap())
                .await
                .unwrap()
                .len(),
            200
        );
    }
}
