//! Erasure: every record under a prefix (a tenant's namespace) removed from every
//! store — live records, tombstones and, where a store keeps them, past versions — and
//! from what could bring it back: dead letters, owed writes in the intent log, hints
//! in flight, and the route caches.

use std::time::Duration;

use super::Mux;
use crate::backend::{Backend, ListRequest};
use crate::error::Result;
use crate::key::Prefix;
use crate::version::Version;

/// What an erasure removed from one store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreErasure {
    /// The store.
    pub backend: String,
    /// Records purged (live or tombstones; a store keeping history drops their
    /// versions with them).
    pub purged: u64,
    /// Why the store could not be erased completely (run the erasure again).
    pub error: Option<String>,
}

/// What [`Mux::erase`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EraseReport {
    /// Per store.
    pub stores: Vec<StoreErasure>,
    /// Dead letters under the prefix, discarded.
    pub dead_letters: u64,
    /// Owed writes under the prefix dropped from the intent log.
    pub owed_writes: u64,
    /// Whether every store was erased (else run it again: it resumes, since what was
    /// purged is gone).
    pub complete: bool,
}

/// The highest version: purging up to it removes whatever version is stored.
const EVERY_VERSION: Version = Version::new(u64::MAX >> 16, u32::MAX, u32::MAX);

impl Mux {
    /// Erases every record under `prefix` (`tenants/<t>/` for a tenant) from every
    /// store of this `Mux`, whatever route put it there: first the dead letters and the
    /// intent log's owed writes under it (so no replay brings it back), then each
    /// store, page by page; then it waits (up to `settle`) for hints already in flight
    /// and purges again what they wrote; last it clears the route caches. Writes made
    /// under the prefix meanwhile are not prevented: revoke the tenant's access first.
    pub async fn erase(&self, prefix: &Prefix, settle: Duration) -> Result<EraseReport> {
        let inner = &self.inner;
        let under = |k: &crate::key::Key| prefix.matches(k.as_str());
        let mut report = EraseReport::default();
        // From now on, hints of what was written so far under the prefix are dropped.
        let mark = inner.clock.now();
        inner
            .erased
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((prefix.clone(), mark));
        for dead in inner.log.dead_letters().await? {
            if under(dead.record.key()) && inner.log.take_dead_letter(dead.id).await?.is_some() {
                report.dead_letters += 1;
            }
        }
        for pending in inner.log.pending().await? {
            if under(pending.record.key()) {
                for backend in &pending.owed {
                    inner.log.complete(pending.id, backend).await?;
                }
                report.owed_writes += 1;
            }
        }
        for slot in &inner.slots {
            report.stores.push(purge_all(&*slot.backend, prefix).await);
        }
        // A write still finishing in the background may land after its store was purged.
        let _ = tokio::time::timeout(settle, self.settle()).await;
        for (i, slot) in inner.slots.iter().enumerate() {
            let again = purge_all(&*slot.backend, prefix).await;
            let s = &mut report.stores[i];
            s.purged += again.purged;
            if again.error.is_some() {
                s.error = again.error;
            }
        }
        for route in inner.routes.iter().chain(std::iter::once(&inner.default)) {
            if let Some(cache) = &route.cache {
                cache.clear();
            }
        }
        report.complete = report.stores.iter().all(|s| s.error.is_none());
        Ok(report)
    }
}

/// Purges every entry under `prefix` from one store.
async fn purge_all(backend: &dyn Backend, prefix: &Prefix) -> StoreErasure {
    let mut out = StoreErasure {
        backend: backend.info().name.to_string(),
        ..StoreErasure::default()
    };
    if !backend.info().capability.list {
        out.error = Some("it cannot list, so its keys cannot be found".into());
        return out;
    }
    let mut request = ListRequest::new(prefix.clone());
    loop {
        let page = match backend.list(&request).await {
            Ok(p) => p,
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        };
        for entry in &page.entries {
            match backend.purge(&entry.key, EVERY_VERSION).await {
                Ok(true) => out.purged += 1,
                Ok(false) => {}
                Err(e) => {
                    out.error = Some(format!("{}: {e}", entry.key));
                    return out;
                }
            }
        }
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::BackendExt;
    use crate::memory::MemoryBackend;
    use crate::testing::FaultyBackend;
    use crate::{Key, Role, RouteConfig, Tenant, WriteConsistency, WriteOptions};

    #[tokio::test(start_paused = true)]
    async fn a_tenant_is_erased_everywhere_and_no_hint_brings_it_back() {
        let a = Arc::new(MemoryBackend::new("a"));
        let b = Arc::new(FaultyBackend::new(MemoryBackend::new("b"), 3));
        let mux = Mux::builder()
            .backend(a.clone())
            .backend(b.clone())
            .default_route(
                RouteConfig::new("")
                    .backend("a", Role::Primary)
                    .backend("b", Role::Replica)
                    .write(WriteConsistency::One),
            )
            .build()
            .unwrap();
        let as_tenant = |t: &str| WriteOptions {
            tenant: Some(Tenant::new(t).unwrap()),
            ..Default::default()
        };
        for i in 0..5 {
            let k = Key::new(format!("cfg/{i}")).unwrap();
            mux.write(k.clone(), "acme's", &as_tenant("acme"))
                .await
                .unwrap();
            mux.write(k, "globex's", &as_tenant("globex"))
                .await
                .unwrap();
        }
        mux.delete(&Key::new("cfg/0").unwrap(), &as_tenant("acme"))
            .await
            .unwrap();
        mux.settle().await;
        // b goes down: acme's next write is owed to it as a hint.
        b.set_outage(true);
        mux.write(Key::new("cfg/9").unwrap(), "owed", &as_tenant("acme"))
            .await
            .unwrap();
        let prefix = Tenant::new("acme")
            .unwrap()
            .storage_prefix(&crate::Prefix::all())
            .unwrap();
        let report = mux.erase(&prefix, Duration::from_millis(50)).await.unwrap();
        assert!(!report.complete, "b is down: {report:?}");
        assert_eq!(
            report.stores[0].purged, 6,
            "a held acme's 5 records and the new one"
        );
        b.set_outage(false);
        // Run again: b is erased now, and the hint made before the erasure never lands.
        let report = mux.erase(&prefix, Duration::from_secs(60)).await.unwrap();
        assert!(report.complete, "{report:?}");
        assert_eq!(report.stores[1].purged, 5, "b held acme's 5 records");
        mux.settle().await;
        for store in [&*a as &dyn Backend, b.get_ref() as &dyn Backend] {
            let left = store.list_all(&crate::Prefix::all()).await.unwrap();
            assert_eq!(
                left.len(),
                5,
                "only globex's remain on {}",
                store.info().name
            );
            assert!(
                left.iter()
                    .all(|e| e.key.as_str().starts_with("tenants/globex/"))
            );
        }
        assert!(mux.dead_letters().await.unwrap().is_empty());
        // Writes after the erasure are the tenant's new data.
        mux.write(Key::new("cfg/new").unwrap(), "fresh", &as_tenant("acme"))
            .await
            .unwrap();
        assert!(
            a.get(&Key::new("tenants/acme/cfg/new").unwrap())
                .await
                .unwrap()
                .is_some()
        );
    }
}
