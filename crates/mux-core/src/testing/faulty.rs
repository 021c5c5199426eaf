//! A wrapper that injects latency, errors, slow calls and outages deterministically.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{Backend, BackendInfo, ListPage, ListRequest, PutOutcome};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::history::{AsOf, HistoryPage, HistoryRequest};
use crate::key::Key;
use crate::record::Record;
use crate::version::Version;

/// What a [`FaultyBackend`] injects. All rates are probabilities in `0.0..=1.0`.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Added to every call.
    pub latency: Duration,
    /// A uniformly random extra delay in `0..=jitter` added to every call.
    pub jitter: Duration,
    /// The share of calls that fail with `error_kind`.
    pub error_rate: f64,
    /// The kind of injected errors (temporariness follows the kind's default).
    pub error_kind: ErrorKind,
    /// The share of calls that take `slow_delay` extra.
    pub slow_rate: f64,
    /// The extra delay of a slow call.
    pub slow_delay: Duration,
    /// Only these operations are affected; empty means all.
    pub operations: Vec<Operation>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            error_rate: 0.0,
            error_kind: ErrorKind::Unavailable,
            slow_rate: 0.0,
            slow_delay: Duration::ZERO,
            operations: Vec::new(),
        }
    }
}

/// Wraps a backend and injects faults, reproducibly from a seed.
///
/// The n-th call draws its random numbers from `hash(seed, n)`, so the same seed and
/// the same call order give the same faults. Outages can be switched on and off while
/// the backend is in use.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use mux_core::{Backend, Key, MemoryBackend};
/// use mux_core::testing::{FaultConfig, FaultyBackend};
///
/// let flaky = FaultyBackend::new(MemoryBackend::new("m"), 42)
///     .with_config(FaultConfig { latency: Duration::from_millis(1), ..Default::default() });
/// flaky.set_outage(true);
/// assert!(flaky.get(&Key::new("a").unwrap()).await.unwrap_err().is_temporary());
/// # }
/// ```
#[derive(Debug)]
pub struct FaultyBackend<B> {
    inner: B,
    seed: u64,
    calls: AtomicU64,
    injected: AtomicU64,
    outage: AtomicBool,
    config: Mutex<FaultConfig>,
    damaged: Mutex<HashSet<Key>>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl<B: Backend> FaultyBackend<B> {
    /// Wraps `inner` with no faults yet.
    pub fn new(inner: B, seed: u64) -> Self {
        FaultyBackend {
            inner,
            seed,
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            outage: AtomicBool::new(false),
            config: Mutex::new(FaultConfig::default()),
            damaged: Mutex::new(HashSet::new()),
        }
    }

    /// Sets the faults to inject.
    pub fn with_config(self, config: FaultConfig) -> Self {
        self.set_config(config);
        self
    }

    /// Changes the faults while in use.
    pub fn set_config(&self, config: FaultConfig) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Starts (`true`) or ends (`false`) an outage: every call fails as unavailable.
    pub fn set_outage(&self, down: bool) {
        self.outage.store(down, Ordering::SeqCst);
    }

    /// Damages the stored copy of `key`, as bit rot or a store that kept an empty body
    /// would: reads of it fail as [`ErrorKind::Corrupt`] until a purge removes it or a
    /// write replaces it. A write at the stored version is refused as usual (the store
    /// still holds that version), so it does not mend the copy.
    pub fn corrupt(&self, key: &Key) {
        self.damaged().insert(key.clone());
    }

    /// Whether the stored copy of `key` is damaged (see [`FaultyBackend::corrupt`]).
    pub fn is_corrupt(&self, key: &Key) -> bool {
        self.damaged().contains(key)
    }

    fn damaged(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        self.damaged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the damage of `key` when `replaced`.
    fn mended(&self, key: &Key, replaced: bool) {
        if replaced {
            self.damaged().remove(key);
        }
    }

    /// How many calls reached this wrapper.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many calls failed by injection (errors and outages).
    pub fn injected_failures(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// The wrapped backend.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.inner
    }

    async fn before(&self, op: Operation) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let config = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !config.operations.is_empty() && !config.operations.contains(&op) {
            return Ok(());
        }
        let name = &self.inner.info().name;
        if self.outage.load(Ordering::SeqCst) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(Error::new(ErrorKind::Unavailable, "injected outage")
                .with_backend(name)
                .with_operation(op));
        }
        let r1 = splitmix(self.seed ^ splitmix(n));
        let r2 = splitmix(r1);
        let r3 = splitmix(r2);
        let mut delay = config.latency;
        if !config.jitter.is_zero() {
            delay += config.jitter.mul_f64(unit(r1));
        }
        if unit(r2) < config.slow_rate {
            delay += config.slow_delay;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if unit(r3) < config.error_rate {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(Error::new(config.error_kind, "injected failure")
                .with_backend(name)
                .with_operation(op));
        }
        Ok(())
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<B: Backend> Backend for FaultyBackend<B> {
    fn info(&self) -> &BackendInfo {
        self.inner.info()
    }
    async fn put(&self, record: &Record) -> Result<PutOutcome> {
        self.before(Operation::Put).await?;
        let outcome = self.inner.put(record).await?;
        self.mended(record.key(), outcome.is_applied());
        Ok(outcome)
    }
    async fn get(&self, key: &Key) -> Result<Option<Record>> {
        self.before(Operation::Get).await?;
        if self.is_corrupt(key) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("record {key}: the value's checksum does not match (injected damage)"),
            )
            .with_backend(&self.inner.info().name)
            .with_operation(Operation::Get));
        }
        self.inner.get(key).await
    }
    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        self.before(Operation::List).await?;
        self.inner.list(request).await
    }
    async fn delete(&self, key: &Key, version: Version) -> Result<PutOutcome> {
        self.before(Operation::Delete).await?;
        let outcome = self.inner.delete(key, version).await?;
        self.mended(key, outcome.is_applied());
        Ok(outcome)
    }
    async fn put_batch(&self, records: &[Record]) -> Result<Vec<PutOutcome>> {
        self.before(Operation::PutBatch).await?;
        let outcomes = self.inner.put_batch(records).await?;
        for (record, outcome) in records.iter().zip(&outcomes) {
            self.mended(record.key(), outcome.is_applied());
        }
        Ok(outcomes)
    }
    async fn purge(&self, key: &Key, up_to: Version) -> Result<bool> {
        self.before(Operation::Purge).await?;
        let purged = self.inner.purge(key, up_to).await?;
        self.mended(key, purged);
        Ok(purged)
    }
    async fn health(&self) -> Result<()> {
        self.before(Operation::Health).await?;
        self.inner.health().await
    }
    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage> {
        self.before(Operation::History).await?;
        self.inner.history(request).await
    }
    async fn get_as_of(&self, key: &Key, at: AsOf) -> Result<Option<Record>> {
        self.before(Operation::GetAsOf).await?;
        self.inner.get_as_of(key, at).await
    }

    async fn digest(
        &self,
        request: &crate::digest::DigestRequest,
    ) -> Result<Vec<crate::digest::DigestChunk>> {
        self.before(Operation::Digest).await?;
        self.inner.digest(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    async fn failures(seed: u64) -> Vec<bool> {
        let b = FaultyBackend::new(MemoryBackend::new("m"), seed).with_config(FaultConfig {
            error_rate: 0.3,
            ..Default::default()
        });
        let k = Key::new("k").unwrap();
        let mut out = Vec::new();
        for _ in 0..200 {
            out.push(b.get(&k).await.is_err());
        }
        out
    }

    #[tokio::test]
    async fn faults_are_deterministic_per_seed_and_near_the_rate() {
        let a = failures(1).await;
        assert_eq!(a, failures(1).await);
        assert_ne!(a, failures(2).await);
        let rate = a.iter().filter(|f| **f).count() as f64 / a.len() as f64;
        assert!((0.2..0.4).contains(&rate), "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_and_outage() {
        let b = FaultyBackend::new(MemoryBackend::new("m"), 1).with_config(FaultConfig {
            latency: Duration::from_millis(10),
            operations: vec![Operation::Get],
            ..Default::default()
        });
        let k = Key::new("k").unwrap();
        let t = tokio::time::Instant::now();
        b.put(&Record::new(k.clone(), "v", Version::new(1, 0, 0)))
            .await
            .unwrap();
        assert_eq!(t.elapsed(), Duration::ZERO);
        b.get(&k).await.unwrap();
        assert_eq!(t.elapsed(), Duration::from_millis(10));
        b.set_outage(true);
        let e = b.get(&k).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.backend(), Some("m"));
        b.set_outage(false);
        assert!(b.get(&k).await.is_ok());
        assert_eq!(b.injected_failures(), 1);
    }
}
