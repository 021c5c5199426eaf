//! The per-case context: a backend, a fresh prefix, versions and cleanup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mux_core::{Backend, BackendExt, Capability, Clock, Key, Prefix, Result, Version};

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What a case works with: the backend under test, a fresh key prefix that no other
/// run uses, a clock for versions, and a record of the keys written for cleanup.
#[derive(Debug)]
pub struct Ctx {
    backend: Arc<dyn Backend>,
    root: String,
    seed: u64,
    clock: Clock,
    written: Mutex<Vec<Key>>,
}

impl Ctx {
    /// A context with a fresh random prefix.
    pub fn new(backend: Arc<dyn Backend>) -> Ctx {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = splitmix(
            nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::SeqCst),
        );
        Ctx {
            backend,
            root: format!("mux-conformance/{seed:016x}"),
            seed,
            clock: Clock::new((seed & 0xffff) as u32),
            written: Mutex::new(Vec::new()),
        }
    }

    /// The backend under test.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// A shared handle on the backend (for spawned tasks).
    pub fn backend_arc(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// The backend's capability.
    pub fn capability(&self) -> Capability {
        self.backend.info().capability
    }

    /// The prefix under which this case writes.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// A key under this case's prefix, remembered for cleanup.
    pub fn key(&self, suffix: &str) -> Key {
        let key = Key::new(format!("{}/{suffix}", self.root))
            .unwrap_or_else(|e| panic!("conformance key {suffix:?} is invalid: {e}"));
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key.clone());
        key
    }

    /// Remembers a key the case built itself (not with [`Ctx::key`]) for cleanup.
    pub fn track(&self, key: Key) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key);
    }

    /// A prefix under this case's prefix.
    pub fn prefix(&self, suffix: &str) -> Prefix {
        Prefix::new(format!("{}/{suffix}", self.root))
            .unwrap_or_else(|e| panic!("conformance prefix {suffix:?} is invalid: {e}"))
    }

    /// A fresh, increasing version.
    pub fn version(&self) -> Version {
        self.clock.now()
    }

    /// A deterministic pseudo-random number for this case (the n-th draw).
    pub fn random(&self, n: u64) -> u64 {
        splitmix(self.seed ^ splitmix(n))
    }

    /// Shuffles `items` deterministically for this case.
    pub fn shuffle<T>(&self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.random(i as u64) % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }

    /// Removes everything the case wrote: purges where the backend can, otherwise
    /// writes tombstones above anything a case may have written.
    pub async fn cleanup(&self) -> Result<()> {
        let mut keys = std::mem::take(&mut *self.written.lock().unwrap_or_else(|p| p.into_inner()));
        let cap = self.capability();
        if cap.list {
            let root = Prefix::new(&self.root)?;
            let listed = retried(|| self.backend.list_all(&root)).await?;
            keys.extend(listed.into_iter().map(|e| e.key));
        }
        keys.sort();
        keys.dedup();
        let top = Version::new(u64::MAX >> 1, 0, 0);
        let any = Version::new(u64::MAX, u32::MAX, u32::MAX);
        for key in keys {
            if cap.purge {
                retried(|| self.backend.purge(&key, any)).await?;
            } else {
                retried(|| self.backend.delete(&key, top)).await?;
            }
        }
        Ok(())
    }
}

/// Runs one cleanup step, retrying a temporary error up to twice after a short pause.
/// Cleanup is housekeeping, not the case under test: a networked store may answer any
/// single call with a temporary error (a reset connection), as the coordinator's own
/// retries expect. Purges and tombstones are idempotent, so a retry is safe. A step
/// that still fails, or fails permanently, fails the case.
async fn retried<T, F, Fut>(mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut pause = std::time::Duration::from_millis(200);
    for _ in 0..2 {
        match step().await {
            Err(e) if e.is_temporary() => {
                tokio::time::sleep(pause).await;
                pause *= 4;
            }
            done => return done,
        }
    }
    step().await
}
