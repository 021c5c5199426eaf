//! A `Mux` seen as a `Backend` ([`Mux::as_backend`]): the coordinator keeps every
//! contract a single store keeps.

use async_trait::async_trait;
use futures_util::future::join_all;

use super::{Mux, ReadOptions};
use crate::backend::{Backend, BackendInfo, ListPage, ListRequest, PutOutcome};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::history::{AsOf, HistoryPage, HistoryRequest};
use crate::key::Key;
use crate::record::Record;
use crate::version::Version;

/// A [`Mux`] as a [`Backend`]: records at their own versions, tombstones visible, no
/// tenant. Made by [`Mux::as_backend`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct MuxBackend(pub(super) Mux);

impl MuxBackend {
    /// The `Mux` behind this view.
    pub fn mux(&self) -> &Mux {
        &self.0
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for MuxBackend {
    fn info(&self) -> &BackendInfo {
        &self.0.inner.info
    }

    /// Writes the record at its own version (imports, replays) with the route's
    /// default consistency, routed by its tags.
    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.0.inner.clock.observe(record.version());
        let report = self.0.inner.write(record.clone(), None, None).await?;
        Ok(report.put_outcome())
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.0.inner.read(key, &ReadOptions::default()).await
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        let name = &self.0.inner.info.name;
        self.0
            .inner
            .list(request, &ReadOptions::default())
            .await
            .map_err(|e| match e.backend() {
                Some(_) => e,
                None => e.with_backend(name),
            })
    }

    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        Backend::put(self, &Record::tombstone(key.clone(), version)).await
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        let outcomes = join_all(records.iter().map(|r| Backend::put(self, r))).await;
        outcomes.into_iter().collect()
    }

    /// Purges the key on every backend of its route; true if any removed it.
    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        let route = self
            .0
            .inner
            .route_for(key.as_str(), &Default::default(), None);
        let results = join_all(route.targets.iter().map(|(s, _)| {
            let slot = &self.0.inner.slots[*s];
            slot.guard(Operation::Purge, slot.backend.purge(key, up_to))
        }))
        .await;
        let mut removed = false;
        for r in results {
            removed |= r?;
        }
        Ok(removed)
    }

    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        self.0.inner.history(request, &ReadOptions::default()).await
    }

    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        self.0
            .inner
            .get_as_of(key, at, &ReadOptions::default())
            .await
    }

    /// Digests the coordinator's merged listing (the highest version of each key).
    async fn digest(
        &self,
        request: &crate::digest::DigestRequest,
    ) -> Result<Vec<crate::digest::DigestChunk>> {
        crate::backend::digest_by_listing(self, request).await
    }

    /// Healthy when every backend is.
    async fn health(&self) -> Result<()> {
        let results = join_all(self.0.inner.slots.iter().map(|s| async move {
            s.guard(Operation::Health, s.backend.health())
                .await
                .map_err(|e| format!("{}: {e}", s.name))
        }))
        .await;
        let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Unavailable,
                format!("unhealthy backends: [{}]", failed.join("; ")),
            )
            .with_operation(Operation::Health))
        }
    }
}
