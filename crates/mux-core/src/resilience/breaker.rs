//! Circuit breakers: stop waiting on a backend that keeps failing.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::layer::{Layer, layer_impls};
use super::retry::millis;
use crate::backend::Backend;
use crate::error::{Error, ErrorKind, Operation, Result};

/// When a circuit opens and how it recovers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// The sliding window: the last this-many calls.
    pub window: usize,
    /// Rates are judged only once the window holds this many calls.
    pub min_calls: usize,
    /// Open when this share of the window failed.
    pub failure_rate: f64,
    /// Open after this many failures in a row, whatever the window says.
    pub consecutive_failures: u32,
    /// A call slower than this counts as slow; zero (the default) turns the slow-call
    /// rule off, so a slow but healthy store (a loaded machine, a big value) is never
    /// cut off. Timeouts count as failures whatever this says.
    #[serde(with = "millis")]
    pub slow_call: Duration,
    /// Open when this share of the window was slow.
    pub slow_rate: f64,
    /// How long the circuit stays open before letting probes through.
    #[serde(with = "millis")]
    pub open_for: Duration,
    /// How many probes a half-open circuit lets through; that many successes close it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: 50,
            min_calls: 20,
            failure_rate: 0.5,
            consecutive_failures: 10,
            slow_call: Duration::ZERO,
            slow_rate: 0.8,
            open_for: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

/// The state of a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Calls are rejected at once.
    Open,
    /// A few probes are let through to test recovery.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Permission for one call, from [`Circuit::try_acquire`].
///
/// Report the call's outcome with [`CallPermit::record`]. A half-open circuit lets only
/// a few probes through and waits for their outcomes; a probe whose call is cancelled
/// (a read that already had enough answers drops the rest) would never report, and the
/// circuit would wait forever. Dropping its permit unreported gives the slot back.
#[derive(Debug)]
#[must_use = "report the call's outcome with CallPermit::record"]
pub struct CallPermit<'a> {
    circuit: &'a Circuit,
    /// The half-open period this probe belongs to (`None`: not a probe).
    probe: Option<u64>,
}

impl CallPermit<'_> {
    /// Records the call's outcome: `failed` for a temporary error (or a timeout).
    pub fn record(mut self, failed: bool, elapsed: Duration) {
        self.probe = None;
        self.circuit.record(failed, elapsed);
    }
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        if let Some(epoch) = self.probe {
            self.circuit.abandon(epoch);
        }
    }
}

#[derive(Debug)]
struct State {
    state: CircuitState,
    opened_at: Instant,
    probes_started: u32,
    probes_ok: u32,
    opened_count: u64,
}

const CLOSED: u8 = 0;
const NOT_CLOSED: u8 = 1;

