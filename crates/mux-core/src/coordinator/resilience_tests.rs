//! Coordinator resilience under injected outages and failures (virtual time): circuits,
//! hinted handoff, dead letters, retries, and the resilience settings.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::tests::{Faulty, abc, key, latency, three, version_on};
use super::*;
use crate::backend::BackendExt;
use crate::error::ErrorKind;
use crate::memory::MemoryBackend;
use crate::testing::FaultConfig;

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

/// Reloads during an outage: each successor takes over what its predecessor owes, so
/// every hint is delivered once however many reloads there were, and the circuit of
/// the store that is down stays open across them.
#[tokio::test(start_paused = true)]
async fn reloads_during_an_outage_deliver_each_hint_once() {
    use crate::resilience::{IntentLog, MemoryIntentLog};
    let (a, b, c) = three();
    let log: Arc<dyn IntentLog> = Arc::new(MemoryIntentLog::new());
    let build = |old: Option<&Mux>| {
        let mut builder = Mux::builder()
            .resilience(quick_retries())
            .intent_log(log.clone());
        for x in [&a, &b, &c] {
            builder = builder.backend(x.clone());
        }
        if let Some(old) = old {
            builder = builder.succeeding(old);
        }
        builder
            .default_route(abc(WriteConsistency::Quorum, ReadPolicy::Primary))
            .build()
            .unwrap()
    };
    let first = build(None);
    first.recover().await.unwrap();
    c.set_outage(true);
    for i in 0..20 {
        first.put(key(&format!("k{i:02}")), "v").await.unwrap();
    }
    // Each write's attempt on c fails after the acknowledgement and becomes a hint.
    for _ in 0..100 {
        if first.hints_pending() == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(first.hints_pending(), 20);
    assert_ne!(first.circuit("c"), Some(CircuitState::Closed));
    let mut muxes = vec![first];
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let next = build(muxes.last());
        assert_eq!(
            next.recover().await.unwrap(),
            0,
            "the log was replayed already"
        );
        assert_eq!(
            next.hints_pending(),
            20,
            "the predecessor's deliveries count"
        );
        assert_ne!(next.circuit("c"), Some(CircuitState::Closed));
        muxes.push(next);
    }
    let before = c.calls();
    c.set_outage(false);
    for m in &muxes {
        m.settle().await;
    }
    assert_eq!(c.calls() - before, 20, "each hint was delivered once");
    assert_eq!(contents(&c).await, contents(&a).await);
    let last = muxes.last().unwrap();
    assert_eq!(last.hints_pending(), 0);
    assert!(last.dead_letters().await.unwrap().is_empty());
    assert!(log.pending().await.unwrap().is_empty());
}

/// A quorum read that has its answers drops the slower calls; when one of them was a
/// half-open circuit's probe, its slot must come back, or the circuit waits forever
/// for probes that will never report and refuses every call (hints never drain).
#[tokio::test(start_paused = true)]
async fn probes_cancelled_by_quorum_reads_do_not_wedge_the_circuit() {
    let (a, b, c) = three();
    // What c misses is dead-lettered at once: no hint delivery takes a probe slot.
    let mut resilience = quick_retries();
    resilience.retry.max_attempts = 1;
    let mux = resilient(
        &[&a, &b, &c],
        abc(WriteConsistency::Quorum, ReadPolicy::Quorum),
        resilience,
    );
    let k = key("k");
    mux.put(k.clone(), "v").await.unwrap();
    c.set_outage(true);
    for i in 0..10 {
        mux.put(key(&format!("k{i}")), "v").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(mux.circuit("c"), Some(CircuitState::Open));
    c.set_outage(false);
    // a answers after 50 ms, so every call of a read gets started; c's (a probe) is
    // still running when a and b have answered, and the read drops it.
    latency(&a, 50);
    latency(&c, 100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..4 {
        assert!(mux.get(&k).await.unwrap().is_some());
    }
    latency(&a, 0);
    latency(&c, 0);
    let all = WriteOptions {
        consistency: Some(WriteConsistency::All),
        ..Default::default()
    };
    let report = mux.write(key("after"), "v", &all).await;
    assert!(report.is_ok(), "c refuses every call: {report:?}");
    // A second successful probe closes the circuit (two probes).
    mux.write(key("after2"), "v", &all).await.unwrap();
    mux.settle().await;
    assert_eq!(mux.circuit("c"), Some(CircuitState::Closed));
    assert_eq!(
        version_on(&c, &key("after")).await,
        version_on(&a, &key("after")).await
    );
}
