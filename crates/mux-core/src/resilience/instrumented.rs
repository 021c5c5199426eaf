//! The instrumentation layer: latency and outcome of every call, as statistics the
//! coordinator reads (percentiles, EWMA, error rate) and as `metrics` series.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use metrics::{Counter, Histogram};
use tokio::time::Instant;

use super::layer::{Layer, layer_impls};
use super::shard::{self, Padded};
use crate::backend::Backend;
use crate::error::{Operation, Result};

const WINDOW: usize = 128;
const ERROR_BIT: u32 = 1 << 31;
const LATENCY_MASK: u32 = ERROR_BIT - 1;

/// One thread-shard of a [`LatencyWindow`]: its last samples, round-robin.
#[derive(Debug)]
struct WindowShard {
    samples: [AtomicU32; WINDOW],
    next: AtomicUsize,
}

/// The last latencies of one operation on one backend, for percentiles: the last
/// [`WINDOW`] of each thread-shard.
///
/// Each thread records into its own shard (on its own cache lines), so calls on
/// different cores do not contend; readers merge the shards. One thread alone sees
/// exactly its last [`WINDOW`] calls.
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    shards: [Padded<WindowShard>; shard::SHARDS],
    /// The cached p95 (µs) and the sample count it was computed at (+1; 0 = never).
    p95_us: AtomicU64,
    p95_at: AtomicUsize,
}

impl LatencyWindow {
    fn new() -> Self {
        LatencyWindow {
            shards: std::array::from_fn(|_| {
                Padded(WindowShard {
                    samples: std::array::from_fn(|_| AtomicU32::new(0)),
                    next: AtomicUsize::new(0),
                })
            }),
            p95_us: AtomicU64::new(0),
            p95_at: AtomicUsize::new(0),
        }
    }

    /// Stores a sample (latency in µs, the top bit marking an error).
    fn record(&self, elapsed: Duration, error: bool) {
        let us = elapsed.as_micros().min(u128::from(LATENCY_MASK)) as u32;
        let shard = &self.shards[shard::home()];
        let n = shard.next.fetch_add(1, Ordering::Relaxed);
        shard.samples[n % shard.samples.len()]
            .store(us | if error { ERROR_BIT } else { 0 }, Ordering::Relaxed);
    }

