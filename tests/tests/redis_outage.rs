//! A `Mux` over PostgreSQL + Redis + redb at `Quorum`: the Redis server process is
//! really stopped (SIGKILL) mid-run and restarted; writes keep succeeding, Redis's
//! circuit opens and closes again, and once hints drain all three stores are identical.
//!
//! The test runs its own `redis-server` on a free port (with an append-only file, so a
//! restart keeps what was acknowledged) and its own PostgreSQL table.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mux::postgres::{PostgresBackend, PostgresConfig};
use mux::redb::RedbBackend;
use mux::redis::{RedisBackend, RedisConfig};
use mux::resilience::{BreakerConfig, CircuitState, RetryPolicy};
use mux::{
    Backend, BackendExt, Mux, Prefix, ReadPolicy, ResilienceConfig, Role, RouteConfig, Version,
    WriteConsistency,
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server process, killed and reaped when dropped.
struct RedisServer(Child);

impl RedisServer {
    /// SIGKILL, and wait until the process is gone.
    fn kill(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_redis(port: u16, dir: &std::path::Path) -> RedisServer {
    let mut child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (cargo xtask services up --install)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return RedisServer(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    child.wait().ok();
    panic!("redis-server did not start on port {port}");
}

async fn contents(b: &dyn Backend) -> Vec<(String, Version)> {
    b.list_all(&Prefix::new("outage").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key.as_str().to_owned(), e.meta.version))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_catches_up_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut redis_server = start_redis(port, dir.path());
    let url = format!("redis://127.0.0.1:{port}");
    let table = format!("mux_outage_{}", std::process::id());
    let pg = Arc::new(
        PostgresBackend::connect(
            "postgres",
            PostgresConfig::new(mux_tests::postgres_url()).with_table(&table),
        )
        .await
        .expect("PostgreSQL is required (cargo xtask services up)"),
    );
    let redis = Arc::new(
        RedisBackend::connect("redis", RedisConfig::new(&url))
            .await
            .unwrap(),
    );
    let redb = Arc::new(RedbBackend::open("redb", dir.path().join("mux.redb")).unwrap());
    let mux = Mux::builder()
        .backend(pg.clone())
        .backend(redis.clone())
        .backend(redb.clone())
        .resilience(ResilienceConfig {
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(300),
                max_attempts: 10_000,
                ..Default::default()
            },
            call_timeout: Duration::from_secs(2),
            breaker: BreakerConfig {
                consecutive_failures: 5,
                open_for: Duration::from_millis(300),
                ..Default::default()
            },
            health_interval: Duration::from_millis(100),
            ..Default::default()
        })
        .default_route(
            RouteConfig::new("")
                .backend("postgres", Role::Primary)
                .backend("redis", Role::Replica)
                .backend("redb", Role::Replica)
                .write(WriteConsistency::Quorum)
                .read(ReadPolicy::Primary),
        )
        .build()
        .unwrap();

    let mut opened = false;
    let mut closed_after = false;
    for i in 0..600u32 {
        if i == 200 {
            redis_server.kill(); // SIGKILL: the process is really gone
        }
        if i == 400 {
            redis_server = start_redis(port, dir.path());
        }
        let key = mux::Key::new(format!("outage/k{i:04}")).unwrap();
        if let Err(e) = mux.put(key, format!("value {i}")).await {
            panic!("write {i} failed at quorum: {e}");
        }
        let state = mux.circuit("redis").unwrap();
        opened |= (200..400).contains(&i) && state == CircuitState::Open;
        closed_after |= opened && i > 400 && state == CircuitState::Closed;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert!(opened, "redis's circuit opened during the outage");
    // Let hints drain, then compare the three stores key by key.
    tokio::time::timeout(Duration::from_secs(60), mux.settle())
        .await
        .expect("hints drain");
    assert!(
        closed_after || mux.circuit("redis") == Some(CircuitState::Closed),
        "the circuit closed again"
    );
    assert_eq!(mux.hints_pending(), 0);
    assert!(mux.dead_letters().await.unwrap().is_empty());
    let (p, r, d) = (
        contents(&*pg).await,
        contents(&*redis).await,
        contents(&*redb).await,
    );
    assert_eq!(p.len(), 600);
    assert_eq!(p, d, "postgres and redb identical");
    assert_eq!(p, r, "redis caught up with the writes it missed");

    drop(redis_server);
    tokio_postgres_cleanup(&table).await;
}

/// Drops the test's table.
async fn tokio_postgres_cleanup(table: &str) {
    let (client, conn) = tokio_postgres::connect(&mux_tests::postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .unwrap();
    client
        .execute("DELETE FROM mux_schema WHERE table_name = $1", &[&table])
        .await
        .unwrap();
}

/// A Redis that stops answering (every connection held by a fault proxy): the backend's
/// own calls, with no coordinator around them, fail as temporary `Timeout`s after its
/// `response_timeout` (kept by mux's coarse timer, the redis crate's being off), and
/// the same connection serves again once the link heals. Timings are lower bounds, and
/// the upper ones only catch a call that hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_times_out_and_serves_again_after() {
    use mux::{ErrorKind, Key, Record};
    use mux_tests::netfault::FaultProxy;
    use std::time::Instant;

    let url = mux_tests::redis_url();
    let upstream = url.split("://").nth(1).unwrap_or(&url);
    let upstream = upstream
        .rsplit('@')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let mut config = RedisConfig::new(format!("redis://{}", proxy.authority()))
        .with_namespace(format!("stall{}", std::process::id()));
    config.response_timeout = Duration::from_millis(300);
    let redis = RedisBackend::connect("stalled", config)
        .await
        .expect("Redis is required (cargo xtask services up)");
    let key = Key::new("stall/a").unwrap();
    let v1 = Version::new(1, 0, 1);
    redis
        .put(&Record::new(key.clone(), "one", v1))
        .await
        .unwrap();

    proxy.partition();
    for op in ["get", "put"] {
        let started = Instant::now();
        let call = async {
            match op {
                "get" => redis.get(&key).await.map(drop),
                _ => redis
                    .put(&Record::new(key.clone(), "two", Version::new(2, 0, 1)))
                    .await
                    .map(drop),
            }
        };
        let e = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .unwrap_or_else(|_| panic!("{op} hung past its response timeout"))
            .expect_err("no answer while partitioned");
        assert_eq!(e.kind(), ErrorKind::Timeout, "{op}: {e}");
        assert!(e.is_temporary(), "{op}: {e}");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{op} failed early"
        );
    }

    proxy.heal();
    let mut found = None;
    for _ in 0..100 {
        if let Ok(Some(r)) = redis.get(&key).await {
            found = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let found = found.expect("reads work again after the link heals");
    // The write that timed out may or may not have reached Redis: either version is fine.
    assert!(found.version() >= v1);
    assert!(redis.purge(&key, found.version()).await.unwrap());
}
