//! The coordinator: one call from the application becomes a coordinated operation over
//! several stores.
//!
//! A [`Mux`] holds named backends and a route table. A route matches keys by prefix
//! (longest wins), optionally by record tags and tenant, and lists its backends with
//! roles. Writes fan out in parallel and return as soon as the consistency level is met;
//! the rest finish in the background. Reads follow a [`ReadPolicy`] and repair stale
//! replicas they notice.

mod backend_impl;
mod builder;
mod cache;
mod changes;
mod config;
mod erase;
mod handoff;
mod health;
mod history;
mod list;
mod markers;
mod read;
mod reseal;
mod residency;
mod stats;
mod write;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::backend::{Backend, BackendInfo, ListPage, ListRequest};
use crate::error::{Error, Operation, Result};
use crate::history::{AsOf, HistoryPage, HistoryRequest};
use crate::key::{Key, Prefix};
use crate::record::Record;
use crate::resilience::shard::{self, Padded, SHARDS};
use crate::resilience::{BulkheadGate, CallStats, Circuit, IntentLog, Jitter};
use crate::tenant::Tenant;
use crate::version::{Clock, Version};

pub use backend_impl::MuxBackend;
pub use builder::MuxBuilder;
pub use config::{
    CacheConfig, Durability, MuxConfig, ReadPolicy, ResilienceConfig, ResilienceStack, Role,
    RouteConfig, RouteTarget, WriteConsistency,
};
pub use erase::{EraseReport, StoreErasure};
pub use health::HealthReport;
pub use markers::{RESERVED_ROOT, Staleness, is_reserved};
pub use reseal::ResealPage;
pub use residency::RESIDENCY_TAG;
pub use stats::{CacheStats, MuxStats};
pub use write::{BackendWrite, WriteOutcome, WriteReport};

use stats::MuxCounters;

/// Per-operation overrides for a write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Overrides the route's default consistency.
    pub consistency: Option<WriteConsistency>,
    /// Writes at this version instead of stamping one from the clock (imports, replays).
    pub version: Option<Version>,
    /// The record's tags (they also pick routes that match on tags).
    pub tags: BTreeMap<String, String>,
    /// The value's MIME type.
    pub content_type: Option<String>,
    /// The tenant: routes match the key as given, and the record is stored under the
    /// tenant's namespace (`tenants/<tenant>/<key>`) in every store.
    pub tenant: Option<Tenant>,
}

/// Per-operation overrides for a read or a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Overrides the route's default read policy.
    pub policy: Option<ReadPolicy>,
    /// The tenant: keys and prefixes are the tenant's own, read from its namespace.
    pub tenant: Option<Tenant>,
    /// The record's tags, to reach routes that match on tags. A route with tag
    /// conditions is chosen for a read only when the read names those tags.
    pub tags: BTreeMap<String, String>,
}

/// A backend as the coordinator holds it: the backend, the resilience stack around it,
/// and the stack's shared handles.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The backend itself (what `Mux::backend` hands out).
    pub(crate) backend: Arc<dyn Backend>,
    /// Every call of the coordinator goes through this.
    stack: ResilienceStack<Arc<dyn Backend>>,
    pub(crate) name: Arc<str>,
    /// Bounds the hints being delivered to this backend at once.
    pub(crate) handoff: tokio::sync::Semaphore,
    /// Hints being delivered to it; shared with the `Mux` this one succeeds (a reload)
    /// when both use the same intent log, so its count includes those still running
    /// there.
    pub(crate) hints_pending: Arc<AtomicUsize>,
    /// Whether its mux marker says it lost data (`markers.rs`).
    pub(crate) marker: markers::MarkerState,
}

impl Slot {
    fn new(
        backend: Arc<dyn Backend>,
        resilience: &ResilienceConfig,
        hints_pending: Arc<AtomicUsize>,
    ) -> Slot {
        let stack = resilience.stack(backend.clone());
        Slot {
            name: backend.info().name.clone(),
            stack,
            backend,
            handoff: tokio::sync::Semaphore::new(resilience.handoff_concurrency.max(1)),
            hints_pending,
            marker: markers::MarkerState::default(),
        }
    }

    /// The stack's bulkhead gate (calls in flight).
    pub(crate) fn gate(&self) -> &BulkheadGate {
        self.stack.gate()
    }

    /// The stack's circuit.
    pub(crate) fn circuit(&self) -> &Circuit {
        self.stack.get_ref().circuit()
    }

    /// The stack's call statistics.
    pub(crate) fn stats(&self) -> &Arc<CallStats> {
        self.stack.get_ref().get_ref().stats()
    }

