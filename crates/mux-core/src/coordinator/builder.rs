//! Building a [`Mux`]: validating backends and routes (every problem reported at once)
//! and compiling routes into slot indices.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::stats::MuxCounters;
use super::{
    Background, Durability, Inner, Mux, MuxConfig, ResilienceConfig, Role, Route, RouteConfig,
    Slot, WriteConsistency,
};
use crate::backend::{Backend, BackendInfo};
use crate::capability::Capability;
use crate::error::{Error, Result};
use crate::feed::{ChangeFeed, MemoryFeed};
use crate::key::Prefix;
use crate::resilience::{IntentLog, Jitter, MemoryIntentLog};
use crate::seal::Sealer;
use crate::version::Clock;

/// Builds a [`Mux`] from backends and routes.
#[derive(Debug, Default)]
pub struct MuxBuilder {
    backends: Vec<Arc<dyn Backend>>,
    routes: Vec<RouteConfig>,
    default: Option<RouteConfig>,
    node_id: Option<u32>,
    clock: Option<Clock>,
    log: Option<Arc<dyn IntentLog>>,
    resilience: ResilienceConfig,
    feed: Option<Arc<dyn ChangeFeed>>,
    predecessor: Option<Mux>,
    sealers: Vec<Arc<dyn Sealer>>,
    regions: BTreeMap<String, String>,
    tenant_regions: BTreeMap<String, Vec<String>>,
}

impl MuxBuilder {
    /// Publishes every coordinated write to this change feed, and keeps the route
    /// caches coherent with its events (a `Mux` with a cached route and no feed gets a
    /// `MemoryFeed`: coherent within this process only). Share one durable feed
    /// (`mux_postgres::PostgresFeed`, `mux_redis::RedisFeed`) among nodes.
    pub fn feed(mut self, feed: Arc<dyn ChangeFeed>) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Adds a sealer (e.g. `mux_encrypt::Envelope`), known by its `name()`; routes name
    /// it with `encrypt = "…"`.
    pub fn sealer(mut self, sealer: Arc<dyn Sealer>) -> Self {
        self.sealers.push(sealer);
        self
    }

