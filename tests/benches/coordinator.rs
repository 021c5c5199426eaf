//! `cargo xtask bench coordinator`: the coordinator's overhead and hedging, measured
//! against baselines in the same run. Writes `$MUX_BENCH_OUT` (JSON).
//!
//! Rows: direct puts to one memory backend vs a `Mux` over it; a hand-written
//! `tokio::join!` of three puts vs `Mux` at `All` over three; and reads from two backends
//! with 1 ms base latency where the preferred one is 20 ms slower on 5% of calls, read
//! at `Primary` vs `Hedged`.

use std::sync::Arc;
use std::time::Duration;

use mux_tests::bench::{Row, measure};

use mux::testing::{FaultConfig, FaultyBackend};
use mux::{
    Backend, Bytes, Clock, Key, MemoryBackend, Mux, ReadOptions, ReadPolicy, Record, Role,
    RouteConfig, WriteConsistency, WriteOptions,
};

/// Writes per row in all (each round writes `WRITES / ROUNDS`, about 0.1 s: shorter
/// rounds measured scheduler noise more than the code). `MUX_BENCH_WRITES` sets
/// another number (fewer, to count instructions under callgrind).
const WRITES: usize = 2_200_000;
/// Distinct keys written (round-robin).
const KEYS: usize = 10_000;
const ROUNDS: usize = 11;
const WRITE_TASKS: usize = 8;
const READS: usize = 4_000;
const READ_TASKS: usize = 16;

fn keys(n: usize) -> Arc<Vec<Key>> {
    Arc::new(
        (0..n)
            .map(|i| Key::new(format!("bench/k{i:05}")).unwrap())
            .collect(),
    )
}

fn single(name: &str, backends: &[&str], level: WriteConsistency, read: ReadPolicy) -> RouteConfig {
    let mut r = RouteConfig::new("").write(level).read(read);
    for (i, b) in backends.iter().enumerate() {
        let _ = name;
        r = r.backend(*b, if i == 0 { Role::Primary } else { Role::Replica });
    }
    r
}

