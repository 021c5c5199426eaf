//! Re-sealing: the records of encrypted routes sealed again under the current key
//! (after a key rotation), or sealed for the first time (a route that held plain
//! values and now has `encrypt`).

use std::collections::BTreeMap;

use super::Mux;
use crate::ReadOptions;
use crate::backend::{ListPage, ListRequest};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::version::Version;

/// The most failures a page keeps with their errors (all are counted).
const ERRORS_KEPT: usize = 10;

/// What one page of [`Mux::reseal`] found and did.
#[derive(Debug, Default)]
pub struct ResealPage {
    /// Live records looked at.
    pub scanned: u64,
    /// Records sealed again under the current key (or sealed for the first time).
    pub resealed: u64,
    /// Records already sealed under the current key.
    pub current: u64,
    /// Records of routes without `encrypt` (left alone).
    pub unencrypted_route: u64,
    /// Records whose key vanished or was deleted between the listing and the read.
    pub gone: u64,
    /// Records that could not be read, opened or written.
    pub failed: u64,
    /// The first failures, with their errors.
    pub errors: Vec<(Key, Error)>,
    /// How many records each key id had sealed, as read (before re-sealing); values of
    /// an encrypted route that were never sealed count under `""`.
    pub by_key: BTreeMap<String, u64>,
    /// Where the next page starts; `None` when the prefix is done.
    pub next_cursor: Option<Key>,
}

impl ResealPage {
    fn fail(&mut self, key: &Key, e: Error) {
        self.failed += 1;
        if self.errors.len() < ERRORS_KEPT {
            self.errors.push((key.clone(), e));
        }
    }
}

/// The smallest version above `v` that no write made after `v` was seen can have: a
/// clock that has observed `v` stamps at least `(physical, logical + 1, 0)`, so a newer
/// write always wins over the re-sealed copy, and the re-sealed copy wins over `v`.
fn successor(v: Version) -> Version {
    match v.node().checked_add(1) {
        Some(node) => Version::new(v.physical_ms(), v.logical(), node),
        None => Version::new(v.physical_ms(), v.logical().saturating_add(1), 0),
    }
}

impl Mux {
    /// One page of re-sealing under `request` (prefix, cursor, limit; a tenant's keys
    /// with `options.tenant`): each live record of an encrypted route whose stored
    /// value is sealed under another key than the route's current one (or not sealed)
    /// is read with the route's policy, opened, and written back through the route —
    /// same value, tags and content type — at the next version up (see the source: a
    /// newer write always wins over it). With `dry_run`, records are only counted by
    /// key id ([`ResealPage::by_key`]): that is how to check that no record still
    /// needs a key before it is retired. Call again with `next_cursor` until it is
    /// `None`; a page that stopped midway is safe to run again.
    pub async fn reseal(
        &self,
        request: &ListRequest,
        options: &ReadOptions,
        dry_run: bool,
    ) -> Result<ResealPage> {
        let ListPage {
            entries,
            next_cursor,
        } = self.inner.list(request, options).await?;
        let mut out = ResealPage {
            next_cursor,
            ..ResealPage::default()
        };
        let tenant = options.tenant.as_ref();
        for entry in entries.into_iter().filter(|e| !e.meta.tombstone) {
            out.scanned += 1;
            let route = self
                .inner
                .route_for(entry.key.as_str(), &entry.meta.tags, tenant);
            let Some(sealer) = route.sealer.clone() else {
                out.unencrypted_route += 1;
                continue;
            };
            let stored = match tenant {
                Some(t) => t.storage_key(&entry.key)?,
                None => entry.key.clone(),
            };
            let record = match self
                .inner
                .read_stored(route, &stored, route.config.read)
                .await
            {
                Ok(Some(r)) if !r.is_tombstone() => r,
                Ok(_) => {
                    out.gone += 1;
                    continue;
                }
                Err(e) => {
                    out.fail(&entry.key, e);
                    continue;
                }
            };
            let id = sealer.key_id(record.value()).unwrap_or_default();
            *out.by_key.entry(id).or_default() += 1;
            if dry_run {
                continue;
            }
            match sealer.needs_reseal(record.value()).await {
                Ok(false) => {
                    out.current += 1;
                    continue;
                }
                Ok(true) => {}
                Err(e) => {
                    out.fail(&entry.key, e);
                    continue;
                }
            }
            let opened = match sealer.open(&stored, record).await {
                Ok(r) => r,
                Err(e) => {
                    out.fail(&entry.key, e);
                    continue;
                }
            };
            let next = successor(opened.version());
            self.inner.clock.observe(next);
            let again = opened.with_key(entry.key.clone()).with_version(next);
            match self.inner.write(again, None, tenant).await {
                Ok(_) => out.resealed += 1,
                Err(e) => out.fail(&entry.key, e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_is_just_above_and_below_any_later_write() {
        let v = Version::new(100, 5, 7);
        let s = successor(v);
        assert!(s > v);
        assert!(s < Version::new(100, 6, 0), "a write that saw v wins");
        let edge = Version::new(100, 5, u32::MAX);
        assert!(successor(edge) > edge);
        assert_eq!(successor(edge), Version::new(100, 6, 0));
    }
}
