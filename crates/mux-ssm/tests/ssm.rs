//! mux-ssm against a real SSM server (moto): the conditional write without races and
//! under them, tombstones, history and as-of reads, SSM's limits, and listings.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ssm::types::{ParameterTier, ParameterType};
use mux_core::{
    AsOf, Backend, BackendExt, ErrorKind, HistoryRequest, Key, ListRequest, Prefix, PutOutcome,
    Record, Version,
};
use mux_ssm::{SsmBackend, Tier};

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn v(ms: u64) -> Version {
    Version::new(ms, 0, 1)
}

/// A stale write — over a live record or a tombstone — is refused when nothing races
/// it, and `purge` removes the record (with its history) only up to its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_writes_are_refused_and_tombstones_hold_until_purged() {
    let b = common::connect(common::config("stale")).await;
    let k = key("paramconfig/acme/limits");
    assert_eq!(
        b.put(&Record::new(k.clone(), "two", v(20))).await.unwrap(),
        PutOutcome::Applied
    );
    for stale in [v(10), v(20)] {
        assert_eq!(
            b.put(&Record::new(k.clone(), "stale", stale))
                .await
                .unwrap(),
            PutOutcome::Superseded { stored: v(20) }
        );
    }
    assert_eq!(b.delete(&k, v(30)).await.unwrap(), PutOutcome::Applied);
    assert_eq!(
        b.put(&Record::new(k.clone(), "late", v(25))).await.unwrap(),
        PutOutcome::Superseded { stored: v(30) },
        "a delete survives a later stale write"
    );
    let got = b.get(&k).await.unwrap().expect("the tombstone");
    assert!(got.is_tombstone() && got.version() == v(30));
    assert!(
        !b.purge(&k, v(29)).await.unwrap(),
        "purge below the tombstone"
    );
    assert!(b.get(&k).await.unwrap().is_some());
    assert!(b.purge(&k, v(30)).await.unwrap());
    assert!(b.get(&k).await.unwrap().is_none());
    let history = b.history(&HistoryRequest::new(k.clone())).await.unwrap();
    assert!(history.entries.is_empty(), "purge removes the history too");
    assert!(!b.purge(&k, v(30)).await.unwrap());
    common::clean(&b).await;
}

/// History comes from `GetParameterHistory` across its pages (50 versions each),
/// newest first, tombstones included, refused writes never; SSM keeps the last 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_newest_first_and_keeps_the_last_hundred() {
    let b = common::connect(common::config("history")).await;
    let k = key("history/one");
    let mut written = Vec::new();
    for i in 1..=105u64 {
        let version = v(1000 * i);
        let outcome = if i % 10 == 0 {
            b.delete(&k, version).await.unwrap()
        } else {
            b.put(&Record::new(k.clone(), format!("value {i}"), version))
                .await
                .unwrap()
        };
        assert_eq!(outcome, PutOutcome::Applied);
        written.push(version);
        if i == 70 {
            // Refused: it must not show in the history.
            let stale = b
                .put(&Record::new(k.clone(), "stale", v(500)))
                .await
                .unwrap();
            assert!(stale.is_superseded());
        }
    }
    let mut request = HistoryRequest::new(k.clone()).with_limit(7);
    let mut seen: Vec<Record> = Vec::new();
    for _ in 0..100 {
        let page = b.history(&request).await.unwrap();
        assert!(page.entries.len() <= 7);
        seen.extend(page.entries);
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => break,
        }
    }
    let versions: Vec<Version> = seen.iter().map(Record::version).collect();
    let expected: Vec<Version> = written.iter().rev().take(100).copied().collect();
    assert_eq!(versions, expected, "the last 100 versions, newest first");
    for r in &seen {
        let i = r.version().physical_ms() / 1000;
        if i % 10 == 0 {
            assert!(r.is_tombstone(), "{i}");
        } else {
            assert_eq!(r.value().as_ref(), format!("value {i}").as_bytes());
        }
    }
    // The five oldest versions are gone.
    assert_eq!(b.get_as_of(&k, AsOf::Version(v(5000))).await.unwrap(), None);
    let missing = b
        .history(&HistoryRequest::new(key("history/none")))
        .await
        .unwrap();
    assert!(missing.entries.is_empty() && missing.next_cursor.is_none());
    common::clean(&b).await;
}

