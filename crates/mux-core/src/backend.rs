//! The `Backend` trait every store implements.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::capability::Capability;
use crate::digest::{ChunkBuilder, DIGEST_LIST_LIMIT, DigestChunk, DigestRequest};
use crate::error::{Error, Operation, Result};
use crate::history::{AsOf, HistoryPage, HistoryRequest};
use crate::key::{Key, Prefix};
use crate::record::{Metadata, Record};
use crate::version::Version;

/// The page size `list` uses when the caller has no preference.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
/// The largest page `list` returns; larger limits are clamped.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// Who a backend is: its name, kind, capability and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// The instance name, unique within a `Mux` (`pg-eu`, `cache`).
    pub name: Arc<str>,
    /// The kind of store (`memory`, `fs`, `redb`, `postgres`, ...).
    pub kind: &'static str,
    /// What the backend supports.
    pub capability: Capability,
    /// Free-form labels such as `region=eu-west-1`.
    pub labels: BTreeMap<String, String>,
}

impl BackendInfo {
    /// Info with no labels.
    pub fn new(name: impl AsRef<str>, kind: &'static str, capability: Capability) -> BackendInfo {
        BackendInfo {
            name: Arc::from(name.as_ref()),
            kind,
            capability,
            labels: BTreeMap::new(),
        }
    }

    /// Fails with [`crate::ErrorKind::TooLarge`] when `record`'s value exceeds the
    /// declared `max_value_size`, naming this backend and `op`.
    pub fn check_value_size(&self, record: &Record, op: Operation) -> Result<()> {
        match self.capability.max_value_size {
            Some(max) if record.value().len() > max => Err(Error::new(
                crate::ErrorKind::TooLarge,
                format!(
                    "value of {} is {} bytes, the limit is {max}",
                    record.key(),
                    record.value().len()
                ),
            )
            .with_backend(&self.name)
            .with_operation(op)),
            _ => Ok(()),
        }
    }

    /// Adds a label.
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> BackendInfo {
        self.labels.insert(name.into(), value.into());
        self
    }
}

/// What a conditional write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The record was newer than the stored one (or there was none) and is now stored.
    Applied,
    /// The store already held this or a higher version; nothing changed.
    Superseded {
        /// The version the store holds.
        stored: Version,
    },
}

impl PutOutcome {
    /// Whether the write changed the store.
    pub fn is_applied(self) -> bool {
        matches!(self, PutOutcome::Applied)
    }

    /// Whether the store already held this or a higher version.
    pub fn is_superseded(self) -> bool {
        matches!(self, PutOutcome::Superseded { .. })
    }

    /// The outcome of writing a record with version `new` over a stored one.
    pub fn decide(stored: Option<Version>, new: Version) -> PutOutcome {
        match stored {
            Some(stored) if stored >= new => PutOutcome::Superseded { stored },
            _ => PutOutcome::Applied,
        }
    }
}

/// A request for one page of keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRequest {
    /// Which keys (matched on whole segments).
    pub prefix: Prefix,
    /// Continue strictly after this key (the `next_cursor` of the previous page).
    pub cursor: Option<Key>,
    /// The most entries to return (1..=[`MAX_LIST_LIMIT`]; larger values are clamped).
    pub limit: usize,
}

impl ListRequest {
    /// The first page under `prefix` with the default limit.
    pub fn new(prefix: Prefix) -> ListRequest {
        ListRequest {
            prefix,
            cursor: None,
            limit: DEFAULT_LIST_LIMIT,
        }
    }

    /// Sets the page size.
    pub fn with_limit(mut self, limit: usize) -> ListRequest {
        self.limit = limit;
        self
    }

    /// Continues after `cursor`.
    pub fn with_cursor(mut self, cursor: Option<Key>) -> ListRequest {
        self.cursor = cursor;
        self
    }

