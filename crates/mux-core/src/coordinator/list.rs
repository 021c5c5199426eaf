//! Listing: merge the pages of every backend that may hold keys under a prefix.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::join_all;

use super::{Inner, ReadOptions, Route};
use crate::backend::{ListEntry, ListPage, ListRequest};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::key::Key;
use crate::tenant::Tenant;

/// Whether a route with prefix `route` can hold keys under the listing prefix `list`.
fn overlaps(list: &str, route: &str) -> bool {
    let (l, r) = (list.trim_end_matches('/'), route.trim_end_matches('/'));
    l.is_empty()
        || r.is_empty()
        || l == r
        || l.starts_with(&format!("{r}/"))
        || r.starts_with(&format!("{l}/"))
}

/// Whether the route prefix covers every key under the listing prefix.
fn covers(list: &str, route: &str) -> bool {
    let (l, r) = (list.trim_end_matches('/'), route.trim_end_matches('/'));
    r.is_empty()
        || l.starts_with(&format!("{r}/"))
        || (l == r && (list.ends_with('/') || !route.ends_with('/')))
}

impl Inner {
    /// The routes whose backends may hold keys under `list`.
    fn list_routes(&self, list: &str, tenant: Option<&Tenant>) -> Vec<&Route> {
        let tenant = tenant.map(Tenant::as_str);
        let eligible = |r: &&Route| r.config.tenant.as_deref().is_none_or(|t| Some(t) == tenant);
        // The routes covering the whole prefix, most specific first, down to the first
        // one without tag conditions (records without those tags land there); if there
        // is none, the default route.
        let mut out: Vec<&Route> = Vec::new();
        let mut floor = None;
        for r in self
            .routes
            .iter()
            .filter(eligible)
            .filter(|r| covers(list, &r.config.prefix))
        {
            out.push(r);
            if r.config.tags.is_empty() {
                floor = Some(r.config.prefix.len());
                break;
            }
        }
        if floor.is_none() {
            out.push(&self.default);
        }
        // Plus the more specific routes below the prefix.
        let floor = floor.unwrap_or(0);
        out.extend(
            self.routes
                .iter()
                .filter(eligible)
                .filter(|r| r.config.prefix.len() > floor && overlaps(list, &r.config.prefix))
                .filter(|r| !covers(list, &r.config.prefix)),
        );
        out
    }

