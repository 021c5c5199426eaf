//! Bulkheads: a bound on in-flight and queued calls per backend.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{Error, ErrorKind};

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

/// Limits the calls to one backend; past the bounds a call fails at once with
/// [`ErrorKind::Overloaded`] instead of growing memory.
#[derive(Debug)]
pub struct Bulkhead {
    config: BulkheadConfig,
    slots: Semaphore,
    queued: AtomicUsize,
}

/// Holds a bulkhead slot until dropped.
#[derive(Debug)]
pub struct BulkheadPermit<'a>(#[allow(dead_code)] SemaphorePermit<'a>);

impl Bulkhead {
    /// A bulkhead with these bounds.
    pub fn new(config: BulkheadConfig) -> Bulkhead {
        Bulkhead {
            config,
            slots: Semaphore::new(config.max_in_flight.max(1)),
            queued: AtomicUsize::new(0),
        }
    }

    /// Takes a slot, waiting in the queue if there is room, or fails with `Overloaded`.
    pub async fn acquire(&self) -> Result<BulkheadPermit<'_>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn fails_fast_past_its_bounds() {
        let b = Arc::new(Bulkhead::new(BulkheadConfig {
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
