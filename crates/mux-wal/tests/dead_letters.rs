//! The coordinator's dead-letter and replay paths with the segment log underneath.

use std::sync::Arc;
use std::time::Duration;

use mux_core::resilience::{BreakerConfig, RetryPolicy};
use mux_core::testing::{FaultConfig, FaultyBackend};
use mux_core::{
    Backend, Durability, ErrorKind, IntentLog, Key, MemoryBackend, Mux, Operation, ReadPolicy,
    ResilienceConfig, Role, RouteConfig, WriteConsistency,
};
use mux_wal::SegmentIntentLog;

type Faulty = Arc<FaultyBackend<MemoryBackend>>;

fn store(name: &str) -> Faulty {
    Arc::new(FaultyBackend::new(MemoryBackend::new(name), 1))
}

fn mux(stores: &[&Faulty], log: Arc<SegmentIntentLog>, max_attempts: u32) -> Mux {
    let mut b = Mux::builder().intent_log(log).resilience(ResilienceConfig {
        durability: Durability::Log,
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_attempts,
            ..Default::default()
        },
        breaker: BreakerConfig {
            consecutive_failures: 1000,
            min_calls: 1000,
            ..Default::default()
        },
        health_interval: Duration::ZERO,
        ..Default::default()
    });
    for s in stores {
        b = b.backend((*s).clone() as Arc<dyn Backend>);
    }
    b.default_route(
        RouteConfig::new("")
            .backend("a", Role::Primary)
            .backend("b", Role::Replica)
            .backend("c", Role::Replica)
            .write(WriteConsistency::Quorum)
            .read(ReadPolicy::Primary),
    )
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_write_is_dead_lettered_on_disk_and_replays_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (store("a"), store("b"), store("c"));
    c.set_config(FaultConfig {
        error_rate: 1.0,
        error_kind: ErrorKind::PermissionDenied,
        operations: vec![Operation::Put],
        ..Default::default()
    });
    let log = Arc::new(SegmentIntentLog::open(dir.path()).unwrap());
    let m = mux(&[&a, &b, &c], log.clone(), 5);
    let k = Key::new("dlq/k").unwrap();
    let report = m.put(k.clone(), "v").await.unwrap();
    m.settle().await;
    let dead = m.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].backend, "c");
    assert_eq!(dead[0].record.key(), &k);
    assert!(log.pending().await.unwrap().is_empty(), "moved, not owed");

    c.set_config(FaultConfig::default());
    assert!(m.replay_dead_letter(dead[0].id).await.unwrap());
    m.settle().await;
    let got = c.get_ref().get(&k).await.unwrap().map(|r| r.version());
    assert_eq!(got, Some(report.version));
    assert!(m.dead_letters().await.unwrap().is_empty());
    assert!(!m.replay_dead_letter(dead[0].id).await.unwrap());
    assert!(log.stats().syncs >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_of_an_outage_are_retried_then_dead_lettered_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (store("a"), store("b"), store("c"));
    c.set_outage(true);
    let log = Arc::new(SegmentIntentLog::open(dir.path()).unwrap());
    let m = mux(&[&a, &b, &c], log.clone(), 3);
    for n in 0..20 {
        m.put(Key::new(format!("out/{n}")).unwrap(), "v")
            .await
            .unwrap();
    }
    m.settle().await;
    let dead = m.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 20);
    assert!(dead.iter().all(|d| d.attempts == 3 && d.backend == "c"));
    for d in &dead[..10] {
        assert!(m.discard_dead_letter(d.id).await.unwrap());
    }
    assert_eq!(log.dead_letters().await.unwrap().len(), 10);
}
