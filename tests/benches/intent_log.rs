//! `cargo xtask bench intent-log`: what durability costs. Writes of 1 KiB at
//! concurrency 64 to three memory backends at `All`, with `durability = "log"` (the
//! redb intent log, group commit) vs `"none"`, alternating rounds in one run.
//! Writes `$MUX_BENCH_OUT` (JSON) with `log_vs_none` and the fsyncs per write.

use std::sync::Arc;

use mux::redb::RedbIntentLog;
use mux::{
    Bytes, Durability, IntentLog, Key, MemoryBackend, Mux, ResilienceConfig, Role, RouteConfig,
    WriteConsistency, WriteOptions,
};
use mux_tests::bench::{Row, measure, median, print_header, print_row, write_json};

const WRITES: usize = 60_000;
const ROUNDS: usize = 5;
const CONCURRENCY: usize = 64;

fn mux(log: Option<Arc<dyn IntentLog>>) -> Mux {
    let mut b = Mux::builder();
    for n in ["a", "b", "c"] {
        b = b.backend(Arc::new(MemoryBackend::new(n)));
    }
    let durability = if log.is_some() {
        Durability::Log
    } else {
        Durability::None
    };
    if let Some(log) = log {
        b = b.intent_log(log);
    }
    b.resilience(ResilienceConfig {
        durability,
        ..Default::default()
    })
    .default_route(
        RouteConfig::new("")
            .backend("a", Role::Primary)
            .backend("b", Role::Replica)
            .backend("c", Role::Replica)
            .write(WriteConsistency::All),
    )
    .build()
    .expect("valid mux")
}

async fn round(name: &'static str, mux: &Mux, keys: &Arc<Vec<Key>>, value: &Bytes) -> Row {
    let (m, k, v) = (mux.clone(), keys.clone(), value.clone());
    let opts = Arc::new(WriteOptions::default());
    measure(name, WRITES / ROUNDS, CONCURRENCY, move |i| {
        let (m, k, v, o) = (m.clone(), k.clone(), v.clone(), opts.clone());
        async move {
            m.write(k[i].clone(), v, &o).await.expect("write");
        }
    })
    .await
}

fn main() {
    let runtime = mux_tests::bench::runtime();
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let log =
            Arc::new(RedbIntentLog::open(dir.path().join("intents.redb")).expect("intent log"));
        let durable = mux(Some(log.clone()));
        let volatile = mux(None);
        let keys: Arc<Vec<Key>> = Arc::new(
            (0..WRITES)
                .map(|i| Key::new(format!("bench/k{:05}", i % 10_000)).unwrap())
                .collect(),
        );
        let value = Bytes::from(vec![7u8; 1024]);
        print_header();
        let (mut none_rounds, mut log_rounds) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            none_rounds.push(round("durability_none", &volatile, &keys, &value).await);
            log_rounds.push(round("durability_log", &durable, &keys, &value).await);
        }
        let stats = log.stats();
        println!("medians over {ROUNDS} alternating rounds:");
        let (none, logged) = (median(none_rounds), median(log_rounds));
        print_row(&none);
        print_row(&logged);
        let ratios = [
            ("log_vs_none", logged.ops_per_sec / none.ops_per_sec),
            (
                "fsyncs_per_write",
                stats.syncs as f64 / stats.appends.max(1) as f64,
            ),
        ];
        println!("{} appends, {} fsyncs", stats.appends, stats.syncs);
        write_json("intent-log", &[none, logged], &ratios);
    });
}
