//! Data residency: where each backend keeps its data (a region), and which regions a
//! route, a tenant or a record's `residency` tag allows.
//!
//! Building a `Mux` refuses any route that could place restricted data on a backend
//! outside its regions, naming route, backend and region; at run time a write whose
//! `residency` tag its route cannot honour is refused before anything is written.
//! Every other path that moves data between stores — hinted handoff, read repair,
//! anti-entropy, backfill — stays within one route's backends, which the build checked.

use std::collections::{BTreeMap, BTreeSet};

use super::{Route, RouteConfig};
use crate::error::{Error, Operation};
use crate::key::Key;

/// The record tag that restricts a record to regions: `residency = "eu"` (several:
/// `"eu,ch"`).
pub const RESIDENCY_TAG: &str = "residency";

/// The regions a tag value allows.
fn tag_regions(value: &str) -> BTreeSet<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect()
}

fn list<'a>(regions: impl IntoIterator<Item = &'a str>) -> String {
    regions.into_iter().collect::<Vec<_>>().join(", ")
}

/// Whether `tenant` can reach `route`: its own routes, and a route for every tenant
/// unless one of the tenant's own (among `routes`) with the same prefix and tags
/// shadows it.
fn reachable<'a>(
    route: &RouteConfig,
    tenant: &str,
    mut routes: impl Iterator<Item = &'a RouteConfig>,
) -> bool {
    match &route.tenant {
        Some(t) => t == tenant,
        None => !routes.any(|o| {
            o.tenant.as_deref() == Some(tenant) && o.prefix == route.prefix && o.tags == route.tags
        }),
    }
}

/// The problems of one route against one allowed set: each backend outside it.
fn outside(
    what: &str,
    why: &str,
    route: &RouteConfig,
    allowed: &BTreeSet<&str>,
    region_of: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) {
    for t in &route.backends {
        match region_of(&t.backend) {
            Some(r) if allowed.contains(r.as_str()) => {}
            Some(r) => problems.push(format!(
                "{what} could place {why} on backend \"{}\" in region \"{r}\", outside {{{}}}",
                t.backend,
                list(allowed.iter().copied())
            )),
            None => problems.push(format!(
                "{what} could place {why} on backend \"{}\", which has no region (set [mux.regions] {} = \"…\")",
                t.backend, t.backend
            )),
        }
    }
}

/// Every residency violation of a configuration: routes with `regions`, routes
/// conditioned on a `residency` tag, and the routes each restricted tenant can reach.
pub(crate) fn violations(
    routes: &[RouteConfig],
    default: &RouteConfig,
    tenant_regions: &BTreeMap<String, Vec<String>>,
    region_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let all: Vec<&RouteConfig> = routes.iter().chain(std::iter::once(default)).collect();
    for r in &all {
        if !r.regions.is_empty() {
            let allowed = r.regions.iter().map(String::as_str).collect();
            outside(
                &r.describe(),
                "its data",
                r,
                &allowed,
                region_of,
                &mut problems,
            );
        }
        if let Some(value) = r.tags.get(RESIDENCY_TAG) {
            let allowed = tag_regions(value);
            outside(
                &r.describe(),
                &format!("records tagged {RESIDENCY_TAG}={value}"),
                r,
                &allowed,
                region_of,
                &mut problems,
            );
        }
    }
    for (tenant, regions) in tenant_regions {
        let allowed: BTreeSet<&str> = regions.iter().map(String::as_str).collect();
        for r in &all {
            if reachable(r, tenant, routes.iter()) {
                outside(
                    &r.describe(),
                    &format!(
                        "tenant {tenant}'s data (allowed: {})",
                        list(allowed.iter().copied())
                    ),
                    r,
                    &allowed,
                    region_of,
                    &mut problems,
                );
            }
        }
    }
    problems
}