    /// Runs one call of the backend (`call`, made on `self.backend`) through the
    /// resilience stack: bulkhead, circuit breaker, instrumentation, timeout.
    ///
    /// Each call is a `mux.backend` span (level DEBUG: free unless a tracing layer
    /// asks for it) naming the backend and operation, with the outcome recorded.
    pub(crate) fn guard<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: impl Future<Output = Result<T>> + Send + 'a,
    ) -> impl Future<Output = Result<T>> + Send + 'a {
        self.guard_attempt(op, 1, call, None)
    }

    /// [`Slot::guard`] for one of several calls started together: its latency is
    /// measured from `since`, the one reading of the clock they share.
    pub(crate) fn guard_since<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        since: tokio::time::Instant,
        call: impl Future<Output = Result<T>> + Send + 'a,
    ) -> impl Future<Output = Result<T>> + Send + 'a {
        self.guard_attempt(op, 1, call, Some(since))
    }

    /// [`Slot::guard`] for the `attempt`-th try of the same call (hinted handoff
    /// retries; a request's own calls are each a first attempt).
    pub(crate) fn guard_attempt<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        attempt: u32,
        call: impl Future<Output = Result<T>> + Send + 'a,
        since: Option<tokio::time::Instant>,
    ) -> impl Future<Output = Result<T>> + Send + 'a {
        let span = tracing::debug_span!(
            "mux.backend",
            backend = %self.name,
            operation = op.as_str(),
            attempt,
            outcome = tracing::field::Empty,
        );
        // The span goes into the stack's own future to have the outcome recorded there:
        // an async block awaiting that future here would hold it twice.
        self.stack
            .guarded(op, call, span.clone(), since)
            .instrument(span)
    }
}

/// A compiled route.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) config: RouteConfig,
    pub(crate) prefix: Prefix,
    /// Slot indices with roles, in configuration order.
    pub(crate) targets: Vec<(usize, Role)>,
    /// Names and roles of the targets, shared with every write report: one copy per
    /// shard (see [`Route::names_here`]).
    pub(crate) names: [Names; SHARDS],
    /// Names of the targets (what an intent log entry owes).
    pub(crate) owed: Arc<[Arc<str>]>,
    /// Positions in `targets`: primary first, then replicas, then async replicas.
    pub(crate) read_order: Vec<usize>,
    /// Positions in `targets` of the voters (primaries and replicas).
    pub(crate) voters: Vec<usize>,
    /// Position in `targets` of the primary (the first `Primary`, else the first voter).
    pub(crate) primary: usize,
    /// The read cache, when the route asks for one.
    pub(crate) cache: Option<cache::RouteCache>,
    /// What seals the route's values at rest, when it names one.
    pub(crate) sealer: Option<Arc<dyn crate::seal::Sealer>>,
    /// The region of each target (data residency), in `names` order.
    pub(crate) regions: Vec<Option<Arc<str>>>,
}

/// A route's targets by name and role, as write reports hold them.
pub(crate) type Names = Arc<Padded<Box<[(Arc<str>, Role)]>>>;

impl Route {
    pub(crate) fn sealer(&self) -> Option<&dyn crate::seal::Sealer> {
        self.sealer.as_deref()
    }

    /// The targets' names and roles, in configuration order.
    pub(crate) fn names(&self) -> &[(Arc<str>, Role)] {
        &self.names[0]
    }

    /// This thread's copy of the names, for a write report. Every write takes one:
    /// with a single copy, writes on different cores would bounce its reference count
    /// between them (each copy is alone on its cache line).
    pub(crate) fn names_here(&self) -> Names {
        self.names[shard::home()].clone()
    }
}

impl Route {
    fn matches(&self, key: &str, tags: &BTreeMap<String, String>, tenant: Option<&str>) -> bool {
        self.prefix.matches(key)
            && self
                .config
                .tenant
                .as_deref()
                .is_none_or(|t| Some(t) == tenant)
            && self.config.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
    }
}

/// Tracks background work (writes after the acknowledgement, read repairs).
#[derive(Debug, Default)]
pub(crate) struct Background {
    pending: AtomicUsize,
    idle: Notify,
}

impl Background {
    pub(crate) fn spawn(self: &Arc<Self>, work: impl Future<Output = ()> + Send + 'static) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        tokio::spawn(async move {
            work.await;
            if this.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                this.idle.notify_waiters();
            }
        });
    }

    async fn settle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