    /// One merged page, tombstones included (the `Backend` contract).
    pub(crate) async fn list(
        self: &Arc<Self>,
        request: &ListRequest,
        options: &ReadOptions,
    ) -> Result<ListPage> {
        self.ensure_started();
        let limit = request.effective_limit()?;
        // Routes match the tenant's prefix; the stores are asked for its namespace.
        let routes = self.list_routes(request.prefix.as_str(), options.tenant.as_ref());
        let stored_request;
        let request = match &options.tenant {
            None => request,
            Some(t) => {
                stored_request = ListRequest {
                    prefix: t.storage_prefix(&request.prefix)?,
                    cursor: request
                        .cursor
                        .as_ref()
                        .map(|c| t.storage_key(c))
                        .transpose()?,
                    limit: request.limit,
                };
                &stored_request
            }
        };
        // Every backend once, with the routes that use it.
        let mut slots: Vec<usize> = routes
            .iter()
            .flat_map(|r| r.targets.iter().map(|(s, _)| *s))
            .filter(|s| self.slots[*s].backend.info().capability.list)
            .collect();
        slots.sort_unstable();
        slots.dedup();
        // Stores found stale by their markers are left out where a route has another.
        let stale = |s: &usize| self.slots[*s].marker.is_stale();
        if slots.iter().any(stale) {
            let needed = |s: &usize| {
                routes.iter().any(|r| {
                    r.targets.iter().any(|(t, _)| t == s)
                        && !r
                            .targets
                            .iter()
                            .any(|(t, _)| slots.contains(t) && !stale(t))
                })
            };
            let keep: Vec<usize> = slots
                .iter()
                .copied()
                .filter(|s| !stale(s) || needed(s))
                .collect();
            slots = keep;
        }
        let pages = join_all(slots.iter().map(|&s| async move {
            let slot = &self.slots[s];
            (
                s,
                slot.guard(Operation::List, slot.backend.list(request))
                    .await,
            )
        }))
        .await;

        // Each route needs at least one backend that answered.
        let answered: Vec<usize> = pages
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(s, _)| *s)
            .collect();
        for route in &routes {
            if !route.targets.iter().any(|(s, _)| answered.contains(s)) {
                let errors: Vec<String> = pages
                    .iter()
                    .filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string))
                    .collect();
                let kind = if errors.is_empty() {
                    ErrorKind::Unsupported
                } else {
                    ErrorKind::Unavailable
                };
                return Err(Error::new(
                    kind,
                    format!(
                        "cannot list \"{}\": no backend of {} answered{}",
                        request.prefix,
                        route.config.describe(),
                        if errors.is_empty() {
                            " (none can list)".to_owned()
                        } else {
                            format!(": [{}]", errors.join("; "))
                        }
                    ),
                )
                .with_operation(Operation::List));
            }
        }

        // Merge: highest version per key, only up to the smallest cursor of a backend
        // that has more (beyond it, that backend has not spoken yet).
        let mut horizon: Option<Key> = None;
        let mut merged: BTreeMap<Key, ListEntry> = BTreeMap::new();
        for (_, page) in pages {
            let Ok(page) = page else { continue };
            if let Some(c) = page.next_cursor {
                horizon = Some(match horizon {
                    Some(h) if h <= c => h,
                    _ => c,
                });
            }
            for entry in page.entries {
                match merged.get(&entry.key) {
                    Some(existing) if existing.meta.version >= entry.meta.version => {}
                    _ => {
                        merged.insert(entry.key.clone(), entry);
                    }
                }
            }
        }
        if let Some(h) = &horizon {
            merged.retain(|k, _| k <= h);
        }
        let mut entries: Vec<ListEntry> = merged.into_values().collect();
        let next_cursor = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| e.key.clone())
        } else {
            horizon
        };
        // mux's own records (`_mux/…`, the store markers) are not the application's.
        entries.retain(|e| !super::is_reserved(e.key.as_str()));
        if routes.iter().any(|r| r.sealer.is_some()) {
            // Sealed values are listed with their plain size (routes match logical keys).
            for e in entries.iter_mut().filter(|e| !e.meta.tombstone) {
                let logical = match &options.tenant {
                    Some(t) => t.logical_key(&e.key),
                    None => Some(e.key.clone()),
                };
                let route = logical
                    .as_ref()
                    .map(|k| self.route_for(k.as_str(), &e.meta.tags, options.tenant.as_ref()));
                if let Some(sealer) = route.and_then(Route::sealer) {
                    e.size = sealer.listed_size(e.size);
                }
            }
        }
        let Some(t) = &options.tenant else {
            return Ok(ListPage {
                entries,
                next_cursor,
            });
        };
        Ok(ListPage {
            entries: entries
                .into_iter()
                .filter_map(|e| {
                    let key = t.logical_key(&e.key)?;
                    Some(ListEntry { key, ..e })
                })
                .collect(),
            next_cursor: next_cursor.and_then(|c| t.logical_key(&c)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_overlap_and_cover() {
        assert!(overlaps("", "tenantconfig/"));
        assert!(overlaps("tenantconfig", "tenantconfig/"));
        assert!(overlaps("tenantconfig/acme", "tenantconfig/"));
        assert!(!overlaps("tenant", "tenantconfig/"));
        assert!(overlaps("a", "a/b/"));
        assert!(covers("tenantconfig/acme", "tenantconfig/"));
        assert!(covers("tenantconfig/", "tenantconfig/"));
        assert!(
            !covers("tenantconfig", "tenantconfig/"),
            "the key tenantconfig itself is not under tenantconfig/"
        );
        assert!(covers("tenantconfig", "tenantconfig"));
        assert!(!covers("a", "a/b"));
        assert!(covers("x", ""));
    }
}
