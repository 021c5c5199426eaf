//! A `Mux` is itself a `Backend`: the coordinator keeps every contract a single store keeps.

use async_trait::async_trait;
use futures_util::future::join_all;

use super::{Mux, ReadOptions};
use crate::backend::{Backend, BackendInfo, ListPage, ListRequest, PutOutcome};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::key::Key;
use crate::record::Record;
use crate::version::Version;

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for Mux {
    fn info(&self) -> &BackendInfo {
        &self.inner.info
    }

    /// Writes the record at its own version (imports, replays) with the route's
    /// default consistency, routed by its tags.
    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.inner.clock.observe(record.version());
        let report = self.inner.write(record.clone(), None, None).await?;
        Ok(report.put_outcome())
    }

    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.inner.read(key, &ReadOptions::default()).await
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        self.inner.list(request, &ReadOptions::default()).await
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
            .inner
            .route_for(key.as_str(), &Default::default(), None);
        let results = join_all(route.targets.iter().map(|(s, _)| {
            let slot = &self.inner.slots[*s];
            slot.guard(Operation::Purge, slot.backend.purge(key, up_to))
        }))
        .await;
        let mut removed = false;
        for r in results {
            removed |= r?;
        }
        Ok(removed)
    }

    /// Healthy when every backend is.
    async fn health(&self) -> Result<()> {
        let results = join_all(self.inner.slots.iter().map(|s| async move {
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
