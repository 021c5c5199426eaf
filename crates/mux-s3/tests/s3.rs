//! mux-s3 against a real S3 server: the moto server that `cargo xtask services up`
//! starts on 127.0.0.1:4566 (or whatever `MUX_S3_ENDPOINT` names). S3 is a required
//! backend: these tests fail, not skip, when the server cannot be reached.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mux_core::{Backend, Key, Prefix, PutOutcome, Record, Version};
use mux_s3::{S3Backend, S3Config};

/// 16 distinct pseudo-random versions for `round` (a seeded LCG: reproducible).
fn distinct_versions(round: u64) -> Vec<Version> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ round;
    let mut physical = HashSet::new();
    while physical.len() < 16 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        physical.insert(1_000_000 * (round + 1) + (seed >> 40) % 100_000);
    }
    physical
        .into_iter()
        .map(|p| Version::new(p, 0, 1))
        .collect()
}

/// Runs `op(v)` for every version on its own task, all released at once by a barrier,
/// and returns each version with its outcome.
async fn race<F, Fut>(versions: &[Version], op: F) -> Vec<(Version, PutOutcome)>
where
    F: Fn(Version) -> Fut,
    Fut: Future<Output = PutOutcome> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(versions.len()));
    let tasks: Vec<_> = versions
        .iter()
        .map(|&v| {
            let (barrier, fut) = (barrier.clone(), op(v));
            tokio::spawn(async move {
                barrier.wait().await;
                (v, fut.await)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("racing task"));
    }
    out
}

/// A config for a fresh bucket on the test server.
fn config(test: &str) -> S3Config {
    static N: AtomicU32 = AtomicU32::new(0);
    let endpoint =
        std::env::var("MUX_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let bucket = format!(
        "mux-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    S3Config::new(bucket)
        .with_endpoint(endpoint, true)
        .with_region(std::env::var("MUX_S3_REGION").unwrap_or_else(|_| "us-east-1".into()))
        .with_static_credentials(
            std::env::var("MUX_S3_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into()),
            std::env::var("MUX_S3_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()),
        )
        .with_create_bucket(true)
}

async fn connect(config: S3Config) -> S3Backend {
    let endpoint = config.endpoint.clone().unwrap_or_default();
    S3Backend::connect("s3", config).await.unwrap_or_else(|e| {
        panic!("the S3 server at {endpoint} is required (run `cargo xtask services up`): {e}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    // A low multipart threshold so the suite's 8 MiB value goes up in parts.
    let backend = connect(config("conf").with_multipart(5 << 20, 5 << 20)).await;
    let report = mux_conformance::run(Arc::new(backend)).await;
    println!("{report}");
    assert!(report.all_passed(), "{report}");
    // This store keeps no history: only the history cases may skip.
    assert!(report.skips_beyond(&["history"]).is_empty(), "{report}");
}

/// With an empty prefix, keys are the object keys themselves; objects in the bucket
/// that are not mux keys are left out of listings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_prefix_maps_keys_to_object_keys() {
    let backend = connect(config("noprefix").with_prefix("")).await;
    let bucket = backend.config().bucket.clone();
    assert_eq!(backend.object_key("a/b"), "a/b");
    let (k1, k2) = (Key::new("a/b").unwrap(), Key::new("a/c").unwrap());
    backend
        .put(&Record::new(k1.clone(), "one", Version::new(1, 0, 1)))
        .await
        .unwrap();
    backend
        .put(&Record::new(k2.clone(), "two", Version::new(1, 0, 1)))
        .await
        .unwrap();
    // Foreign objects: one whose name is not a valid mux key ("a//x"), one with a valid
    // key name but no mux metadata ("a/d"). Listings skip both; get refuses the second
    // as not a mux record.
    for foreign in ["a//x", "a/d"] {
        backend
            .client()
            .put_object()
            .bucket(&bucket)
            .key(foreign)
            .body(b"foreign".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let page = backend
        .list(&mux_core::ListRequest::new(Prefix::new("a").unwrap()))
        .await
        .unwrap();
    let keys: Vec<_> = page.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a/b", "a/c"]);
    let got = backend.get(&k1).await.unwrap().unwrap();
    assert_eq!(got.value().as_ref(), b"one");
    let err = backend.get(&Key::new("a/d").unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), mux_core::ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("not a mux record"), "{err}");
}

/// Every tombstone has an empty value; S3's ETag hashes the body, so if tombstone
/// bodies were all empty, racing deletes could not be told apart by `If-Match` and a
/// lower tombstone could win. 16 racing deletes with random versions end with the
/// highest, whose body names its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_racing_deletes_end_with_the_highest_tombstone() {
    let backend = Arc::new(connect(config("deletes")).await);
    let key = Key::new("race/deleted").unwrap();
    for round in 0..5u64 {
        let versions = distinct_versions(round);
        let highest = *versions.iter().max().unwrap();
        let (b, k) = (backend.clone(), key.clone());
        race(&versions, move |v| {
            let (b, k) = (b.clone(), k.clone());
            async move { b.delete(&k, v).await.expect("delete") }
        })
        .await;
        let stored = backend.get(&key).await.unwrap().expect("a tombstone");
        assert!(stored.is_tombstone());
        assert!(stored.value().is_empty());
        assert_eq!(stored.meta().version, highest, "round {round}");
    }
    let object = backend
        .client()
        .get_object()
        .bucket(&backend.config().bucket)
        .key(backend.object_key(key.as_str()))
        .send()
        .await
        .unwrap();
    let body = object.body.collect().await.unwrap().into_bytes();
    assert!(body.starts_with(b"mux tombstone "), "{body:?}");
}

/// 16 writers with random versions race on one key; the highest version ends stored,
/// and exactly the writes that the store reports as applied form an increasing chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_racing_writers_end_with_the_highest_version() {
    let backend = Arc::new(connect(config("race")).await);
    let key = Key::new("race/one").unwrap();
    for round in 0..5u64 {
        let versions = distinct_versions(round);
        let highest = *versions.iter().max().unwrap();
        let (b, k) = (backend.clone(), key.clone());
        let outcomes = race(&versions, move |v| {
            let (b, k) = (b.clone(), k.clone());
            async move {
                let r = Record::new(k, format!("written at {v}"), v);
                b.put(&r).await.expect("put")
            }
        })
        .await;
        for (v, outcome) in outcomes {
            if v == highest {
                assert_eq!(outcome, PutOutcome::Applied, "the highest version's write");
            }
            if let PutOutcome::Superseded { stored } = outcome {
                assert!(stored >= v, "superseded by a lower version: {stored} < {v}");
            }
        }
        let stored = backend.get(&key).await.unwrap().expect("stored");
        assert_eq!(stored.meta().version, highest, "round {round}");
        assert_eq!(
            stored.value().as_ref(),
            format!("written at {highest}").as_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_error() {
    let backend = connect(config("bad")).await;
    // Tags that do not fit S3's 2 KB of user metadata.
    let r = Record::new(Key::new("t").unwrap(), "x", Version::new(1, 0, 1))
        .with_tag("big", "x".repeat(3000));
    let err = backend.put(&r).await.unwrap_err();
    assert_eq!(err.kind(), mux_core::ErrorKind::TooLarge, "{err}");
    assert!(err.to_string().contains("user metadata"), "{err}");
    // A key that fits mux's 1024 bytes but not S3's once the prefix is added.
    let long = Key::new("k".repeat(1024)).unwrap();
    let err = backend
        .put(&Record::new(long, "x", Version::new(1, 0, 1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), mux_core::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("too long for S3"), "{err}");
    // Nothing was written.
    let listed = backend
        .list(&mux_core::ListRequest::new(Prefix::all()))
        .await
        .unwrap();
    assert!(listed.entries.is_empty(), "{listed:?}");
    // A missing bucket without create_bucket fails at connect, naming the bucket.
    let mut missing = config("missing");
    missing.create_bucket = false;
    let err = S3Backend::connect("s3", missing).await.unwrap_err();
    assert!(err.to_string().contains("mux-missing-"), "{err}");
}

/// Values at or over the threshold go up in parts: the stored ETag is a multipart one
/// (`"<md5>-<parts>"`), the value reads back whole, and a newer multipart write
/// replaces it under the same conditional rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_use_multipart_uploads() {
    let backend = connect(config("multipart").with_multipart(5 << 20, 5 << 20)).await;
    let key = Key::new("big/one").unwrap();
    let value: Vec<u8> = (0..(11 << 20)).map(|i| (i % 253) as u8).collect();
    let v1 = Version::new(10, 0, 1);
    let r1 = Record::new(key.clone(), value.clone(), v1);
    assert_eq!(backend.put(&r1).await.unwrap(), PutOutcome::Applied);
    let head = backend
        .client()
        .head_object()
        .bucket(&backend.config().bucket)
        .key(backend.object_key(key.as_str()))
        .send()
        .await
        .unwrap();
    let etag = head.e_tag().unwrap();
    assert!(etag.ends_with("-3\""), "3 parts of 5 MiB: {etag}");
    assert_eq!(backend.get(&key).await.unwrap().unwrap(), r1);

    let mut newer = value.clone();
    newer[0] ^= 0xff;
    let r2 = Record::new(key.clone(), newer, Version::new(11, 0, 1));
    assert_eq!(backend.put(&r2).await.unwrap(), PutOutcome::Applied);
    let stale = Record::new(key.clone(), value, Version::new(9, 0, 1));
    assert!(backend.put(&stale).await.unwrap().is_superseded());
    assert_eq!(backend.get(&key).await.unwrap().unwrap(), r2);
    // No upload was left behind.
    let uploads = backend
        .client()
        .list_multipart_uploads()
        .bucket(&backend.config().bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
    // Leave the (in-memory) test server small.
    assert!(backend.purge(&key, Version::new(11, 0, 1)).await.unwrap());
}