    /// The limit clamped to `1..=MAX_LIST_LIMIT`; zero is an error.
    pub fn effective_limit(&self) -> Result<usize> {
        if self.limit == 0 {
            return Err(Error::invalid_input("list limit must be at least 1")
                .with_operation(Operation::List));
        }
        Ok(self.limit.min(MAX_LIST_LIMIT))
    }

    /// Whether `key` belongs on this page's range: under the prefix and after the cursor.
    pub fn wants(&self, key: &str) -> bool {
        self.prefix.matches(key) && self.cursor.as_ref().is_none_or(|c| key > c.as_str())
    }
}

/// One listed key with its metadata (tombstones included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// The key.
    pub key: Key,
    /// Its metadata, including version and tombstone flag.
    pub meta: Metadata,
    /// The value's length in bytes.
    pub size: u64,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Entries in byte order of their keys.
    pub entries: Vec<ListEntry>,
    /// Where the next page starts; `None` when the listing is complete.
    pub next_cursor: Option<Key>,
}

/// A store that mux can write records to.
///
/// The contract every implementation keeps (and `mux-conformance` checks):
/// - `put` applies a record only if its version is higher than the stored one's
///   (live or tombstone), and says whether it did; a stale or repeated write changes
///   nothing and reports [`PutOutcome::Superseded`];
/// - `get` returns the stored record, tombstones included, so callers can compare
///   versions;
/// - `delete` is a versioned tombstone write under the same rule;
/// - `list` returns entries (tombstones included) under a prefix in byte order of keys,
///   strictly after the cursor;
/// - errors are [`Error`]s naming this backend and the operation, temporary only when a
///   retry may succeed.
///
/// Keep wrappers honest: a wrapper must forward every method, including the provided
/// ones (`#[deny(clippy::missing_trait_methods)]` on the impl helps).
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Name, kind, capability and labels.
    fn info(&self) -> &BackendInfo;

    /// Stores `record` if its version is higher than the stored one.
    async fn put(&self, record: &Record) -> Result<PutOutcome>;

    /// Reads the stored record, tombstone or not; `None` if the key was never written
    /// (or was purged).
    async fn get(&self, key: &Key) -> Result<Option<Record>>;

    /// Lists one page of entries under a prefix.
    async fn list(&self, request: &ListRequest) -> Result<ListPage>;

    /// Writes a tombstone for `key` at `version`, under the same rule as `put`.
    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.put(&Record::tombstone(key.clone(), version)).await
    }

    /// Stores several records; one outcome per record, in order.
    ///
    /// On error any subset may have been applied; retrying the whole batch is safe
    /// because writes are versioned.
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.push(self.put(r).await?);
        }
        Ok(out)
    }

    /// Hard-removes the record under `key` if its stored version is at most
    /// `up_to` (so a newer write is never lost). Returns whether something was removed.
    /// Used for tombstone garbage collection; requires `Capability::purge`.
    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let _ = (key, up_to);
        Err(Error::unsupported("this backend cannot purge records")
            .with_backend(&self.info().name)
            .with_operation(Operation::Purge))
    }

    /// Checks that the backend is reachable and working.
    async fn health(&self) -> Result<()> {
        Ok(())
    }

    /// One page of `key`'s stored versions, newest first, tombstones included (the
    /// current version is the first entry). A version the store refused as stale never
    /// appears. Requires `Capability::history`; a key never written has an empty history.
    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        let _ = request;
        Err(Error::unsupported("this backend keeps no history")
            .with_backend(&self.info().name)
            .with_operation(Operation::History))
    }

    /// The record as it stood at `at`: the highest stored version at or below
    /// [`AsOf::bound`], tombstones included; `None` if the key had no version then (or
    /// the store no longer keeps it). Requires `Capability::history`.
    ///
    /// The default pages through [`Backend::history`]; stores that can seek override it.
    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        let mut request = HistoryRequest::new(key.clone()).with_limit(DEFAULT_AS_OF_PAGE);
        loop {
            let page = self.history(&request).await?;
            if let Some(found) = page.entries.into_iter().find(|r| at.admits(r.version())) {
                return Ok(Some(found));
            }
            match page.next_cursor {
                Some(cursor) => request.cursor = Some(cursor),
                None => return Ok(None),
            }
        }
    }

    /// The digests of consecutive chunks of a key range (see [`crate::digest`] for the
    /// hash, which must be byte-for-byte the documented one). The default lists the
    /// range ([`digest_by_listing`]); a store that can aggregate in place (an SQL
    /// aggregate, sums it maintains) overrides it and sets `Capability::digest`.
    async fn digest(&self, request: &DigestRequest) -> Result<Vec<DigestChunk>> {
        digest_by_listing(self, request).await
    }
}

