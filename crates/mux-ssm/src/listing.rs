//! Listing: `DescribeParameters` over the prefix's subtree, decoded and sorted.
//!
//! SSM hands parameters out in no useful order, and escaped names do not sort like
//! their keys anyway, so a page in byte order of keys needs every parameter of the
//! subtree: each `list` call reads the whole subtree under the prefix (50 parameters
//! per request), keeps the keys after the cursor, sorts them and cuts the page. A full
//! listing of N keys in pages of L therefore reads about N²/(50·L) descriptions; the
//! README says what that means for large trees.
//!
//! `DescribeParameters` rather than `GetParametersByPath`: a listing needs each key's
//! version and tombstone flag, which live in the description, and only
//! `DescribeParameters` returns descriptions (50 per page against 10); the size comes
//! from `mux_size`, so no value is read.

use mux_core::{Key, ListEntry, ListPage, ListRequest, Result};

use crate::core::{PAGE, SsmCore, endless, filter};
use crate::layout::describe;

/// A bound on the pages one listing reads (50 parameters each; SSM allows 100,000
/// advanced parameters per account and region).
const MAX_PAGES: usize = 100_000 / PAGE as usize + 100;

impl SsmCore {
    pub(crate) async fn list_page(&self, request: &ListRequest) -> Result<ListPage> {
        let limit = request.effective_limit()?;
        let (exact, path) = self.names.scan(&request.prefix);
        let mut entries: Vec<ListEntry> = Vec::new();
        // The key named like the prefix itself is not in the subtree below it.
        if let Some(name) = exact
            && let Some(key) = self.names.key(&name)
            && request.wants(key.as_str())
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
                if request.wants(key.as_str()) {
                    self.push(&mut entries, key, name, p.description());
                }
            }
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => {
                    entries.sort_by(|a, b| a.key.cmp(&b.key));
                    entries.dedup_by(|a, b| a.key == b.key);
                    let more = entries.len() > limit;
                    entries.truncate(limit);
                    let next_cursor = if more {
                        entries.last().map(|e| e.key.clone())
                    } else {
                        None
                    };
                    return Ok(ListPage {
                        entries,
                        next_cursor,
                    });
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
