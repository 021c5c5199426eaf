//! Recorded histories under network faults, checked afterwards (issue 19, points 1–2).
//!
//! Two nodes (`Mux`es with their own clocks and durable intent logs) over PostgreSQL and
//! Redis — each reached through its own network fault proxy (`mux_tests::netfault`) —
//! and a memory store are driven by four clients (alternating between the nodes) making puts (at `All` and `Quorum`), deletes and reads (`Quorum`,
//! `All`) on six keys, bounded in count and time, while one fault plays out on one
//! store. Then the faults heal, hints drain, and `mux_tests::history::check` verifies
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mux::postgres::{PostgresBackend, PostgresConfig};
use mux::redis::{RedisBackend, RedisConfig};
use mux::resilience::{BreakerConfig, RetryPolicy};
use mux::wal::SegmentIntentLog;
use mux::{
    Backend, BackendExt, Clock, Durability, Key, MemoryBackend, Mux, Prefix, ReadOptions,
    ReadPolicy, ResilienceConfig, Role, RouteConfig, WriteConsistency, WriteOptions,
};
use mux_tests::history::{Final, History, Kind, Outcome, check, scale, seed, splitmix};
use mux_tests::netfault::{FaultProxy, LinkFaults};

const PG_TABLE: &str = "mux_history_faults";
const REDIS_NAMESPACE: &str = "mux-history-faults";
const CLIENTS: u64 = 4;
/// Operations per client at scale 1.
const OPS_PER_CLIENT: u64 = 250;
/// The run's length at scale 1.
const RUN: Duration = Duration::from_secs(4);
/// The pause between a client's operations, so the run spans the faults' schedule.
const PACE: Duration = Duration::from_millis(15);
const KEYS: u64 = 6;

/// The URL `url` with its `host:port` replaced by `authority`.
fn through(url: &str, authority: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (format!("{u}@"), r),
        None => (String::new(), rest),
    };
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    format!("{scheme}://{userinfo}{authority}{path}")
}

fn authority_of(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = rest.rsplit('@').next().unwrap();
    rest.split('/').next().unwrap().to_owned()
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The stores, their proxies, and two nodes (`Mux`es, each with its own clock and
/// intent log) over them.
struct Cluster {
    nodes: Vec<Mux>,
    /// How far (ms) node 2's wall clock is behind the real one.
    node2_behind_ms: Arc<AtomicU64>,
    stores: Vec<Arc<dyn Backend>>,
    pg_proxy: FaultProxy,
    redis_proxy: FaultProxy,
    prefix: String,
    _dir: tempfile::TempDir,
}

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
    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new("memory"));
    let dir = tempfile::tempdir().unwrap();
    let resilience = ResilienceConfig {
        durability: Durability::Log,
        call_timeout: Duration::from_millis(800),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            max_attempts: 100_000,
            max_age: Duration::from_secs(600),
            ..Default::default()
        },
        breaker: BreakerConfig {
            open_for: Duration::from_millis(500),
            ..Default::default()
        },
        health_interval: Duration::ZERO,
        ..Default::default()
    };
    let behind = Arc::new(AtomicU64::new(0));
    let mut nodes = Vec::new();
    for node in 1..=2u32 {
        let log = SegmentIntentLog::open(dir.path().join(format!("log-{node}"))).unwrap();
        let clock = match node {
            1 => Clock::new(node),
            _ => {
                let behind = behind.clone();
                Clock::with_time_source(
                    node,
                    Arc::new(move || wall_ms().saturating_sub(behind.load(Ordering::SeqCst))),
                )
            }
        };
        let mux = Mux::builder()
            .backend(pg.clone())
            .backend(redis.clone())
            .backend(memory.clone())
            .intent_log(Arc::new(log))
            .clock(clock)
            .resilience(resilience)
            .default_route(
                RouteConfig::new("")
                    .backend("postgres", Role::Primary)
                    .backend("redis", Role::Replica)
                    .backend("memory", Role::Replica)
                    .write(WriteConsistency::Quorum)
                    .read(ReadPolicy::Quorum),
            )
            .build()
            .unwrap();
        mux.recover().await.unwrap();
        nodes.push(mux);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Cluster {
        nodes,
        node2_behind_ms: behind,
        stores: vec![pg, redis, memory],
        pg_proxy,
        redis_proxy,
        prefix: format!("history/{scenario}-{}-{nanos}", std::process::id()),
        _dir: dir,
    }
}