/// Refuses a write whose `residency` tag or tenant restriction its route cannot
/// honour (a route not conditioned on the tag may span other regions).
pub(crate) fn check_write(
    route: &Route,
    key: &Key,
    tags: &BTreeMap<String, String>,
    tenant_allowed: Option<&[String]>,
    op: Operation,
) -> crate::error::Result<()> {
    let tag = tags.get(RESIDENCY_TAG).map(|v| (v, tag_regions(v)));
    if tag.is_none() && tenant_allowed.is_none() {
        return Ok(());
    }
    for (i, (name, _)) in route.names().iter().enumerate() {
        let region = route.regions[i].as_deref();
        let fits = |allowed: &dyn Fn(&str) -> bool| region.is_some_and(allowed);
        if let Some((value, allowed)) = &tag
            && !fits(&|r| allowed.contains(r))
        {
            return Err(Error::invalid_input(format!(
                "{key} is tagged {RESIDENCY_TAG}={value} but {} would place it on backend \"{name}\" (region {}); nothing was written: route such records to backends in {{{}}} (a route with tags {{ {RESIDENCY_TAG} = \"{value}\" }})",
                route.config.describe(),
                region.unwrap_or("unknown"),
                list(allowed.iter().copied())
            ))
            .with_operation(op));
        }
        if let Some(allowed) = tenant_allowed
            && !fits(&|r| allowed.iter().any(|a| a == r))
        {
            return Err(Error::invalid_input(format!(
                "the tenant's data must stay in {{{}}} but {} would place {key} on backend \"{name}\" (region {}); nothing was written",
                allowed.join(", "),
                route.config.describe(),
                region.unwrap_or("unknown"),
            ))
            .with_operation(op));
        }
    }
    Ok(())
}

impl super::Inner {
    /// The regions a write's tenant is kept in: the tenant's, or — for an operator's
    /// write of a stored key (`tenants/<t>/…`, e.g. an import) — that tenant's.
    pub(crate) fn tenant_allowed(
        &self,
        tenant: Option<&crate::tenant::Tenant>,
        key: &Key,
    ) -> Option<&[String]> {
        if self.tenant_regions.is_empty() {
            return None;
        }
        let name = match tenant {
            Some(t) => t.as_str(),
            None => key
                .as_str()
                .strip_prefix(crate::tenant::TENANTS_ROOT)?
                .strip_prefix('/')?
                .split('/')
                .next()?,
        };
        self.tenant_regions.get(name).map(Vec::as_slice)
    }
}

impl super::Mux {
    /// Refuses an operator's copy (a backfill, a repair or an import naming stores)
    /// that could move restricted data onto `target`: a route that any of `sources`
    /// serves allows only other regions — by its `regions`, its `residency` tag, or a
    /// restricted tenant that can reach it. `sources` empty: every backend (an import
    /// file may hold anything).
    pub fn check_residency_copy(&self, sources: &[&str], target: &str) -> crate::error::Result<()> {
        let inner = &self.inner;
        let all: Vec<&Route> = inner
            .routes
            .iter()
            .chain(std::iter::once(&inner.default))
            .collect();
        let region_of_target = all.iter().find_map(|r| {
            let i = r.names().iter().position(|(n, _)| &**n == target)?;
            Some(r.regions[i].clone())
        });
        let target_region = region_of_target.flatten();
        let mut problems = Vec::new();
        for r in &all {
            let serves = r
                .names()
                .iter()
                .any(|(n, _)| sources.is_empty() || sources.contains(&&**n));
            if !serves {
                continue;
            }
            let mut sets: Vec<(String, BTreeSet<&str>)> = Vec::new();
            if !r.config.regions.is_empty() {
                sets.push((
                    "its regions".into(),
                    r.config.regions.iter().map(String::as_str).collect(),
                ));
            }
            if let Some(v) = r.config.tags.get(RESIDENCY_TAG) {
                sets.push((format!("its tag {RESIDENCY_TAG}={v}"), tag_regions(v)));
            }
            for (tenant, regions) in &inner.tenant_regions {
                if reachable(&r.config, tenant, inner.routes.iter().map(|o| &o.config)) {
                    sets.push((
                        format!("tenant {tenant}"),
                        regions.iter().map(String::as_str).collect(),
                    ));
                }
            }
            for (why, allowed) in sets {
                if !target_region
                    .as_deref()
                    .is_some_and(|t| allowed.contains(t))
                {
                    problems.push(format!(
                        "{} ({why}: {{{}}})",
                        r.config.describe(),
                        list(allowed.iter().copied())
                    ));
                }
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::invalid_input(format!(
            "copying to backend \"{target}\" (region {}) could move data out of its regions; nothing was written: {}",
            target_region.as_deref().unwrap_or("unknown"),
            problems.join("; ")
        )))
    }
}
