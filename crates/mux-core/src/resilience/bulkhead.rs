//! Bulkheads: a bound on in-flight and queued calls per backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::layer::{Layer, layer_impls};
use super::shard::{self, Padded};
use crate::backend::Backend;
use crate::error::{Error, ErrorKind, Operation, Result};

/// Bulkhead bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkheadConfig {
    /// Calls running at once.
    pub max_in_flight: usize,
    /// Calls waiting for a slot; past this, calls fail fast with `Overloaded`.
    pub max_queued: usize,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            max_in_flight: 256,
            max_queued: 1024,
        }
    }
}

/// The shared state of a [`Bulkhead`]: limits the calls to one backend; past the bounds a
/// call fails at once with [`ErrorKind::Overloaded`] instead of growing memory.
///
/// The slots are split into a few shards, each on its own cache line, with a thread
/// taking from its own shard first: an uncontended slot costs one compare-and-swap and
/// one subtraction on a line no other core is writing. There is no semaphore queue (and
/// no lock) unless every slot is taken. Waiters are woken in no particular order.
#[derive(Debug)]
pub struct BulkheadGate {
    config: BulkheadConfig,
    /// Slots taken per shard, and each shard's share of `max_in_flight`.
    taken: Box<[Padded<AtomicUsize>]>,
    limits: Box<[usize]>,
    queued: Padded<AtomicUsize>,
    freed: Notify,
}

/// Holds a bulkhead slot until dropped.
#[derive(Debug)]
pub struct BulkheadPermit<'a> {
    gate: &'a BulkheadGate,
    shard: usize,
}

impl Drop for BulkheadPermit<'_> {
    fn drop(&mut self) {
        let gate = self.gate;
        gate.taken[self.shard].fetch_sub(1, Ordering::SeqCst);
        // SeqCst on both sides: either this sees the waiter's count, or the waiter's
        // retry sees the slot given back.
        if gate.queued.load(Ordering::SeqCst) > 0 {
            gate.freed.notify_one();
        }
    }
}

/// Counts a waiter in the queue until dropped (also when the wait is cancelled).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BulkheadGate {
    /// A gate with these bounds.
    pub fn new(config: BulkheadConfig) -> BulkheadGate {
        let max = config.max_in_flight.max(1);
        let shards = shard::SHARDS.min(max);
        BulkheadGate {
            config,
            taken: (0..shards).map(|_| Padded(AtomicUsize::new(0))).collect(),
            limits: (0..shards)
                .map(|i| max / shards + usize::from(i < max % shards))
                .collect(),
            queued: Padded(AtomicUsize::new(0)),
            freed: Notify::new(),
        }
    }

    /// Takes a slot if one is free: from this thread's shard, else from any other.
    pub(crate) fn try_take(&self) -> Option<BulkheadPermit<'_>> {
        let n = self.taken.len();
        let home = shard::home() % n;
        for k in 0..n {
            let i = (home + k) % n;
            let (taken, limit) = (&self.taken[i], self.limits[i]);
            let mut current = taken.load(Ordering::SeqCst);
            while current < limit {
                match taken.compare_exchange_weak(
                    current,
                    current + 1,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => {
                        return Some(BulkheadPermit {
                            gate: self,
                            shard: i,
                        });
                    }
                    Err(now) => current = now,
                }
            }
        }
        None
    }

    /// Takes a slot, waiting in the queue if there is room, or fails with `Overloaded`.
    pub async fn acquire(&self) -> Result<BulkheadPermit<'_>> {
        if let Some(p) = self.try_take() {
            return Ok(p);
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.config.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::new(
                ErrorKind::Overloaded,
                format!(
                    "bulkhead full: {} calls in flight and {} queued",
                    self.config.max_in_flight, self.config.max_queued
                ),
            ));
        }
        let _queued = Queued(&self.queued);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(p) = self.try_take() {
                return Ok(p);
            }
            freed.await;
        }
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.taken.iter().map(|t| t.load(Ordering::Relaxed)).sum()
    }
}

