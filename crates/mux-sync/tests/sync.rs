//! verify, repair, backfill, GC and export/import over in-memory stores.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mux_core::digest::{DigestRequest, KeyRange, Splits};
use mux_core::{
    Backend, BackendExt, BackendInfo, Capability, Key, MemoryBackend, Prefix, Record, Version,
};
use mux_sync::{
    BackfillOptions, Checkpoint, DivergenceKind, ExportOptions, GcOptions, Importer, Throttle,
    VerifyOptions, backfill, collect_garbage, export, verify,
};

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

const TOP: Version = Version::new(u64::MAX, u32::MAX, u32::MAX);

fn v(ms: u64) -> Version {
    Version::new(ms, 0, 1)
}

fn mem(name: &str) -> Arc<MemoryBackend> {
    Arc::new(MemoryBackend::new(name))
}

/// A memory store without a native digest (listing-based, like most stores).
fn listing_mem(name: &str) -> Arc<MemoryBackend> {
    let cap = Capability {
        digest: false,
        ..MemoryBackend::CAPABILITY
    };
    Arc::new(MemoryBackend::with_info(BackendInfo::new(
        name, "memory", cap,
    )))
}

async fn fill(stores: &[&Arc<MemoryBackend>], n: u64) {
    let records: Vec<Record> = (0..n)
        .map(|i| {
            Record::new(
                key(&format!("app/{i:06}")),
                format!("value {i}"),
                v(1000 + i),
            )
            .with_tag("n", i.to_string())
        })
        .collect();
    for s in stores {
        s.put_batch(&records).await.unwrap();
    }
}

fn dyns(stores: &[&Arc<MemoryBackend>]) -> Vec<Arc<dyn Backend>> {
    stores
        .iter()
        .map(|s| Arc::clone(s) as Arc<dyn Backend>)
        .collect()
}

/// Drift on `b`: 3 keys missing, 2 at an older version, 1 tombstoned, 1 extra.
async fn drift(b: &MemoryBackend) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for i in [10, 2000, 4999] {
        let k = key(&format!("app/{i:06}"));
        b.purge(&k, TOP).await.unwrap();
        keys.insert(k.to_string());
    }
    for i in [77, 3001] {
        let k = key(&format!("app/{i:06}"));
        b.purge(&k, TOP).await.unwrap();
        b.put(&Record::new(k.clone(), "old", v(5))).await.unwrap();
        keys.insert(k.to_string());
    }
    let k = key("app/000500");
    b.delete(&k, v(999_999)).await.unwrap();
    keys.insert(k.to_string());
    let extra = key("app/zz-extra");
    b.put(&Record::new(extra.clone(), "x", v(7))).await.unwrap();
    keys.insert(extra.to_string());
    keys
}

#[tokio::test]
async fn verify_by_digests_finds_exactly_the_drift_and_repair_converges() {
    let (a, b, c) = (mem("a"), mem("b"), mem("c"));
    fill(&[&a, &b, &c], 5000).await;
    let drifted = drift(&b).await;
    let stores = dyns(&[&a, &b, &c]);
    let prefix = Prefix::new("app").unwrap();

    let report = verify(&stores, prefix.clone(), &VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.mode, "digest");
    let found: BTreeSet<String> = report.sample.iter().map(|d| d.key.to_string()).collect();
    assert_eq!(found, drifted);
    assert_eq!(report.divergent, drifted.len() as u64);
    assert_eq!(report.missing, 4, "{report:?}");
    assert_eq!(report.tombstone_one_side, 1);
    assert_eq!(report.version_differs, 2);
    // The lag seen: the newer tombstone (999 999 ms) over the live app/000500 (1500 ms);
    // the older versions (5 ms against 1077 and 4001) lag less.
    assert_eq!(report.max_lag_ms, 999_999 - 1500);
    // Digests read far less than listing everything would.
    assert!(report.listed < 5000, "listed {}", report.listed);

    let repair = VerifyOptions {
        repair: true,
        ..VerifyOptions::default()
    };
    let repaired = verify(&stores, prefix.clone(), &repair).await.unwrap();
    assert_eq!(repaired.repaired, drifted.len() as u64);
    assert_eq!(repaired.repair_failed, 0);
    let after = verify(&stores, prefix, &VerifyOptions::default())
        .await
        .unwrap();
    assert!(after.is_consistent(), "{after:?}");
    // The newer tombstone won everywhere; the missing keys are back at their version.
    assert!(
        a.get(&key("app/000500"))
            .await
            .unwrap()
            .unwrap()
            .is_tombstone()
    );
    assert_eq!(
        b.get(&key("app/000077")).await.unwrap().unwrap().version(),
        v(1077)
    );
    assert_eq!(
        a.get(&key("app/zz-extra")).await.unwrap().unwrap().value(),
        "x".as_bytes()
    );
}

