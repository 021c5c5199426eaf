//! An operations-per-second limit shared by a job's store calls.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::DefaultClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Limits a job to a number of store operations per second (each listing page, digest,
/// read or write counts as one; a batch write counts once per record). Cheap to clone;
/// clones share the limit.
#[derive(Clone, Debug, Default)]
pub struct Throttle {
    limiter: Option<Arc<RateLimiter<NotKeyed, InMemoryState, DefaultClock>>>,
}

impl Throttle {
    /// No limit.
    pub fn unlimited() -> Throttle {
        Throttle::default()
    }

    /// At most `ops_per_second` operations per second (0 means no limit), allowing a
    /// burst of one second's worth.
    pub fn per_second(ops_per_second: u32) -> Throttle {
        match NonZeroU32::new(ops_per_second) {
            None => Throttle::unlimited(),
            Some(rate) => Throttle {
                limiter: Some(Arc::new(RateLimiter::direct(Quota::per_second(rate)))),
            },
        }
    }

    /// Waits until `ops` more operations may start.
    pub async fn acquire(&self, ops: usize) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        for _ in 0..ops {
            limiter.until_ready().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_limit_spaces_operations_out() {
        let t = Throttle::per_second(50);
        let start = std::time::Instant::now();
        t.acquire(50).await; // the burst
        t.acquire(10).await; // 10 more at 50/s: about 0.2 s
        let took = start.elapsed();
        assert!(took >= std::time::Duration::from_millis(150), "{took:?}");
        let free = std::time::Instant::now();
        Throttle::unlimited().acquire(1_000_000).await;
        assert!(free.elapsed() < std::time::Duration::from_millis(100));
    }
}
