//! Circuit breakers: stop waiting on a backend that keeps failing.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::retry::millis;
use crate::error::{Error, ErrorKind};

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
    /// A call slower than this counts as slow.
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
            slow_call: Duration::from_secs(2),
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

#[derive(Debug)]
struct State {
    state: CircuitState,
    /// (failed, slow) of the last calls.
    window: VecDeque<(bool, bool)>,
    consecutive: u32,
    opened_at: Instant,
    probes_started: u32,
    probes_ok: u32,
    opened_count: u64,
}

/// A circuit breaker for one backend: closed, open, half-open.
///
/// It opens on a high failure rate over a sliding window, on consecutive failures, or
/// on a high share of slow calls; after `open_for` it lets `half_open_probes` calls
/// through and closes when they all succeed (one failure reopens it). Only temporary
/// errors count as failures: a backend refusing bad input is not unhealthy.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker {
            config,
            state: Mutex::new(State {
                state: CircuitState::Closed,
                window: VecDeque::with_capacity(config.window),
                consecutive: 0,
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
        let s = self.lock();
        (s.state == CircuitState::Open)
            .then(|| self.config.open_for.saturating_sub(s.opened_at.elapsed()))
    }

    /// Asks to make a call: `Err(Unavailable)` while open, or when a half-open circuit
    /// already has its probes out.
    pub fn try_acquire(&self) -> Result<(), Error> {
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
        }
        Ok(())
    }

    /// Records the outcome of a call allowed by `try_acquire`.
    pub fn record(&self, failed: bool, elapsed: Duration) {
        let slow = elapsed >= self.config.slow_call;
        let mut s = self.lock();
        match s.state {
            CircuitState::HalfOpen => {
                if failed {
                    self.open(&mut s);
                } else {
                    s.probes_ok += 1;
                    if s.probes_ok >= self.config.half_open_probes {
                        s.state = CircuitState::Closed;
                        s.window.clear();
                        s.consecutive = 0;
                    }
                }
            }
            CircuitState::Open => {}
            CircuitState::Closed => {
                if s.window.len() == self.config.window.max(1) {
                    s.window.pop_front();
                }
                s.window.push_back((failed, slow));
                s.consecutive = if failed { s.consecutive + 1 } else { 0 };
                let n = s.window.len();
                let failures = s.window.iter().filter(|(f, _)| *f).count();
                let slows = s.window.iter().filter(|(_, sl)| *sl).count();
                let judged = n >= self.config.min_calls;
                if s.consecutive >= self.config.consecutive_failures
                    || (judged && failures as f64 >= self.config.failure_rate * n as f64)
                    || (judged && slows as f64 >= self.config.slow_rate * n as f64)
                {
                    self.open(&mut s);
                }
            }
        }
    }

    fn open(&self, s: &mut State) {
        s.state = CircuitState::Open;
        s.opened_at = Instant::now();
        s.opened_count += 1;
        s.window.clear();
        s.consecutive = 0;
        tracing::warn!(
            open_for_ms = self.config.open_for.as_millis() as u64,
            "circuit opened"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
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
            b.try_acquire().unwrap();
            b.record(true, Duration::ZERO);
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
        b.try_acquire().unwrap();
        b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err(), "only two probes");
        b.record(false, Duration::ZERO);
        b.record(false, Duration::ZERO);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens() {
        let b = breaker();
        for _ in 0..3 {
            b.record(true, Duration::ZERO);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        b.try_acquire().unwrap();
        b.record(true, Duration::ZERO);
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
}