#[tokio::test]
async fn listing_mode_finds_the_same_keys() {
    let (a, b) = (listing_mem("a"), listing_mem("b"));
    fill(&[&a, &b], 3000).await;
    let drifted = drift(&b).await;
    let report = verify(&dyns(&[&a, &b]), Prefix::all(), &VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.mode, "listing");
    let found: BTreeSet<String> = report.sample.iter().map(|d| d.key.to_string()).collect();
    // app/004999 is past 3000 keys: not drift here (purging a missing key is a no-op).
    let expected: BTreeSet<String> = drifted
        .into_iter()
        .filter(|k| k.as_str() != "app/004999")
        .collect();
    assert_eq!(found, expected);
}

#[tokio::test]
async fn agreeing_stores_exchange_one_digest_each() {
    let (a, b) = (mem("a"), mem("b"));
    fill(&[&a, &b], 2000).await;
    let report = verify(&dyns(&[&a, &b]), Prefix::all(), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.is_consistent());
    assert_eq!(report.digest_requests, 2);
    assert_eq!(report.listed, 0);
    assert_eq!(report.checked, 2000);
}

#[tokio::test]
async fn an_empty_store_is_found_missing_everything() {
    let (a, b) = (mem("a"), mem("b"));
    fill(&[&a], 1500).await;
    let report = verify(&dyns(&[&a, &b]), Prefix::all(), &VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.divergent, 1500);
    assert_eq!(report.missing, 1500);
}

#[tokio::test]
async fn the_native_digest_matches_the_listing_digest() {
    let a = mem("a");
    fill(&[&a], 700).await;
    a.delete(&key("app/000003"), v(5000)).await.unwrap();
    let range = KeyRange::prefix(Prefix::new("app").unwrap())
        .between(Some(key("app/000010")), Some(key("app/000650")));
    for splits in [
        Splits::At(vec![]),
        Splits::At(vec![
            key("app/000100"),
            key("app/000101"),
            key("app/000600"),
        ]),
        Splits::Every(1),
        Splits::Every(64),
        Splits::Every(641),
        Splits::Every(10_000),
    ] {
        let req = DigestRequest {
            range: range.clone(),
            splits,
        };
        let native = a.digest(&req).await.unwrap();
        let listed = mux_core::digest_by_listing(&*a, &req).await.unwrap();
        assert_eq!(native, listed, "{req:?}");
    }
}

