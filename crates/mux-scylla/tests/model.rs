//! The backend over the in-memory model of its statements (`mux_scylla::testing::Model`:
//! CQL's semantics for the seven requests — clustering order by bytes, conditions
//! evaluated atomically with their write, false on a missing row, `LIMIT`s). What runs
//! here is the adapter's own code — the lightweight-transaction protocol of `put`, the
//! partition index, the listing merge, the row mapping — with only the cluster replaced.
//! Whether a real cluster keeps the model's semantics is what `tests/conformance.rs`
//! checks where one is reachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use mux_core::{Backend, ErrorKind, Key, ListRequest, Prefix, PutOutcome, Record, Result, Version};
use mux_scylla::testing::{self, Cql, Lwt, Model, Row, Scan};
use mux_scylla::{ScyllaBackend, ScyllaConfig};

fn config(depth: usize) -> ScyllaConfig {
    ScyllaConfig::new(["model:9042"]).with_partition_depth(depth)
}

fn over(model: Arc<dyn Cql>, depth: usize) -> ScyllaBackend {
    testing::backend("scylla-model", config(depth), model)
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

async fn passes(depth: usize) {
    let backend = over(Arc::new(Model::new()), depth);
    let report = mux_conformance::run(Arc::new(backend)).await;
    println!("{report}");
    assert!(report.all_passed(), "depth {depth}: {report}");
    // This store keeps no history: only the history cases may skip.
    assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_over_the_model_at_depth_1() {
    passes(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_over_the_model_at_depth_2() {
    passes(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_over_the_model_at_depth_4() {
    passes(4).await;
}

/// Segments chosen so that siblings sort between a key and the keys under it.
const SEGMENTS: &[&str] = &["a", "b", "a-b", "a b", "a.b", "ab", "a0", "é", "~"];

/// 80 distinct keys of 1 to 4 segments (a seeded LCG: reproducible).
fn keys() -> Vec<String> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) % n as u64) as usize
    };
    let mut keys = std::collections::BTreeSet::new();
    while keys.len() < 80 {
        let depth = 1 + next(4);
        let key: Vec<&str> = (0..depth)
            .map(|_| {
                SEGMENTS[if next(3) == 0 {
                    next(SEGMENTS.len())
                } else {
                    next(3)
                }]
            })
            .collect();
        keys.insert(key.join("/"));
    }
    keys.into_iter().collect()
}

/// Pages through `prefix` from `cursor` with `limit`, checking each page.
async fn list(
    backend: &dyn Backend,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Vec<String> {
    let mut request = ListRequest::new(Prefix::new(prefix).unwrap())
        .with_limit(limit)
        .with_cursor(cursor.map(key));
    let mut got = Vec::new();
    for _ in 0..500 {
        let page = backend.list(&request).await.unwrap();
        assert!(page.entries.len() <= limit, "{prefix:?} limit {limit}");
        got.extend(page.entries.iter().map(|e| e.key.as_str().to_owned()));
        match page.next_cursor {
            Some(c) => {
                assert!(!page.entries.is_empty(), "an empty page with a cursor");
                assert_eq!(Some(&c), page.entries.last().map(|e| &e.key));
                request.cursor = Some(c);
            }
            None => return got,
        }
    }
    panic!("{prefix:?}: the listing does not end");
}

#[tokio::test]
async fn every_prefix_lists_in_byte_order_at_every_depth() {
    let keys = keys();
    for depth in 1..=4 {
        let model = Arc::new(Model::new());
        let writer = over(model.clone(), depth);
        for (i, k) in keys.iter().enumerate() {
            let r = Record::new(key(k), "v", Version::new(1 + i as u64, 0, 0));
            assert_eq!(writer.put(&r).await.unwrap(), PutOutcome::Applied);
        }
        for k in keys.iter().step_by(10) {
            writer
                .delete(&key(k), Version::new(1_000, 0, 0))
                .await
                .unwrap();
        }
        // A second backend lists: the partition index is in the table, not in memory.
        let reader = over(model.clone(), depth);
        let prefixes = [
            "", "a", "a/", "a-b", "a b", "a/a", "a/a/", "a/a-b", "a/b/a", "a/a/b/", "ab", "é",
            "zz", "a/a/a/a", "a/a/a/a/",
        ];
        for prefix in prefixes {
            let p = Prefix::new(prefix).unwrap();
            let expected: Vec<String> = keys.iter().filter(|k| p.matches(k)).cloned().collect();
            for limit in [1, 3, 1000] {
                let got = list(&reader, prefix, None, limit).await;
                assert_eq!(
                    got, expected,
                    "depth {depth}, prefix {prefix:?}, limit {limit}"
                );
            }
        }
        for cursor in [
            "a/a",
            "a/a b/zzz",
            "a/a-b",
            "a/a.b/a",
            "a/a/a/a",
            "b/~",
            "a",
            "a/a/a",
        ] {
            let expected: Vec<String> = keys
                .iter()
                .filter(|k| k.as_str() > cursor)
                .cloned()
                .collect();
            assert_eq!(
                list(&reader, "", Some(cursor), 3).await,
                expected,
                "depth {depth}, after {cursor:?}"
            );
            let p = Prefix::new("a").unwrap();
            let expected: Vec<String> = expected.into_iter().filter(|k| p.matches(k)).collect();
            assert_eq!(
                list(&reader, "a", Some(cursor), 4).await,
                expected,
                "depth {depth}, a after {cursor:?}"
            );
        }
        // The index names every partition once, and nothing else.
        let index: Vec<String> = model
            .rows()
            .into_iter()
            .filter(|r| r.partition == mux_scylla::INDEX_PARTITION)
            .map(|r| r.key)
            .collect();
        let mut partitions: Vec<String> = keys
            .iter()
            .map(|k| mux_scylla::partition_of(k, depth).to_owned())
            .collect();
        partitions.dedup();
        partitions.sort();
        partitions.dedup();
        assert_eq!(index, partitions, "depth {depth}");
    }
}

#[tokio::test]
async fn rows_are_laid_out_as_documented() {
    let model = Arc::new(Model::new());
    let backend = over(model.clone(), 2);
    let v = Version::new(0x18b_cfe5_6800, 3, 7);
    let r = Record::new(key("tenants/acme/config/limits"), vec![0u8, 1, 255], v)
        .with_content_type("application/octet-stream")
        .with_tag("class", "pii");
    backend.put(&r).await.unwrap();
    backend.delete(&key("tenants/acme/old"), v).await.unwrap();
    let rows = model.rows();
    let record_row = rows
        .iter()
        .find(|r| r.key == "tenants/acme/config/limits")
        .unwrap();
    assert_eq!(record_row.partition, "tenants/acme");
    assert_eq!(
        record_row.version.as_deref(),
        Some("0000018bcfe56800-00000003-00000007")
    );
    assert_eq!(record_row.tombstone, Some(false));
    assert_eq!(record_row.value.as_deref(), Some(&[0u8, 1, 255][..]));
    assert_eq!(record_row.size, Some(3));
    assert_eq!(record_row.checksum, Some(i64::from(r.meta().checksum)));
    assert_eq!(record_row.tags.as_ref().unwrap()["class"], "pii");
    let tomb = rows.iter().find(|r| r.key == "tenants/acme/old").unwrap();
    assert_eq!(
        (tomb.tombstone, tomb.size, tomb.tags.clone()),
        (Some(true), Some(0), None)
    );
    // A tombstone is a row (no CQL delete): get returns it.
    assert!(
        backend
            .get(&key("tenants/acme/old"))
            .await
            .unwrap()
            .unwrap()
            .is_tombstone()
    );
    let index: Vec<&Row> = rows
        .iter()
        .filter(|r| r.partition == "/partitions")
        .collect();
    assert_eq!(index.len(), 1);
    assert_eq!(
        (index[0].key.as_str(), index[0].version.as_ref()),
        ("tenants/acme", None)
    );
}

#[tokio::test]
async fn foreign_or_damaged_rows_are_corrupt_for_get_and_skipped_by_listings() {
    let model = Arc::new(Model::new());
    let backend = over(model.clone(), 1);
    backend
        .put(&Record::new(key("a/good"), "x", Version::new(5, 0, 0)))
        .await
        .unwrap();
    model.put_raw(Row {
        partition: "a".into(),
        key: "a/foreign".into(),
        value: Some(b"hello".to_vec()),
        ..Row::default()
    });
    let mut damaged = Row::of(
        &Record::new(key("a/damaged"), "abc", Version::new(5, 0, 0)),
        1,
    );
    damaged.value = Some(b"abd".to_vec());
    model.put_raw(damaged);
    for k in ["a/foreign", "a/damaged"] {
        let e = backend.get(&key(k)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert_eq!(e.backend(), Some("scylla-model"));
    }
    let listed = list(&backend, "a", None, 10).await;
    assert_eq!(
        listed,
        ["a/damaged", "a/good"],
        "the damaged value is not read by listings"
    );
    // A write over a row without a version is refused, not guessed.
    let e = backend
        .put(&Record::new(key("a/foreign"), "y", Version::new(9, 0, 0)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_end_with_the_highest_version() {
    let model = Arc::new(Model::new());
    let backend = Arc::new(over(model, 2));
    let k = key("race/a/b");
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let (backend, k) = (backend.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let v = Version::new((i * 37 + w * 11) % 301 + 1, 0, w as u32);
                backend
                    .put(&Record::new(k.clone(), format!("{v}"), v))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let max = (0..16u64)
        .flat_map(|w| {
            (0..20u64).map(move |i| Version::new((i * 37 + w * 11) % 301 + 1, 0, w as u32))
        })
        .max()
        .unwrap();
    let got = backend.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (got.version(), got.value().as_ref()),
        (max, max.to_string().as_bytes())
    );
}

/// A model that removes the row between a refused insert and the update (a purge
/// racing the write), `times` times; with `flap`, another writer puts v1 back before
/// every insert.
#[derive(Debug)]
struct PurgeBetween {
    inner: Model,
    times: AtomicUsize,
    flap: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Cql for PurgeBetween {
    async fn get(&self, p: &str, k: &str) -> Result<Option<Row>> {
        self.inner.get(p, k).await
    }
    async fn insert(&self, row: &Row) -> Result<Lwt> {
        if self.flap.load(Ordering::SeqCst) {
            let old = Record::new(Key::new(&row.key).unwrap(), "1", Version::new(1, 0, 0));
            self.inner.put_raw(Row::of(&old, 1));
        }
        self.inner.insert(row).await
    }
    async fn update(&self, row: &Row) -> Result<Lwt> {
        if self
            .times
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            self.inner
                .purge(
                    &row.partition,
                    &row.key,
                    "ffffffffffffffff-ffffffff-ffffffff",
                )
                .await?;
        }
        self.inner.update(row).await
    }
    async fn purge(&self, p: &str, k: &str, up_to: &str) -> Result<Lwt> {
        self.inner.purge(p, k, up_to).await
    }
    async fn index(&self, p: &str) -> Result<()> {
        self.inner.index(p).await
    }
    async fn scan(&self, scan: &Scan) -> Result<Vec<Row>> {
        self.inner.scan(scan).await
    }
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_purge_between_the_two_transactions_sends_the_write_round_again() {
    let racy = Arc::new(PurgeBetween {
        inner: Model::new(),
        times: AtomicUsize::new(0),
        flap: Default::default(),
    });
    let backend = over(racy.clone(), 1);
    let k = key("p/x");
    backend
        .put(&Record::new(k.clone(), "1", Version::new(1, 0, 0)))
        .await
        .unwrap();
    racy.times.store(2, Ordering::SeqCst);
    let out = backend
        .put(&Record::new(k.clone(), "2", Version::new(2, 0, 0)))
        .await
        .unwrap();
    assert_eq!(out, PutOutcome::Applied);
    assert_eq!(
        backend.get(&k).await.unwrap().unwrap().value().as_ref(),
        b"2"
    );
    // Purged at every round and written again before every insert: after a bounded
    // number of rounds, a temporary conflict naming the key.
    racy.times.store(usize::MAX, Ordering::SeqCst);
    racy.flap.store(true, Ordering::SeqCst);
    let e = backend
        .put(&Record::new(k.clone(), "3", Version::new(3, 0, 0)))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary()),
        (ErrorKind::Conflict, true),
        "{e}"
    );
    assert!(e.message().contains("p/x"), "{e}");
}

#[tokio::test]
async fn superseded_writes_report_the_stored_version_and_purge_is_conditional() {
    let backend = over(Arc::new(Model::new()), 2);
    let k = key("t/a/k");
    let (v1, v2, v3) = (
        Version::new(1, 0, 0),
        Version::new(2, 0, 0),
        Version::new(3, 0, 0),
    );
    assert_eq!(
        backend.put(&Record::new(k.clone(), "2", v2)).await.unwrap(),
        PutOutcome::Applied
    );
    assert_eq!(
        backend.put(&Record::new(k.clone(), "1", v1)).await.unwrap(),
        PutOutcome::Superseded { stored: v2 }
    );
    assert_eq!(
        backend.put(&Record::new(k.clone(), "2", v2)).await.unwrap(),
        PutOutcome::Superseded { stored: v2 },
        "the same version again"
    );
    assert_eq!(
        backend.delete(&k, v1).await.unwrap(),
        PutOutcome::Superseded { stored: v2 }
    );
    assert_eq!(backend.delete(&k, v3).await.unwrap(), PutOutcome::Applied);
    assert!(
        !backend.purge(&k, v2).await.unwrap(),
        "the tombstone is newer"
    );
    assert!(backend.purge(&k, v3).await.unwrap());
    assert!(backend.get(&k).await.unwrap().is_none());
    assert!(!backend.purge(&k, v3).await.unwrap(), "nothing left");
    // A value over the limit is refused before any request.
    let big = Record::new(k.clone(), vec![0u8; mux_scylla::MAX_VALUE_SIZE + 1], v3);
    assert_eq!(
        backend.put(&big).await.unwrap_err().kind(),
        ErrorKind::TooLarge
    );
}

#[tokio::test]
async fn batches_are_conditional_writes_in_order_and_refused_whole_when_too_large() {
    let model = Arc::new(Model::new());
    let backend = over(model.clone(), 2);
    let (v1, v2) = (Version::new(1, 0, 0), Version::new(2, 0, 0));
    backend
        .put(&Record::new(key("b/a/x"), "2", v2))
        .await
        .unwrap();
    let records: Vec<Record> = (0..40)
        .map(|i| Record::new(key(&format!("b/{}/k{i}", i % 3)), "v", v1))
        .chain([Record::new(key("b/a/x"), "1", v1)])
        .collect();
    let out = backend.put_batch(&records).await.unwrap();
    assert_eq!(out.len(), 41);
    assert!(out[..40].iter().all(|o| *o == PutOutcome::Applied));
    assert_eq!(out[40], PutOutcome::Superseded { stored: v2 });
    let before = model.rows().len();
    let mut too_large = records.clone();
    too_large.push(Record::new(
        key("b/z/big"),
        vec![0u8; mux_scylla::MAX_VALUE_SIZE + 1],
        v2,
    ));
    let e = backend.put_batch(&too_large).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(model.rows().len(), before, "nothing written");
}
