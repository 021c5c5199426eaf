//! Bulkheads: a bound on in-flight and queued calls per backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::layer::{Layer, layer_impls};
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
#[derive(Debug)]
pub struct BulkheadGate {
    config: BulkheadConfig,
    slots: Semaphore,
    queued: AtomicUsize,
}

/// Holds a bulkhead slot until dropped.
#[derive(Debug)]
pub struct BulkheadPermit<'a>(#[allow(dead_code)] SemaphorePermit<'a>);

impl BulkheadGate {
    /// A gate with these bounds.
    pub fn new(config: BulkheadConfig) -> BulkheadGate {
        BulkheadGate {
            config,
            slots: Semaphore::new(config.max_in_flight.max(1)),
            queued: AtomicUsize::new(0),
        }
    }

    /// Takes a slot, waiting in the queue if there is room, or fails with `Overloaded`.
    pub async fn acquire(&self) -> Result<BulkheadPermit<'_>> {
        if let Ok(p) = self.slots.try_acquire() {
            return Ok(BulkheadPermit(p));
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
        let permit = self.slots.acquire().await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        permit
            .map(BulkheadPermit)
            .map_err(|_| Error::internal("bulkhead closed"))
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.config.max_in_flight.max(1) - self.slots.available_permits()
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
    }
}
