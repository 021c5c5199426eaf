//! The native digest (a scan of the redb table reading only versions and tombstone
//! flags) against the listing-based one (`mux_core::digest_by_listing`) and memory's:
//! the same chunks, byte for byte, for whole ranges, split keys, every-n cuts and
//! bounded ranges.

use mux_core::digest::{DigestChunk, DigestRequest, KeyRange, Splits};
use mux_core::{Backend, Key, MemoryBackend, Prefix, Record, Version, digest_by_listing};
use mux_redb::RedbBackend;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// A small deterministic generator (no dependency): the same data every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// A few hundred records: plain, tagged and with content types, tombstones, multibyte
/// keys, keys that share the text (not the segment) of a prefix (`a/bc` for `a/b`),
/// and versions whose high bits are set (negative as SQL `bigint`s).
fn records() -> Vec<Record> {
    let mut rng = Lcg(42);
    let mut keys: Vec<String> = Vec::new();
    for i in 0..120 {
        keys.push(format!("a/b/{i:03}"));
    }
    for i in 0..40 {
        keys.push(format!("a/bc/{i:02}"));
        keys.push(format!("a/b-{i:02}"));
    }
    for i in 0..30 {
        keys.push(format!("ü/straße/{i}"));
        keys.push(format!("日本/キー/{i}"));
        keys.push(format!("emoji/😀/{i}"));
        keys.push(format!("tenant/acme/{i:02}"));
    }
    keys.extend(
        ["a", "a/b", "a/bc", "b", "z/ä", "a/b/é", "a/b/\u{10FFFF}"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    keys.into_iter()
        .enumerate()
        .map(|(i, k)| {
            let version = match rng.next() % 4 {
                0 => Version::new(u64::MAX - rng.next(), u32::MAX, u32::MAX - 1),
                1 => Version::new(1 << 63 | rng.next(), 0x8000_0000, 7),
                _ => Version::new(1_700_000_000_000 + rng.next(), (i % 5) as u32, 1),
            };
            let k = key(&k);
            match rng.next() % 5 {
                0 => Record::tombstone(k, version),
                1 => Record::new(k, format!("value {i}"), version)
                    .with_tag("class", "pii")
                    .with_tag("city", "Zürich"),
                2 => Record::new(k, vec![0u8, 255, 1], version).with_content_type("x/y"),
                _ => Record::new(k, format!("v{i}"), version),
            }
        })
        .collect()
}

/// Every key of `records` that `range` contains, in key order.
fn keys_in(records: &[Record], range: &KeyRange) -> Vec<Key> {
    let mut keys: Vec<Key> = records
        .iter()
        .map(|r| r.key().clone())
        .filter(|k| range.contains(k.as_str()))
        .collect();
    keys.sort();
    keys
}

fn ranges(records: &[Record]) -> Vec<KeyRange> {
    let prefixes = [
        "",
        "a",
        "a/b",
        "a/b/",
        "a/bc",
        "ü",
        "日本/キー",
        "emoji",
        "tenant/acme",
        "nothing",
    ];
    let mut ranges = Vec::new();
    for p in prefixes {
        let whole = KeyRange::prefix(Prefix::new(p).unwrap());
        let keys = keys_in(records, &whole);
        ranges.push(whole.clone());
        if keys.len() >= 4 {
            let (q1, q3) = (
                keys[keys.len() / 4].clone(),
                keys[keys.len() * 3 / 4].clone(),
            );
            ranges.push(whole.between(Some(q1.clone()), None));
            ranges.push(whole.between(None, Some(q3.clone())));
            ranges.push(whole.between(Some(q1.clone()), Some(q3.clone())));
            // Bounds that are not stored keys, and an empty range.
            let before = key(&format!("{}~", q1.as_str()));
            if whole.contains(before.as_str()) {
                ranges.push(whole.between(Some(before), Some(q3.clone())));
            }
            ranges.push(whole.between(Some(q3.clone()), Some(q3)));
        }
    }
    ranges
}

fn requests(records: &[Record]) -> Vec<DigestRequest> {
    let mut requests = Vec::new();
    for range in ranges(records) {
        requests.push(DigestRequest::whole(range.clone()));
        let keys = keys_in(records, &range);
        for n in [1, 2, 3, 7, 10, 64, 1000] {
            requests.push(DigestRequest {
                range: range.clone(),
                splits: Splits::Every(n),
            });
        }
        // The count itself: the last chunk is exactly full (and widened).
        if !keys.is_empty() {
            requests.push(DigestRequest {
                range: range.clone(),
                splits: Splits::Every(keys.len() as u64),
            });
        }
        // Split at stored keys (the first, some inner ones, the last) and at keys
        // between them, so empty chunks and a split on the last key occur.
        let mut at: Vec<Key> = keys.iter().step_by(5).cloned().collect();
        if let Some(last) = keys.last() {
            at.push(last.clone());
        }
        at.dedup();
        requests.push(DigestRequest {
            range: range.clone(),
            splits: Splits::At(at),
        });
        let between: Vec<Key> = keys
            .windows(2)
            .step_by(3)
            .filter_map(|w| {
                let k = key(&format!("{}!", w[0].as_str()));
                (k < w[1] && range.contains(k.as_str())).then_some(k)
            })
            .collect();
        requests.push(DigestRequest {
            range: range.clone(),
            splits: Splits::At(between),
        });
        if let (Some(first), Some(second)) = (keys.first(), keys.get(1)) {
            requests.push(DigestRequest {
                range,
                splits: Splits::At(vec![first.clone(), second.clone()]),
            });
        }
    }
    requests
}

fn show(chunks: &[DigestChunk]) -> String {
    chunks
        .iter()
        .map(|c| format!("{:?}: {}", c.last.as_ref().map(Key::as_str), c.digest))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_digest_equals_the_listing_digest() {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbBackend::open("redb", dir.path().join("mux.redb")).unwrap();
    assert!(redb.info().capability.digest);
    let records = records();
    let memory = MemoryBackend::new("memory");
    redb.put_batch(&records).await.unwrap();
    memory.put_batch(&records).await.unwrap();
    let requests = requests(&records);
    assert!(requests.len() > 300, "{}", requests.len());
    for request in &requests {
        let native = redb.digest(request).await.unwrap();
        let listed = digest_by_listing(&redb, request).await.unwrap();
        assert_eq!(
            native,
            listed,
            "{request:?}\nnative:\n{}\nlisted:\n{}",
            show(&native),
            show(&listed)
        );
        assert_eq!(native, memory.digest(request).await.unwrap(), "{request:?}");
    }
    let ab = redb
        .digest(&DigestRequest::whole(KeyRange::prefix(
            Prefix::new("a/b").unwrap(),
        )))
        .await
        .unwrap();
    assert_eq!(
        ab[0].digest.count,
        120 + 3,
        "a/b, a/b/000..119, a/b/é, a/b/U+10FFFF"
    );
    // A tombstone over a key changes the digest of its range.
    let k = key("a/b/007");
    let one = DigestRequest::whole(KeyRange::prefix((&k).into()));
    let before = redb.digest(&one).await.unwrap();
    redb.delete(&k, Version::new(u64::MAX, u32::MAX, u32::MAX))
        .await
        .unwrap();
    let after = redb.digest(&one).await.unwrap();
    assert_ne!(before, after);
    assert_eq!(after[0].digest.count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_ranges_and_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbBackend::open("redb", dir.path().join("mux.redb")).unwrap();
    redb.put(&Record::new(key("x/c"), "v", Version::new(1, 0, 1)))
        .await
        .unwrap();
    let range = KeyRange::prefix(Prefix::new("x").unwrap()).between(None, Some(key("x/m")));
    // After the end of the range: nothing, and no scan that starts after its end.
    let inverted = range.between(Some(key("x/n")), Some(key("x/m")));
    for range in [range.clone(), inverted] {
        for splits in [Splits::At(Vec::new()), Splits::Every(1), Splits::Every(5)] {
            let request = DigestRequest {
                range: range.clone(),
                splits,
            };
            let native = redb.digest(&request).await.unwrap();
            assert_eq!(native, digest_by_listing(&redb, &request).await.unwrap());
            assert_eq!(native.last().unwrap().last, Some(key("x/m")));
        }
    }
    let bad = DigestRequest {
        range,
        splits: Splits::Every(0),
    };
    let err = redb.digest(&bad).await.unwrap_err();
    assert_eq!(err.kind(), mux_core::ErrorKind::InvalidInput, "{err}");
    assert_eq!(err.backend(), Some("redb"), "{err}");
}