/// How long the workload runs.
fn run_length() -> Duration {
    RUN * scale()
}

/// One client: up to `OPS_PER_CLIENT` operations (times the scale) within the run.
async fn client(mux: Mux, history: Arc<History>, prefix: String, seed: u64) {
    let started = std::time::Instant::now();
    for n in 0..OPS_PER_CLIENT * u64::from(scale()) {
        if started.elapsed() > run_length() {
            break;
        }
        tokio::time::sleep(PACE).await;
        let r = splitmix(seed ^ splitmix(n));
        let key_text = format!("{prefix}/k{}", r % KEYS);
        let key = Key::new(&key_text).unwrap();
        let invoked = history.now();
        match (r >> 8) % 100 {
            roll @ 0..55 => {
                let level = if roll < 25 {
                    WriteConsistency::All
                } else {
                    WriteConsistency::Quorum
                };
                let version = mux.clock().now();
                let options = WriteOptions {
                    version: Some(version),
                    consistency: Some(level),
                    ..Default::default()
                };
                let outcome = match mux.write(key, format!("v{n}"), &options).await {
                    Ok(_) => Outcome::Acked,
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                history.record(&key_text, Kind::Put(version, level), invoked, outcome);
            }
            55..70 => {
                let version = mux.clock().now();
                let level = WriteConsistency::Quorum;
                let options = WriteOptions {
                    version: Some(version),
                    consistency: Some(level),
                    ..Default::default()
                };
                let outcome = match mux.delete(&key, &options).await {
                    Ok(_) => Outcome::Acked,
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                history.record(&key_text, Kind::Delete(version, level), invoked, outcome);
            }
            roll => {
                let policy = if roll % 2 == 0 {
                    ReadPolicy::Quorum
                } else {
                    ReadPolicy::All
                };
                let options = ReadOptions {
                    policy: Some(policy),
                    ..Default::default()
                };
                let outcome = match mux.get_with(&key, &options).await {
                    Ok(record) => Outcome::Read(record.map(|r| r.version())),
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                history.record(&key_text, Kind::Read(policy), invoked, outcome);
            }
        }
    }
}

/// Runs the workload while `faults` plays out, heals everything, drains the hints,
/// runs `repair` (if the scenario damaged a store behind mux's back), and checks.
/// Returns nothing: it asserts, after printing the scenario's figures.
async fn scenario<F, Fut>(name: &str, faults: F, repair: bool)
where
    F: FnOnce(Arc<Cluster>) -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    let c = Arc::new(cluster(name).await);
    let history = Arc::new(History::default());
    let seed = seed();
    let injector = tokio::spawn(faults(c.clone()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(client(
                // Clients alternate between the two nodes.
                c.nodes[i as usize % c.nodes.len()].clone(),
                history.clone(),
                c.prefix.clone(),
                seed ^ splitmix(i + 1),
            ))
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let injected = injector.await.unwrap();
    // Heal everything and let what is owed drain.
    for proxy in [&c.pg_proxy, &c.redis_proxy] {
        proxy.set_link(LinkFaults::default());
        proxy.refuse(false);
        proxy.blackhole(false);
        proxy.heal();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let pending = || c.nodes.iter().map(Mux::hints_pending).sum::<usize>();
    while pending() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: {} hints still pending after healing",
            pending()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in &c.nodes {
        node.settle().await;
    }
    let prefix = Prefix::new(format!("{}/", c.prefix)).unwrap();
    let mut repaired = String::new();
    if repair {
        // First, the checker must see the damage the scenario did.
        let before = check(&history.ops(), &listings(&c, &prefix).await);
        assert!(
            before.lost > 0,
            "{name}: the checker missed the damage before repair: {before}"
        );
        repaired = format!("; before repair: lost {}", before.lost);
        let options = mux_sync::VerifyOptions {
            repair: true,
            ..Default::default()
        };
        let report = mux_sync::verify(&c.stores, prefix.clone(), &options)
            .await
            .expect("verify with repair");
        assert_eq!(report.repair_failed, 0, "{name}: {:?}", report.errors);
        repaired += &format!(
            "; mux-sync found {} divergent keys and repaired {}",
            report.divergent, report.repaired
        );
    }
    let finals = listings(&c, &prefix).await;
    let ops = history.ops();
    let failed = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Failed(_)))
        .count();
    let verdict = check(&ops, &finals);
    let mut dead = 0;
    for node in &c.nodes {
        dead += node.dead_letters().await.unwrap().len();
    }
    println!(
        "scenario {name} (seed {seed:#x}): faults: {injected}; {failed} operations failed; \
         dead letters {dead}{repaired}; {verdict}"
    );
    cleanup(&c, &finals).await;
    assert_eq!(dead, 0, "{name}: writes were dead-lettered");
    assert!(verdict.holds(), "{name} (seed {seed:#x}): {verdict}");
    assert!(verdict.acked > 0, "{name}: the workload ran");
}

/// Every store's final state under `prefix`.
async fn listings(c: &Cluster, prefix: &Prefix) -> Vec<(String, Final)> {
    let mut finals = Vec::new();
    for store in &c.stores {
        let state: Final = final_listing(&**store, prefix)
            .await
            .into_iter()
            .map(|e| {
                (
                    e.key.as_str().to_owned(),
                    (e.meta.version, e.meta.tombstone),
                )
            })
            .collect();
        finals.push((store.info().name.to_string(), state));
    }
    finals
}

/// A store's listing once healed. Its first call may still meet a connection the
/// faults broke (the adapter reconnects then): a few tries, bounded.
async fn final_listing(store: &dyn Backend, prefix: &Prefix) -> Vec<mux::ListEntry> {
    let mut tries = 0;
    loop {
        match store.list_all(prefix).await {
            Ok(entries) => return entries,
            Err(e) if e.is_temporary() && tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("listing {} after healing: {e}", store.info().name),
        }
    }
}

/// Removes the run's records from every store.
async fn cleanup(c: &Cluster, finals: &[(String, Final)]) {
    let all = mux::Version::new(u64::MAX, u32::MAX, u32::MAX);
    for store in &c.stores {
        for (_, state) in finals {
            for key in state.keys() {
                let _ = store.purge(&Key::new(key).unwrap(), all).await;
            }
        }
    }
}

fn pause(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// Repeats `fault` (on) for `on_ms` after `off_ms` without it, until the run ends;
/// returns how many times it was on.
async fn cycle(off_ms: u64, on_ms: u64, mut on: impl FnMut(), mut off: impl FnMut()) -> u32 {
    let end = std::time::Instant::now() + run_length();
    let mut times = 0;
    while std::time::Instant::now() + Duration::from_millis(off_ms + on_ms) <= end {
        pause(off_ms).await;
        on();
        times += 1;
        pause(on_ms).await;
        off();
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_jittery_link_to_redis() {
    scenario(
        "redis-slow",
        |c| async move {
            c.redis_proxy.set_link(LinkFaults {
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
    scenario(
        "redis-resets",
        |c| async move {
            let proxy = &c.redis_proxy;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_partitioned_then_healed() {
    scenario(
        "redis-partition",
        |c| async move {
            let proxy = &c.redis_proxy;
            let times = cycle(500, 2000, || proxy.partition(), || proxy.heal()).await;
            format!("redis partitioned {times} times for 2 s (calls time out), then healed")
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_primary_refuses_connections() {
    scenario(
        "pg-refused",
        |c| async move {
            let proxy = &c.pg_proxy;
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
    scenario(
        "pg-partition",
        |c| async move {
            let proxy = &c.pg_proxy;
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
    scenario(
        "pg-truncated",
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
    scenario(
        "clock-back",
        |c| async move {
            pause(run_length().as_millis() as u64 / 3).await;
            c.node2_behind_ms.store(600_000, Ordering::SeqCst);
            "node 2's wall clock stepped back 10 minutes a third into the run".to_owned()
        },
        false,
    )
    .await;
}
