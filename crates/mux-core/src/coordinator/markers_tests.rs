//! Store markers on memory stores: first marking, a store wiped, one restored from an
//! old copy, one added to a marked pair; what reads, listings and health do meanwhile.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, BackendExt};
use crate::coordinator::{
    Mux, ReadOptions, ReadPolicy, ResilienceConfig, Role, RouteConfig, Staleness, WriteConsistency,
};
use crate::error::ErrorKind;
use crate::key::{Key, Prefix};
use crate::memory::MemoryBackend;
use crate::record::Record;
use crate::version::Version;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// A `Mux` with markers on (the monitor off: the tests call `check_markers`) over
/// `stores`, all voters of the default route, `a` the primary.
fn mux(stores: &[&Arc<MemoryBackend>]) -> Mux {
    let mut route = RouteConfig::new("").write(WriteConsistency::All);
    let mut builder = Mux::builder().resilience(ResilienceConfig {
        markers: true,
        health_interval: Duration::ZERO,
        ..ResilienceConfig::default()
    });
    for (i, s) in stores.iter().enumerate() {
        let role = if i == 0 { Role::Primary } else { Role::Replica };
        route = route.backend(&*s.info().name, role);
        builder = builder.backend((*s).clone());
    }
    builder
        .default_route(route.read(ReadPolicy::Primary))
        .build()
        .unwrap()
}

/// Removes every record of `b` (a store restarted without persistence).
async fn wipe(b: &MemoryBackend) {
    for e in b.list_all(&Prefix::all()).await.unwrap() {
        b.purge(&e.key, e.meta.version).await.unwrap();
    }
    assert!(b.is_empty());
}

fn stale(m: &Mux) -> Vec<(String, Staleness)> {
    m.stale_backends()
}

#[tokio::test]
async fn first_check_marks_every_store_and_flags_none() {
    let (a, b) = (
        Arc::new(MemoryBackend::new("a")),
        Arc::new(MemoryBackend::new("b")),
    );
    let m = mux(&[&a, &b]);
    m.check_markers().await;
    assert!(stale(&m).is_empty());
    for s in [&a, &b] {
        let held: Vec<String> = s
            .list_all(&Prefix::all())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key.to_string())
            .collect();
        assert_eq!(held, ["_mux/markers/a", "_mux/markers/b"]);
    }
    m.check_markers().await;
    assert!(stale(&m).is_empty(), "a second check finds both whole");
    // Listings leave mux's namespace out; applications cannot write there.
    m.put(key("app/k"), "v").await.unwrap();
    let listed = m.as_backend().list_all(&Prefix::all()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let err = m.put(key("_mux/markers/a"), "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("mux's own namespace"), "{err}");
}

#[tokio::test]
async fn a_wiped_store_is_flagged_left_out_of_reads_and_put_back_once_restored() {
    let (a, b) = (
        Arc::new(MemoryBackend::new("a")),
        Arc::new(MemoryBackend::new("b")),
    );
    let m = mux(&[&a, &b]);
    m.check_markers().await;
    for i in 0..10 {
        m.put(key(&format!("app/k{i}")), "v").await.unwrap();
    }
    wipe(&a).await;
    m.check_markers().await;
    assert_eq!(stale(&m), [("a".to_owned(), Staleness::Empty)]);
    let health = m.health_report().await.unwrap();
    assert_eq!(health[0].stale, Some(Staleness::Empty));
    assert_eq!(health[1].stale, None);
    // Every policy reads from b while a is stale; a still receives writes.
    for policy in [
        ReadPolicy::Primary,
        ReadPolicy::FirstHealthy,
        ReadPolicy::Fastest,
        ReadPolicy::Quorum,
        ReadPolicy::All,
        ReadPolicy::Hedged { delay: None },
    ] {
        let options = ReadOptions {
            policy: Some(policy),
            ..ReadOptions::default()
        };
        let got = m.get_with(&key("app/k3"), &options).await.unwrap();
        assert!(got.is_some(), "{policy} read the stale store");
    }
    assert_eq!(
        m.as_backend().list_all(&Prefix::all()).await.unwrap().len(),
        10
    );
    m.put(key("app/new"), "v").await.unwrap();
    assert!(a.get(&key("app/new")).await.unwrap().is_some());
    // Still stale on the next check (nothing refilled it), whole after mark_restored.
    m.check_markers().await;
    assert_eq!(stale(&m).len(), 1);
    m.mark_restored("a").await.unwrap();
    assert!(stale(&m).is_empty());
    m.check_markers().await;
    assert!(stale(&m).is_empty());
    // Another Mux (a restarted node) over the same stores learns from the peers.
    wipe(&a).await;
    let fresh = mux(&[&a, &b]);
    fresh.check_markers().await;
    assert_eq!(stale(&fresh), [("a".to_owned(), Staleness::Empty)]);
}

#[tokio::test]
async fn a_store_gone_back_in_time_is_flagged_old() {
    let (a, b) = (
        Arc::new(MemoryBackend::new("a")),
        Arc::new(MemoryBackend::new("b")),
    );
    let m = mux(&[&a, &b]);
    m.check_markers().await;
    let marker = key("_mux/markers/b");
    let now = b.get(&marker).await.unwrap().unwrap().version();
    // "Restore" b from a copy taken a minute before its marker was written.
    b.purge(&marker, now).await.unwrap();
    let old = Version::new(now.physical_ms() - 60_000, 0, 1);
    b.put(&Record::new(marker, "old", old)).await.unwrap();
    m.check_markers().await;
    assert_eq!(
        stale(&m),
        [("b".to_owned(), Staleness::Old { behind_ms: 60_000 })]
    );
}

#[tokio::test]
async fn a_store_added_to_a_marked_pair_is_new_and_one_alone_is_not() {
    let (a, b, c) = (
        Arc::new(MemoryBackend::new("a")),
        Arc::new(MemoryBackend::new("b")),
        Arc::new(MemoryBackend::new("c")),
    );
    mux(&[&a, &b]).check_markers().await;
    let m = mux(&[&a, &b, &c]);
    m.check_markers().await;
    assert!(
        stale(&m).is_empty(),
        "one sighting could be a first start under way"
    );
    m.check_markers().await;
    assert_eq!(stale(&m), [("c".to_owned(), Staleness::New)]);
    // A quorum read of three with one stale asks the other two.
    m.put(key("app/k"), "v").await.unwrap();
    let options = ReadOptions {
        policy: Some(ReadPolicy::Quorum),
        ..ReadOptions::default()
    };
    assert!(m.get_with(&key("app/k"), &options).await.unwrap().is_some());
    // A single store that lost its marker has no peer to say so, unless this Mux saw it.
    let solo = Arc::new(MemoryBackend::new("solo"));
    let alone = mux(&[&solo]);
    alone.check_markers().await;
    assert!(stale(&alone).is_empty());
    wipe(&solo).await;
    alone.check_markers().await;
    assert_eq!(stale(&alone), [("solo".to_owned(), Staleness::Empty)]);
    // Its only store stays readable: there is nothing better.
    assert!(alone.get(&key("x")).await.unwrap().is_none());
}