pub(crate) struct Inner {
    pub(crate) clock: Clock,
    pub(crate) slots: Vec<Arc<Slot>>,
    /// Routes in matching order: longest prefix, then most tags, then tenant-specific.
    pub(crate) routes: Vec<Route>,
    pub(crate) default: Route,
    pub(crate) counters: Arc<MuxCounters>,
    pub(crate) background: Arc<Background>,
    pub(crate) info: BackendInfo,
    pub(crate) log: Arc<dyn IntentLog>,
    pub(crate) resilience: ResilienceConfig,
    /// Log entries below this id predate this `Mux` and are replayed on start.
    pub(crate) boot_id: u64,
    pub(crate) started: std::sync::OnceLock<()>,
    /// Whether the intent log was replayed; shared with the `Mux` this one succeeds
    /// when both use the same log, so a reload does not replay it again.
    pub(crate) recovered: Arc<tokio::sync::OnceCell<usize>>,
    /// Set once a successor took over (`MuxBuilder::succeeding`): periodic work
    /// (health probes, marker checks, shared-log rescans) stops; deliveries already
    /// running finish.
    pub(crate) retired: std::sync::atomic::AtomicBool,
    pub(crate) jitter: Jitter,
    /// Where acknowledged writes are published (`None`: nowhere).
    pub(crate) feed: Option<Arc<dyn crate::feed::ChangeFeed>>,
    /// How fresh the feed's tail is, for the route caches.
    pub(crate) feed_state: cache::FeedState,
    /// Tenants restricted to regions (data residency).
    pub(crate) tenant_regions: BTreeMap<String, Vec<String>>,
    /// Prefixes erased (`Mux::erase`) and the version each erasure covers: hints of
    /// records under them, at or below it, are dropped instead of delivered.
    /// Shared with the `Mux` this one succeeds (its hints are still being delivered).
    pub(crate) erased: Arc<std::sync::RwLock<Vec<(crate::key::Prefix, crate::version::Version)>>>,
}

/// The multiplexer: routes each operation to its backends and coordinates them.
///
/// Cloning is cheap (shared state). A `Mux` is itself a [`Backend`], so it can be
/// nested, wrapped, and checked with the conformance suite.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mux_core::Error> {
/// use std::sync::Arc;
/// use mux_core::{Key, MemoryBackend, Mux, RouteConfig, Role, WriteConsistency, ReadPolicy};
///
/// let mux = Mux::builder()
///     .backend(Arc::new(MemoryBackend::new("fast")))
///     .backend(Arc::new(MemoryBackend::new("durable")))
///     .route(RouteConfig::new("tenantconfig/")
///         .backend("fast", Role::Primary)
///         .backend("durable", Role::Replica)
///         .write(WriteConsistency::All)
///         .read(ReadPolicy::Primary))
///     .default_route(RouteConfig::new("").backend("durable", Role::Primary))
///     .build()?;
///
/// let key = Key::new("tenantconfig/acme/limits")?;
/// let report = mux.put(key.clone(), "max=10").await?;
/// assert_eq!(report.applied_on(), ["fast", "durable"]);
/// assert_eq!(mux.get(&key).await?.unwrap().value(), "max=10".as_bytes());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Mux {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Mux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mux")
            .field(
                "backends",
                &self.inner.slots.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("routes", &self.inner.routes.len())
            .finish()
    }
}

impl Mux {
    /// Starts building a `Mux`.
    pub fn builder() -> MuxBuilder {
        MuxBuilder::default()
    }

    /// Builds a `Mux` from a configuration and the backends it names.
    pub fn from_config(config: MuxConfig, backends: Vec<Arc<dyn Backend>>) -> Result<Mux> {
        backends
            .into_iter()
            .fold(Mux::builder(), MuxBuilder::backend)
            .config(config)
            .build()
    }

