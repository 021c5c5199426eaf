//! Per-thread shards for the counters every backend call touches, so that calls on
//! different cores do not bounce one cache line between them.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many shards a hot counter is split into (a small power of two: more than the
/// cores a `Mux` usually runs on is no gain).
pub(crate) const SHARDS: usize = 4;

/// A value alone on its cache line (and the next one: adjacent-line prefetch).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// This thread's shard, `0..SHARDS`: threads are given shards round-robin on first use.
pub(crate) fn home() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    HOME.with(|h| {
        let mut i = h.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            h.set(i);
        }
        i
    })
}
