//! The counters of a whole `Mux`.

use std::sync::atomic::AtomicU64;

/// Counters of a whole `Mux`.
#[derive(Debug, Default)]
pub(crate) struct MuxCounters {
    pub(crate) read_repairs: AtomicU64,
    pub(crate) hedged_requests: AtomicU64,
    pub(crate) background_failures: AtomicU64,
}

/// A snapshot of a `Mux`'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Stale backends repaired by reads (one per backend repaired).
    pub read_repairs: u64,
    /// Extra requests sent by hedged reads.
    pub hedged_requests: u64,
    /// Background writes (after the acknowledgement) that failed.
    pub background_failures: u64,
    /// Background writes and repairs still running.
    pub background_pending: usize,
}