    /// The clock stamping versions.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.inner
            .slots
            .iter()
            .find(|s| &*s.name == name)
            .map(|s| &s.backend)
    }

    /// The names of the backends a key is routed to (for writes with these tags and tenant).
    pub fn route_backends(&self, key: &Key, options: &ReadOptions) -> Vec<Arc<str>> {
        self.inner
            .route_for(key.as_str(), &options.tags, options.tenant.as_ref())
            .targets
            .iter()
            .map(|(i, _)| self.inner.slots[*i].name.clone())
            .collect()
    }

    /// Writes `value` under `key` with a fresh version and the route's defaults.
    pub async fn put(&self, key: Key, value: impl Into<Bytes>) -> Result<WriteReport> {
        self.write(key, value, &WriteOptions::default()).await
    }

    /// Writes `value` under `key`: the version is stamped from the clock (or taken from
    /// `options.version` for imports and replays), tags and content type come from
    /// `options`, and so do the consistency level and the tenant.
    pub async fn write(
        &self,
        key: Key,
        value: impl Into<Bytes>,
        options: &WriteOptions,
    ) -> Result<WriteReport> {
        let mut record = Record::new(key, value, self.stamp(options));
        record.set_metadata(options.tags.clone(), options.content_type.clone());
        self.inner
            .write(record, options.consistency, options.tenant.as_ref())
            .await
    }

    /// Deletes `key` (a versioned tombstone) under the same rules as a write.
    pub async fn delete(&self, key: &Key, options: &WriteOptions) -> Result<WriteReport> {
        let mut tombstone = Record::tombstone(key.clone(), self.stamp(options));
        // Tags still route the tombstone to where the record went.
        tombstone.set_metadata(options.tags.clone(), None);
        self.inner
            .write(tombstone, options.consistency, options.tenant.as_ref())
            .await
    }

    /// The version of a write: the caller's (observed by the clock) or a fresh one.
    fn stamp(&self, options: &WriteOptions) -> Version {
        match options.version {
            Some(v) => {
                self.inner.clock.observe(v);
                v
            }
            None => self.inner.clock.now(),
        }
    }

    /// This `Mux` as a [`Backend`] (an operator's view, without tenants): `put` writes
    /// a record at its own version with the route's default consistency, `get` and
    /// `list` return tombstones too, as the `Backend` contract says. It passes the
    /// conformance suite.
    pub fn as_backend(&self) -> MuxBackend {
        MuxBackend(self.clone())
    }

    /// Reads the live record under `key` with the route's default policy.
    pub async fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.get_with(key, &ReadOptions::default()).await
    }

    /// Reads the live record under `key` (`None` if missing or deleted).
    pub async fn get_with(&self, key: &Key, options: &ReadOptions) -> Result<Option<Record>> {
        Ok(self
            .inner
            .read(key, options)
            .await?
            .filter(|r| !r.is_tombstone()))
    }

    /// One page of a key's history, newest first, tombstones included: the stored
    /// versions as the first backend of the key's route that keeps history
    /// (`Capability::history`, in read order, open circuits last) has them. Fails with
    /// `Unsupported` naming the route when none of its backends keeps history.
    pub async fn history(
        &self,
        request: &HistoryRequest,
        options: &ReadOptions,
    ) -> Result<HistoryPage> {
        self.inner.history(request, options).await
    }

    /// The live record under `key` as it stood at `at` (`None` if it did not exist or
    /// was deleted then), from the first backend of the route that keeps history.
    pub async fn get_as_of(
        &self,
        key: &Key,
        at: AsOf,
        options: &ReadOptions,
    ) -> Result<Option<Record>> {
        Ok(self
            .inner
            .get_as_of(key, at, options)
            .await?
            .filter(|r| !r.is_tombstone()))
    }

    /// Lists live entries under a prefix, merged over every backend that may hold them:
    /// deduplicated by key, highest version kept, tombstones hidden, in byte order.
    pub async fn list(&self, request: &ListRequest, options: &ReadOptions) -> Result<ListPage> {
        let mut request = request.clone();
        loop {
            let mut page = self.inner.list(&request, options).await?;
            page.entries.retain(|e| !e.meta.tombstone);
            if !page.entries.is_empty() || page.next_cursor.is_none() {
                return Ok(page);
            }
            request.cursor = page.next_cursor;
        }
    }

    /// Replays the unfinished entries of the intent log left by an earlier run (hinted
    /// to their backends) and returns how many hints it made. Runs once; it also starts
    /// by itself with the first operation, and later calls wait for that run.
    pub async fn recover(&self) -> Result<usize> {
        self.inner.ensure_started();
        let inner = self.inner.clone();
        self.inner
            .recovered
            .get_or_try_init(|| async move { inner.recover().await })
            .await
            .copied()
    }

    /// The change feed this `Mux` publishes its writes to (and whose events keep its
    /// route caches coherent), if any.
    pub fn feed(&self) -> Option<&Arc<dyn crate::feed::ChangeFeed>> {
        self.inner.feed.as_ref()
    }

    /// Whether the route caches serve reads now: the change feed was read to its end
    /// within the tightest `max_staleness` of the cached routes. False while the feed
    /// is unreachable (reads then go to the backends) and before the first read of it.
    pub fn cache_is_fresh(&self) -> bool {
        self.inner.ensure_started();
        self.inner
            .routes
            .iter()
            .chain(std::iter::once(&self.inner.default))
            .filter_map(|r| r.config.cache)
            .all(|c| self.inner.feed_state.fresh(c.max_staleness))
    }

    /// The intent log (hints and dead letters live there).
    pub fn intent_log(&self) -> &Arc<dyn IntentLog> {
        &self.inner.log
    }

    /// Writes that could not be applied within the retry limits, with their errors.
    pub async fn dead_letters(&self) -> Result<Vec<crate::DeadLetter>> {
        self.inner.log.dead_letters().await
    }

    /// Takes a dead letter out of the queue and hands it to its backend again (after
    /// the cause was fixed). Returns false if there was no such dead letter.
    pub async fn replay_dead_letter(&self, id: u64) -> Result<bool> {
        let Some(dead) = self.inner.log.take_dead_letter(id).await? else {
            return Ok(false);
        };
        let Some(slot) = self
            .inner
            .slots
            .iter()
            .position(|s| *s.name == *dead.backend)
        else {
            return Err(Error::invalid_input(format!(
                "dead letter {id} is owed by backend \"{}\", which this mux does not have",
                dead.backend
            )));
        };
        let record = Arc::new(dead.record);
        let intent = self
            .inner
            .log
            .append(&record, std::slice::from_ref(&self.inner.slots[slot].name))
            .await?;
        self.inner.handoff(slot, Some(intent), record, None).await;
        Ok(true)
    }

    /// Removes a dead letter for good. Returns false if there was no such dead letter.
    pub async fn discard_dead_letter(&self, id: u64) -> Result<bool> {
        Ok(self.inner.log.take_dead_letter(id).await?.is_some())
    }

    /// Writes still owed to backends (hints being delivered), over all backends.
    pub fn hints_pending(&self) -> usize {
        self.inner
            .slots
            .iter()
            .map(|s| s.hints_pending.load(Ordering::SeqCst))
            .sum()
    }

    /// The circuit state of a backend.
    pub fn circuit(&self, backend: &str) -> Option<crate::resilience::CircuitState> {
        self.inner
            .slots
            .iter()
            .find(|s| &*s.name == backend)
            .map(|s| s.circuit().state())
    }

    /// Waits until every background write, hint and repair started so far has finished
    /// (landed or dead-lettered).
    pub async fn settle(&self) {
        self.inner.background.settle().await;
    }

    /// The counters.
    pub fn stats(&self) -> MuxStats {
        let c = &self.inner.counters;
        MuxStats {
            read_repairs: c.read_repairs.load(Ordering::Relaxed),
            corrupt_reads: self
                .inner
                .slots
                .iter()
                .map(|s| s.stats().corrupt_reads())
                .sum(),
            hedged_requests: c.hedged_requests.load(Ordering::Relaxed),
            background_failures: c.background_failures.load(Ordering::Relaxed),
            background_pending: self.inner.background.pending.load(Ordering::SeqCst),
            feed_publish_failures: c.feed_publish_failures.load(Ordering::Relaxed),
            feed_publish_lost: c.feed_publish_lost.load(Ordering::Relaxed),
            cache: self.cache_stats(),
        }
    }
}