async fn run() -> (Vec<Row>, Vec<(&'static str, f64)>) {
    let value = Bytes::from(vec![7u8; 1024]);
    let ks = keys(KEYS);
    let clock = Arc::new(Clock::new(1));
    let mut rows = Vec::new();
    println!(
        "{:<28} {:>12} {:>10} {:>10}",
        "row", "ops/s", "p50 µs", "p99 µs"
    );

    // 1 and 2. Each baseline and its mux counterpart run alternately, ROUNDS times;
    // the row reports the round with the median throughput, so drift on a noisy machine
    // hits both sides alike.
    let direct = Arc::new(MemoryBackend::new("m"));
    let mux1 = Mux::builder()
        .backend(Arc::new(MemoryBackend::new("m")))
        .default_route(single(
            "",
            &["m"],
            WriteConsistency::All,
            ReadPolicy::Primary,
        ))
        .build()
        .unwrap();
    let three: Vec<Arc<MemoryBackend>> = ["a", "b", "c"]
        .iter()
        .map(|n| Arc::new(MemoryBackend::new(n)))
        .collect();
    let mux3 = ["a", "b", "c"]
        .iter()
        .fold(Mux::builder(), |b, n| {
            b.backend(Arc::new(MemoryBackend::new(n)))
        })
        .default_route(single(
            "",
            &["a", "b", "c"],
            WriteConsistency::All,
            ReadPolicy::Primary,
        ))
        .build()
        .unwrap();
    let writes = std::env::var("MUX_BENCH_WRITES")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(WRITES);
    let per_round = writes / ROUNDS;
    let mut runs: [Vec<Row>; 4] = Default::default();
    for _ in 0..ROUNDS {
        let (b, k, v, c) = (direct.clone(), ks.clone(), value.clone(), clock.clone());
        runs[0].push(
            measure("direct_put", per_round, WRITE_TASKS, move |i| {
                let (b, k, v, c) = (b.clone(), k.clone(), v.clone(), c.clone());
                async move {
                    b.put(&Record::new(k[i % KEYS].clone(), v, c.now()))
                        .await
                        .unwrap();
                }
            })
            .await,
        );
        let (m, k, v) = (mux1.clone(), ks.clone(), value.clone());
        let opts = Arc::new(WriteOptions::default());
        runs[1].push(
            measure("mux1_put", per_round, WRITE_TASKS, move |i| {
                let (m, k, v, o) = (m.clone(), k.clone(), v.clone(), opts.clone());
                async move {
                    m.write(k[i % KEYS].clone(), v, &o).await.unwrap();
                }
            })
            .await,
        );
        let (t, k, v, c) = (three.clone(), ks.clone(), value.clone(), clock.clone());
        runs[2].push(
            measure("join3_put", per_round, WRITE_TASKS, move |i| {
                let (t, k, v, c) = (t.clone(), k.clone(), v.clone(), c.clone());
                async move {
                    let r = Record::new(k[i % KEYS].clone(), v, c.now());
                    let (x, y, z) = tokio::join!(t[0].put(&r), t[1].put(&r), t[2].put(&r));
                    x.unwrap();
                    y.unwrap();
                    z.unwrap();
                }
            })
            .await,
        );
        let (m, k, v) = (mux3.clone(), ks.clone(), value.clone());
        let opts = Arc::new(WriteOptions::default());
        runs[3].push(
            measure("mux3_all_put", per_round, WRITE_TASKS, move |i| {
                let (m, k, v, o) = (m.clone(), k.clone(), v.clone(), opts.clone());
                async move {
                    m.write(k[i % KEYS].clone(), v, &o).await.unwrap();
                }
            })
            .await,
        );
    }
    println!("medians over {ROUNDS} alternating rounds:");
    for mut r in runs {
        r.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
        let m = r.swap_remove(r.len() / 2);
        println!(
            "{:<28} {:>12.0} {:>10.1} {:>10.1}",
            m.name, m.ops_per_sec, m.p50_us, m.p99_us
        );
        rows.push(m);
    }

    // 3. Tail at scale: reads from two backends, the preferred one sometimes slow.
    let slow = Arc::new(FaultyBackend::new(MemoryBackend::new("preferred"), 7));
    let fast = Arc::new(FaultyBackend::new(MemoryBackend::new("other"), 8));
    let tail_mux = Mux::builder()
        .backend(slow.clone())
        .backend(fast.clone())
        .default_route(single(
            "",
            &["preferred", "other"],
            WriteConsistency::All,
            ReadPolicy::Primary,
        ))
        .build()
        .unwrap();
    let read_keys = keys(100);
    for key in read_keys.iter() {
        tail_mux.put(key.clone(), value.clone()).await.unwrap();
    }
    slow.set_config(FaultConfig {
        latency: Duration::from_millis(1),
        slow_rate: 0.05,
        slow_delay: Duration::from_millis(20),
        ..Default::default()
    });
    fast.set_config(FaultConfig {
        latency: Duration::from_millis(1),
        ..Default::default()
    });
    let read_row = |name: &'static str, policy: ReadPolicy| {
        let (m, k) = (tail_mux.clone(), read_keys.clone());
        let opts = Arc::new(ReadOptions {
            policy: Some(policy),
            ..Default::default()
        });
        measure(name, READS, READ_TASKS, move |i| {
            let (m, k, o) = (m.clone(), k.clone(), opts.clone());
            async move {
                m.get_with(&k[i % k.len()], &o).await.unwrap().unwrap();
            }
        })
    };
    let primary = read_row("primary_read", ReadPolicy::Primary).await;
    let before = tail_mux.stats().hedged_requests;
    let hedged = read_row(
        "hedged_read_3ms",
        ReadPolicy::Hedged {
            delay: Some(Duration::from_millis(3)),
        },
    )
    .await;
    let extra = (tail_mux.stats().hedged_requests - before) as f64 / READS as f64;
    let before = tail_mux.stats().hedged_requests;
    let auto = read_row("hedged_read_auto_p95", ReadPolicy::Hedged { delay: None }).await;
    let extra_auto = (tail_mux.stats().hedged_requests - before) as f64 / READS as f64;

    let ratios = vec![
        ("mux1_vs_direct", rows[1].ops_per_sec / rows[0].ops_per_sec),
        (
            "mux3_all_vs_join",
            rows[3].ops_per_sec / rows[2].ops_per_sec,
        ),
        // `Hedged { delay: None }` (hedge after the observed p95) is the policy the
        // ratios are about; the fixed 3 ms delay is shown for comparison.
        ("hedged_p99_vs_primary_p99", auto.p99_us / primary.p99_us),
        ("hedge_extra_requests", extra_auto),
        (
            "hedged_3ms_p99_vs_primary_p99",
            hedged.p99_us / primary.p99_us,
        ),
        ("hedge_3ms_extra_requests", extra),
    ];
    rows.extend([primary, hedged, auto]);
    (rows, ratios)
}

fn main() {
    let runtime = mux_tests::bench::runtime();
    let (rows, ratios) = runtime.block_on(run());
    mux_tests::bench::write_json("coordinator", &rows, &ratios);
}