/// The shared state of a [`CircuitBreaker`], for one backend: closed, open, half-open.
///
/// It opens on a high failure rate over a window of calls, on consecutive failures, or
/// on a high share of slow calls; after `open_for` it lets `half_open_probes` calls
/// through and closes when they all succeed (one failure reopens it). Only temporary
/// errors count as failures: a backend refusing bad input is not unhealthy.
///
/// While closed, calls touch only atomics (a ring of the last `window` outcomes with
/// running counts); the lock is taken only to change state.
#[derive(Debug)]
pub struct Circuit {
    config: BreakerConfig,
    fast: AtomicU8,
    /// The sliding window: one slot per call (bit 0 failed, bit 1 slow), reused
    /// round-robin, with running counts of what it holds.
    ring: Box<[AtomicU8]>,
    calls: AtomicU32,
    failures: AtomicU32,
    slows: AtomicU32,
    consecutive: AtomicU32,
    state: Mutex<State>,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(config: BreakerConfig) -> Circuit {
        Circuit {
            config,
            fast: AtomicU8::new(CLOSED),
            ring: (0..config.window.max(1))
                .map(|_| AtomicU8::new(0))
                .collect(),
            calls: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            slows: AtomicU32::new(0),
            consecutive: AtomicU32::new(0),
            state: Mutex::new(State {
                state: CircuitState::Closed,
                opened_at: Instant::now(),
                probes_started: 0,
                probes_ok: 0,
                opened_count: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state (an open circuit whose time is up reads as half-open).
    pub fn state(&self) -> CircuitState {
        if self.fast.load(Ordering::Acquire) == CLOSED {
            return CircuitState::Closed;
        }
        let s = self.lock();
        if s.state == CircuitState::Open && s.opened_at.elapsed() >= self.config.open_for {
            CircuitState::HalfOpen
        } else {
            s.state
        }
    }

    /// How many times the circuit has opened.
    pub fn times_opened(&self) -> u64 {
        self.lock().opened_count
    }

    /// When an open circuit will let probes through (`None` unless open).
    pub fn retry_in(&self) -> Option<Duration> {
        if self.fast.load(Ordering::Acquire) == CLOSED {
            return None;
        }
        let s = self.lock();
        (s.state == CircuitState::Open)
            .then(|| self.config.open_for.saturating_sub(s.opened_at.elapsed()))
    }

    /// Asks to make a call: `Err(Unavailable)` while open, or when a half-open circuit
    /// already has its probes out. Report the call's outcome with
    /// [`CallPermit::record`]; a permit dropped unreported (the call was cancelled)
    /// gives a half-open circuit's probe slot back.
    pub fn try_acquire(&self) -> Result<CallPermit<'_>> {
        if self.fast.load(Ordering::Acquire) == CLOSED {
            return Ok(CallPermit {
                circuit: self,
                probe: None,
            });
        }
        let mut s = self.lock();
        if s.state == CircuitState::Open {
            if s.opened_at.elapsed() < self.config.open_for {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "circuit open (retry in {} ms)",
                        self.config
                            .open_for
                            .saturating_sub(s.opened_at.elapsed())
                            .as_millis()
                    ),
                ));
            }
            s.state = CircuitState::HalfOpen;
            s.probes_started = 0;
            s.probes_ok = 0;
        }
        if s.state == CircuitState::HalfOpen {
            if s.probes_started >= self.config.half_open_probes {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "circuit half-open: probes in progress",
                ));
            }
            s.probes_started += 1;
            return Ok(CallPermit {
                circuit: self,
                probe: Some(s.opened_count),
            });
        }
        Ok(CallPermit {
            circuit: self,
            probe: None,
        })
    }

    /// A probe of the half-open period `epoch` (its count of openings) ended without
    /// an outcome: its slot goes to the next call.
    fn abandon(&self, epoch: u64) {
        let mut s = self.lock();
        if s.state == CircuitState::HalfOpen && s.opened_count == epoch && s.probes_started > 0 {
            s.probes_started -= 1;
        }
    }

    /// Records the outcome of a call allowed by `try_acquire` (what
    /// [`CallPermit::record`] does).
    pub fn record(&self, failed: bool, elapsed: Duration) {
        let slow = !self.config.slow_call.is_zero() && elapsed >= self.config.slow_call;
        if self.fast.load(Ordering::Acquire) == CLOSED {
            self.record_closed(failed, slow);
            return;
        }
        let mut s = self.lock();
        match s.state {
            CircuitState::HalfOpen => {
                if failed {
                    self.open(&mut s);
                } else {
                    s.probes_ok += 1;
                    if s.probes_ok >= self.config.half_open_probes {
                        s.state = CircuitState::Closed;
                        self.reset_window();
                        self.fast.store(CLOSED, Ordering::Release);
                    }
                }
            }
            // A call that started before the circuit opened, or a late one.
            CircuitState::Open | CircuitState::Closed => {}
        }
    }

    fn record_closed(&self, failed: bool, slow: bool) {
        let bits = u8::from(failed) | (u8::from(slow) << 1);
        // A success in a full window that holds no failure and no slow call changes
        // nothing the rules look at (any slot it would take holds a success too), so a
        // healthy backend's calls only read these shared counters, never write them.
        if bits == 0
            && self.failures.load(Ordering::Relaxed) == 0
            && self.slows.load(Ordering::Relaxed) == 0
            && self.calls.load(Ordering::Relaxed) as usize >= self.ring.len()
        {
            return;
        }
        let n = self.calls.fetch_add(1, Ordering::AcqRel);
        let evicted = self.ring[n as usize % self.ring.len()].swap(bits, Ordering::AcqRel);
        let delta = |counter: &AtomicU32, now: bool, before: bool| -> u32 {
            match (now, before) {
                (true, false) => counter.fetch_add(1, Ordering::AcqRel) + 1,
                (false, true) => counter.fetch_sub(1, Ordering::AcqRel).saturating_sub(1),
                _ => counter.load(Ordering::Acquire),
            }
        };
        let failures = delta(&self.failures, failed, evicted & 1 != 0);
        let slows = delta(&self.slows, slow, evicted & 2 != 0);
        let consecutive = if failed {
            self.consecutive.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Release);
            }
            0
        };
        let in_window = (n + 1).min(self.ring.len() as u32);
        let judged = in_window as usize >= self.config.min_calls;
        if consecutive >= self.config.consecutive_failures
            || (judged && f64::from(failures) >= self.config.failure_rate * f64::from(in_window))
            || (judged && f64::from(slows) >= self.config.slow_rate * f64::from(in_window))
        {
            let mut s = self.lock();
            if s.state == CircuitState::Closed {
                self.open(&mut s);
            }
        }
    }

    /// Takes over the state of `from` (the same backend's circuit in the `Mux` this one
    /// replaces): an open or half-open circuit stays open from the same moment, so it
    /// lets probes through when `from` would have; the count of openings carries over.
    pub(crate) fn adopt(&self, from: &Circuit) {
        let (state, opened_at, opened_count) = {
            let theirs = from.lock();
            (theirs.state, theirs.opened_at, theirs.opened_count)
        };
        let mut s = self.lock();
        s.opened_count = opened_count;
        if state != CircuitState::Closed {
            s.state = CircuitState::Open;
            s.opened_at = opened_at;
            s.probes_started = 0;
            s.probes_ok = 0;
            self.fast.store(NOT_CLOSED, Ordering::Release);
        }
    }

    fn reset_window(&self) {
        for slot in self.ring.iter() {
            slot.store(0, Ordering::Release);
        }
        self.calls.store(0, Ordering::Release);
        self.failures.store(0, Ordering::Release);
        self.slows.store(0, Ordering::Release);
        self.consecutive.store(0, Ordering::Release);
    }

    fn open(&self, s: &mut State) {
        s.state = CircuitState::Open;
        s.opened_at = Instant::now();
        s.opened_count += 1;
        self.reset_window();
        self.fast.store(NOT_CLOSED, Ordering::Release);
        tracing::warn!(
            open_for_ms = self.config.open_for.as_millis() as u64,
            "circuit opened"
        );
    }
}

