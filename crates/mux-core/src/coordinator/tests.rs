//! Coordinator behaviour under injected failures and latency (virtual time).
//!
//! Longer than 600 lines on purpose: the routing, consistency and read-path cases share
//! these fixtures (resilience cases live in `resilience_tests.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::backend::{BackendExt, PutOutcome};
use crate::error::ErrorKind;
use crate::memory::MemoryBackend;
use crate::testing::{FaultConfig, FaultyBackend};

pub(super) type Faulty = Arc<FaultyBackend<MemoryBackend>>;

pub(super) fn faulty(name: &str, seed: u64) -> Faulty {
    Arc::new(FaultyBackend::new(MemoryBackend::new(name), seed))
}

pub(super) fn latency(b: &Faulty, ms: u64) {
    b.set_config(FaultConfig {
        latency: Duration::from_millis(ms),
        ..Default::default()
    });
}

pub(super) fn three() -> (Faulty, Faulty, Faulty) {
    (faulty("a", 1), faulty("b", 2), faulty("c", 3))
}

pub(super) fn mux_over(bs: &[&Faulty], route: RouteConfig) -> Mux {
    let mut builder = Mux::builder();
    for b in bs {
        builder = builder.backend((*b).clone());
    }
    builder.default_route(route).build().unwrap()
}

pub(super) fn abc(write: WriteConsistency, read: ReadPolicy) -> RouteConfig {
    RouteConfig::new("")
        .backend("a", Role::Primary)
        .backend("b", Role::Replica)
        .backend("c", Role::Replica)
        .write(write)
        .read(read)
}

pub(super) fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

pub(super) async fn version_on(b: &Faulty, k: &Key) -> Option<Version> {
    b.get_ref().get(k).await.unwrap().map(|r| r.version())
}

#[tokio::test(start_paused = true)]
async fn all_fails_when_one_backend_fails_and_names_who_applied() {
    let (a, b, c) = three();
    c.set_outage(true);
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::All, ReadPolicy::Primary),
    );
    let err = mux.put(key("k"), "v").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConsistencyNotMet);
    assert!(err.is_temporary());
    let report = WriteReport::of(&err).expect("the report travels with the error");
    assert_eq!(report.applied_on(), ["a", "b"]);
    assert_eq!(report.failed_on()[0].0, "c");
    assert!(err.message().contains("applied on [a, b]"), "{err}");
    assert!(err.message().contains("not rolled back"), "{err}");
    // Not rolled back: the backends that applied it keep it.
    assert!(version_on(&a, &key("k")).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn quorum_survives_one_down_but_not_two() {
    let (a, b, c) = three();
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::Quorum, ReadPolicy::Primary),
    );
    b.set_outage(true);
    let report = mux.put(key("k1"), "v").await.unwrap();
    assert_eq!(report.applied_on(), ["a", "c"]);
    c.set_outage(true);
    let err = mux.put(key("k2"), "v").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConsistencyNotMet);
    assert_eq!(WriteReport::of(&err).unwrap().applied_on(), ["a"]);
    // A per-operation override beats the route default.
    let opts = WriteOptions {
        consistency: Some(WriteConsistency::One),
        ..Default::default()
    };
    mux.write(key("k3"), "v", &opts).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn at_least_counts_voters() {
    let (a, b, c) = three();
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::AtLeast(3), ReadPolicy::Primary),
    );
    a.set_outage(true);
    assert!(mux.put(key("k"), "v").await.is_err());
    let opts = WriteOptions {
        consistency: Some(WriteConsistency::AtLeast(2)),
        ..Default::default()
    };
    mux.write(key("k"), "v", &opts).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_returns_after_the_fastest() {
    let (a, b, c) = three();
    latency(&a, 100);
    latency(&b, 5);
    latency(&c, 100);
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::One, ReadPolicy::Primary),
    );
    let t = Instant::now();
    let report = mux.put(key("k"), "v").await.unwrap();
    assert_eq!(t.elapsed(), Duration::from_millis(5));
    assert_eq!(report.applied_on(), ["b"]);
    assert_eq!(report.pending_on(), ["a", "c"]);
    mux.settle().await;
    assert_eq!(t.elapsed(), Duration::from_millis(100));
    assert!(version_on(&a, &key("k")).await.is_some());
    assert!(version_on(&c, &key("k")).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn primary_returns_after_the_primary_and_the_slow_replica_catches_up() {
    let (a, b, c) = three();
    latency(&a, 2);
    latency(&b, 300);
    latency(&c, 1);
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::Primary, ReadPolicy::Primary),
    );
    let t = Instant::now();
    let report = mux.put(key("k"), "v").await.unwrap();
    // c (1 ms) was faster but is not the primary: the ack waits for a (2 ms) only.
    assert_eq!(t.elapsed(), Duration::from_millis(2));
    assert_eq!(report.pending_on(), ["b"]);
    assert_eq!(
        version_on(&b, &key("k")).await,
        None,
        "the slow replica is still working"
    );
    assert_eq!(mux.stats().background_pending, 1);
    mux.settle().await;
    assert_eq!(version_on(&b, &key("k")).await, Some(report.version));
    assert_eq!(mux.stats().background_pending, 0);
}

