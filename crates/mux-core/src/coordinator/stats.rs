//! Per-backend latency windows, counters and `metrics` handles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::error::Operation;

const WINDOW: usize = 128;
const ERROR_BIT: u32 = 1 << 31;
const LATENCY_MASK: u32 = ERROR_BIT - 1;

/// The last [`WINDOW`] latencies of one operation on one backend, for percentiles.
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    samples: [AtomicU32; WINDOW],
    next: AtomicUsize,
    /// The cached p95 (µs) and the sample count it was computed at (+1; 0 = never).
    p95_us: AtomicU64,
    p95_at: AtomicUsize,
}

impl LatencyWindow {
    fn new() -> Self {
        LatencyWindow {
            samples: std::array::from_fn(|_| AtomicU32::new(0)),
            next: AtomicUsize::new(0),
            p95_us: AtomicU64::new(0),
            p95_at: AtomicUsize::new(0),
        }
    }

    /// Stores a sample (latency in µs, the top bit marking an error).
    fn record(&self, elapsed: Duration, error: bool) {
        let us = elapsed.as_micros().min(u128::from(LATENCY_MASK)) as u32;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.samples[n % WINDOW].store(us | if error { ERROR_BIT } else { 0 }, Ordering::Relaxed);
    }

    /// The samples in the window, oldest first.
    fn ordered(&self) -> Vec<u32> {
        let n = self.next.load(Ordering::Relaxed);
        let filled = n.min(WINDOW);
        (n - filled..n)
            .map(|i| self.samples[i % WINDOW].load(Ordering::Relaxed))
            .collect()
    }

    /// The `q` quantile over the window (zero with no samples).
    pub(crate) fn percentile(&self, q: f64) -> Duration {
        let filled = self.next.load(Ordering::Relaxed).min(WINDOW);
        if filled == 0 {
            return Duration::ZERO;
        }
        let mut v: Vec<u32> = self.samples[..filled]
            .iter()
            .map(|s| s.load(Ordering::Relaxed) & LATENCY_MASK)
            .collect();
        let idx = ((filled as f64 * q).ceil() as usize).clamp(1, filled) - 1;
        let (_, nth, _) = v.select_nth_unstable(idx);
        Duration::from_micros(u64::from(*nth))
    }

    /// The p95, recomputed by the reader at most every 16 new samples (and while
    /// warming up); `None` before any sample. Writers only store samples.
    pub(crate) fn p95(&self) -> Option<Duration> {
        let n = self.next.load(Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        let at = self.p95_at.load(Ordering::Relaxed);
        if at == 0 || n < 32 || n >= at - 1 + 16 {
            self.p95_us
                .store(self.percentile(0.95).as_micros() as u64, Ordering::Relaxed);
            self.p95_at.store(n + 1, Ordering::Relaxed);
        }
        Some(Duration::from_micros(self.p95_us.load(Ordering::Relaxed)))
    }
}

#[derive(Debug)]
struct OpMetrics {
    duration: Histogram,
    ok: Counter,
    error: Counter,
}

const OPS: [Operation; 6] = [
    Operation::Put,
    Operation::Get,
    Operation::Delete,
    Operation::List,
    Operation::Purge,
    Operation::Health,
];

fn op_index(op: Operation) -> usize {
    match op {
        Operation::Put | Operation::PutBatch => 0,
        Operation::Get => 1,
        Operation::Delete => 2,
        Operation::List => 3,
        Operation::Purge => 4,
        _ => 5,
    }
}

/// Latency and outcome recording for one backend.
///
/// `metrics` handles are registered once, when the `Mux` is built: install the metrics
/// recorder (e.g. a Prometheus exporter) before building the `Mux`.
#[derive(Debug)]
pub(crate) struct BackendStats {
    ops: Vec<OpMetrics>,
    get_latency: LatencyWindow,
    all_latency: LatencyWindow,
    read_repairs: Counter,
}

impl BackendStats {
    pub(crate) fn new(backend: &Arc<str>) -> Self {
        let b = backend.to_string();
        let ops = OPS
            .iter()
            .map(|op| OpMetrics {
                duration: metrics::histogram!("mux_backend_request_duration_seconds", "backend" => b.clone(), "op" => op.as_str()),
                ok: metrics::counter!("mux_backend_requests_total", "backend" => b.clone(), "op" => op.as_str(), "outcome" => "ok"),
                error: metrics::counter!("mux_backend_requests_total", "backend" => b.clone(), "op" => op.as_str(), "outcome" => "error"),
            })
            .collect();
        BackendStats {
            ops,
            get_latency: LatencyWindow::new(),
            all_latency: LatencyWindow::new(),
            read_repairs: metrics::counter!("mux_read_repairs_total", "backend" => b),
        }
    }

    pub(crate) fn record(&self, op: Operation, elapsed: Duration, ok: bool) {
        let m = &self.ops[op_index(op)];
        m.duration.record(elapsed.as_secs_f64());
        self.all_latency.record(elapsed, !ok);
        if ok {
            m.ok.increment(1);
            if op == Operation::Get {
                self.get_latency.record(elapsed, false);
            }
        } else {
            m.error.increment(1);
        }
    }

    /// p50, p95, p99 over the last calls of every operation.
    pub(crate) fn percentiles(&self) -> (Duration, Duration, Duration) {
        let w = &self.all_latency;
        (w.percentile(0.5), w.percentile(0.95), w.percentile(0.99))
    }

    /// Exponentially weighted moving average (α = 1/8) over the window, oldest first.
    pub(crate) fn ewma(&self) -> Duration {
        let mut ewma: Option<f64> = None;
        for s in self.all_latency.ordered() {
            let us = f64::from(s & LATENCY_MASK);
            ewma = Some(ewma.map_or(us, |e| e + (us - e) / 8.0));
        }
        Duration::from_micros(ewma.unwrap_or(0.0) as u64)
    }

    /// The share of errors among the last (up to 64) calls.
    pub(crate) fn error_rate(&self) -> f64 {
        let recent = self.all_latency.ordered();
        let recent = &recent[recent.len().saturating_sub(64)..];
        if recent.is_empty() {
            return 0.0;
        }
        recent.iter().filter(|s| *s & ERROR_BIT != 0).count() as f64 / recent.len() as f64
    }

    pub(crate) fn get_p95(&self) -> Option<Duration> {
        self.get_latency.p95()
    }

    pub(crate) fn read_repaired(&self) {
        self.read_repairs.increment(1);
    }
}

/// Counters of a whole `Mux`.
#[derive(Debug, Default)]
pub(crate) struct MuxCounters {
    pub(crate) read_repairs: AtomicU64,
    pub(crate) hedged_requests: AtomicU64,
    pub(crate) background_failures: AtomicU64,
}

/// A snapshot of a `Mux`'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Stale backends repaired by reads (one per backend repaired).
    pub read_repairs: u64,
    /// Extra requests sent by hedged reads.
    pub hedged_requests: u64,
    /// Background writes (after the acknowledgement) that failed.
    pub background_failures: u64,
    /// Background writes and repairs still running.
    pub background_pending: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_the_window() {
        let w = LatencyWindow::new();
        assert_eq!(w.p95(), None);
        for i in 1..=100u64 {
            w.record(Duration::from_micros(i), false);
        }
        assert_eq!(w.percentile(0.95), Duration::from_micros(95));
        assert_eq!(w.percentile(0.5), Duration::from_micros(50));
        let cached = w.p95().unwrap();
        assert!(
            (Duration::from_micros(90)..=Duration::from_micros(95)).contains(&cached),
            "{cached:?}"
        );
    }
}