/// Stops calling a backend that keeps failing: while its [`Circuit`] is open, calls fail
/// at once with a temporary `Unavailable` error, and only temporary errors (and
/// timeouts) count as failures.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use mux_core::{Backend, Key, MemoryBackend};
/// use mux_core::resilience::{BreakerConfig, CircuitBreaker, CircuitState};
///
/// let store = CircuitBreaker::new(MemoryBackend::new("mem"), BreakerConfig::default());
/// assert!(store.get(&Key::new("a").unwrap()).await.unwrap().is_none());
/// assert_eq!(store.circuit().state(), CircuitState::Closed);
/// # }
/// ```
#[derive(Debug)]
pub struct CircuitBreaker<B> {
    inner: B,
    circuit: Arc<Circuit>,
    name: Arc<str>,
}

impl<B: Backend> CircuitBreaker<B> {
    /// Wraps `inner` behind a new closed circuit.
    pub fn new(inner: B, config: BreakerConfig) -> CircuitBreaker<B> {
        CircuitBreaker::with_circuit(inner, Arc::new(Circuit::new(config)))
    }

    /// Wraps `inner` behind an existing circuit (shared with other wrappers).
    pub fn with_circuit(inner: B, circuit: Arc<Circuit>) -> CircuitBreaker<B> {
        CircuitBreaker {
            name: inner.info().name.clone(),
            inner,
            circuit,
        }
    }
}

impl<B> CircuitBreaker<B> {
    /// The wrapped backend.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// The shared circuit (state, times opened).
    pub fn circuit(&self) -> &Arc<Circuit> {
        &self.circuit
    }

    async fn around<T>(&self, op: Operation, call: impl Future<Output = Result<T>>) -> Result<T> {
        let permit = self
            .circuit
            .try_acquire()
            .map_err(|e| e.with_backend(&self.name).with_operation(op))?;
        // The clock is read only for the slow-call rule (off by default).
        let started = (!self.circuit.config.slow_call.is_zero()).then(Instant::now);
        let result = call.await;
        permit.record(
            result.as_ref().is_err_and(Error::is_temporary),
            started.map_or(Duration::ZERO, |s| s.elapsed()),
        );
        result
    }
}

layer_impls!(CircuitBreaker);

/// Builds [`CircuitBreaker`]s, each with its own circuit.
#[derive(Clone, Copy, Debug)]
pub struct CircuitBreakerLayer {
    config: BreakerConfig,
}

