//! The counters of a whole `Mux`.

use std::sync::atomic::AtomicU64;

/// Counters of a whole `Mux`.
#[derive(Debug, Default)]
pub(crate) struct MuxCounters {
    pub(crate) read_repairs: AtomicU64,
    pub(crate) hedged_requests: AtomicU64,
    pub(crate) background_failures: AtomicU64,
    pub(crate) feed_publish_failures: AtomicU64,
    pub(crate) feed_publish_lost: AtomicU64,
}

/// A snapshot of a `Mux`'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Stale backends repaired by reads (one per backend repaired), corrupt copies
    /// included.
    pub read_repairs: u64,
    /// Reads that met a corrupt copy (a checksum that did not match, or a stored form
    /// that could not be decoded), summed over backends; per backend it is the
    /// `mux_corrupt_reads_total` metric.
    pub corrupt_reads: u64,
    /// Extra requests sent by hedged reads.
    pub hedged_requests: u64,
    /// Background writes (after the acknowledgement) that failed.
    pub background_failures: u64,
    /// Background writes and repairs still running.
    pub background_pending: usize,
    /// Publishes to the change feed that failed (each is retried in the background).
    pub feed_publish_failures: u64,
    /// Changes never published after every retry (other nodes' caches then rely on
    /// their TTL for that key).
    pub feed_publish_lost: u64,
    /// The route caches, summed over routes.
    pub cache: CacheStats,
}

/// The counters of the route caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from a cache.
    pub hits: u64,
    /// Reads that went to the backends and filled the cache (one per key for a crowd
    /// of concurrent readers).
    pub misses: u64,
    /// Reads that went to the backends because the feed was not fresh.
    pub bypassed: u64,
    /// Cached entries dropped because a newer version was written.
    pub invalidations: u64,
    /// Entries evicted for capacity or TTL.
    pub evictions: u64,
}
