//! The read cache of routes that ask for one, kept coherent by the change feed.
//!
//! Entries carry versions. A fill (a record read from the backends after a miss) is
//! stored only if no higher version is known for the key: an invalidation leaves a
//! *floor* marker with the version it announced, so a fill that read an older version
//! before the invalidation arrived can never replace it. Misses are single-flight: the
//! readers of one cold key queue behind one backend read. The cache serves entries only
//! while the feed was read to its end less than `max_staleness` ago ([`FeedState`]);
//! when the feed fails, every entry is dropped (a generation bump) and reads go to the
//! backends until the feed is read again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

use moka::notification::RemovalCause;
use moka::ops::compute::Op;

use super::CacheConfig;
use crate::error::Result;
use crate::key::Key;
use crate::record::Record;
use crate::version::Version;

/// What the tail of the feed tells every cache: how fresh the feed is and which
/// generation of entries is valid.
#[derive(Debug)]
pub(crate) struct FeedState {
    base: Instant,
    /// When (µs after `base`, plus one) the last read that reached the feed's end
    /// started; 0: never.
    alive_at: AtomicU64,
    /// Bumped on every flush: entries of older generations are not served.
    generation: AtomicU64,
}

impl Default for FeedState {
    fn default() -> Self {
        FeedState {
            base: Instant::now(),
            alive_at: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }
}

impl FeedState {
    /// Records that a read of the feed which started at `started` reached its end.
    pub(crate) fn alive_since(&self, started: Instant) {
        let micros = started.saturating_duration_since(self.base).as_micros() as u64 + 1;
        self.alive_at.fetch_max(micros, Ordering::SeqCst);
    }

    /// Whether every change published more than `bound` ago has been applied.
    pub(crate) fn fresh(&self, bound: Duration) -> bool {
        let at = self.alive_at.load(Ordering::SeqCst);
        if at == 0 {
            return false;
        }
        let alive = self.base + Duration::from_micros(at - 1);
        alive.elapsed() < bound
    }

    /// Drops every entry (they are no longer served) and marks the feed not fresh.
    pub(crate) fn flush(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.alive_at.store(0, Ordering::SeqCst);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug)]
enum State {
    /// The record as read (a tombstone included), or `None`: the key is absent.
    Value(Option<Arc<Record>>),
    /// A version at least this high exists; nothing is cached yet.
    Floor(Version),
}

#[derive(Clone, Debug)]
struct Entry {
    generation: u64,
    state: State,
}

/// The counters of one route's cache (also exported as metrics).
#[derive(Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) bypassed: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) evictions: Arc<AtomicU64>,
}

/// One route's cache, keyed by the key as stored (`tenants/<t>/<key>`).
pub(crate) struct RouteCache {
    config: CacheConfig,
    entries: moka::sync::Cache<Key, Entry>,
    inflight: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) counters: CacheCounters,
    metrics: Metrics,
}

impl std::fmt::Debug for RouteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCache")
            .field("config", &self.config)
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

struct Metrics {
    hits: metrics::Counter,
    misses: metrics::Counter,
    bypassed: metrics::Counter,
    invalidations: metrics::Counter,
}