impl Mux {
    fn cache_stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        let inner = &self.inner;
        for cache in inner
            .routes
            .iter()
            .chain(std::iter::once(&inner.default))
            .filter_map(|r| r.cache.as_ref())
        {
            let c = &cache.counters;
            stats.hits += c.hits.load(Ordering::Relaxed);
            stats.misses += c.misses.load(Ordering::Relaxed);
            stats.bypassed += c.bypassed.load(Ordering::Relaxed);
            stats.invalidations += c.invalidations.load(Ordering::Relaxed);
            stats.evictions += c.evictions.load(Ordering::Relaxed);
        }
        stats
    }
}

impl Inner {
    /// The route of a (logical) key for a tenant.
    pub(crate) fn route_for(
        &self,
        key: &str,
        tags: &BTreeMap<String, String>,
        tenant: Option<&Tenant>,
    ) -> &Route {
        let tenant = tenant.map(Tenant::as_str);
        let route = self
            .routes
            .iter()
            .find(|r| r.matches(key, tags, tenant))
            .unwrap_or(&self.default);
        // A trace shows which route (and so which backends) a key went to.
        let span = tracing::debug_span!("mux.route", key, tenant, route = tracing::field::Empty);
        if !span.is_disabled() {
            span.record("route", route.config.describe());
        }
        route
    }
}

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod corrupt_tests;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod residency_tests;
#[cfg(test)]
mod resilience_tests;
#[cfg(test)]
mod stack_tests;
#[cfg(test)]
mod tenant_tests;
#[cfg(test)]
mod tests;
