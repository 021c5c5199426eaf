//! A muxd node SIGKILLed with writes in flight, checked by a recorded history (issue 19,
//! point 2).
//!
//! Two `muxd` processes (the built binary) share three stores — PostgreSQL (primary),
//! MariaDB and Redis, Redis reached through a network fault proxy — and a PostgreSQL
//! intent log. Four clients drive them over REST (puts at `all` and `quorum`, deletes,
//! `quorum`/`all` reads on six keys), two per node, recording every operation. Mid-run
//! Redis is partitioned, so `quorum` writes leave hints owed to it in the shared log,
//! each claimed by the node that made it; then node A is SIGKILLed with writes in flight
//! and its clients move to node B; then Redis heals. B drains its own hints and, once
//! A's lease has run out, takes over A's. When nothing is owed any more, the history and
//! every store's final state (read with the stores' own adapters) are checked: no
//! acknowledged write lost, no delete resurrected, no version invented, the three stores
//! converged, no `quorum`/`all` read older than an `all` acknowledgement before it.
//!
//! A REST client cannot stamp versions, so a write that failed (A's in flight when it
//! died among them) is recorded at `history::UNKNOWN` (see `mux_tests::history`).
//! `MUX_CHAOS_SCALE` (`cargo xtask chaos`) makes the run longer, `MUX_CHAOS_SEED`
//! replays a run's operations (both printed or set as in `history_faults`); PostgreSQL, MariaDB and
//! Redis are required (`cargo xtask services up`).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::process::Node;
use mux::mysql::{MysqlBackend, MysqlConfig};
use mux::postgres::{PostgresBackend, PostgresConfig};
use mux::redis::{RedisBackend, RedisConfig};
use mux::{Backend, BackendExt, Key, Prefix, ReadPolicy, Version, WriteConsistency};
use mux_tests::history::{Final, History, Kind, Outcome, UNKNOWN, check, scale, seed, splitmix};
use mux_tests::netfault::FaultProxy;

const PG_TABLE: &str = "mux_kill_history";
const MYSQL_TABLE: &str = "mux_kill_history";
const REDIS_NAMESPACE: &str = "mux-kill-history";
const LEASE_MS: u64 = 1500;
const CLIENTS: usize = 4;
const KEYS: u64 = 6;
/// The pause between a client's operations.
const PACE: Duration = Duration::from_millis(15);

/// The run's schedule, in milliseconds from its start: Redis partitioned, node A
/// killed, Redis healed, the workload's end.
fn schedule() -> [u64; 4] {
    let k = u64::from(scale());
    [800 * k, 2500 * k, 4000 * k, 5500 * k]
}

fn config(node: u32, run: &str, redis: &str) -> String {
    let (pg, mysql) = (mux_tests::postgres_url(), mux_tests::mysql_url());
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
intent_log = {{ kind = "postgres", url = "{pg}", prefix = "{run}", lease_ms = {LEASE_MS} }}

[auth]
mode = "off"

[[backends]]
name = "pg"
kind = "postgres"
url = "{pg}"
table = "{PG_TABLE}"

[[backends]]
name = "maria"
kind = "mysql"
url = "{mysql}"
table = "{MYSQL_TABLE}"

[[backends]]
name = "redis"
kind = "redis"
url = "redis://{redis}"
namespace = "{REDIS_NAMESPACE}"

[mux]
node_id = {node}

[mux.resilience]
durability = "log"
call_timeout = 800
health_interval = 0

[mux.resilience.retry]
initial_backoff = 20
max_backoff = 200
max_attempts = 100000
max_age = 600000

[mux.resilience.breaker]
open_for = 500

[mux.default]
backends = [{{ backend = "pg", role = "primary" }}, {{ backend = "maria", role = "replica" }}, {{ backend = "redis", role = "replica" }}]
write = "quorum"
read = "quorum"
"#
    )
}

/// What the clients share: the nodes' addresses and whether A is dead.
struct Targets {
    addrs: [SocketAddr; 2],
    a_dead: AtomicBool,
    history: History,
    prefix: String,
    end: Instant,
}

fn version_of(text: Option<&str>) -> Option<Version> {
    text?.parse().ok()
}

