//! Retries: exponential backoff with full jitter, capped, by attempts and by age.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When and how often a failed backend call is tried again.
///
/// Only temporary errors are retried. The n-th retry waits a uniformly random time in
/// `0..=min(max_backoff, initial_backoff * multiplier^n)` ("full jitter"), so retries of
/// many writers spread out instead of arriving in waves.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// The cap of the first backoff.
    #[serde(with = "millis")]
    pub initial_backoff: Duration,
    /// The largest backoff.
    #[serde(with = "millis")]
    pub max_backoff: Duration,
    /// How much the cap grows per attempt.
    pub multiplier: f64,
    /// Give up after this many attempts (the first try included).
    pub max_attempts: u32,
    /// Give up when the first attempt is older than this.
    #[serde(with = "millis")]
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            max_attempts: 20,
            max_age: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The cap of the wait before retry number `retry` (0 for the first retry).
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(retry.min(64) as i32);
        let cap = self.initial_backoff.as_secs_f64() * factor;
        Duration::from_secs_f64(cap.min(self.max_backoff.as_secs_f64()))
    }

    /// The wait before retry number `retry`, given a uniform random number in `0..1`.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        self.backoff_cap(retry).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Whether another attempt is allowed after `attempts` attempts, the first `age` ago.
    pub fn may_retry(&self, attempts: u32, age: Duration) -> bool {
        attempts < self.max_attempts && age < self.max_age
    }
}

pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A small, seedable random number generator (SplitMix64) for jitter: the one source of
/// randomness for every backoff in mux (the coordinator's hints and the adapters' own
/// condition retries), so that tests can seed it and nothing else is hand-rolled.
///
/// ```
/// use std::time::Duration;
/// use mux_core::resilience::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::default();
/// let wait = policy.backoff(2, Jitter::shared().unit());
/// assert!(wait <= policy.backoff_cap(2));
/// ```
#[derive(Debug)]
pub struct Jitter(std::sync::atomic::AtomicU64);

impl Jitter {
    /// A generator starting from `seed` (the same seed gives the same sequence).
    pub fn new(seed: u64) -> Jitter {
        Jitter(std::sync::atomic::AtomicU64::new(seed))
    }

    /// The process-wide generator, seeded once from the standard library's random keys.
    pub fn shared() -> &'static Jitter {
        static SHARED: std::sync::OnceLock<Jitter> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            use std::hash::BuildHasher;
            Jitter::new(std::collections::hash_map::RandomState::new().hash_one(0x006d_7578_u64))
        })
    }

    /// A uniform number in `0..1`.
    pub fn unit(&self) -> f64 {
        let mut x = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            ..Default::default()
        };
        let rng = Jitter::new(42);
        let mut means = Vec::new();
        for retry in 0..8 {
            let samples: Vec<Duration> = (0..2000)
                .map(|_| policy.backoff(retry, rng.unit()))
                .collect();
            let cap = policy.backoff_cap(retry);
            assert!(samples.iter().all(|d| *d <= cap));
            let mean =
                samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64;
            // Full jitter: uniform over 0..=cap, so the mean is cap/2 (within 10%).
            assert!(
                (mean / (cap.as_secs_f64() / 2.0) - 1.0).abs() < 0.1,
                "retry {retry}: mean {mean}, cap {cap:?}"
            );
            // Jittered: the samples spread over the range.
            let distinct: std::collections::BTreeSet<u128> =
                samples.iter().map(Duration::as_micros).collect();
            assert!(
                distinct.len() > 1000,
                "retry {retry}: {} distinct",
                distinct.len()
            );
            means.push(mean);
        }
        assert!(
            means.windows(2).take(5).all(|w| w[1] > w[0] * 1.6),
            "grows: {means:?}"
        );
        assert_eq!(policy.backoff_cap(7), Duration::from_millis(500), "capped");
    }

    #[test]
    fn attempts_and_age_limit_retries() {
        let policy = RetryPolicy {
            max_attempts: 3,
            max_age: Duration::from_secs(1),
            ..Default::default()
        };
        assert!(policy.may_retry(2, Duration::ZERO));
        assert!(!policy.may_retry(3, Duration::ZERO));
        assert!(!policy.may_retry(1, Duration::from_secs(2)));
    }
}