impl CircuitBreakerLayer {
    /// Breakers with these settings.
    pub fn new(config: BreakerConfig) -> CircuitBreakerLayer {
        CircuitBreakerLayer { config }
    }
}

impl<B: Backend> Layer<B> for CircuitBreakerLayer {
    type Backend = CircuitBreaker<B>;
    fn layer(&self, inner: B) -> CircuitBreaker<B> {
        CircuitBreaker::new(inner, self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Circuit {
        Circuit::new(BreakerConfig {
            window: 10,
            min_calls: 4,
            failure_rate: 0.5,
            consecutive_failures: 3,
            slow_call: Duration::from_millis(100),
            slow_rate: 0.5,
            open_for: Duration::from_secs(1),
            half_open_probes: 2,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_consecutive_failures_probes_and_closes() {
        let b = breaker();
        for _ in 0..3 {
            b.try_acquire().unwrap().record(true, Duration::ZERO);
        }
        assert_eq!(b.state(), CircuitState::Open);
        assert!(
            b.try_acquire()
                .unwrap_err()
                .message()
                .contains("circuit open")
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let first = b.try_acquire().unwrap();
        let second = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err(), "only two probes");
        first.record(false, Duration::ZERO);
        second.record(false, Duration::ZERO);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    /// A probe whose call is cancelled (its permit dropped unreported) gives its slot
    /// back: the half-open circuit does not wait forever for it.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_frees_its_slot() {
        let b = breaker();
        for _ in 0..3 {
            b.record(true, Duration::ZERO);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let kept = b.try_acquire().unwrap();
        drop(b.try_acquire().unwrap());
        let again = b
            .try_acquire()
            .expect("the cancelled probe's slot is free again");
        assert!(b.try_acquire().is_err(), "still two probes at most");
        kept.record(false, Duration::ZERO);
        again.record(false, Duration::ZERO);
        assert_eq!(b.state(), CircuitState::Closed);
        // A permit of an earlier half-open period changes nothing in a later one.
        for _ in 0..3 {
            b.record(true, Duration::ZERO);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let stale = b.try_acquire().unwrap();
        b.try_acquire().unwrap().record(true, Duration::ZERO);
        tokio::time::advance(Duration::from_secs(1)).await;
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        drop(stale);
        assert!(b.try_acquire().is_err(), "the stale permit freed nothing");
        p1.record(false, Duration::ZERO);
        p2.record(false, Duration::ZERO);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens() {
        let b = breaker();
        for _ in 0..3 {
            b.record(true, Duration::ZERO);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        b.try_acquire().unwrap().record(true, Duration::ZERO);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.times_opened(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_failure_rate_and_on_slow_calls() {
        let b = breaker();
        for failed in [true, false, true, false] {
            b.record(failed, Duration::ZERO);
        }
        assert_eq!(b.state(), CircuitState::Open, "2 of 4 failed");
        let b = breaker();
        for _ in 0..4 {
            b.record(false, Duration::from_millis(150));
        }
        assert_eq!(b.state(), CircuitState::Open, "all slow");
        let b = breaker();
        for _ in 0..20 {
            b.record(false, Duration::from_millis(1));
        }
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_healthy_run_still_counts_the_failures_after_it() {
        // Successes in a clean, full window skip the ring; what follows is judged over
        // the window as usual.
        let b = breaker();
        for _ in 0..1_000 {
            b.record(false, Duration::ZERO);
        }
        for i in 0..8 {
            b.record(i % 2 == 0, Duration::ZERO);
            assert_eq!(
                b.state(),
                CircuitState::Closed,
                "{} of 10 failed",
                i / 2 + 1
            );
        }
        b.record(true, Duration::ZERO);
        assert_eq!(
            b.state(),
            CircuitState::Open,
            "5 failures in the last 10 calls"
        );
        // And failures age out of the window again.
        let b = breaker();
        for failed in [
            true, false, false, false, false, false, false, false, false, false,
        ] {
            b.record(failed, Duration::ZERO);
        }
        for _ in 0..10 {
            b.record(false, Duration::ZERO);
        }
        assert_eq!(b.failures.load(Ordering::Relaxed), 0);
        for _ in 0..4 {
            b.record(true, Duration::ZERO);
            b.record(false, Duration::ZERO);
        }
        assert_eq!(b.state(), CircuitState::Closed, "4 of 10");
    }
}
