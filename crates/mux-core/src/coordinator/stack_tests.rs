//! Every call the coordinator makes goes through each backend's resilience stack.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::backend::{Backend, ListRequest};
use crate::error::ErrorKind;
use crate::memory::MemoryBackend;
use crate::resilience::{BreakerConfig, RetryPolicy};
use crate::testing::{FaultConfig, FaultyBackend};

type Faulty = Arc<FaultyBackend<MemoryBackend>>;

fn faulty(name: &str, seed: u64) -> Faulty {
    Arc::new(FaultyBackend::new(MemoryBackend::new(name), seed))
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn two(a: &Faulty, b: &Faulty, breaker: BreakerConfig) -> Mux {
    Mux::builder()
        .backend(a.clone())
        .backend(b.clone())
        .resilience(ResilienceConfig {
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
                ..Default::default()
            },
            breaker,
            health_interval: Duration::ZERO,
            ..Default::default()
        })
        .default_route(
            RouteConfig::new("")
                .backend("a", Role::Primary)
                .backend("b", Role::Replica)
                .write(WriteConsistency::All)
                .read(ReadPolicy::Primary),
        )
        .build()
        .unwrap()
}

async fn version_on(b: &Faulty, k: &Key) -> Option<Version> {
    b.get_ref().get(k).await.unwrap().map(|r| r.version())
}

#[tokio::test(start_paused = true)]
async fn every_path_goes_through_the_stack() {
    let (a, b) = (faulty("a", 1), faulty("b", 2));
    let mux = two(&a, &b, BreakerConfig::default());
    // The instrumentation layer sits inside the bulkhead and the breaker and around the
    // timeout: a call it counts went through the whole stack.
    let stats = mux.inner.slots[0].stats().clone();
    let mut seen = stats.calls();
    let mut counted = |path: &str, at_least: u64| {
        let now = stats.calls();
        assert!(
            now >= seen + at_least,
            "{path}: {} calls through the stack, expected at least {at_least}",
            now - seen
        );
        seen = now;
    };
    let k = key("k");

    mux.put(k.clone(), "v1").await.unwrap();
    counted("write", 1);
    mux.get(&k).await.unwrap();
    counted("read", 1);
    mux.list(&ListRequest::new(Prefix::all()), &ReadOptions::default())
        .await
        .unwrap();
    counted("list", 1);
    mux.probe().await;
    counted("health probe", 1);
    mux.as_backend().health().await.unwrap();
    counted("Mux::health", 1);

    // Read repair: b holds a newer version than a.
    let newer = Record::new(k.clone(), "v2", mux.clock().now());
    b.get_ref().put(&newer).await.unwrap();
    let read_all = ReadOptions {
        policy: Some(ReadPolicy::All),
        ..Default::default()
    };
    mux.get_with(&k, &read_all).await.unwrap();
    mux.settle().await;
    counted("read + read repair", 2);
    assert_eq!(version_on(&a, &k).await, Some(newer.version()));

    mux.as_backend().purge(&k, newer.version()).await.unwrap();
    counted("purge", 1);

    // Hinted handoff: a is down for the write, then comes back.
    a.set_outage(true);
    let k2 = key("k2");
    let one = WriteOptions {
        consistency: Some(WriteConsistency::One),
        ..Default::default()
    };
    let report = mux.write(k2.clone(), "x", &one).await.unwrap();
    a.set_outage(false);
    mux.settle().await;
    counted("write + hinted handoff", 2);
    assert_eq!(version_on(&a, &k2).await, Some(report.version));

    // Dead-letter replay: a refuses the write permanently, then accepts the replay.
    a.set_config(FaultConfig {
        error_rate: 1.0,
        error_kind: ErrorKind::PermissionDenied,
        ..Default::default()
    });
    let k3 = key("k3");
    let report = mux.write(k3.clone(), "y", &one).await.unwrap();
    mux.settle().await;
    let dead = mux.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    a.set_config(FaultConfig::default());
    counted("write refused", 1);
    assert!(mux.replay_dead_letter(dead[0].id).await.unwrap());
    mux.settle().await;
    counted("dead-letter replay", 1);
    assert_eq!(version_on(&a, &k3).await, Some(report.version));
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_respected_by_read_repair_and_purge() {
    let (a, b) = (faulty("a", 1), faulty("b", 2));
    let mux = two(
        &a,
        &b,
        BreakerConfig {
            consecutive_failures: 1,
            open_for: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let k = key("k");
    let first = mux.put(k.clone(), "v1").await.unwrap();
    let newer = Record::new(k.clone(), "v2", mux.clock().now());
    b.get_ref().put(&newer).await.unwrap();
    let read_all = ReadOptions {
        policy: Some(ReadPolicy::All),
        ..Default::default()
    };
    assert_eq!(
        mux.get_with(&k, &read_all)
            .await
            .unwrap()
            .unwrap()
            .version(),
        newer.version()
    );
    // The repair of a is spawned but has not run yet (one thread): open a's circuit now.
    mux.inner.slots[0].circuit().record(true, Duration::ZERO);
    assert_eq!(mux.circuit("a"), Some(CircuitState::Open));
    let calls = a.calls();
    mux.settle().await;
    assert_eq!(a.calls(), calls, "read repair knocked on an open circuit");
    assert_eq!(version_on(&a, &k).await, Some(first.version));

    let e = mux
        .as_backend()
        .purge(&k, newer.version())
        .await
        .unwrap_err();
    assert!(e.message().contains("circuit open"), "{e}");
    assert_eq!(e.backend(), Some("a"));
    assert_eq!(a.calls(), calls, "purge knocked on an open circuit");
}

use crate::resilience::CircuitState;

#[tokio::test]
async fn an_impossible_consistency_level_is_refused_before_anything_is_written() {
    let (a, b) = (faulty("a", 1), faulty("b", 2));
    let mux = two(&a, &b, BreakerConfig::default());
    let options = WriteOptions {
        consistency: Some(WriteConsistency::AtLeast(3)),
        ..Default::default()
    };
    let e = mux.write(key("k"), "v", &options).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("at_least:3 cannot be met"), "{e}");
    assert_eq!(a.calls() + b.calls(), 0, "nothing was written");
    // Bad metadata too.
    let e = mux
        .write(
            key("k"),
            "v",
            &WriteOptions {
                tags: [(String::new(), "x".to_owned())].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(a.calls() + b.calls(), 0, "nothing was written");
}
