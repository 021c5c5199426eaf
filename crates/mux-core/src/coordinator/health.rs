//! The health monitor and per-backend health reports.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::future::join_all;
use serde::Serialize;

use super::{Inner, Mux};
use crate::error::{Operation, Result};
use crate::resilience::CircuitState;

/// How one backend is doing, as a `muxd` would serve it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthReport {
    /// The backend.
    pub backend: String,
    /// Its circuit breaker's state.
    pub circuit: CircuitState,
    /// How many times its circuit has opened.
    pub times_opened: u64,
    /// Latency percentiles over its recent calls, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Exponentially weighted moving average latency, in milliseconds.
    pub ewma_ms: f64,
    /// The share of errors among its last 64 calls.
    pub error_rate: f64,
    /// Calls running now.
    pub in_flight: usize,
    /// Writes it still owes (hints being delivered).
    pub hints_pending: usize,
    /// Writes it could not apply, waiting in the dead-letter queue.
    pub dead_letters: usize,
    /// Reads that found its copy corrupt (each repaired from a good copy when one was
    /// found).
    pub corrupt_reads: u64,
    /// Why its mux marker says it lost data (reads leave it out); `None` when it is
    /// whole or markers are off.
    pub stale: Option<super::Staleness>,
}

impl Inner {
    /// Probes every backend's `health` once (recorded like any call).
    pub(crate) async fn probe(self: &Arc<Self>) {
        join_all(self.slots.iter().map(|s| async move {
            if let Err(e) = s.guard(Operation::Health, s.backend.health()).await {
                tracing::debug!(backend = %s.name, error = %e, "health probe failed");
            }
        }))
        .await;
    }
}

impl Mux {
    /// A health report per backend: circuit state, latency percentiles, EWMA, error
    /// rate, hints pending and dead letters.
    pub async fn health_report(&self) -> Result<Vec<HealthReport>> {
        let mut dead: HashMap<String, usize> = HashMap::new();
        for d in self.inner.log.dead_letters().await? {
            *dead.entry(d.backend).or_default() += 1;
        }
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Ok(self
            .inner
            .slots
            .iter()
            .map(|s| {
                let (p50, p95, p99) = s.stats().percentiles();
                HealthReport {
                    backend: s.name.to_string(),
                    circuit: s.circuit().state(),
                    times_opened: s.circuit().times_opened(),
                    p50_ms: ms(p50),
                    p95_ms: ms(p95),
                    p99_ms: ms(p99),
                    ewma_ms: ms(s.stats().ewma()),
                    error_rate: s.stats().error_rate(),
                    in_flight: s.gate().in_flight(),
                    hints_pending: s.hints_pending.load(Ordering::SeqCst),
                    dead_letters: dead.get(&*s.name).copied().unwrap_or(0),
                    corrupt_reads: s.stats().corrupt_reads(),
                    stale: s.marker.staleness(),
                }
            })
            .collect())
    }

    /// Probes every backend now (the monitor does this every `health_interval`).
    pub async fn probe(&self) {
        self.inner.probe().await;
    }
}
