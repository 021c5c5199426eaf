//! `cargo xtask bench anti-entropy`: what finding drift costs, and how fast a new store
//! fills. Two redb stores with 1,000,000 keys that differ in 100:
//! - `verify_digest_vs_full_compare`: the time of `mux_sync::verify` by digests over
//!   the time of listing both stores in full and comparing (the same `verify` in its
//!   listing mode), rounds alternated in one run;
//! - `bytes_read_digest_vs_full`: the bytes each read from the stores;
//! - `backfill_vs_raw_copy`: `mux_sync::backfill` of 100,000 keys into an empty redb
//!   store vs a plain copy loop (list a page, read each record, write the page as a
//!   batch) written here.
//!
//! Writes `$MUX_BENCH_OUT` (JSON).

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use mux::redb::RedbBackend;
use mux::{Backend, Key, ListRequest, Prefix, Record, Version};
use mux_sync::{BackfillOptions, VerifyOptions, VerifyReport, backfill, verify};
use mux_tests::bench::{Row, median_figure, print_header, print_row, write_json};

const KEYS: u64 = 1_000_000;
const BUCKET: u64 = 100_000;
const DIFFERENCES: u64 = 100;
const ROUNDS: usize = 3;

fn key(i: u64) -> Key {
    Key::new(format!("ae/{}/{i:07}", i / BUCKET)).expect("key")
}

async fn fill(stores: &[&RedbBackend]) {
    let value = vec![b'v'; 100];
    let mut i = 0;
    while i < KEYS {
        let batch: Vec<Record> = (i..(i + 10_000).min(KEYS))
            .map(|n| Record::new(key(n), value.clone(), Version::new(1_000 + n, 0, 1)))
            .collect();
        for s in stores {
            s.put_batch(&batch).await.expect("fill");
        }
        i += 10_000;
    }
}

/// 100 differences spread over the key space: newer versions, tombstones and
/// missing keys on `b`.
async fn drift(b: &RedbBackend) {
    for d in 0..DIFFERENCES {
        let n = d * (KEYS / DIFFERENCES) + 37;
        let k = key(n);
        let newer = Version::new(5_000_000 + d, 0, 2);
        match d % 3 {
            0 => b.put(&Record::new(k, "newer", newer)).await.map(drop),
            1 => b.delete(&k, newer).await.map(drop),
            _ => b.purge(&k, Version::new(u64::MAX, 0, 0)).await.map(drop),
        }
        .expect("drift");
    }
}

async fn timed_verify(stores: &[Arc<dyn Backend>], digests: bool) -> (f64, VerifyReport) {
    let options = VerifyOptions {
        use_digests: Some(digests),
        sample: 0,
        ..VerifyOptions::default()
    };
    let started = Instant::now();
    let report = verify(stores, Prefix::new("ae").expect("prefix"), &options)
        .await
        .expect("verify");
    (started.elapsed().as_secs_f64(), report)
}

/// The baseline: list a page of the source, read each record, write them as a batch.
async fn raw_copy(source: Arc<dyn Backend>, target: &RedbBackend, prefix: &Prefix) -> u64 {
    let mut request = ListRequest::new(prefix.clone()).with_limit(256);
    let mut copied = 0;
    loop {
        let page = source.list(&request).await.expect("list");
        let records: Vec<Record> = futures_util::stream::iter(page.entries)
            .map(|e| {
                let source = source.clone();
                async move { source.get(&e.key).await.expect("get").expect("present") }
            })
            .buffered(32)
            .collect()
            .await;
        copied += records.len() as u64;
        target.put_batch(&records).await.expect("put");
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => return copied,
        }
    }
}

fn row(name: &'static str, ops_per_sec: f64) -> Row {
    let r = Row {
        name,
        ops_per_sec,
        p50_us: 0.0,
        p99_us: 0.0,
    };
    print_row(&r);
    r
}

fn main() {
    let runtime = mux_tests::bench::runtime();
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = |n: &str| RedbBackend::open(n, dir.path().join(format!("{n}.redb"))).expect("redb");
        let (a, b) = (open("a"), open("b"));
        let native = a.info().capability.digest;
        let started = Instant::now();
        fill(&[&a, &b]).await;
        drift(&b).await;
        println!(
            "filled two redb stores with {KEYS} keys ({} s); native digests: {native}",
            started.elapsed().as_secs()
        );
        let (a, b): (Arc<dyn Backend>, Arc<dyn Backend>) = (Arc::new(a), Arc::new(b));
        let stores = vec![a.clone(), b.clone()];

        print_header();
        let (mut digest_s, mut full_s) = (Vec::new(), Vec::new());
        let (mut digest_report, mut full_report) = (None, None);
        for _ in 0..ROUNDS {
            let (s, r) = timed_verify(&stores, true).await;
            digest_s.push(s);
            digest_report = Some(r);
            let (s, r) = timed_verify(&stores, false).await;
            full_s.push(s);
            full_report = Some(r);
        }
        let (dr, fr) = (digest_report.expect("ran"), full_report.expect("ran"));
        assert_eq!(dr.divergent, DIFFERENCES, "digest verify found {dr:?}");
        assert_eq!(fr.divergent, DIFFERENCES, "full compare found {fr:?}");
        let (ds, fs) = (median_figure(&digest_s), median_figure(&full_s));
        let verify_digest = row("verify_digest_keys", KEYS as f64 / ds);
        let verify_full = row("verify_full_compare_keys", KEYS as f64 / fs);
        println!(
            "digest: {:.2} s, {} digest requests, {} entries listed, {} bytes; full: {:.2} s, {} bytes",
            ds, dr.digest_requests, dr.listed, dr.bytes_read, fs, fr.bytes_read
        );

        // Backfill one bucket into empty stores: mux-sync's backfill vs the raw loop,
        // alternated, each into a fresh store.
        let prefix = Prefix::new("ae/3").expect("prefix");
        let (mut fill_rate, mut raw_rate) = (Vec::new(), Vec::new());
        for round in 0..2 {
            let target = open(&format!("backfill{round}"));
            let started = Instant::now();
            let report = backfill(
                Arc::new(target),
                std::slice::from_ref(&a),
                prefix.clone(),
                &BackfillOptions::default(),
            )
            .await
            .expect("backfill");
            assert_eq!(report.copied, BUCKET, "{report:?}");
            fill_rate.push(BUCKET as f64 / started.elapsed().as_secs_f64());
            let target = open(&format!("raw{round}"));
            let started = Instant::now();
            let copied = raw_copy(a.clone(), &target, &prefix).await;
            assert_eq!(copied, BUCKET);
            raw_rate.push(BUCKET as f64 / started.elapsed().as_secs_f64());
        }
        let backfill_row = row("backfill_keys", median_figure(&fill_rate));
        let raw_row = row("raw_copy_keys", median_figure(&raw_rate));

        let ratios = [
            ("verify_digest_vs_full_compare", ds / fs),
            (
                "bytes_read_digest_vs_full",
                dr.bytes_read as f64 / fr.bytes_read.max(1) as f64,
            ),
            (
                "backfill_vs_raw_copy",
                backfill_row.ops_per_sec / raw_row.ops_per_sec,
            ),
        ];
        write_json(
            "anti-entropy",
            &[verify_digest, verify_full, backfill_row, raw_row],
            &ratios,
        );
    });
}