#[tokio::test(start_paused = true)]
async fn async_replicas_never_count() {
    let (a, b, _) = three();
    latency(&b, 50);
    let mux = mux_over(
        &[&a, &b],
        RouteConfig::new("")
            .backend("a", Role::Primary)
            .backend("b", Role::AsyncReplica)
            .write(WriteConsistency::All),
    );
    let t = Instant::now();
    mux.put(key("k"), "v").await.unwrap();
    assert_eq!(t.elapsed(), Duration::ZERO);
    mux.settle().await;
    assert!(b.get_ref().get(&key("k")).await.unwrap().is_some());
    b.set_outage(true);
    mux.put(key("k2"), "v").await.unwrap();
    mux.settle().await;
    assert_eq!(mux.stats().background_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn hedged_read_returns_within_delay_plus_the_fast_backend() {
    let (a, b, c) = three();
    let mux = mux_over(
        &[&a, &b, &c],
        abc(
            WriteConsistency::All,
            ReadPolicy::Hedged {
                delay: Some(Duration::from_millis(10)),
            },
        ),
    );
    mux.put(key("k"), "v").await.unwrap();
    latency(&a, 50);
    latency(&b, 3);
    let t = Instant::now();
    let got = mux.get(&key("k")).await.unwrap().unwrap();
    assert_eq!(got.value(), "v".as_bytes());
    assert_eq!(
        t.elapsed(),
        Duration::from_millis(13),
        "hedge delay 10 ms + fast backend 3 ms"
    );
    assert_eq!(mux.stats().hedged_requests, 1);
    // A fast primary needs no hedge.
    latency(&a, 1);
    let t = Instant::now();
    mux.get(&key("k")).await.unwrap();
    assert_eq!(t.elapsed(), Duration::from_millis(1));
    assert_eq!(mux.stats().hedged_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn hedged_read_without_a_delay_uses_the_observed_p95() {
    let (a, b, c) = three();
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::All, ReadPolicy::Hedged { delay: None }),
    );
    mux.put(key("k"), "v").await.unwrap();
    latency(&a, 4);
    for _ in 0..40 {
        mux.get(&key("k")).await.unwrap();
    }
    assert_eq!(
        mux.stats().hedged_requests,
        0,
        "4 ms answers under the 10 ms default never hedge"
    );
    latency(&a, 60);
    let t = Instant::now();
    mux.get(&key("k")).await.unwrap();
    assert_eq!(
        t.elapsed(),
        Duration::from_millis(4),
        "hedged after the p95 (4 ms); b answers at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_primary_hedges_at_once_and_first_healthy_fails_over() {
    let (a, b, c) = three();
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::All, ReadPolicy::FirstHealthy),
    );
    mux.put(key("k"), "v").await.unwrap();
    a.set_outage(true);
    assert!(mux.get(&key("k")).await.unwrap().is_some());
    let hedged = ReadOptions {
        policy: Some(ReadPolicy::Hedged {
            delay: Some(Duration::from_secs(1)),
        }),
        ..Default::default()
    };
    let t = Instant::now();
    assert!(mux.get_with(&key("k"), &hedged).await.unwrap().is_some());
    assert_eq!(t.elapsed(), Duration::ZERO);
    b.set_outage(true);
    c.set_outage(true);
    let err = mux.get(&key("k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.message()
            .contains("no backend of the default route answered"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn fastest_takes_the_first_answer() {
    let (a, b, c) = three();
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::All, ReadPolicy::Fastest),
    );
    mux.put(key("k"), "v").await.unwrap();
    latency(&a, 30);
    latency(&b, 20);
    latency(&c, 7);
    let t = Instant::now();
    mux.get(&key("k")).await.unwrap();
    assert_eq!(t.elapsed(), Duration::from_millis(7));
}

#[tokio::test(start_paused = true)]
async fn quorum_read_returns_the_highest_version_and_repairs_stale_backends() {
    let (a, b, c) = three();
    let mux = mux_over(&[&a, &b, &c], abc(WriteConsistency::All, ReadPolicy::All));
    let k = key("k");
    let old = mux.put(k.clone(), "old").await.unwrap().version;
    // b alone gets a newer write; c loses the key entirely.
    let newer = mux.clock().now();
    b.get_ref()
        .put(&Record::new(k.clone(), "new", newer))
        .await
        .unwrap();
    c.get_ref().purge(&k, newer).await.unwrap();
    let got = mux.get(&k).await.unwrap().unwrap();
    assert_eq!(got.version(), newer);
    assert_eq!(got.value(), "new".as_bytes());
    mux.settle().await;
    assert_eq!(mux.stats().read_repairs, 2);
    assert_eq!(version_on(&a, &k).await, Some(newer));
    assert_eq!(version_on(&c, &k).await, Some(newer));
    assert!(old < newer);
    // A tombstone is repaired like any record.
    let gone = mux.clock().now();
    a.get_ref().delete(&k, gone).await.unwrap();
    let quorum = ReadOptions {
        policy: Some(ReadPolicy::Quorum),
        ..Default::default()
    };
    assert!(mux.get_with(&k, &quorum).await.unwrap().is_none());
    mux.settle().await;
    let highest = [
        version_on(&a, &k).await,
        version_on(&b, &k).await,
        version_on(&c, &k).await,
    ];
    assert!(
        highest.iter().filter(|v| **v == Some(gone)).count() >= 2,
        "{highest:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn quorum_read_fails_without_a_majority() {
    let (a, b, c) = three();
    let mux = mux_over(
        &[&a, &b, &c],
        abc(WriteConsistency::All, ReadPolicy::Quorum),
    );
    mux.put(key("k"), "v").await.unwrap();
    b.set_outage(true);
    assert!(mux.get(&key("k")).await.unwrap().is_some());
    c.set_outage(true);
    let err = mux.get(&key("k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConsistencyNotMet);
    // Every cause is an outage, so the read may succeed later: temporary, as for writes.
    assert!(err.is_temporary(), "{err}");
}

fn routed() -> (Mux, [Arc<MemoryBackend>; 4]) {
    let kv = Arc::new(MemoryBackend::new("kv"));
    let hier = Arc::new(MemoryBackend::new("hier"));
    let vault = Arc::new(MemoryBackend::new("vault"));
    let main = Arc::new(MemoryBackend::new("main"));
    let mux = Mux::builder()
        .backend(kv.clone())
        .backend(hier.clone())
        .backend(vault.clone())
        .backend(main.clone())
        .route(RouteConfig::new("tenantconfig/").backend("kv", Role::Primary))
        .route(RouteConfig::new("paramconfig/").backend("hier", Role::Primary))
        .route(
            RouteConfig::new("paramconfig/eu/")
                .backend("hier", Role::Primary)
                .backend("main", Role::Replica)
                .write(WriteConsistency::All),
        )
        .route(
            RouteConfig::new("tenantconfig/")
                .tag("class", "pii")
                .backend("vault", Role::Primary),
        )
        .route(
            RouteConfig::new("tenantconfig/")
                .tenant("acme")
                .backend("main", Role::Primary),
        )
        .default_route(RouteConfig::new("").backend("main", Role::Primary))
        .build()
        .unwrap();
    (mux, [kv, hier, vault, main])
}

#[tokio::test]
async fn routes_by_longest_prefix_tags_and_tenant() {
    let (mux, [kv, hier, vault, main]) = routed();
    let none = ReadOptions::default();
    assert_eq!(
        mux.route_backends(&key("tenantconfig/x/limits"), &none),
        [Arc::from("kv")]
    );
    assert_eq!(
        mux.route_backends(&key("paramconfig/us/a"), &none),
        [Arc::from("hier")]
    );
    assert_eq!(
        mux.route_backends(&key("paramconfig/eu/a"), &none),
        [Arc::from("hier"), Arc::from("main")]
    );
    assert_eq!(
        mux.route_backends(&key("paramconfigx/a"), &none),
        [Arc::from("main")],
        "whole segments only"
    );
    assert_eq!(
        mux.route_backends(&key("other"), &none),
        [Arc::from("main")]
    );
    let acme = ReadOptions {
        tenant: Some(Tenant::new("acme").unwrap()),
        ..Default::default()
    };
    assert_eq!(
        mux.route_backends(&key("tenantconfig/acme/x"), &acme),
        [Arc::from("main")]
    );

    // A tagged record goes to the tag's route; a read names the tag to find it.
    let pii = WriteOptions {
        tags: [("class".to_owned(), "pii".to_owned())].into(),
        ..Default::default()
    };
    mux.write(key("tenantconfig/x/ssn"), "123", &pii)
        .await
        .unwrap();
    assert!(
        vault
            .get(&key("tenantconfig/x/ssn"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(kv.get(&key("tenantconfig/x/ssn")).await.unwrap().is_none());
    let tagged = ReadOptions {
        tags: [("class".to_owned(), "pii".to_owned())].into(),
        ..Default::default()
    };
    assert!(
        mux.get_with(&key("tenantconfig/x/ssn"), &tagged)
            .await
            .unwrap()
            .is_some()
    );

    mux.put(key("tenantconfig/x/limits"), "1").await.unwrap();
    mux.put(key("paramconfig/eu/a"), "2").await.unwrap();
    assert!(
        kv.get(&key("tenantconfig/x/limits"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(hier.get(&key("paramconfig/eu/a")).await.unwrap().is_some());
    assert!(main.get(&key("paramconfig/eu/a")).await.unwrap().is_some());
}

#[tokio::test]
async fn list_merges_routes_dedupes_and_hides_tombstones() {
    let (mux, [kv, _hier, vault, main]) = routed();
    mux.put(key("tenantconfig/a"), "1").await.unwrap();
    mux.put(key("tenantconfig/c"), "3").await.unwrap();
    let pii = WriteOptions {
        tags: [("class".to_owned(), "pii".to_owned())].into(),
        ..Default::default()
    };
    mux.write(key("tenantconfig/b"), "2", &pii).await.unwrap();
    mux.put(key("paramconfig/eu/x"), "4").await.unwrap();
    mux.put(key("zzz"), "5").await.unwrap();
    mux.delete(&key("tenantconfig/c"), &WriteOptions::default())
        .await
        .unwrap();
    // A stray, older copy on another backend does not resurrect or duplicate it.
    main.put(&Record::new(
        key("tenantconfig/a"),
        "stale",
        Version::new(1, 0, 0),
    ))
    .await
    .unwrap();

    let page = mux
        .list(
            &ListRequest::new(Prefix::new("tenantconfig").unwrap()),
            &ReadOptions::default(),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["tenantconfig/a", "tenantconfig/b"]);
    assert_eq!(page.entries[0].size, 1, "the newest copy wins");
    assert!(vault.len() == 1 && kv.len() == 2);

    // Everything, in pages of one.
    let mut req = ListRequest::new(Prefix::all()).with_limit(1);
    let mut all = Vec::new();
    loop {
        let page = mux.list(&req, &ReadOptions::default()).await.unwrap();
        all.extend(page.entries.into_iter().map(|e| e.key.as_str().to_owned()));
        match page.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        all,
        [
            "paramconfig/eu/x",
            "tenantconfig/a",
            "tenantconfig/b",
            "zzz"
        ]
    );
}

fn err_of(builder: MuxBuilder) -> String {
    builder.build().unwrap_err().to_string()
}

#[test]
fn validation_names_every_problem() {
    let m = || Arc::new(MemoryBackend::new("m")) as Arc<dyn Backend>;
    let nolist = || {
        Arc::new(MemoryBackend::with_info(crate::BackendInfo::new(
            "blob",
            "memory",
            crate::Capability::default(),
        ))) as Arc<dyn Backend>
    };
    let base = || {
        Mux::builder()
            .backend(m())
            .default_route(RouteConfig::new("").backend("m", Role::Primary))
    };
    let e = err_of(base().route(RouteConfig::new("a/").backend("nope", Role::Primary)));
    assert!(
        e.contains("route \"a/\" names unknown backend \"nope\" (known: \"m\")"),
        "{e}"
    );
    let e = err_of(
        base()
            .route(RouteConfig::new("a/").backend("m", Role::Primary))
            .route(RouteConfig::new("a/").backend("m", Role::Primary)),
    );
    assert!(e.contains("route \"a/\" is defined twice"), "{e}");
    let e = err_of(
        base().route(
            RouteConfig::new("a/")
                .backend("m", Role::Primary)
                .write(WriteConsistency::AtLeast(2)),
        ),
    );
    assert!(
        e.contains("at_least:2 needs 2 voters but the route has 1"),
        "{e}"
    );
    let e = err_of(base().route(RouteConfig::new("a/")));
    assert!(e.contains("route \"a/\" has no backend"), "{e}");
    let e = err_of(
        base()
            .backend(nolist())
            .route(RouteConfig::new("a/").backend("blob", Role::Primary)),
    );
    assert!(
        e.contains("is listed but backend \"blob\" cannot list"),
        "{e}"
    );
    base()
        .backend(nolist())
        .route(
            RouteConfig::new("a/")
                .backend("blob", Role::Primary)
                .listed(false),
        )
        .build()
        .unwrap();
    let e = err_of(Mux::builder().backend(m()));
    assert!(e.contains("no default route"), "{e}");
    let e = err_of(base().route(RouteConfig::new("a//b").backend("m", Role::Primary)));
    assert!(e.contains("segment 2 is empty"), "{e}");
    let e = err_of(base().route(RouteConfig::new("a/").backend("m", Role::AsyncReplica)));
    assert!(e.contains("only async replicas"), "{e}");
    // Several problems at once are all reported.
    let e = err_of(
        base()
            .route(RouteConfig::new("x/").backend("q", Role::Primary))
            .route(RouteConfig::new("y/")),
    );
    assert!(
        e.contains("\"q\"") && e.contains("route \"y/\" has no backend"),
        "{e}"
    );
}

#[test]
fn config_from_toml() {
    let config = MuxConfig::from_toml(
        r#"
        node_id = 7
        [[routes]]
        prefix = "tenantconfig/"
        tenant = "acme"
        tags = { class = "pii" }
        backends = [{ backend = "m", role = "primary" }, { backend = "n", role = "async_replica" }]
        write = "at_least:1"
        read = "hedged:5ms"
        [default]
        backends = [{ backend = "m" }]
        "#,
    )
    .unwrap();
    assert_eq!(config.node_id, 7);
    let r = &config.routes[0];
    assert_eq!(r.write, WriteConsistency::AtLeast(1));
    assert_eq!(
        r.read,
        ReadPolicy::Hedged {
            delay: Some(Duration::from_millis(5))
        }
    );
    assert_eq!(r.backends[1].role, Role::AsyncReplica);
    assert_eq!(config.default.write, WriteConsistency::Quorum);
    let backends: Vec<Arc<dyn Backend>> = vec![
        Arc::new(MemoryBackend::new("m")),
        Arc::new(MemoryBackend::new("n")),
    ];
    Mux::from_config(config, backends).unwrap();

    let e = MuxConfig::from_toml("[default]\nbackends = []\nwrite = \"most\"").unwrap_err();
    assert!(
        e.message().contains("unknown write consistency \"most\""),
        "{e}"
    );
    let e = MuxConfig::from_toml("[default]\nbackends = []\nspeed = 1").unwrap_err();
    assert!(e.message().contains("speed"), "{e}");
}

#[tokio::test]
async fn oversized_values_are_rejected_before_any_write() {
    let (mux, [kv, ..]) = routed();
    let big = vec![0u8; MemoryBackend::DEFAULT_MAX_VALUE_SIZE + 1];
    let err = mux.put(key("tenantconfig/big"), big).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(kv.is_empty());
}

#[tokio::test]
async fn mux_is_a_backend() {
    let (mux, _) = routed();
    let k = key("tenantconfig/q");
    let v2 = Version::new(10, 0, 1);
    assert_eq!(
        mux.as_backend()
            .put(&Record::new(k.clone(), "b", v2))
            .await
            .unwrap(),
        PutOutcome::Applied
    );
    assert_eq!(
        mux.as_backend()
            .put(&Record::new(k.clone(), "a", Version::new(9, 0, 1)))
            .await
            .unwrap(),
        PutOutcome::Superseded { stored: v2 }
    );
    assert_eq!(
        mux.as_backend()
            .get_live(&k)
            .await
            .unwrap()
            .unwrap()
            .value(),
        "b".as_bytes()
    );
    assert!(
        mux.clock().now() > v2,
        "the clock observes caller-supplied versions"
    );
    assert!(mux.as_backend().info().capability.list);
}

#[tokio::test]
async fn a_successor_continues_its_predecessors_clock() {
    let store = Arc::new(MemoryBackend::new("a"));
    let build = |old: Option<&Mux>| {
        let mut b = Mux::builder()
            .backend(store.clone())
            .default_route(RouteConfig::new("").backend("a", Role::Primary));
        if let Some(old) = old {
            b = b.succeeding(old);
        }
        b.build().unwrap()
    };
    let first = build(None);
    let k = key("k");
    for i in 0..50 {
        first.put(k.clone(), format!("v{i}")).await.unwrap();
    }
    // Reloaded within the same millisecond as those writes (or not): the next write
    // is newer than every one of them.
    let second = build(Some(&first));
    let report = second.put(k.clone(), "after the reload").await.unwrap();
    assert_eq!(report.put_outcome(), PutOutcome::Applied, "{report}");
    assert_eq!(
        second.get(&k).await.unwrap().unwrap().value(),
        "after the reload".as_bytes()
    );
}
