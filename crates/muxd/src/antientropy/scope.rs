//! Which keys a route's pass (or a restore) covers: its scopes (the route's prefix as
//! stored, and each tenant's), whether another route may own keys there on other
//! stores, and the tenants found on the stores.

use std::collections::BTreeSet;
use std::sync::Arc;

use mux::{Backend, Key, ListRequest, Prefix, Result, RouteConfig, TENANTS_ROOT, Tenant};
use mux_sync::Throttle;

/// Which stored keys a scope covers, for the ownership check.
#[derive(Clone, Debug)]
pub(super) enum Scope {
    /// Keys stored under the route's prefix as is (no tenant); with the empty prefix,
    /// every key, every tenant's included.
    Untenanted,
    /// One tenant's keys under the route's prefix.
    Tenant(String),
}

impl Scope {
    pub(super) fn prefix(&self, route: &RouteConfig) -> Result<Prefix> {
        let prefix = Prefix::new(&route.prefix)?;
        match self {
            Scope::Untenanted => Ok(prefix),
            Scope::Tenant(t) => Tenant::new(t)?.storage_prefix(&prefix),
        }
    }

    /// Whether keys of a route for `tenant` can be stored in this scope of a route with
    /// `prefix`.
    fn admits(&self, prefix: &str, tenant: Option<&str>) -> bool {
        match (self, tenant) {
            // The empty prefix as stored spans every tenant's namespace too.
            (Scope::Untenanted, Some(_)) => prefix.is_empty(),
            (Scope::Untenanted, None) => true,
            (Scope::Tenant(t), Some(other)) => t == other,
            (Scope::Tenant(_), None) => true,
        }
    }
}

/// Whether compare and GC may run on a scope of `routes[i]`: every other route whose
/// keys can lie there must hold them on all of this route's stores or on none (compare),
/// and on exactly this route's stores (GC). `Err` names the route in the way.
pub(super) fn ownership(
    routes: &[RouteConfig],
    i: usize,
    scope: &Scope,
) -> std::result::Result<bool, String> {
    let route = &routes[i];
    let stores = |r: &RouteConfig| -> BTreeSet<String> {
        r.backends.iter().map(|t| t.backend.clone()).collect()
    };
    let mine = stores(route);
    let mut gc = true;
    for (j, other) in routes.iter().enumerate() {
        if j == i || !scope.admits(&route.prefix, other.tenant.as_deref()) {
            continue;
        }
        // Longer prefixes (and the same one with more tags or a tenant) win keys here;
        // shorter ones only when this route's tags leave keys to them.
        let nested = other.prefix.starts_with(&route.prefix);
        let wider = !route.tags.is_empty() && route.prefix.starts_with(&other.prefix);
        if !(nested || wider) {
            continue;
        }
        let theirs = stores(other);
        if theirs.is_disjoint(&mine) || theirs == mine {
            continue;
        }
        if mine.is_subset(&theirs) {
            gc = false;
            continue;
        }
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        return Err(format!(
            "its keys may be those of {} on other stores ({} against {}): compare them with an admin job naming the stores",
            other.describe(),
            list(&theirs),
            list(&mine)
        ));
    }
    Ok(gc)
}

/// The tenants with keys stored on any of `stores`, found by seeking through
/// `tenants/`: one listing call of one entry per tenant and store.
pub(super) async fn tenants(
    stores: &[Arc<dyn Backend>],
    throttle: &Throttle,
) -> Result<BTreeSet<String>> {
    let root = Prefix::new(format!("{TENANTS_ROOT}/"))?;
    let mut found = BTreeSet::new();
    for store in stores {
        let mut cursor: Option<Key> = None;
        loop {
            throttle.acquire(1).await;
            let request = ListRequest::new(root.clone())
                .with_limit(1)
                .with_cursor(cursor.clone());
            let page = store.list(&request).await?;
            let Some(entry) = page.entries.first() else {
                break;
            };
            let rest = &entry.key.as_str()[root.as_str().len()..];
            cursor = Some(match rest.split_once('/') {
                Some((tenant, _)) if Tenant::new(tenant).is_ok() => {
                    found.insert(tenant.to_owned());
                    // `0` is the byte after `/`: past every key of this tenant, before
                    // the next tenant's.
                    Key::new(format!("{}{tenant}0", root.as_str()))?
                }
                _ => entry.key.clone(),
            });
            if page.next_cursor.is_none() {
                break;
            }
        }
    }
    Ok(found)
}

/// The scopes of `route` on `stores`: its one tenant's, or its own keys and each
/// tenant's found on the stores (the empty prefix as stored already spans every
/// tenant's namespace). The error says why the tenants could not be found; the
/// scopes then hold the route's own keys only.
pub(super) async fn scopes(
    route: &RouteConfig,
    stores: &[Arc<dyn Backend>],
    throttle: &Throttle,
) -> (Vec<Scope>, Option<mux::Error>) {
    if let Some(t) = &route.tenant {
        return (vec![Scope::Tenant(t.clone())], None);
    }
    let mut scopes = vec![Scope::Untenanted];
    if route.prefix.is_empty() {
        return (scopes, None);
    }
    match tenants(stores, throttle).await {
        Ok(found) => {
            scopes.extend(found.into_iter().map(Scope::Tenant));
            (scopes, None)
        }
        Err(e) => (
            scopes,
            Some(e.context(format!("finding the tenants under {TENANTS_ROOT}/"))),
        ),
    }
}
