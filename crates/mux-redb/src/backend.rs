//! [`RedbBackend`]: the `Backend` implementation on a redb file.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use mux_core::digest::{ChunkBuilder, DigestChunk, DigestRequest};
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListEntry, ListPage, ListRequest,
    Operation, PutOutcome, Record, Result, Version, codec,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::config::DEFAULT_MAX_VALUE_SIZE;
use crate::error::map_err;

/// The table that holds the records.
pub const TABLE: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("mux_records");

/// A backend storing records in a redb database file.
pub struct RedbBackend {
    info: BackendInfo,
    path: PathBuf,
    db: Arc<Database>,
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
        txn.open_table(TABLE).map_err(|e| err(e.into()))?;
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(RedbBackend {
            info: BackendInfo::new(name, "redb", Self::CAPABILITY),
            path,
            db: Arc::new(db),
        })
    }

    /// Sets the largest value accepted, in bytes.
    pub fn with_max_value_size(mut self, max: usize) -> RedbBackend {
        self.info.capability.max_value_size = Some(max);
        self
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

    fn write_records(
        db: &Database,
        err: &dyn Fn(redb::Error) -> Error,
        records: &[Record],
    ) -> Result<Vec<PutOutcome>> {
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        let mut outcomes = Vec::with_capacity(records.len());
        {
            let mut table = txn.open_table(TABLE).map_err(|e| err(e.into()))?;
            for record in records {
                let stored = match table
                    .get(record.key().as_str())
                    .map_err(|e| err(e.into()))?
                {
                    Some(bytes) => Some(codec::decode_header(bytes.value())?.1.version),
                    None => None,
                };
                let outcome = PutOutcome::decide(stored, record.version());
                if outcome.is_applied() {
                    table
                        .insert(record.key().as_str(), codec::encode(record).as_slice())
                        .map_err(|e| err(e.into()))?;
                }
                outcomes.push(outcome);
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(outcomes)
    }
}

/// The part of a stored record's header line a digest needs (serde skips the rest).
#[derive(serde::Deserialize)]
struct DigestHeader {
    version: Version,
    #[serde(default)]
    tombstone: bool,
}

/// Reads the version and tombstone flag from a stored record's header line (the
/// [`codec`] envelope), without decoding its tags or touching its value.
fn digest_header(key: &str, bytes: &[u8]) -> Result<DigestHeader> {
    let corrupt = || {
        Error::new(
            ErrorKind::Corrupt,
            format!("record {key}: stored header is not valid"),
        )
    };
    let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(corrupt)?;
    serde_json::from_slice(&bytes[..newline]).map_err(|e| corrupt().with_source(e))
}

#[async_trait]
impl Backend for RedbBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        let record = record.clone();
        self.blocking(Operation::Put, move |db, err| {
            Ok(Self::write_records(db, err, std::slice::from_ref(&record))?[0])
        })
        .await
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

    /// Native: scans the range in one read transaction, reading only each record's
    /// version and tombstone flag.
    async fn digest(&self, request: &DigestRequest) -> Result<Vec<DigestChunk>> {
        let name = self.info.name.clone();
        let tag = move |e: Error| e.with_backend(&name).with_operation(Operation::Digest);
        let mut chunks = ChunkBuilder::new(request).map_err(&tag)?;
        let range = request.range.clone();
        self.blocking(Operation::Digest, move |db, err| {
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let table = txn.open_table(TABLE).map_err(|e| err(e.into()))?;
            let start: &str = match &range.after {
                Some(a) if a.as_str() >= range.prefix.scan_start() => a.as_str(),
                _ => range.prefix.scan_start(),
            };
            let end = match &range.until {
                // An empty range (a scan may not start after its end).
                Some(u) if u.as_str() < start => return Ok(chunks.finish()),
                Some(u) => Bound::Included(u.as_str()),
                None => Bound::Unbounded,
            };
            let entries = table
                .range::<&str>((Bound::Included(start), end))
                .map_err(|e| err(e.into()))?;
            for item in entries {
                let (k, v) = item.map_err(|e| err(e.into()))?;
                let key = k.value();
                if range.is_past(key) {
                    break;
                }
                if !range.contains(key) {
                    continue;
                }
                let header = digest_header(key, v.value()).map_err(&tag)?;
                let key = Key::new(key)
                    .map_err(|e| tag(Error::new(ErrorKind::Corrupt, e.message().to_owned())))?;
                chunks.push(&key, header.version, header.tombstone);
            }
            Ok(chunks.finish())
        })
        .await
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        let record = Record::tombstone(key.clone(), version);
        self.blocking(Operation::Delete, move |db, err| {
            Ok(Self::write_records(db, err, std::slice::from_ref(&record))?[0])
        })
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
                let stored = match table.get(key.as_str()).map_err(|e| err(e.into()))? {
                    Some(bytes) => Some(codec::decode_header(bytes.value())?.1.version),
                    None => None,
                };
                match stored {
                    Some(v) if v <= up_to => {
                        table.remove(key.as_str()).map_err(|e| err(e.into()))?;
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
        {
            let store = RedbBackend::open("redb", &path).unwrap();
            store
                .put(&Record::new(key.clone(), "v", Version::new(5, 0, 1)))
                .await
                .unwrap();
        }
        let store = RedbBackend::open("redb", &path).unwrap();
        let r = store.get(&key).await.unwrap().unwrap();
        assert_eq!(r.version(), Version::new(5, 0, 1));
        assert_eq!(r.value(), "v".as_bytes());
    }
}