/// `get_as_of` by version and by time returns the highest version at or below the
/// bound, tombstones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_reads_by_version_and_by_time() {
    let b = common::connect(common::config("asof")).await;
    let k = key("asof/one");
    let t0 = 1_700_000_000_000u64;
    b.put(&Record::new(k.clone(), "first", Version::new(t0, 0, 1)))
        .await
        .unwrap();
    b.put(&Record::new(
        k.clone(),
        "second",
        Version::new(t0 + 1000, 5, 2),
    ))
    .await
    .unwrap();
    b.delete(&k, Version::new(t0 + 2000, 0, 1)).await.unwrap();
    b.put(&Record::new(
        k.clone(),
        "third",
        Version::new(t0 + 3000, 0, 1),
    ))
    .await
    .unwrap();
    let at = |a: AsOf| {
        let b = b.clone();
        let k = k.clone();
        async move { b.get_as_of(&k, a).await.unwrap() }
    };
    assert_eq!(at(AsOf::UnixMillis(t0 - 1)).await, None);
    assert_eq!(
        at(AsOf::UnixMillis(t0)).await.unwrap().value().as_ref(),
        b"first"
    );
    // The same millisecond admits every logical counter and node.
    assert_eq!(
        at(AsOf::UnixMillis(t0 + 1000))
            .await
            .unwrap()
            .value()
            .as_ref(),
        b"second"
    );
    assert_eq!(
        at(AsOf::Version(Version::new(t0 + 1000, 4, 9)))
            .await
            .unwrap()
            .value()
            .as_ref(),
        b"first"
    );
    assert!(
        at(AsOf::UnixMillis(t0 + 2500))
            .await
            .unwrap()
            .is_tombstone()
    );
    assert_eq!(
        at(AsOf::time(std::time::SystemTime::now()))
            .await
            .unwrap()
            .value()
            .as_ref(),
        b"third"
    );
    common::clean(&b).await;
}

/// SSM's limits are enforced before anything is sent (moto does not enforce them),
/// with errors naming the limit; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_refused_naming_them() {
    let b = common::connect(common::config("limits")).await;
    assert_eq!(b.info().capability.max_value_size, Some(3072));
    let big = key("limits/big");
    let err = b
        .put(&Record::new(big.clone(), "x".repeat(3073), v(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(
        err.to_string().contains("3072") && err.to_string().contains("Standard"),
        "{err}"
    );
    // Text at the limit, and the same size of bytes that need base64.
    b.put(&Record::new(big.clone(), "x".repeat(3072), v(2)))
        .await
        .unwrap();
    b.put(&Record::new(big.clone(), vec![0xffu8; 3072], v(3)))
        .await
        .unwrap();
    assert_eq!(b.get(&big).await.unwrap().unwrap().value().len(), 3072);

    let long = key(&"n".repeat(1000));
    let err = b
        .put(&Record::new(long.clone(), "x", v(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("1011"), "{err}");
    let deep = key(&vec!["d"; 15].join("/"));
    let err = b
        .put(&Record::new(deep.clone(), "x", v(1)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("15"), "{err}");
    let mut tagged = Record::new(key("limits/tagged"), "x", v(1));
    for i in 0..20 {
        tagged = tagged.with_tag(format!("tag{i}"), "t".repeat(60));
    }
    let err = b.put(&tagged).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(err.to_string().contains("1024"), "{err}");
    for k in [&long, &deep, tagged.key()] {
        assert!(b.get(k).await.unwrap_or(None).is_none(), "{k} was written");
    }

    // The advanced tier takes twice as much, and says so to SSM.
    let adv = common::connect(common::config("limits-adv").with_tier(Tier::Advanced)).await;
    assert_eq!(adv.info().capability.max_value_size, Some(6144));
    let k = key("limits/advanced");
    adv.put(&Record::new(k.clone(), vec![7u8; 6144], v(1)))
        .await
        .unwrap();
    let described = adv
        .client()
        .describe_parameters()
        .parameter_filters(
            aws_sdk_ssm::types::ParameterStringFilter::builder()
                .key("Name")
                .values(adv.parameter_name(&k))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.parameters()[0].tier(),
        Some(&ParameterTier::Advanced)
    );
    assert!(
        adv.put(&Record::new(k.clone(), vec![7u8; 6145], v(2)))
            .await
            .is_err()
    );
    common::clean(&b).await;
    common::clean(&adv).await;
}

/// 16 distinct pseudo-random versions for `round`.
fn distinct_versions(round: u64) -> Vec<Version> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ round;
    let mut physical = HashSet::new();
    while physical.len() < 16 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        physical.insert(1_000_000 * (round + 1) + (seed >> 40) % 100_000);
    }
    physical.into_iter().map(v).collect()
}

/// 16 writers with random versions race on one key, all released at once; whatever
/// interleaving the server makes, the highest version ends current (a write that
/// displaced a newer one puts it back) and its writer is told `Applied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_end_with_the_highest_version() {
    let b = Arc::new(common::connect(common::config("race")).await);
    let k = key("race/one");
    for round in 0..4u64 {
        let versions = distinct_versions(round);
        let highest = *versions.iter().max().unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(versions.len()));
        let tasks: Vec<_> = versions
            .iter()
            .map(|&version| {
                let (b, k, barrier) = (b.clone(), k.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let r = Record::new(k, format!("written at {version}"), version);
                    let r = if version.physical_ms() % 3 == 0 {
                        Record::tombstone(r.key().clone(), version)
                    } else {
                        r
                    };
                    (version, b.put(&r).await.expect("put"))
                })
            })
            .collect();
        for t in tasks {
            let (version, outcome) = t.await.unwrap();
            if version == highest {
                assert_eq!(outcome, PutOutcome::Applied, "the highest version's write");
            }
            if let PutOutcome::Superseded { stored } = outcome {
                assert!(stored >= version, "superseded by a lower version");
            }
        }
        let stored = b.get(&k).await.unwrap().expect("stored");
        assert_eq!(stored.version(), highest, "round {round}");
    }
    common::clean(&b).await;
}

