//! The driver of the recorded-history fault scenarios (`tests/tests/history_faults.rs`
//! over PostgreSQL and Redis, `tests/tests/history_object_faults.rs` over S3 and Azure
//! Blob): two nodes (`Mux`es with their own clocks and durable intent logs) over a set
//! of stores — the networked ones each behind its own [`FaultProxy`] — driven by four
//! clients (alternating between the nodes) making puts (at `All` and `Quorum`), deletes
//! and reads (`Quorum`, `All`) on six keys, bounded in count and time, while a
//! scenario's faults play out. Then the faults heal, hints drain, and
//! [`check`](crate::history::check) verifies the history and every store's final state.
//!
//! Sizes and the seed come from [`scale`] and [`seed`] (`cargo xtask chaos`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mux::resilience::{BreakerConfig, RetryPolicy};
use mux::wal::SegmentIntentLog;
use mux::{
    Backend, BackendExt, Clock, Durability, Key, Mux, Prefix, ReadOptions, ReadPolicy,
    ResilienceConfig, Role, RouteConfig, WriteConsistency, WriteOptions,
};

use crate::history::{Final, History, Kind, Outcome, check, scale, seed, splitmix};
use crate::netfault::{FaultProxy, LinkFaults};

const CLIENTS: u64 = 4;
/// Operations per client at scale 1.
const OPS_PER_CLIENT: u64 = 250;
/// The run's length at scale 1.
const RUN: Duration = Duration::from_secs(4);
/// The pause between a client's operations, so the run spans the faults' schedule.
const PACE: Duration = Duration::from_millis(15);
const KEYS: u64 = 6;

/// How long the workload runs.
pub fn run_length() -> Duration {
    RUN * scale()
}

/// The URL `url` with its `host:port` replaced by `authority`.
pub fn through(url: &str, authority: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (format!("{u}@"), r),
        None => (String::new(), rest),
    };
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    format!("{scheme}://{userinfo}{authority}{path}")
}

/// The `host:port` of `url`.
pub fn authority_of(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A store of a cluster, and the proxy it is reached through (for networked stores).
#[derive(Debug)]
pub struct Store {
    /// The store.
    pub backend: Arc<dyn Backend>,
    /// Its fault proxy.
    pub proxy: Option<FaultProxy>,
}

/// The stores, their proxies, and two nodes over them.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<Mux>,
    /// How far (ms) node 2's wall clock is behind the real one.
    pub node2_behind_ms: Arc<AtomicU64>,
    /// The stores, in route order (the first is the primary).
    pub stores: Vec<Arc<dyn Backend>>,
    proxies: Vec<(String, FaultProxy)>,
    /// The key prefix of the run (no trailing `/`).
    pub prefix: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Two nodes over `stores` (the first the primary; writes and reads at `Quorum`),
    /// each with its own clock (node 2's can be stepped back) and segment intent log.
    pub async fn new(scenario: &str, stores: Vec<Store>) -> Cluster {
        let dir = tempfile::tempdir().expect("a scratch directory");
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
        let mut route = RouteConfig::new("")
            .write(WriteConsistency::Quorum)
            .read(ReadPolicy::Quorum);
        for (i, store) in stores.iter().enumerate() {
            let role = if i == 0 { Role::Primary } else { Role::Replica };
            route = route.backend(store.backend.info().name.to_string(), role);
        }
        let behind = Arc::new(AtomicU64::new(0));
        let mut nodes = Vec::new();
        for node in 1..=2u32 {
            let log = SegmentIntentLog::open(dir.path().join(format!("log-{node}")))
                .expect("a segment intent log");
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
            let mut builder = Mux::builder();
            for store in &stores {
                builder = builder.backend(store.backend.clone());
            }
            let mux = builder
                .intent_log(Arc::new(log))
                .clock(clock)
                .resilience(resilience)
                .default_route(route.clone())
                .build()
                .expect("the cluster's configuration is valid");
            mux.recover().await.expect("recovery of an empty log");
            nodes.push(mux);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut backends = Vec::new();
        let mut proxies = Vec::new();
        for store in stores {
            let name = store.backend.info().name.to_string();
            backends.push(store.backend);
            if let Some(proxy) = store.proxy {
                proxies.push((name, proxy));
            }
        }
        Cluster {
            nodes,
            node2_behind_ms: behind,
            stores: backends,
            proxies,
            prefix: format!("history/{scenario}-{}-{nanos}", std::process::id()),
            _dir: dir,
        }
    }

    /// The proxy in front of the store named `store`.
    pub fn proxy(&self, store: &str) -> &FaultProxy {
        self.proxies
            .iter()
            .find(|(name, _)| name == store)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("no proxy in front of {store}"))
    }
}

