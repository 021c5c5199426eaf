//! Listing: `DescribeParameters` over the prefix's subtree, decoded and sorted.
//!
//! SSM hands parameters out in no useful order, and escaped names do not sort like
//! their keys anyway, so a page in byte order of keys needs every parameter of the
//! subtree: a listing reads the whole subtree under the prefix (50 parameters per
//! request), sorts it and cuts the first page. Its later pages (requests whose cursor
//! is one a page of that scan handed out) are cut from the same scan for
//! [`crate::SsmConfig::list_reuse`] (30 s by default), so a listing of N keys costs
//! about N/50 requests whatever its page size; a request with any other cursor, or
//! after that time, reads the subtree again (N/50 requests for one page). The README
//! says what that means for large trees.
//!
//! `DescribeParameters` rather than `GetParametersByPath`: a listing needs each key's
//! version and tombstone flag, which live in the description, and only
//! `DescribeParameters` returns descriptions (50 per page against 10); the size comes
//! from `mux_size`, so no value is read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mux_core::{Key, ListEntry, ListPage, ListRequest, Prefix, Result};

use crate::core::{PAGE, SsmCore, endless, filter};
use crate::layout::describe;

/// A bound on the pages one listing reads (50 parameters each; SSM allows 100,000
/// advanced parameters per account and region).
const MAX_PAGES: usize = 100_000 / PAGE as usize + 100;
/// How many scans are kept for the listings that continue from them.
const KEPT_SCANS: usize = 4;

/// One read of a prefix's subtree, kept so the listing's later pages need no new one.
struct Scan {
    prefix: Prefix,
    taken: Instant,
    /// Every entry under the prefix, in key order.
    entries: Arc<Vec<ListEntry>>,
    /// The cursors pages of this scan handed out: a request continuing from one of
    /// them is a later page of the same listing.
    cursors: Vec<Key>,
}

/// The last few scans (see [`crate::SsmConfig::list_reuse`]).
#[derive(Clone, Default)]
pub(crate) struct Scans(Arc<Mutex<VecDeque<Scan>>>);

impl Scans {
    /// The scan a request continues, when it is recent enough.
    fn find(&self, request: &ListRequest, reuse: Duration) -> Option<Arc<Vec<ListEntry>>> {
        let cursor = request.cursor.as_ref()?;
        let scans = self.0.lock().unwrap_or_else(|p| p.into_inner());
        scans
            .iter()
            .find(|s| {
                s.prefix == request.prefix
                    && s.taken.elapsed() <= reuse
                    && s.cursors.contains(cursor)
            })
            .map(|s| s.entries.clone())
    }

    /// Remembers that `entries` handed out `cursor` (adding the scan if it is new).
    fn remember(&self, prefix: &Prefix, entries: &Arc<Vec<ListEntry>>, cursor: Key) {
        let mut scans = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(scan) = scans.iter_mut().find(|s| Arc::ptr_eq(&s.entries, entries)) {
            scan.cursors.push(cursor);
            return;
        }
        if scans.len() == KEPT_SCANS {
            scans.pop_front();
        }
        scans.push_back(Scan {
            prefix: prefix.clone(),
            taken: Instant::now(),
            entries: entries.clone(),
            cursors: vec![cursor],
        });
    }
}

impl SsmCore {
    pub(crate) async fn list_page(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request.effective_limit()?;
        let reuse = self.config.list_reuse;
        let entries = match self.scans.find(request, reuse) {
            Some(entries) => entries,
            None => Arc::new(self.scan(&request.prefix).await?),
        };
        let start = match &request.cursor {
            Some(c) => entries.partition_point(|e| e.key <= *c),
            None => 0,
        };
        let rest = &entries[start..];
        let page: Vec<ListEntry> = rest.iter().take(limit).cloned().collect();
        let next_cursor = if rest.len() > limit {
            page.last().map(|e| e.key.clone())
        } else {
            None
        };
        if let Some(cursor) = &next_cursor
            && !reuse.is_zero()
        {
            self.scans
                .remember(&request.prefix, &entries, cursor.clone());
        }
        Ok(ListPage {
            entries: page,
            next_cursor,
        })
    }

    /// Every entry under `prefix`, in key order: the parameter named like the prefix,
    /// and the subtree below it.
    async fn scan(&self, prefix: &Prefix) -> Result<Vec<ListEntry>> {
        let (exact, path) = self.names.scan(prefix);
        let mut entries: Vec<ListEntry> = Vec::new();
        // The key named like the prefix itself is not in the subtree below it.
        if let Some(name) = exact
            && let Some(key) = self.names.key(&name)
            && let Some((_, description)) = self.describe(&name).await?
        {
            self.push(&mut entries, key, &name, description.as_deref());
        }
        let subtree = filter("Path", "Recursive", &path)?;
        let mut token = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .describe_parameters()
                .parameter_filters(subtree.clone())
                .max_results(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| crate::error::map_sdk(e).error)?;
            for p in out.parameters() {
                let Some(name) = p.name() else { continue };
                // Not a name mux makes (another tool's parameter under the path).
                let Some(key) = self.names.key(name) else {
                    tracing::debug!(name, "skipping a parameter that is not a mux key");
                    continue;
                };
                if prefix.matches(key.as_str()) {
                    self.push(&mut entries, key, name, p.description());
                }
            }
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => {
                    entries.sort_by(|a, b| a.key.cmp(&b.key));
                    entries.dedup_by(|a, b| a.key == b.key);
                    return Ok(entries);
                }
            }
        }
        Err(endless("the parameters", &path))
    }

    /// Adds the entry of a listed parameter, leaving out what is not a mux record (with
    /// a warning when it looks like one but cannot be read).
    fn push(&self, entries: &mut Vec<ListEntry>, key: Key, name: &str, description: Option<&str>) {
        match describe(description, name) {
            Ok(Some(d)) => entries.push(ListEntry {
                key,
                meta: d.meta,
                size: d.size,
            }),
            Ok(None) => {
                tracing::debug!(name, "skipping a parameter without mux metadata");
            }
            Err(e) => {
                tracing::warn!(name, error = %e, "skipping a parameter whose mux metadata is bad");
            }
        }
    }
}