impl RouteCache {
    pub(crate) fn new(route: &str, config: CacheConfig) -> RouteCache {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let evicted = metrics::counter!("mux_cache_evictions_total", "route" => route.to_owned());
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.capacity)
            .time_to_live(config.ttl)
            .eviction_listener(move |_key, _value, cause: RemovalCause| {
                if cause.was_evicted() {
                    counted.fetch_add(1, Ordering::Relaxed);
                    evicted.increment(1);
                }
            })
            .build();
        let label = route.to_owned();
        RouteCache {
            config,
            entries,
            inflight: Mutex::new(HashMap::new()),
            counters: CacheCounters {
                evictions,
                ..CacheCounters::default()
            },
            metrics: Metrics {
                hits: metrics::counter!("mux_cache_hits_total", "route" => label.clone()),
                misses: metrics::counter!("mux_cache_misses_total", "route" => label.clone()),
                bypassed: metrics::counter!("mux_cache_bypassed_total", "route" => label.clone()),
                invalidations: metrics::counter!("mux_cache_invalidations_total", "route" => label),
            },
        }
    }

    fn hit(&self, key: &Key, generation: u64) -> Option<Option<Record>> {
        let entry = self.entries.get(key)?;
        match entry.state {
            State::Value(ref v) if entry.generation == generation => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                self.metrics.hits.increment(1);
                Some(v.as_deref().cloned())
            }
            _ => None,
        }
    }

    /// Reads `key` from the cache, or with `read` (once for all concurrent readers of
    /// the key) and keeps what it found unless a newer version is already known.
    pub(crate) async fn read<F>(
        &self,
        feed: &FeedState,
        key: &Key,
        read: impl FnOnce() -> F,
    ) -> Result<Option<Record>>
    where
        F: Future<Output = Result<Option<Record>>>,
    {
        // A trace shows whether the cache answered (`hit`), filled from the backends
        // (`miss`), waited for another caller's fill (`joined`) or was bypassed.
        let span = tracing::debug_span!("mux.cache", outcome = tracing::field::Empty);
        self.read_traced(feed, key, read, &span)
            .instrument(span.clone())
            .await
    }

    async fn read_traced<F>(
        &self,
        feed: &FeedState,
        key: &Key,
        read: impl FnOnce() -> F,
        span: &tracing::Span,
    ) -> Result<Option<Record>>
    where
        F: Future<Output = Result<Option<Record>>>,
    {
        if !feed.fresh(self.config.max_staleness) {
            self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
            self.metrics.bypassed.increment(1);
            span.record("outcome", "bypassed");
            return read().await;
        }
        if let Some(found) = self.hit(key, feed.generation()) {
            span.record("outcome", "hit");
            return Ok(found);
        }
        let flight = self
            .inflight
            .lock()
            .expect("inflight lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let turn = flight.lock().await;
        let generation = feed.generation();
        let result = match self.hit(key, generation) {
            Some(found) => {
                span.record("outcome", "joined");
                Ok(found)
            }
            None => {
                span.record("outcome", "miss");
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                self.metrics.misses.increment(1);
                let found = read().await;
                if let Ok(found) = &found {
                    self.fill(feed, key, generation, found);
                }
                found
            }
        };
        drop(turn);
        let mut inflight = self.inflight.lock().expect("inflight lock");
        // The map's handle and ours: nobody else waits on this key.
        if Arc::strong_count(&flight) == 2 {
            inflight.remove(key);
        }
        result
    }

    /// Keeps `found` (read at `generation`) unless the feed went stale since, a flush
    /// happened, or a higher version is known.
    fn fill(&self, feed: &FeedState, key: &Key, generation: u64, found: &Option<Record>) {
        let version = found.as_ref().map(Record::version);
        let record = found.clone().map(Arc::new);
        self.entries.entry_by_ref(key).and_compute_with(|current| {
            if feed.generation() != generation || !feed.fresh(self.config.max_staleness) {
                return Op::Nop;
            }
            let newer_known = current.is_some_and(|c| {
                let c = c.into_value();
                match c.state {
                    State::Floor(floor) => version < Some(floor),
                    State::Value(ref v) => {
                        c.generation == generation && version < v.as_ref().map(|r| r.version())
                    }
                }
            });
            if newer_known {
                Op::Nop
            } else {
                Op::Put(Entry {
                    generation,
                    state: State::Value(record),
                })
            }
        });
    }

    /// A change at `version` happened to `key`: the entry goes unless it already holds
    /// that version or a newer one.
    pub(crate) fn invalidate(&self, feed: &FeedState, key: &Key, version: Version) {
        let generation = feed.generation();
        let mut dropped = false;
        self.entries.entry_by_ref(key).and_compute_with(|current| {
            let known = current.map(|c| c.into_value());
            let covered = known.as_ref().is_some_and(|c| match c.state {
                State::Floor(floor) => floor >= version,
                State::Value(ref v) => {
                    c.generation == generation && v.as_ref().is_some_and(|r| r.version() >= version)
                }
            });
            if covered {
                return Op::Nop;
            }
            dropped = known.is_some_and(|c| matches!(c.state, State::Value(_)));
            // A marker even for a key not cached: a fill in flight that read an older
            // version must not land after this.
            Op::Put(Entry {
                generation,
                state: State::Floor(version),
            })
        });
        if dropped {
            self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
            self.metrics.invalidations.increment(1);
        }
    }

    /// Drops every entry (after a flush of the feed state, to free memory).
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }
}
