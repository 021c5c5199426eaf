//! Coordinator behaviour under injected failures and latency (virtual time).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::backend::{BackendExt, PutOutcome};
use crate::error::ErrorKind;
use crate::memory::MemoryBackend;
use crate::testing::{FaultConfig, FaultyBackend};

type Faulty = Arc<FaultyBackend<MemoryBackend>>;

fn faulty(name: &str, seed: u64) -> Faulty {
    Arc::new(FaultyBackend::new(MemoryBackend::new(name), seed))
}

fn latency(b: &Faulty, ms: u64) {
    b.set_config(FaultConfig {
        latency: Duration::from_millis(ms),
        ..Default::default()
    });
}

fn three() -> (Faulty, Faulty, Faulty) {
    (faulty("a", 1), faulty("b", 2), faulty("c", 3))
}

fn mux_over(bs: &[&Faulty], route: RouteConfig) -> Mux {
    let mut builder = Mux::builder();
    for b in bs {
        builder = builder.backend((*b).clone());
    }
    builder.default_route(route).build().unwrap()
}

fn abc(write: WriteConsistency, read: ReadPolicy) -> RouteConfig {
    RouteConfig::new("")
        .backend("a", Role::Primary)
        .backend("b", Role::Replica)
        .backend("c", Role::Replica)
        .write(write)
        .read(read)
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

async fn version_on(b: &Faulty, k: &Key) -> Option<Version> {
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
    assert_eq!(
        mux.get(&key("k")).await.unwrap_err().kind(),
        ErrorKind::ConsistencyNotMet
    );
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

// ---- resilience ----

use crate::resilience::{BreakerConfig, CircuitState, RetryPolicy};

fn resilient(bs: &[&Faulty], route: RouteConfig, resilience: ResilienceConfig) -> Mux {
    let mut builder = Mux::builder().resilience(resilience);
    for b in bs {
        builder = builder.backend((*b).clone());
    }
    builder.default_route(route).build().unwrap()
}

fn quick_retries() -> ResilienceConfig {
    ResilienceConfig {
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            max_attempts: 1000,
            max_age: Duration::from_secs(3600),
            ..Default::default()
        },
        breaker: BreakerConfig {
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            consecutive_failures: 5,
            open_for: Duration::from_millis(250),
            half_open_probes: 2,
            ..Default::default()
        },
        health_interval: Duration::ZERO,
        ..Default::default()
    }
}

async fn contents(b: &Faulty) -> Vec<(String, Version)> {
    b.get_ref()
        .list_all(&Prefix::all())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key.as_str().to_owned(), e.meta.version))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn outage_opens_the_circuit_hints_drain_and_replicas_converge() {
    let (a, b, c) = three();
    for x in [&a, &b, &c] {
        latency(x, 1);
    }
    let mux = resilient(
        &[&a, &b, &c],
        abc(WriteConsistency::Quorum, ReadPolicy::Primary),
        quick_retries(),
    );
    let mut opened_at = None;
    let mut closed_again = None;
    for i in 0..400u32 {
        if i == 100 {
            c.set_outage(true);
        }
        if i == 250 {
            c.set_outage(false);
        }
        let report = mux.put(key(&format!("k{i:03}")), format!("v{i}")).await;
        assert!(report.is_ok(), "write {i} failed: {report:?}");
        let state = mux.circuit("c").unwrap();
        if opened_at.is_none() && state == CircuitState::Open {
            opened_at = Some(i);
        }
        if opened_at.is_some()
            && closed_again.is_none()
            && i >= 250
            && state == CircuitState::Closed
        {
            closed_again = Some(i);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let opened_at = opened_at.expect("the circuit opened");
    assert!(
        (100..=105).contains(&opened_at),
        "opened after {opened_at}: 5 consecutive failures"
    );
    let closed_again = closed_again.expect("the circuit closed after recovery");
    assert!(closed_again < 300, "closed at write {closed_again}");
    mux.settle().await;
    assert_eq!(mux.hints_pending(), 0);
    assert!(mux.dead_letters().await.unwrap().is_empty());
    let (ca, cb, cc) = (contents(&a).await, contents(&b).await, contents(&c).await);
    assert_eq!(ca.len(), 400);
    assert_eq!(ca, cb);
    assert_eq!(ca, cc, "the backend that was down caught up");
    let health = mux.health_report().await.unwrap();
    let hc = health.iter().find(|h| h.backend == "c").unwrap();
    assert_eq!(hc.circuit, CircuitState::Closed);
    assert!(hc.times_opened >= 1);
    assert_eq!((hc.hints_pending, hc.dead_letters), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn while_open_the_coordinator_does_not_wait_on_the_backend() {
    let (a, b, c) = three();
    let mux = resilient(
        &[&a, &b, &c],
        abc(WriteConsistency::Quorum, ReadPolicy::Primary),
        quick_retries(),
    );
    c.set_outage(true);
    for i in 0..5 {
        mux.put(key(&format!("k{i}")), "v").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(mux.circuit("c"), Some(CircuitState::Open));
    // c now answers only after 10 s, but its circuit is open: nobody waits on it.
    c.set_outage(false);
    latency(&c, 10_000);
    let calls = c.calls();
    let t = Instant::now();
    let all = WriteOptions {
        consistency: Some(WriteConsistency::All),
        ..Default::default()
    };
    let err = mux.write(key("fast"), "v", &all).await.unwrap_err();
    assert_eq!(t.elapsed(), Duration::ZERO, "failed at once");
    let report = WriteReport::of(&err).unwrap();
    assert_eq!(report.applied_on(), ["a", "b"]);
    assert!(
        report.failed_on()[0].1.message().contains("circuit open"),
        "{err}"
    );
    mux.put(key("fast2"), "v").await.unwrap();
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(c.calls(), calls, "no call reached c");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_rejection_goes_to_the_dead_letter_queue_and_replays_after_the_fix() {
    let (a, b, c) = three();
    let mux = resilient(
        &[&a, &b, &c],
        abc(WriteConsistency::Quorum, ReadPolicy::Primary),
        quick_retries(),
    );
    c.set_config(FaultConfig {
        error_rate: 1.0,
        error_kind: ErrorKind::PermissionDenied,
        operations: vec![crate::Operation::Put],
        ..Default::default()
    });
    let k = key("rejected");
    let report = mux.put(k.clone(), "v").await.unwrap();
    assert_eq!(report.applied_on(), ["a", "b"]);
    mux.settle().await;
    let dead = mux.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].backend, "c");
    assert_eq!(dead[0].record.key(), &k);
    assert_eq!(dead[0].attempts, 1, "permanent errors are not retried");
    assert!(
        dead[0].error.contains("permission_denied"),
        "{}",
        dead[0].error
    );
    assert_eq!(c.calls(), 1, "one call, no retry");
    assert_eq!(mux.health_report().await.unwrap()[2].dead_letters, 1);

    // The cause is fixed; the replay lands it.
    c.set_config(FaultConfig::default());
    assert!(mux.replay_dead_letter(dead[0].id).await.unwrap());
    mux.settle().await;
    assert_eq!(version_on(&c, &k).await, Some(report.version));
    assert!(mux.dead_letters().await.unwrap().is_empty());
    assert!(
        !mux.replay_dead_letter(dead[0].id).await.unwrap(),
        "already replayed"
    );
}

#[tokio::test(start_paused = true)]
async fn temporary_failures_are_retried_until_they_land_or_the_limit() {
    let (a, b, c) = three();
    let mut config = quick_retries();
    config.retry.max_attempts = 4;
    config.breaker.consecutive_failures = 100;
    let mux = resilient(
        &[&a, &b, &c],
        abc(WriteConsistency::Quorum, ReadPolicy::Primary),
        config,
    );
    c.set_outage(true);
    mux.put(key("k"), "v").await.unwrap();
    mux.settle().await;
    assert_eq!(c.calls(), 4, "the first try and three retries");
    let dead = mux.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 4);
    assert!(dead[0].error.contains("injected outage"));
    assert!(mux.discard_dead_letter(dead[0].id).await.unwrap());
    assert!(mux.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_write_every_backend_refuses_leaves_no_hint() {
    let (a, b, c) = three();
    let mux = resilient(
        &[&a, &b, &c],
        abc(WriteConsistency::Quorum, ReadPolicy::Primary),
        quick_retries(),
    );
    for x in [&a, &b, &c] {
        x.set_config(FaultConfig {
            error_rate: 1.0,
            error_kind: ErrorKind::InvalidInput,
            ..Default::default()
        });
    }
    let err = mux.put(key("k"), "v").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    mux.settle().await;
    assert!(mux.dead_letters().await.unwrap().is_empty());
    assert_eq!(mux.hints_pending(), 0);
}

#[test]
fn durability_log_needs_a_durable_log() {
    let e = Mux::builder()
        .backend(Arc::new(MemoryBackend::new("m")))
        .default_route(RouteConfig::new("").backend("m", Role::Primary))
        .resilience(ResilienceConfig {
            durability: Durability::Log,
            ..Default::default()
        })
        .build()
        .unwrap_err();
    assert!(
        e.message()
            .contains("durability = \"log\" needs a durable intent log"),
        "{e}"
    );
}

#[test]
fn resilience_from_toml() {
    let config = MuxConfig::from_toml(
        r#"
        [default]
        backends = [{ backend = "m" }]
        [resilience]
        durability = "log"
        handoff_concurrency = 8
        health_interval = 1000
        retry = { initial_backoff = 20, max_backoff = 2000, multiplier = 3.0, max_attempts = 5, max_age = 60000 }
        call_timeout = 500
        breaker = { consecutive_failures = 3, open_for = 1500 }
        bulkhead = { max_in_flight = 16, max_queued = 32 }
        "#,
    )
    .unwrap();
    let r = config.resilience;
    assert_eq!(r.durability, Durability::Log);
    assert_eq!(r.call_timeout, Duration::from_millis(500));
    assert_eq!(r.retry.max_attempts, 5);
    assert_eq!(r.breaker.consecutive_failures, 3);
    assert_eq!(
        r.breaker.window,
        BreakerConfig::default().window,
        "unset fields keep their defaults"
    );
    assert_eq!(r.bulkhead.max_in_flight, 16);
    assert_eq!(r.health_interval, Duration::from_secs(1));
    let e =
        MuxConfig::from_toml("[default]\nbackends = []\n[resilience]\ndurability = \"sometimes\"")
            .unwrap_err();
    assert!(e.message().contains("sometimes"), "{e}");
}