/// A client: its node (`home`), or B once A is dead; every operation recorded.
async fn client(t: Arc<Targets>, http: reqwest::Client, home: usize, seed: u64) {
    let mut n = 0u64;
    while Instant::now() < t.end {
        tokio::time::sleep(PACE).await;
        n += 1;
        let node = if home == 0 && t.a_dead.load(Ordering::SeqCst) {
            1
        } else {
            home
        };
        let r = splitmix(seed ^ splitmix(n));
        let key = format!("{}/k{}", t.prefix, r % KEYS);
        let url = format!("http://{}/v1/kv/{key}", t.addrs[node]);
        let invoked = t.history.now();
        match (r >> 8) % 100 {
            roll @ 0..55 => {
                let level = if roll < 25 {
                    WriteConsistency::All
                } else {
                    WriteConsistency::Quorum
                };
                let reply = http
                    .put(&url)
                    .header("x-mux-consistency", level.to_string())
                    .body(format!("v{n}"))
                    .send()
                    .await;
                let (kind, outcome) = write_outcome(reply, level, false).await;
                t.history.record(&key, kind, invoked, outcome);
            }
            55..70 => {
                let level = WriteConsistency::Quorum;
                let reply = http
                    .delete(&url)
                    .header("x-mux-consistency", level.to_string())
                    .send()
                    .await;
                let (kind, outcome) = write_outcome(reply, level, true).await;
                t.history.record(&key, kind, invoked, outcome);
            }
            roll => {
                let policy = if roll % 2 == 0 {
                    ReadPolicy::Quorum
                } else {
                    ReadPolicy::All
                };
                let reply = http
                    .get(&url)
                    .header("x-mux-read-policy", policy.to_string())
                    .send()
                    .await;
                let outcome = match reply {
                    Ok(r) if r.status() == 200 => {
                        let header = r.headers().get("x-mux-version");
                        match version_of(header.and_then(|v| v.to_str().ok())) {
                            Some(v) => Outcome::Read(Some(v)),
                            None => Outcome::Failed("a 200 without x-mux-version".into()),
                        }
                    }
                    Ok(r) if r.status() == 404 => Outcome::Read(None),
                    Ok(r) => Outcome::Failed(format!("{}", r.status())),
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                t.history.record(&key, Kind::Read(policy), invoked, outcome);
            }
        }
    }
}

/// A write's record: acknowledged at the version muxd answered, else failed at an
/// unknown version (a delete of an absent key writes a tombstone whose version the 404
/// does not give).
async fn write_outcome(
    reply: reqwest::Result<reqwest::Response>,
    level: WriteConsistency,
    delete: bool,
) -> (Kind, Outcome) {
    let kind = |v| {
        if delete {
            Kind::Delete(v, level)
        } else {
            Kind::Put(v, level)
        }
    };
    match reply {
        Ok(r) if r.status() == 200 => match r.json::<serde_json::Value>().await {
            Ok(body) => match version_of(body["version"].as_str()) {
                Some(v) => (kind(v), Outcome::Acked),
                None => (
                    kind(UNKNOWN),
                    Outcome::Failed(format!("no version: {body}")),
                ),
            },
            Err(e) => (kind(UNKNOWN), Outcome::Failed(e.to_string())),
        },
        Ok(r) => (kind(UNKNOWN), Outcome::Failed(format!("{}", r.status()))),
        Err(e) => (kind(UNKNOWN), Outcome::Failed(e.to_string())),
    }
}

/// The owed entries of the shared log, per node that holds them.
async fn owed(pg: &tokio_postgres::Client, run: &str) -> Vec<(String, i64)> {
    pg.query(
        &format!(
            "SELECT coalesce(claimed_by, '-'), count(*) FROM {run}_intent_owed GROUP BY 1 ORDER BY 1"
        ),
        &[],
    )
    .await
    .expect("the shared log's owed table")
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

async fn stores() -> Vec<Arc<dyn Backend>> {
    let pg = PostgresBackend::connect(
        "pg",
        PostgresConfig::new(mux_tests::postgres_url()).with_table(PG_TABLE),
    )
    .await
    .expect("PostgreSQL is required (cargo xtask services up)");
    let maria = MysqlBackend::connect(
        "maria",
        MysqlConfig::new(mux_tests::mysql_url()).with_table(MYSQL_TABLE),
    )
    .await
    .expect("MariaDB is required (cargo xtask services up)");
    let redis = RedisBackend::connect(
        "redis",
        RedisConfig::new(mux_tests::redis_url()).with_namespace(REDIS_NAMESPACE),
    )
    .await
    .expect("Redis is required (cargo xtask services up)");
    vec![Arc::new(pg), Arc::new(maria), Arc::new(redis)]
}

async fn finals(stores: &[Arc<dyn Backend>], prefix: &Prefix) -> Vec<(String, Final)> {
    let mut out = Vec::new();
    for store in stores {
        let state: Final = store
            .list_all(prefix)
            .await
            .unwrap_or_else(|e| panic!("listing {}: {e}", store.info().name))
            .into_iter()
            .map(|e| {
                (
                    e.key.as_str().to_owned(),
                    (e.meta.version, e.meta.tombstone),
                )
            })
            .collect();
        out.push((store.info().name.to_string(), state));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_writes_in_flight_loses_nothing_its_peer_delivers_its_hints() {
    let stores = stores().await;
    let pg = mux_tests::pg_client().await;
    let run = common::run_id("mxk");
    let redis_authority = mux_tests::redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = FaultProxy::start(&redis_authority).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut a = Some(Node::spawn(
        dir.path(),
        "node-a",
        &config(1, &run, &proxy.authority()),
    ));
    let b = Node::spawn(dir.path(), "node-b", &config(2, &run, &proxy.authority()));
    let [partition_at, kill_at, heal_at, end_at] = schedule();
    let seed = seed();
    let start = Instant::now();
    let targets = Arc::new(Targets {
        addrs: [a.as_ref().unwrap().addr, b.addr],
        a_dead: AtomicBool::new(false),
        history: History::default(),
        prefix: format!("kill/{run}"),
        end: start + Duration::from_millis(end_at),
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(client(
                targets.clone(),
                http.clone(),
                i % 2,
                seed ^ splitmix(i as u64 + 1),
            ))
        })
        .collect();
    let at = |ms: u64| tokio::time::sleep_until((start + Duration::from_millis(ms)).into());

    at(partition_at).await;
    proxy.partition();
    at(kill_at).await;
    let mut killed = a.take().unwrap();
    killed.child.kill().expect("SIGKILL node A");
    let _ = killed.child.wait();
    targets.a_dead.store(true, Ordering::SeqCst);
    let left_by_a: i64 = owed(&pg, &run)
        .await
        .iter()
        .filter(|(node, _)| node == "node-1")
        .map(|(_, n)| n)
        .sum();
    drop(killed);
    at(heal_at).await;
    proxy.heal();
    for c in clients {
        c.await.unwrap();
    }

    // B delivers everything owed, A's entries included once their lease has run out.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now_owed = owed(&pg, &run).await;
        if now_owed.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "entries still owed 90 s after healing: {now_owed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {run}_dead_letters"), &[])
        .await
        .unwrap()
        .get(0);

    let prefix = Prefix::new(format!("{}/", targets.prefix)).unwrap();
    let finals = finals(&stores, &prefix).await;
    let ops = targets.history.ops();
    let failed = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Failed(_)))
        .count();
    let verdict = check(&ops, &finals);
    println!(
        "scenario kill-node (seed {seed:#x}; muxd over REST, 2 processes): Redis partitioned {partition_at}–{heal_at} ms, \
         node A SIGKILLed at {kill_at} ms leaving {left_by_a} owed entries in the shared log, all \
         delivered by node B; {failed} operations failed; dead letters {dead}; {verdict}"
    );

    // Clean up: the run's records, and its log tables.
    let all = Version::new(u64::MAX, u32::MAX, u32::MAX);
    for store in &stores {
        for (_, state) in &finals {
            for key in state.keys() {
                let _ = store.purge(&Key::new(key).unwrap(), all).await;
            }
        }
    }
    for table in ["intent_owed", "intents", "dead_letters"] {
        let _ = pg
            .execute(&format!("DROP TABLE IF EXISTS {run}_{table}"), &[])
            .await;
    }
    drop(b);

    assert!(
        left_by_a > 0,
        "node A left nothing owed when it died: the scenario did not test a takeover"
    );
    assert_eq!(dead, 0, "writes were dead-lettered");
    assert!(verdict.holds(), "seed {seed:#x}: {verdict}");
    assert!(verdict.acked > 0, "the workload ran");
}
