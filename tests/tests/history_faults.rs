//! Recorded histories under network faults, checked afterwards (issue 19, points 1–2).
//!
//! Two nodes (`Mux`es with their own clocks and durable intent logs) over PostgreSQL and
//! Redis — each reached through its own network fault proxy (`mux_tests::netfault`) —
//! and a memory store are driven by four clients (`mux_tests::scenario`: puts at `All`
//! and `Quorum`, deletes and `Quorum`/`All` reads on six keys, bounded in count and
//! time) while one fault plays out on one store. Then the faults heal, hints drain, and `mux_tests::history::check` verifies
//! the history and every store's final state: no acknowledged write lost, no delete
//! resurrected, no version invented, the stores converged, and no `Quorum`/`All` read
//! older than a write acknowledged at `All` before it. Each scenario prints its figures.
//!
//! Sizes and the seed come from `MUX_CHAOS_SCALE` (a multiplier of the run's length
//! and operation count, default 1) and `MUX_CHAOS_SEED` (default: a fresh one, printed
//! with each scenario); `cargo xtask chaos [--scale K] [--seed N]` sets them. The seed
//! fixes each client's sequence of operations and keys; thread scheduling and the
//! servers' timing still vary between runs.
//!
//! PostgreSQL and Redis are required (`cargo xtask services up`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mux::postgres::{PostgresBackend, PostgresConfig};
use mux::redis::{RedisBackend, RedisConfig};
use mux::{Backend, MemoryBackend};
use mux_tests::netfault::{FaultProxy, LinkFaults};
use mux_tests::scenario::{Cluster, Store, authority_of, cycle, pause, run, run_length, through};

const PG_TABLE: &str = "mux_history_faults";
const REDIS_NAMESPACE: &str = "mux-history-faults";

/// Two nodes over PostgreSQL (the primary) and Redis, each behind its own proxy, and a
/// memory store.
async fn cluster(scenario: &str) -> Cluster {
    let pg_url = mux_tests::postgres_url();
    let redis_url = mux_tests::redis_url();
    let pg_proxy = FaultProxy::start(&authority_of(&pg_url)).await.unwrap();
    let redis_proxy = FaultProxy::start(&authority_of(&redis_url)).await.unwrap();
    let pg: Arc<dyn Backend> = Arc::new(
        PostgresBackend::connect(
            "postgres",
            PostgresConfig::new(through(&pg_url, &pg_proxy.authority())).with_table(PG_TABLE),
        )
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required (cargo xtask services up): {e}")),
    );
    let redis: Arc<dyn Backend> = Arc::new(
        RedisBackend::connect(
            "redis",
            RedisConfig::new(through(&redis_url, &redis_proxy.authority()))
                .with_namespace(REDIS_NAMESPACE),
        )
        .await
        .unwrap_or_else(|e| panic!("Redis is required (cargo xtask services up): {e}")),
    );
    let stores = vec![
        Store {
            backend: pg,
            proxy: Some(pg_proxy),
        },
        Store {
            backend: redis,
            proxy: Some(redis_proxy),
        },
        Store {
            backend: Arc::new(MemoryBackend::new("memory")),
            proxy: None,
        },
    ];
    Cluster::new(scenario, stores).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_jittery_link_to_redis() {
    let name = "redis-slow";
    run(
        name,
        cluster(name).await,
        |c| async move {
            c.proxy("redis").set_link(LinkFaults {
                latency: Duration::from_millis(20),
                jitter: Duration::from_millis(40),
                ..Default::default()
            });
            tokio::time::sleep(run_length()).await;
            "redis link 20 ms + up to 40 ms jitter per chunk, the whole run".to_owned()
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connections_reset_mid_run() {
    let name = "redis-resets";
    run(
        name,
        cluster(name).await,
        |c| async move {
            let proxy = c.proxy("redis");
            let times = cycle(300, 0, || proxy.reset_all(), || ()).await;
            format!(
                "every redis connection reset {times} times, 300 ms apart ({} connections reset)",
                proxy.stats().resets
            )
        },
        false,
    )
    .await;
}

/// Every Redis connection is reset once it has carried 4 KiB (mid-reply, for the
/// larger answers), a second at a time, again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connections_cut_after_a_few_kilobytes() {
    let name = "redis-cut";
    run(
        name,
        cluster(name).await,
        |c| async move {
            let proxy = c.proxy("redis");
            let cut = LinkFaults {
                reset_after: Some(4096),
                ..Default::default()
            };
            let times = cycle(
                400,
                1000,
                || proxy.set_link(cut),
                || proxy.set_link(LinkFaults::default()),
            )
            .await;
            format!(
                "redis connections reset after 4 KiB, {times} times for 1 s ({} connections reset)",
                proxy.stats().resets
            )
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_partitioned_then_healed() {
    let name = "redis-partition";
    run(
        name,
        cluster(name).await,
        |c| async move {
            let proxy = c.proxy("redis");
            let times = cycle(500, 2000, || proxy.partition(), || proxy.heal()).await;
            format!("redis partitioned {times} times for 2 s (calls time out), then healed")
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_primary_refuses_connections() {
    let name = "pg-refused";
    run(
        name,
        cluster(name).await,
        |c| async move {
            let proxy = c.proxy("postgres");
            let on = || {
                proxy.refuse(true);
                proxy.reset_all();
            };
            let times = cycle(500, 1500, on, || proxy.refuse(false)).await;
            format!(
                "postgres (the primary) reset and refused {times} times for 1.5 s ({} connections reset)",
                proxy.stats().resets
            )
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_primary_partitioned_then_healed() {
    let name = "pg-partition";
    run(
        name,
        cluster(name).await,
        |c| async move {
            let proxy = c.proxy("postgres");
            let times = cycle(500, 1500, || proxy.partition(), || proxy.heal()).await;
            format!("postgres (the primary) partitioned {times} times for 1.5 s, then healed")
        },
        false,
    )
    .await;
}

/// A store restored with old data: the run's PostgreSQL rows are deleted behind mux's
/// back as the workload ends (as a restore from an old backup would; earlier, the
/// workload's own writes on six hot keys would rewrite them at once). The checker must
/// find the loss; mux-sync then repairs it from the other stores before the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loses_its_rows_and_is_repaired() {
    let name = "pg-truncated";
    run(
        name,
        cluster(name).await,
        |c| async move {
            pause(run_length().as_millis() as u64 + 100).await;
            let client = mux_tests::pg_client().await;
            let removed = client
                .execute(
                    &format!("DELETE FROM {PG_TABLE} WHERE starts_with(key, $1)"),
                    &[&format!("{}/", c.prefix)],
                )
                .await
                .unwrap();
            format!("postgres lost the run's {removed} rows as the run ended (deleted with SQL)")
        },
        true,
    )
    .await;
}

/// Node 2's wall clock steps back 10 minutes mid-run (an NTP correction, a VM restored):
/// its versions must still only grow, and nothing acknowledged may be lost to the
/// older-looking writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_clock_steps_back_mid_run() {
    let name = "clock-back";
    run(
        name,
        cluster(name).await,
        |c| async move {
            pause(run_length().as_millis() as u64 / 3).await;
            c.node2_behind_ms.store(600_000, Ordering::SeqCst);
            "node 2's wall clock stepped back 10 minutes a third into the run".to_owned()
        },
        false,
    )
    .await;
}
