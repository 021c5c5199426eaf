//! The in-memory backend.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, RwLock};

use async_trait::async_trait;

use crate::backend::{Backend, BackendInfo, ListEntry, ListPage, ListRequest, PutOutcome};
use crate::capability::Capability;
use crate::digest::{ChunkBuilder, DigestChunk, DigestRequest};
use crate::error::{Operation, Result};
use crate::history::{HistoryPage, HistoryRequest};
use crate::key::Key;
use crate::record::Record;
use crate::version::Version;

/// A backend that keeps records in a `BTreeMap` in memory.
///
/// Fast and complete (every capability but durability and, unless made with
/// [`MemoryBackend::with_history`], history); the reference implementation of the
/// [`Backend`] contract and the store of choice for tests and caches.
#[derive(Debug)]
pub struct MemoryBackend {
    info: BackendInfo,
    records: RwLock<BTreeMap<Key, Record>>,
    /// Every applied version per key, oldest first, when the backend keeps history.
    /// Locked only while `records` is write-locked (or for reading history).
    past: Option<Mutex<BTreeMap<Key, Vec<Record>>>>,
}

impl MemoryBackend {
    /// The capability of every memory backend.
    pub const CAPABILITY: Capability = Capability {
        list: true,
        batch: true,
        atomic_conditional_write: true,
        history: false,
        tags: true,
        content_type: true,
        purge: true,
        durable: false,
        digest: true,
        max_value_size: Some(Self::DEFAULT_MAX_VALUE_SIZE),
    };

    /// The default largest value, in bytes (64 MiB).
    pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;

    /// An empty memory backend called `name`.
    pub fn new(name: impl AsRef<str>) -> MemoryBackend {
        MemoryBackend::with_info(BackendInfo::new(name, "memory", Self::CAPABILITY))
    }

    /// An empty memory backend with custom info (labels, a narrower capability). It
    /// keeps history when `info.capability.history` is set.
    pub fn with_info(info: BackendInfo) -> MemoryBackend {
        MemoryBackend {
            past: info.capability.history.then(|| Mutex::new(BTreeMap::new())),
            info,
            records: RwLock::new(BTreeMap::new()),
        }
    }

    /// An empty memory backend that keeps every applied version of every key
    /// (`Capability::history`), for tests of temporal reads.
    pub fn with_history(name: impl AsRef<str>) -> MemoryBackend {
        let capability = Capability {
            history: true,
            ..Self::CAPABILITY
        };
        MemoryBackend::with_info(BackendInfo::new(name, "memory", capability))
    }

    /// How many records (tombstones included) are stored.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Key, Record>> {
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Key, Record>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }

    fn past(&self) -> Option<std::sync::MutexGuard<'_, BTreeMap<Key, Vec<Record>>>> {
        self.past
            .as_ref()
            .map(|p| p.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn apply(&self, map: &mut BTreeMap<Key, Record>, record: &Record) -> PutOutcome {
        let outcome =
            PutOutcome::decide(map.get(record.key()).map(Record::version), record.version());
        if outcome.is_applied() {
            if let Some(mut past) = self.past() {
                past.entry(record.key().clone())
                    .or_default()
                    .push(record.clone());
            }
            map.insert(record.key().clone(), record.clone());
        }
        outcome
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.info.check_value_size(record, Operation::Put)?;
        let mut map = self.write();
        Ok(self.apply(&mut map, record))
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        Ok(self.read().get(key).cloned())
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request
            .effective_limit()
            .map_err(|e| e.with_backend(&self.info.name))?;
        let map = self.read();
        let start: &str = match &request.cursor {
            Some(c) if c.as_str() >= request.prefix.scan_start() => c.as_str(),
            _ => request.prefix.scan_start(),
        };
        let mut page = ListPage::default();
        for (key, record) in map.range::<str, _>((Bound::Included(start), Bound::Unbounded)) {
            if request.prefix.is_past(key.as_str()) {
                break;
            }
            if !request.wants(key.as_str()) {
                continue;
            }
            if page.entries.len() == limit {
                page.next_cursor = page.entries.last().map(|e| e.key.clone());
                break;
            }
            page.entries.push(ListEntry {
                key: key.clone(),
                meta: record.meta().clone(),
                size: record.value().len() as u64,
            });
        }
        Ok(page)
    }

    /// Native: scans the map in place, without copying metadata.
    async fn digest(&self, request: &DigestRequest) -> Result<Vec<DigestChunk>> {
        let mut chunks = ChunkBuilder::new(request).map_err(|e| {
            e.with_backend(&self.info.name)
                .with_operation(Operation::Digest)
        })?;
        let range = &request.range;
        let map = self.read();
        let start: &str = match &range.after {
            Some(c) if c.as_str() >= range.prefix.scan_start() => c.as_str(),
            _ => range.prefix.scan_start(),
        };
        for (key, record) in map.range::<str, _>((Bound::Included(start), Bound::Unbounded)) {
            if range.is_past(key.as_str()) {
                break;
            }
            if range.contains(key.as_str()) {
                chunks.push(key, record.version(), record.is_tombstone());
            }
        }
        Ok(chunks.finish())
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        let mut map = self.write();
        Ok(self.apply(&mut map, &Record::tombstone(key.clone(), version)))
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        for r in records {
            self.info.check_value_size(r, Operation::PutBatch)?;
        }
        let mut map = self.write();
        Ok(records.iter().map(|r| self.apply(&mut map, r)).collect())
    }

    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let mut map = self.write();
        match map.get(key) {
            Some(r) if r.version() <= up_to => {
                map.remove(key);
                if let Some(mut past) = self.past() {
                    past.remove(key);
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }

    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        let Some(past) = self.past() else {
            return Err(crate::Error::unsupported(
                "this memory backend keeps no history (make it with MemoryBackend::with_history)",
            )
            .with_backend(&self.info.name)
            .with_operation(Operation::History));
        };
        let versions = past.get(&request.key).cloned().unwrap_or_default();
        drop(past);
        request
            .page(versions)
            .map_err(|e| e.with_backend(&self.info.name))
    }
}