#[tokio::test]
async fn verify_resumes_after_its_checkpoint() {
    let (a, b) = (listing_mem("a"), listing_mem("b"));
    fill(&[&a, &b], 3000).await;
    b.purge(&key("app/000100"), TOP).await.unwrap();
    b.purge(&key("app/002900"), TOP).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpoint::new(dir.path().join("verify.json"), "verify app");
    // As if a previous run had finished everything up to app/001000.
    cp.save(Some(&key("app/001000")), &Default::default())
        .unwrap();
    let options = VerifyOptions {
        checkpoint: Some(cp.clone()),
        ..VerifyOptions::default()
    };
    let report = verify(&dyns(&[&a, &b]), Prefix::new("app").unwrap(), &options)
        .await
        .unwrap();
    assert_eq!(report.resumed_after.as_deref(), Some("app/001000"));
    assert_eq!(report.divergent, 1, "only the key after the checkpoint");
    assert_eq!(report.sample[0].key, key("app/002900"));
    assert_eq!(report.sample[0].kind, DivergenceKind::Missing);
    assert_eq!(
        cp.load().unwrap(),
        None,
        "a finished run clears its checkpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_interrupted_and_resumed_converges_under_live_writes() {
    let (a, b, new) = (mem("a"), mem("b"), mem("new"));
    fill(&[&a, &b], 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpoint::new(dir.path().join("backfill.json"), "backfill app -> new");
    let sources = dyns(&[&a, &b]);
    let target: Arc<dyn Backend> = new.clone();

    // A live writer updates 1,000 keys on every store of the route (the new one joined).
    let writer = {
        let stores = dyns(&[&a, &b, &new]);
        tokio::spawn(async move {
            for i in 0..1000u64 {
                let k = key(&format!("app/{:06}", i * 100));
                let r = Record::new(k, "live", v(1_000_000 + i));
                for s in &stores {
                    s.put(&r).await.unwrap();
                }
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // The first run is killed part-way.
    let first = {
        let options = BackfillOptions {
            checkpoint: Some(cp.clone()),
            batch: 500,
            // Slow enough (200,000 operations at 40,000/s) to be stopped part-way.
            throttle: Throttle::per_second(40_000),
            ..BackfillOptions::default()
        };
        let (target, sources) = (target.clone(), sources.clone());
        tokio::spawn(async move {
            backfill(target, &sources, Prefix::new("app").unwrap(), &options).await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cp.load().unwrap().is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if first.is_finished() {
        panic!("the first run ended: {:?}", first.await);
    }
    first.abort();
    let _ = first.await;
    let resumed_after = cp
        .load()
        .unwrap()
        .expect("the first run saved a checkpoint");
    writer.await.unwrap();

    let options = BackfillOptions {
        checkpoint: Some(cp.clone()),
        ..BackfillOptions::default()
    };
    let report = backfill(target, &sources, Prefix::new("app").unwrap(), &options)
        .await
        .unwrap();
    assert_eq!(
        report.resumed_after.as_deref(),
        Some(resumed_after.as_str())
    );
    assert_eq!(report.failed, 0);
    let check = verify(
        &dyns(&[&a, &b, &new]),
        Prefix::new("app").unwrap(),
        &VerifyOptions::default(),
    )
    .await
    .unwrap();
    assert!(check.is_consistent(), "{check:?}");
    // No updated key went back in version.
    for i in 0..1000u64 {
        let k = key(&format!("app/{:06}", i * 100));
        assert_eq!(
            new.get(&k).await.unwrap().unwrap().version(),
            v(1_000_000 + i)
        );
    }
}

#[tokio::test]
async fn gc_never_purges_a_tombstone_one_store_lacks() {
    let (a, b) = (mem("a"), mem("b"));
    fill(&[&a, &b], 10).await;
    let (gone, half) = (key("app/000001"), key("app/000002"));
    for s in [&a, &b] {
        s.delete(&gone, v(2000)).await.unwrap();
    }
    a.delete(&half, v(2000)).await.unwrap(); // b still holds the live value
    let stores = dyns(&[&a, &b]);
    let options = GcOptions {
        grace: Duration::from_secs(1),
        now_ms: Some(10_000),
        ..GcOptions::default()
    };
    let report = collect_garbage(&stores, Prefix::all(), &options)
        .await
        .unwrap();
    assert_eq!((report.purged, report.held_back), (1, 1), "{report:?}");
    assert!(a.get(&gone).await.unwrap().is_none());
    assert!(a.get(&half).await.unwrap().unwrap().is_tombstone(), "kept");

    let young = GcOptions {
        now_ms: Some(2500),
        ..options.clone()
    };
    let repair = VerifyOptions {
        repair: true,
        ..VerifyOptions::default()
    };
    verify(&stores, Prefix::all(), &repair).await.unwrap();
    let report = collect_garbage(&stores, Prefix::all(), &young)
        .await
        .unwrap();
    assert_eq!(
        (report.purged, report.young),
        (0, 1),
        "inside the grace period"
    );
    let report = collect_garbage(&stores, Prefix::all(), &options)
        .await
        .unwrap();
    assert_eq!(report.purged, 1, "after repair it is collected");
    assert!(b.get(&half).await.unwrap().is_none());
}

#[tokio::test]
async fn export_wipe_import_round_trips_every_record() {
    let a = mem("a");
    fill(&[&a], 1200).await;
    a.delete(&key("app/000007"), v(9000)).await.unwrap();
    a.put(
        &Record::new(key("app/bin"), vec![0u8, 1, 255, b'\n'], v(42))
            .with_content_type("application/octet-stream"),
    )
    .await
    .unwrap();
    let before = a.list_all(&Prefix::all()).await.unwrap();
    let mut lines = Vec::new();
    let n = export(
        &[a.clone() as Arc<dyn Backend>],
        Prefix::new("app").unwrap(),
        &ExportOptions::default(),
        |line| {
            lines.push(line);
            async { Ok(()) }
        },
    )
    .await
    .unwrap();
    assert_eq!(n, 1201);

    let fresh = mem("fresh");
    for _ in 0..2 {
        // Twice: the second import changes nothing.
        let mut importer = Importer::new(fresh.clone(), Throttle::unlimited());
        for l in &lines {
            importer.line(l).await.unwrap();
        }
        let report = importer.finish().await.unwrap();
        assert_eq!(report.records, 1201);
    }
    assert_eq!(fresh.list_all(&Prefix::all()).await.unwrap(), before);
    for e in &before {
        assert_eq!(
            fresh.get(&e.key).await.unwrap(),
            a.get(&e.key).await.unwrap()
        );
    }

    // A file cut short is refused after importing what it holds.
    let mut importer = Importer::new(mem("cut"), Throttle::unlimited());
    for l in &lines[..lines.len() - 1] {
        importer.line(l).await.unwrap();
    }
    let err = importer.finish().await.unwrap_err().to_string();
    assert!(err.contains("cut short"), "{err}");
}