    /// Samples recorded so far, in every shard.
    fn count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.next.load(Ordering::Relaxed))
            .sum()
    }

    /// The samples in the window, oldest first within each shard, the shards
    /// interleaved.
    fn ordered(&self) -> Vec<u32> {
        let per_shard: Vec<Vec<u32>> = self
            .shards
            .iter()
            .map(|s| {
                let (n, len) = (s.next.load(Ordering::Relaxed), s.samples.len());
                (n - n.min(len)..n)
                    .map(|i| s.samples[i % len].load(Ordering::Relaxed))
                    .collect()
            })
            .collect();
        let longest = per_shard.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = Vec::with_capacity(longest * per_shard.len());
        for i in 0..longest {
            // Align the newest samples of every shard at the end.
            for s in &per_shard {
                if let Some(v) = (i + s.len()).checked_sub(longest).and_then(|j| s.get(j)) {
                    out.push(*v);
                }
            }
        }
        out
    }

    /// The `q` quantile over the window (zero with no samples).
    pub(crate) fn percentile(&self, q: f64) -> Duration {
        let mut v: Vec<u32> = Vec::with_capacity(WINDOW * shard::SHARDS);
        for s in &self.shards {
            let filled = s.next.load(Ordering::Relaxed).min(s.samples.len());
            v.extend(
                s.samples[..filled]
                    .iter()
                    .map(|x| x.load(Ordering::Relaxed) & LATENCY_MASK),
            );
        }
        let filled = v.len();
        if filled == 0 {
            return Duration::ZERO;
        }
        let idx = ((filled as f64 * q).ceil() as usize).clamp(1, filled) - 1;
        let (_, nth, _) = v.select_nth_unstable(idx);
        Duration::from_micros(u64::from(*nth))
    }

    /// The p95, recomputed by the reader at most every 16 new samples (and while
    /// warming up); `None` before any sample. Writers only store samples.
    pub(crate) fn p95(&self) -> Option<Duration> {
        let n = self.count();
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

const OPS: [Operation; 7] = [
    Operation::Put,
    Operation::Get,
    Operation::Delete,
    Operation::List,
    Operation::Purge,
    Operation::Health,
    Operation::History,
];

fn op_index(op: Operation) -> usize {
    match op {
        Operation::Put | Operation::PutBatch => 0,
        Operation::Get => 1,
        Operation::Delete => 2,
        Operation::List | Operation::Digest => 3,
        Operation::Purge => 4,
        Operation::History | Operation::GetAsOf => 6,
        _ => 5,
    }
}

/// Latency and outcome recording for one backend, shared by an [`Instrumented`] wrapper
/// and whoever reads it (the coordinator's health reports and hedging).
///
/// `metrics` handles are registered once, when the `Mux` is built: install the metrics
/// recorder (e.g. a Prometheus exporter) before building the `Mux`.
#[derive(Debug)]
pub struct CallStats {
    ops: Vec<OpMetrics>,
    get_latency: LatencyWindow,
    all_latency: LatencyWindow,
    read_repairs: Counter,
    corrupt_reads: Counter,
    corrupt_count: std::sync::atomic::AtomicU64,
}

impl CallStats {
    /// Stats for `backend`, registering its `metrics` handles.
    pub fn new(backend: &Arc<str>) -> Self {
        let b = backend.to_string();
        let ops = OPS
            .iter()
            .map(|op| OpMetrics {
                duration: metrics::histogram!("mux_backend_request_duration_seconds", "backend" => b.clone(), "op" => op.as_str()),
                ok: metrics::counter!("mux_backend_requests_total", "backend" => b.clone(), "op" => op.as_str(), "outcome" => "ok"),
                error: metrics::counter!("mux_backend_requests_total", "backend" => b.clone(), "op" => op.as_str(), "outcome" => "error"),
            })
            .collect();
        CallStats {
            ops,
            get_latency: LatencyWindow::new(),
            all_latency: LatencyWindow::new(),
            read_repairs: metrics::counter!("mux_read_repairs_total", "backend" => b.clone()),
            corrupt_reads: metrics::counter!("mux_corrupt_reads_total", "backend" => b),
            corrupt_count: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records one call.
    pub fn record(&self, op: Operation, elapsed: Duration, ok: bool) {
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
    pub fn percentiles(&self) -> (Duration, Duration, Duration) {
        let w = &self.all_latency;
        (w.percentile(0.5), w.percentile(0.95), w.percentile(0.99))
    }

    /// Exponentially weighted moving average (α = 1/8) over the window, oldest first.
    pub fn ewma(&self) -> Duration {
        let mut ewma: Option<f64> = None;
        for s in self.all_latency.ordered() {
            let us = f64::from(s & LATENCY_MASK);
            ewma = Some(ewma.map_or(us, |e| e + (us - e) / 8.0));
        }
        Duration::from_micros(ewma.unwrap_or(0.0) as u64)
    }

    /// The share of errors among the last (up to 64) calls.
    pub fn error_rate(&self) -> f64 {
        let recent = self.all_latency.ordered();
        let recent = &recent[recent.len().saturating_sub(64)..];
        if recent.is_empty() {
            return 0.0;
        }
        recent.iter().filter(|s| *s & ERROR_BIT != 0).count() as f64 / recent.len() as f64
    }

    /// The p95 of successful reads (`None` before any), for hedging.
    pub fn get_p95(&self) -> Option<Duration> {
        self.get_latency.p95()
    }

    /// How many calls were recorded.
    pub fn calls(&self) -> u64 {
        self.all_latency.count() as u64
    }

    pub(crate) fn read_repaired(&self) {
        self.read_repairs.increment(1);
    }

    /// How many reads of this backend returned a corrupt copy (a checksum that did not
    /// match, or a stored form that could not be decoded).
    pub fn corrupt_reads(&self) -> u64 {
        self.corrupt_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn corrupt_read(&self) {
        self.corrupt_reads.increment(1);
        self.corrupt_count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Records the latency and outcome of every call of the wrapped backend, and names the
/// backend and the operation in every error that passes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use mux_core::{Backend, Key, MemoryBackend};
/// use mux_core::resilience::Instrumented;
///
/// let store = Instrumented::new(MemoryBackend::new("mem"));
/// store.get(&Key::new("a").unwrap()).await.unwrap();
/// assert_eq!(store.stats().calls(), 1);
/// assert_eq!(store.stats().error_rate(), 0.0);
/// # }
/// ```
#[derive(Debug)]
pub struct Instrumented<B> {
    inner: B,
    stats: Arc<CallStats>,
    name: Arc<str>,
}

impl<B: Backend> Instrumented<B> {
    /// Wraps `inner` with new stats (install the metrics recorder first).
    pub fn new(inner: B) -> Instrumented<B> {
        let name = inner.info().name.clone();
        Instrumented {
            stats: Arc::new(CallStats::new(&name)),
            name,
            inner,
        }
    }
}

impl<B> Instrumented<B> {
    /// The wrapped backend.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// The wrapped backend's name (cached: no call through the backend).
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The shared stats.
    pub fn stats(&self) -> &Arc<CallStats> {
        &self.stats
    }

    async fn around<T>(&self, op: Operation, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = call
            .await
            .map_err(|e| e.with_backend(&self.name).with_operation(op));
        self.stats.record(op, started.elapsed(), result.is_ok());
        result
    }
}

layer_impls!(Instrumented);

/// Builds [`Instrumented`] wrappers.
#[derive(Clone, Copy, Debug, Default)]
pub struct InstrumentedLayer;

impl<B: Backend> Layer<B> for InstrumentedLayer {
    type Backend = Instrumented<B>;
    fn layer(&self, inner: B) -> Instrumented<B> {
        Instrumented::new(inner)
    }
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