/// The digests of consecutive chunks of a range, computed by listing it (what
/// [`Backend::digest`] does unless a store overrides it).
pub async fn digest_by_listing<B: Backend + ?Sized>(
    backend: &B,
    request: &DigestRequest,
) -> Result<Vec<DigestChunk>> {
    let mut chunks = ChunkBuilder::new(request).map_err(|e| {
        e.with_backend(&backend.info().name)
            .with_operation(Operation::Digest)
    })?;
    let mut list = request.range.list_request(DIGEST_LIST_LIMIT);
    'pages: loop {
        let page = backend.list(&list).await?;
        for entry in &page.entries {
            if request.range.is_past(entry.key.as_str()) {
                break 'pages;
            }
            if request.range.contains(entry.key.as_str()) {
                chunks.push(&entry.key, entry.meta.version, entry.meta.tombstone);
            }
        }
        match page.next_cursor {
            Some(cursor) => list.cursor = Some(cursor),
            None => break,
        }
    }
    Ok(chunks.finish())
}

/// The history page size of the default [`Backend::get_as_of`].
const DEFAULT_AS_OF_PAGE: usize = 100;

#[async_trait]
impl<T: Backend + ?Sized> Backend for Arc<T> {
    fn info(&self) -> &BackendInfo {
        (**self).info()
    }
    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        (**self).put(record).await
    }
    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        (**self).get(key).await
    }
    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        (**self).list(request).await
    }
    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        (**self).delete(key, version).await
    }
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        (**self).put_batch(records).await
    }
    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        (**self).purge(key, up_to).await
    }
    async fn health(&self) -> Result<()> {
        (**self).health().await
    }
    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        (**self).history(request).await
    }
    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        (**self).get_as_of(key, at).await
    }
    async fn digest(&self, request: &DigestRequest) -> Result<Vec<DigestChunk>> {
        (**self).digest(request).await
    }
}

/// Conveniences over any [`Backend`]; implemented for every backend.
#[async_trait]
pub trait BackendExt: Backend {
    /// Reads a live record: `None` for a missing key or a tombstone.
    async fn get_live(&self, key: &Key) -> Result<Option<Record>> {
        Ok(self.get(key).await?.filter(|r| !r.is_tombstone()))
    }

    /// Lists every entry under `prefix`, page by page, tombstones included.
    async fn list_all(&self, prefix: &Prefix) -> Result<Vec<ListEntry>> {
        let mut req = ListRequest::new(prefix.clone());
        let mut all = Vec::new();
        loop {
            let page = self.list(&req).await?;
            all.extend(page.entries);
            match page.next_cursor {
                Some(c) => req.cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// Purges tombstones under `prefix` whose version is older than `older_than`
    /// (tombstone garbage collection after a grace period). Returns how many were removed.
    async fn collect_tombstones(&self, prefix: &Prefix, older_than: Version) -> Result<usize> {
        let mut removed = 0;
        for entry in self.list_all(prefix).await? {
            if entry.meta.tombstone
                && entry.meta.version < older_than
                && self.purge(&entry.key, entry.meta.version).await?
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl<T: Backend + ?Sized> BackendExt for T {}
