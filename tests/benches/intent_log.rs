//! `cargo xtask bench intent-log`: what durability costs. Writes of 1 KiB at
//! concurrency 64 to three memory backends at `All`, with `durability = "log"` vs
//! `"none"`, alternating rounds in one run:
//!
//! - `durability_log`: the segment log (`mux_wal`, group commit), the default;
//! - `durability_log_redb`: the redb log, for comparison;
//! - `raw_fdatasync_loop`: no `Mux` at all, 64 writers handing 1 KiB frames to a bare
//!   append + group-`fdatasync` loop written here — the physical limit of this disk.
//!
//! Writes `$MUX_BENCH_OUT` (JSON) with `log_vs_none`, `fsyncs_per_write`,
//! `log_vs_raw_fdatasync_loop` and `redb_log_vs_none`.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};

use mux::redb::RedbIntentLog;
use mux::wal::SegmentIntentLog;
use mux::{
    Bytes, Durability, IntentLog, Key, MemoryBackend, Mux, ResilienceConfig, Role, RouteConfig,
    WriteConsistency, WriteOptions,
};
use mux_tests::bench::{Row, measure, median, print_header, print_row, write_json};
use tokio::sync::oneshot;

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

/// A bare append + group-fdatasync loop: writers queue a frame and wait; one thread
/// writes everything queued and syncs once for all of them.
struct RawLoop {
    queue: Mutex<(Vec<u8>, Vec<oneshot::Sender<()>>)>,
    work: Condvar,
}

const RAW_FILE_BYTES: u64 = 64 << 20;

impl RawLoop {
    fn start(path: &std::path::Path) -> Arc<RawLoop> {
        // Zero-filled ahead, as the segment log's files are.
        let mut file = File::create(path).expect("raw file");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..RAW_FILE_BYTES >> 20 {
            file.write_all(&zeros).expect("zero-fill");
        }
        file.sync_all().expect("sync");
        let raw = Arc::new(RawLoop {
            queue: Mutex::new((Vec::new(), Vec::new())),
            work: Condvar::new(),
        });
        let r = raw.clone();
        std::thread::spawn(move || {
            let mut offset = 0u64;
            loop {
                let (bytes, waiters) = {
                    let mut q = r.queue.lock().unwrap();
                    while q.1.is_empty() {
                        q = r.work.wait(q).unwrap();
                    }
                    (std::mem::take(&mut q.0), std::mem::take(&mut q.1))
                };
                if offset + bytes.len() as u64 > RAW_FILE_BYTES {
                    offset = 0;
                }
                file.write_all_at(&bytes, offset).expect("write");
                offset += bytes.len() as u64;
                file.sync_data().expect("fdatasync");
                for w in waiters {
                    let _ = w.send(());
                }
            }
        });
        raw
    }

    async fn append(&self, value: &[u8]) {
        let rx = {
            let mut q = self.queue.lock().unwrap();
            q.0.extend_from_slice(&(value.len() as u64).to_le_bytes());
            q.0.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
            q.0.extend_from_slice(value);
            let (tx, rx) = oneshot::channel();
            q.1.push(tx);
            rx
        };
        self.work.notify_one();
        rx.await.expect("raw loop");
    }
}

async fn raw_round(raw: &Arc<RawLoop>, value: &Bytes) -> Row {
    let (r, v) = (raw.clone(), value.clone());
    measure(
        "raw_fdatasync_loop",
        WRITES / ROUNDS,
        CONCURRENCY,
        move |_| {
            let (r, v) = (r.clone(), v.clone());
            async move { r.append(&v).await }
        },
    )
    .await
}

fn main() {
    let runtime = mux_tests::bench::runtime();
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Arc::new(SegmentIntentLog::open(dir.path().join("intents")).expect("log"));
        let redb =
            Arc::new(RedbIntentLog::open(dir.path().join("intents.redb")).expect("redb log"));
        let raw = RawLoop::start(&dir.path().join("raw.bin"));
        let durable = mux(Some(log.clone()));
        let durable_redb = mux(Some(redb.clone()));
        let volatile = mux(None);
        let keys: Arc<Vec<Key>> = Arc::new(
            (0..WRITES)
                .map(|i| Key::new(format!("bench/k{:05}", i % 10_000)).unwrap())
                .collect(),
        );
        let value = Bytes::from(vec![7u8; 1024]);
        print_header();
        let (mut none_rounds, mut log_rounds, mut redb_rounds, mut raw_rounds) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            none_rounds.push(round("durability_none", &volatile, &keys, &value).await);
            log_rounds.push(round("durability_log", &durable, &keys, &value).await);
            raw_rounds.push(raw_round(&raw, &value).await);
            redb_rounds.push(round("durability_log_redb", &durable_redb, &keys, &value).await);
        }
        let stats = log.stats();
        println!("medians over {ROUNDS} alternating rounds:");
        let (none, logged, redb_logged, raw_loop) = (
            median(none_rounds),
            median(log_rounds),
            median(redb_rounds),
            median(raw_rounds),
        );
        for row in [&none, &logged, &raw_loop, &redb_logged] {
            print_row(row);
        }
        let ratios = [
            ("log_vs_none", logged.ops_per_sec / none.ops_per_sec),
            (
                "fsyncs_per_write",
                stats.syncs as f64 / stats.appends.max(1) as f64,
            ),
            (
                "log_vs_raw_fdatasync_loop",
                logged.ops_per_sec / raw_loop.ops_per_sec,
            ),
            (
                "redb_log_vs_none",
                redb_logged.ops_per_sec / none.ops_per_sec,
            ),
        ];
        println!(
            "segment log: {} appends, {} fsyncs",
            stats.appends, stats.syncs
        );
        write_json(
            "intent-log",
            &[none, logged, raw_loop, redb_logged],
            &ratios,
        );
    });
}