/// Bounds the calls in flight (and waiting) to the wrapped backend.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use mux_core::{Backend, Key, MemoryBackend};
/// use mux_core::resilience::{Bulkhead, BulkheadConfig};
///
/// let store = Bulkhead::new(MemoryBackend::new("mem"), BulkheadConfig { max_in_flight: 8, max_queued: 0 });
/// assert!(store.get(&Key::new("a").unwrap()).await.unwrap().is_none());
/// assert_eq!(store.gate().in_flight(), 0);
/// # }
/// ```
#[derive(Debug)]
pub struct Bulkhead<B> {
    inner: B,
    gate: Arc<BulkheadGate>,
    name: Arc<str>,
}

impl<B: Backend> Bulkhead<B> {
    /// Wraps `inner` behind a new gate with these bounds.
    pub fn new(inner: B, config: BulkheadConfig) -> Bulkhead<B> {
        Bulkhead::with_gate(inner, Arc::new(BulkheadGate::new(config)))
    }

    /// Wraps `inner` behind an existing gate (shared with other wrappers).
    pub fn with_gate(inner: B, gate: Arc<BulkheadGate>) -> Bulkhead<B> {
        Bulkhead {
            name: inner.info().name.clone(),
            inner,
            gate,
        }
    }
}

impl<B> Bulkhead<B> {
    /// The wrapped backend.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// The shared gate (calls in flight).
    pub fn gate(&self) -> &Arc<BulkheadGate> {
        &self.gate
    }

    async fn around<T>(&self, op: Operation, call: impl Future<Output = Result<T>>) -> Result<T> {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| e.with_backend(&self.name).with_operation(op))?;
        call.await
    }
}

layer_impls!(Bulkhead);

/// Builds [`Bulkhead`]s, each with its own gate.
#[derive(Clone, Copy, Debug)]
pub struct BulkheadLayer {
    config: BulkheadConfig,
}

impl BulkheadLayer {
    /// Bulkheads with these bounds.
    pub fn new(config: BulkheadConfig) -> BulkheadLayer {
        BulkheadLayer { config }
    }
}

impl<B: Backend> Layer<B> for BulkheadLayer {
    type Backend = Bulkhead<B>;
    fn layer(&self, inner: B) -> Bulkhead<B> {
        Bulkhead::new(inner, self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fails_fast_past_its_bounds() {
        let b = Arc::new(BulkheadGate::new(BulkheadConfig {
            max_in_flight: 2,
            max_queued: 1,
        }));
        let p1 = b.acquire().await.unwrap();
        let _p2 = b.acquire().await.unwrap();
        assert_eq!(b.in_flight(), 2);
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire().await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        while b.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let e = b.acquire().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        assert!(e.is_temporary());
        drop(p1);
        waiter.await.unwrap().unwrap();
        assert_eq!(b.queued.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_gets_a_slot_and_the_bound_holds() {
        let b = Arc::new(BulkheadGate::new(BulkheadConfig {
            max_in_flight: 3,
            max_queued: 1_000,
        }));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (b, peak) = (b.clone(), peak.clone());
                tokio::spawn(async move {
                    for _ in 0..50 {
                        let _p = b.acquire().await.unwrap();
                        peak.fetch_max(b.in_flight(), Ordering::SeqCst);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(30), t)
                .await
                .expect("a waiter was never woken")
                .unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(b.in_flight(), 0);
        assert_eq!(b.queued.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_the_queue() {
        let b = BulkheadGate::new(BulkheadConfig {
            max_in_flight: 1,
            max_queued: 1,
        });
        let p = b.acquire().await.unwrap();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(10), b.acquire()).await;
        assert!(waited.is_err(), "the gate is full");
        assert_eq!(b.queued.load(Ordering::SeqCst), 0);
        drop(p);
        let _again = b.acquire().await.unwrap();
    }
}