/// Listings decode names and sort by key bytes (escaped names sort differently),
/// leave out parameters that are not mux's, and page by cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_sort_by_key_and_skip_foreign_parameters() {
    for reuse in [Duration::from_secs(30), Duration::ZERO] {
        let b = common::connect(common::config("list").with_list_reuse(reuse)).await;
        let mut keys: Vec<String> = [
            "l/a_b", "l/a-b", "l/a.b", "l/aZ", "l/a b", "l/é", "l/a/b", "l/a", "l/_", "l/~", "l/A",
            "l/0", "l/%",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (i, k) in keys.iter().enumerate() {
            b.put(&Record::new(key(k), "x", v(i as u64 + 1)))
                .await
                .unwrap();
        }
        b.delete(&key("l/a"), v(100)).await.unwrap();
        // Other tools' parameters under the root path: a name mux never makes, and a
        // mux-like name without mux metadata.
        let root = &b.config().root_path;
        for foreign in [format!("{root}/l/x_zz"), format!("{root}/l/plain")] {
            b.client()
                .put_parameter()
                .name(foreign)
                .value("foreign")
                .r#type(ParameterType::String)
                .overwrite(true)
                .send()
                .await
                .unwrap();
        }
        keys.sort();
        let all = b.list_all(&Prefix::new("l").unwrap()).await.unwrap();
        let listed: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(listed, keys, "reuse {reuse:?}");
        assert!(
            all.iter()
                .any(|e| e.key.as_str() == "l/a" && e.meta.tombstone)
        );
        let mut request = ListRequest::new(Prefix::new("l").unwrap()).with_limit(2);
        let mut paged = Vec::new();
        for _ in 0..20 {
            let page = b.list(&request).await.unwrap();
            assert!(page.entries.len() <= 2);
            paged.extend(page.entries.into_iter().map(|e| e.key.as_str().to_owned()));
            match page.next_cursor {
                Some(c) => request.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(paged, keys);
        let below: Vec<String> = b
            .list_all(&Prefix::new("l/a/").unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key.as_str().to_owned())
            .collect();
        assert_eq!(below, ["l/a/b"]);
        let err = b.get(&key("l/plain")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("not a mux record"), "{err}");
        common::clean(&b).await;
        for foreign in ["l/x_zz", "l/plain"] {
            b.client()
                .delete_parameter()
                .name(format!("{root}/{foreign}"))
                .send()
                .await
                .unwrap();
        }
    }
}

/// A listing's later pages come from its first page's scan: a key written meanwhile
/// shows in the next listing, not in this one (unless reuse is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_pages_of_a_listing_reuse_its_scan() {
    for (reuse, shows) in [(Duration::from_secs(30), false), (Duration::ZERO, true)] {
        let b: SsmBackend = common::connect(common::config("reuse").with_list_reuse(reuse)).await;
        for k in ["r/a", "r/b", "r/c"] {
            b.put(&Record::new(key(k), "x", v(1))).await.unwrap();
        }
        let prefix = Prefix::new("r").unwrap();
        let first = b
            .list(&ListRequest::new(prefix.clone()).with_limit(2))
            .await
            .unwrap();
        assert_eq!(first.next_cursor, Some(key("r/b")));
        b.put(&Record::new(key("r/d"), "x", v(1))).await.unwrap();
        let rest = b
            .list(
                &ListRequest::new(prefix.clone())
                    .with_limit(10)
                    .with_cursor(first.next_cursor),
            )
            .await
            .unwrap();
        let keys: Vec<&str> = rest.entries.iter().map(|e| e.key.as_str()).collect();
        let expected: &[&str] = if shows { &["r/c", "r/d"] } else { &["r/c"] };
        assert_eq!(keys, expected, "reuse {reuse:?}");
        let fresh = b.list_all(&prefix).await.unwrap();
        assert_eq!(fresh.len(), 4, "a new listing scans again");
        common::clean(&b).await;
    }
}