/// One client: up to `OPS_PER_CLIENT` operations (times the scale) within the run.
async fn client(mux: Mux, history: Arc<History>, prefix: String, seed: u64) {
    let started = Instant::now();
    for n in 0..OPS_PER_CLIENT * u64::from(scale()) {
        if started.elapsed() > run_length() {
            break;
        }
        tokio::time::sleep(PACE).await;
        let r = splitmix(seed ^ splitmix(n));
        let key_text = format!("{prefix}/k{}", r % KEYS);
        let key = Key::new(&key_text).expect("a valid key");
        let invoked = history.now();
        match (r >> 8) % 100 {
            roll @ 0..70 => {
                let delete = roll >= 55;
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
                let result = if delete {
                    mux.delete(&key, &options).await
                } else {
                    // Unique per write. With values that repeat ("v{n}" per client),
                    // history_object_faults found S3 holding a lower version than one
                    // acknowledged in about one run in three: S3's ETag is the MD5 of the
                    // body, so a conditional write cannot tell two versions with the same
                    // bytes apart ("The identical-value race", crates/mux-s3/README.md;
                    // reads at Quorum/All repair it). Unique values check the rest.
                    mux.write(key, format!("{seed:x}-v{n}"), &options).await
                };
                let outcome = match result {
                    Ok(_) => Outcome::Acked,
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                let kind = if delete {
                    Kind::Delete(version, level)
                } else {
                    Kind::Put(version, level)
                };
                history.record(&key_text, kind, invoked, outcome);
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

/// Runs the workload on `cluster` while `faults` plays out, heals every proxy, drains
/// the hints, runs `mux_sync::verify` with repair when `repair` (the scenario damaged a
/// store behind mux's back: the checker must see that first), and checks. Asserts,
/// after printing the scenario's figures.
pub async fn run<F, Fut>(name: &str, cluster: Cluster, faults: F, repair: bool)
where
    F: FnOnce(Arc<Cluster>) -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    let c = Arc::new(cluster);
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
        client.await.expect("a client");
    }
    let injected = injector.await.expect("the fault injector");
    for (_, proxy) in &c.proxies {
        proxy.set_link(LinkFaults::default());
        proxy.refuse(false);
        proxy.blackhole(false);
        proxy.heal();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let pending = || c.nodes.iter().map(Mux::hints_pending).sum::<usize>();
    while pending() > 0 {
        assert!(
            Instant::now() < deadline,
            "{name}: {} hints still pending after healing",
            pending()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in &c.nodes {
        node.settle().await;
    }
    let prefix = Prefix::new(format!("{}/", c.prefix)).expect("a valid prefix");
    let mut repaired = String::new();
    if repair {
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
        dead += node.dead_letters().await.expect("dead letters").len();
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
                if let Ok(key) = Key::new(key) {
                    let _ = store.purge(&key, all).await;
                }
            }
        }
    }
}

/// A sleep of `ms` milliseconds.
pub fn pause(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// Turns a fault on (`on`) for `on_ms` after `off_ms` without it, again and again until
/// the run ends; returns how many times it was on.
pub async fn cycle(off_ms: u64, on_ms: u64, mut on: impl FnMut(), mut off: impl FnMut()) -> u32 {
    let end = Instant::now() + run_length();
    let mut times = 0;
    while Instant::now() + Duration::from_millis(off_ms + on_ms) <= end {
        pause(off_ms).await;
        on();
        times += 1;
        pause(on_ms).await;
        off();
    }
    times
}