    /// Adds a backend, known by its `info().name`.
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backends.push(backend);
        self
    }

    /// Adds a route.
    pub fn route(mut self, route: RouteConfig) -> Self {
        self.routes.push(route);
        self
    }

    /// Sets the default route (its prefix must be empty).
    pub fn default_route(mut self, route: RouteConfig) -> Self {
        self.default = Some(route);
        self
    }

    /// Sets the node id stamped into versions (default 1).
    pub fn node_id(mut self, node: u32) -> Self {
        self.node_id = Some(node);
        self
    }

    /// Uses this clock (e.g. one on a test time source).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Takes routes, node id and resilience settings from a configuration.
    pub fn config(mut self, config: MuxConfig) -> Self {
        self.node_id = Some(config.node_id);
        self.routes = config.routes;
        self.default = Some(config.default);
        self.resilience = config.resilience;
        self.regions = config.regions;
        self.tenant_regions = config.tenant_regions;
        self
    }

    /// Says where `backend` keeps its data (data residency; else its `region` label).
    pub fn region(mut self, backend: impl Into<String>, region: impl Into<String>) -> Self {
        self.regions.insert(backend.into(), region.into());
        self
    }

    /// Keeps `tenant`'s data in `regions`: every route the tenant can reach must keep
    /// its backends there.
    pub fn tenant_regions<S: Into<String>>(
        mut self,
        tenant: impl Into<String>,
        regions: impl IntoIterator<Item = S>,
    ) -> Self {
        self.tenant_regions
            .insert(tenant.into(), regions.into_iter().map(Into::into).collect());
        self
    }

    /// Sets retries, circuit breakers, bulkheads, health probes and durability.
    pub fn resilience(mut self, resilience: ResilienceConfig) -> Self {
        self.resilience = resilience;
        self
    }

    /// Uses this intent log for hints (required for `durability = "log"`; e.g.
    /// `mux_redb::RedbIntentLog`). Unfinished entries in it are replayed on start.
    pub fn intent_log(mut self, log: Arc<dyn IntentLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Builds the `Mux` that takes over from `old`, as a configuration reload does.
    ///
    /// When both use the same intent log, each write `old` still owes a backend stays
    /// with the one task already delivering it: the new `Mux` does not replay the log
    /// again (it shares `old`'s replay, waiting for it if it is running) and its hint
    /// counts include `old`'s deliveries. The circuits of backends with the same name
    /// carry their state over, so a store that is down is not hammered by a fresh
    /// closed circuit. Once the new `Mux` is built, `old` stops its periodic work
    /// (health probes, marker checks, shared-log rescans); requests and deliveries
    /// already running on it finish there.
    ///
    /// A replay of `old` that failed is retried by the new `Mux`, and may then repeat
    /// a delivery `old` is still making (harmless: writes are versioned).
    pub fn succeeding(mut self, old: &Mux) -> Self {
        self.predecessor = Some(old.clone());
        self
    }

    /// Validates the configuration and builds the `Mux`. Every problem found is named
    /// in the error, one per line.
    pub fn build(self) -> Result<Mux> {
        let mut problems = Vec::new();
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        for (i, b) in self.backends.iter().enumerate() {
            let name = &*b.info().name;
            if by_name.insert(name, i).is_some() {
                problems.push(format!("backend \"{name}\" is registered twice"));
            }
        }
        let Some(default) = self.default else {
            return Err(Error::invalid_input(
                "invalid mux configuration: there is no default route (the route for keys no other route matches)",
            ));
        };
        if !default.prefix.is_empty() {
            problems.push(format!(
                "the default route must have an empty prefix, not \"{}\"",
                default.prefix
            ));
        }
        let mut sealers: HashMap<&str, &Arc<dyn Sealer>> = HashMap::new();
        for s in &self.sealers {
            if sealers.insert(s.name(), s).is_some() {
                problems.push(format!("sealer \"{}\" is registered twice", s.name()));
            }
        }
        let mut seen = HashMap::new();
        let mut compiled = Vec::new();
        for route in &self.routes {
            if route.prefix.is_empty() {
                problems.push(format!(
                    "{} has an empty prefix: use the default route for that",
                    route.describe()
                ));
            }
            let id = (
                route.prefix.trim_end_matches('/').to_owned(),
                route.prefix.ends_with('/'),
                route.tenant.clone(),
                route.tags.clone(),
            );
            if seen.insert(id, ()).is_some() {
                problems.push(format!(
                    "{} is defined twice (same prefix, tenant and tags)",
                    route.describe()
                ));
            }
            compiled.push(compile(
                route,
                &by_name,
                &self.backends,
                &sealers,
                &mut problems,
            ));
        }
        let region_of = |name: &str| -> Option<String> {
            self.regions.get(name).cloned().or_else(|| {
                let i = by_name.get(name)?;
                self.backends[*i].info().labels.get("region").cloned()
            })
        };
        for name in self.regions.keys() {
            if !by_name.contains_key(name.as_str()) {
                problems.push(format!("[mux.regions] names unknown backend \"{name}\""));
            }
        }
        problems.extend(super::residency::violations(
            &self.routes,
            &default,
            &self.tenant_regions,
            &region_of,
        ));
        let default = compile(&default, &by_name, &self.backends, &sealers, &mut problems);
        let log: Arc<dyn IntentLog> = match (self.resilience.durability, self.log) {
            (Durability::Log, Some(log)) => {
                if !log.is_durable() {
                    problems.push(format!(
                        "durability = \"log\" but the intent log given ({log:?}) is not durable"
                    ));
                }
                log
            }
            (Durability::Log, None) => {
                problems.push(
                    "durability = \"log\" needs a durable intent log: pass one with MuxBuilder::intent_log (e.g. mux_redb::RedbIntentLog)".to_owned(),
                );
                Arc::new(MemoryIntentLog::new())
            }
            (Durability::None, Some(log)) => log,
            (Durability::None, None) => Arc::new(MemoryIntentLog::new()),
        };
        if !problems.is_empty() {
            return Err(Error::invalid_input(format!(
                "invalid mux configuration:\n  - {}",
                problems.join("\n  - ")
            )));
        }
        let mut routes: Vec<Route> = compiled.into_iter().flatten().collect();
        let mut default = default.expect("no problems means the default compiled");
        for route in routes.iter_mut().chain(std::iter::once(&mut default)) {
            route.regions = route
                .names()
                .iter()
                .map(|(n, _)| region_of(n).map(Arc::from))
                .collect();
        }
        routes.sort_by(|a, b| {
            let key = |r: &Route| {
                (
                    r.config.prefix.len(),
                    r.config.tags.len(),
                    r.config.tenant.is_some(),
                )
            };
            key(b).cmp(&key(a))
        });
        let cached = routes
            .iter()
            .chain(std::iter::once(&default))
            .any(|r| r.cache.is_some());
        let feed = match self.feed {
            Some(feed) => Some(feed),
            None if cached => Some(Arc::new(MemoryFeed::new("memory")) as Arc<dyn ChangeFeed>),
            None => None,
        };
        let old = self.predecessor.as_ref().map(|m| &m.inner);
        // The successor of a `Mux` on the same log shares its replay and hint counts.
        let same_log =
            old.is_some_and(|o| std::ptr::addr_eq(Arc::as_ptr(&o.log), Arc::as_ptr(&log)));
        let slots: Vec<Arc<Slot>> = self
            .backends
            .iter()
            .map(|b| {
                let before = old.and_then(|o| o.slots.iter().find(|s| s.name == b.info().name));
                let hints = match before {
                    Some(s) if same_log => s.hints_pending.clone(),
                    _ => Default::default(),
                };
                let slot = Slot::new(b.clone(), &self.resilience, hints);
                if let Some(s) = before {
                    slot.circuit().adopt(s.circuit());
                }
                Arc::new(slot)
            })
            .collect();
        let recovered = match old {
            Some(o) if same_log => o.recovered.clone(),
            _ => Default::default(),
        };
        let info = BackendInfo::new("mux", "mux", combined_capability(&slots, &routes, &default));
        let mux = Mux {
            inner: Arc::new(Inner {
                clock: self.clock.unwrap_or_else(|| {
                    let clock = Clock::new(self.node_id.unwrap_or(1));
                    // A successor continues its predecessor's clock: a write just after
                    // a reload, in the same millisecond as one before it, must still get
                    // the higher version.
                    if let Some(o) = old {
                        clock.observe(o.clock.now());
                    }
                    clock
                }),
                slots,
                routes,
                default,
                counters: Arc::new(MuxCounters::default()),
                background: Arc::new(Background::default()),
                info,
                boot_id: log.next_id(),
                log,
                jitter: Jitter::new(self.node_id.unwrap_or(1) as u64 ^ 0x5eed),
                resilience: self.resilience,
                started: std::sync::OnceLock::new(),
                recovered,
                retired: Default::default(),
                feed,
                feed_state: Default::default(),
                tenant_regions: self.tenant_regions,
                erased: old.map(|o| o.erased.clone()).unwrap_or_default(),
            }),
        };
        if let Some(old) = old {
            old.retired.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(mux)
    }
}

fn compile(
    route: &RouteConfig,
    by_name: &HashMap<&str, usize>,
    backends: &[Arc<dyn Backend>],
    sealers: &HashMap<&str, &Arc<dyn Sealer>>,
    problems: &mut Vec<String>,
) -> Option<Route> {
    let before = problems.len();
    let what = route.describe();
    let prefix = match Prefix::new(&route.prefix) {
        Ok(p) => p,
        Err(e) => {
            problems.push(format!("{what}: {}", e.message()));
            Prefix::all()
        }
    };
    if route.backends.is_empty() {
        problems.push(format!("{what} has no backend"));
    }
    let mut targets = Vec::new();
    for t in &route.backends {
        match by_name.get(t.backend.as_str()) {
            None => {
                let mut known: Vec<&&str> = by_name.keys().collect();
                known.sort();
                problems.push(format!(
                    "{what} names unknown backend \"{}\" (known: {})",
                    t.backend,
                    known
                        .iter()
                        .map(|s| format!("\"{s}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Some(&i) => {
                if targets.iter().any(|(j, _)| *j == i) {
                    problems.push(format!("{what} lists backend \"{}\" twice", t.backend));
                }
                let cap = backends[i].info().capability;
                if route.listed && !cap.list {
                    problems.push(format!(
                        "{what} is listed but backend \"{}\" cannot list (capability `list` is false); set listed = false or use another backend",
                        t.backend
                    ));
                }
                targets.push((i, t.role));
            }
        }
    }
    let voters: Vec<usize> = (0..targets.len())
        .filter(|&p| targets[p].1 != Role::AsyncReplica)
        .collect();
    if !route.backends.is_empty() && voters.is_empty() {
        problems.push(format!(
            "{what} has only async replicas: at least one primary or replica must acknowledge writes"
        ));
    }
    let primaries = targets.iter().filter(|(_, r)| *r == Role::Primary).count();
    if primaries > 1 {
        problems.push(format!(
            "{what} has {primaries} primaries; at most one is allowed"
        ));
    }
    if let WriteConsistency::AtLeast(n) = route.write
        && n > voters.len()
    {
        problems.push(format!(
            "{what}: write consistency at_least:{n} needs {n} voters but the route has {} (primaries and replicas)",
            voters.len()
        ));
    }
    if let Some(cache) = &route.cache {
        if cache.capacity == 0 {
            problems.push(format!("{what}: cache capacity must be at least 1"));
        }
        if cache.ttl.is_zero() || cache.max_staleness.is_zero() {
            problems.push(format!(
                "{what}: cache ttl and max_staleness must be longer than zero"
            ));
        }
    }
    let sealer = route.encrypt.as_deref().and_then(|name| {
        let found = sealers.get(name).map(|s| Arc::clone(s));
        if found.is_none() {
            let mut known: Vec<&&str> = sealers.keys().collect();
            known.sort();
            problems.push(format!(
                "{what} is encrypted with \"{name}\", which is not defined (known: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known
                        .iter()
                        .map(|s| format!("\"{s}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        found
    });
    if problems.len() > before {
        return None;
    }
    let primary = targets
        .iter()
        .position(|(_, r)| *r == Role::Primary)
        .unwrap_or(voters[0]);
    let rank = |r: Role| match r {
        Role::Primary => 0,
        Role::Replica => 1,
        Role::AsyncReplica => 2,
    };
    let mut read_order: Vec<usize> = (0..targets.len()).collect();
    read_order.sort_by_key(|&p| (p != primary, rank(targets[p].1)));
    let names: Box<[(Arc<str>, Role)]> = targets
        .iter()
        .map(|(i, role)| (backends[*i].info().name.clone(), *role))
        .collect();
    let owed = names.iter().map(|(n, _)| n.clone()).collect();
    let names = std::array::from_fn(|_| Arc::new(super::Padded(names.clone())));
    Some(Route {
        owed,
        config: route.clone(),
        prefix,
        names,
        targets,
        read_order,
        voters,
        primary,
        cache: route
            .cache
            .map(|c| super::cache::RouteCache::new(&route.prefix, c)),
        sealer,
        regions: Vec::new(),
    })
}

/// What a `Mux` used as a `Backend` can promise: what every routed backend can.
fn combined_capability(slots: &[Arc<Slot>], routes: &[Route], default: &Route) -> Capability {
    let used: Vec<Capability> = routes
        .iter()
        .chain(std::iter::once(default))
        .flat_map(|r| {
            r.targets
                .iter()
                .map(|(i, _)| slots[*i].backend.info().capability)
        })
        .collect();
    let all = |f: fn(&Capability) -> bool| used.iter().all(f);
    Capability {
        list: all(|c| c.list),
        batch: false,
        atomic_conditional_write: all(|c| c.atomic_conditional_write),
        // Every route has a backend that keeps history (history is served by one).
        history: routes.iter().chain(std::iter::once(default)).all(|r| {
            r.targets
                .iter()
                .any(|(i, _)| slots[*i].backend.info().capability.history)
        }),
        tags: all(|c| c.tags),
        content_type: all(|c| c.content_type),
        purge: all(|c| c.purge),
        durable: all(|c| c.durable),
        // The coordinator digests its merged listing.
        digest: false,
        max_value_size: used.iter().filter_map(|c| c.max_value_size).min(),
    }
}
