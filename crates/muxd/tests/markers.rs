//! Store markers (`[mux.resilience] markers = true`): a Redis without persistence
//! (`--save "" --appendonly no`, its own process on a free port) is killed and
//! restarted empty while a writer keeps updating keys. The Redis store is the route's
//! primary for reads, so a read that reached it while it was empty would come back
//! missing. The test checks that muxd
//! - flags it stale (`Empty`, in `/v1/admin/health`) soon after it is back,
//! - reads every key from the memory store meanwhile (none comes back missing),
//! - backfills it from the memory store on its own and puts it back into reads,
//! - and that afterwards the two stores agree (`mux_sync::verify`) and no key the
//!   writer updated went back in version on Redis.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::request;
use mux::{Key, Prefix, Staleness, Version};
use muxd::ServerConfig;

/// A redis-server process that keeps nothing on disk, killed and reaped when dropped.
struct RedisServer(Child);

impl RedisServer {
    fn start(port: u16) -> RedisServer {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (cargo xtask services up --install)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return RedisServer(child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().ok();
        child.wait().ok();
        panic!("redis-server did not start on port {port}");
    }

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

fn config(port: u16) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
[auth]
mode = "off"
[anti_entropy]
# Passes stay off: the restorer of stale stores runs on its own. Throttled so the
# stale window lasts long enough to read through.
ops_per_second = 2000
[[backends]]
name = "mem"
kind = "memory"
[[backends]]
name = "cache"
kind = "redis"
url = "redis://127.0.0.1:{port}"
[mux]
node_id = 3
[mux.default]
backends = [{{ backend = "cache", role = "primary" }}, {{ backend = "mem", role = "replica" }}]
write = "one"
read = "primary"
[mux.resilience]
markers = true
health_interval = 200
[mux.resilience.retry]
initial_backoff = 20
max_backoff = 200
"#
    )
}

fn key(i: usize) -> Key {
    Key::new(format!("load/k{i:05}")).unwrap()
}

/// Polls `what` every 50 ms for at most `limit`; the time it took.
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_is_flagged_left_out_and_backfilled() {
    const KEYS: usize = 3000;
    const UPDATED: usize = 200;
    let port = mux_tests::free_port();
    let mut redis = RedisServer::start(port);
    let config = ServerConfig::from_toml(&config(port)).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let mux = state.mux();

    // Marked on the first check; then loaded.
    mux.check_markers().await;
    assert!(mux.stale_backends().is_empty());
    for i in 0..KEYS {
        mux.put(key(i), format!("v0-{i}")).await.unwrap();
    }
    mux.settle().await;

    // A writer keeps updating the first keys throughout, noting what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mux, stop) = (mux.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked: BTreeMap<usize, Version> = BTreeMap::new();
            let mut round = 0usize;
            // Bounded in count as well as by the flag.
            while !stop.load(Ordering::Relaxed) && round < 2000 {
                round += 1;
                for i in 0..UPDATED {
                    if let Ok(report) = mux.put(key(i), format!("v{round}-{i}")).await {
                        acked.insert(i, report.version);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Redis loses everything.
    redis.kill();
    let _redis = RedisServer::start(port);
    let flagged = until(Duration::from_secs(30), "Redis flagged stale", || {
        !mux.stale_backends().is_empty()
    })
    .await;
    assert_eq!(
        mux.stale_backends(),
        [("cache".to_owned(), Staleness::Empty)]
    );
    let health = request(server.addr, "GET", "/v1/admin/health", &[], b"").await;
    let cache = health
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "cache")
        .cloned()
        .unwrap();
    assert_eq!(cache["stale"]["reason"], "empty", "{cache}");

    // While it is stale, reads (Primary: Redis) come from the memory store.
    let mut read_while_stale = 0;
    for i in (0..KEYS).rev().step_by(7) {
        if mux.stale_backends().is_empty() {
            break;
        }
        let got = mux.get(&key(i)).await.unwrap();
        assert!(
            got.is_some(),
            "{} read back missing while Redis was stale",
            key(i)
        );
        read_while_stale += 1;
    }
    assert!(
        read_while_stale > 0,
        "no read happened while Redis was stale"
    );

    // Backfilled from its peer and put back, on muxd's own.
    let restored = until(Duration::from_secs(120), "Redis restored", || {
        mux.stale_backends().is_empty()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    mux.settle().await;
    eprintln!(
        "flagged {flagged:?} after the restart; {read_while_stale} reads while stale; restored {restored:?} later"
    );

    let stores = vec![
        mux.backend("mem").unwrap().clone(),
        mux.backend("cache").unwrap().clone(),
    ];
    let report = mux_sync::verify(
        &stores,
        Prefix::new("load/").unwrap(),
        &mux_sync::VerifyOptions::default(),
    )
    .await
    .unwrap();
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(report.checked, KEYS as u64);
    let cache = mux.backend("cache").unwrap();
    for (i, version) in acked {
        let held = cache.get(&key(i)).await.unwrap().unwrap().version();
        assert!(
            held >= version,
            "{} went back from {version} to {held}",
            key(i)
        );
    }
    // Reads use Redis again: a key changed on Redis alone is read from it.
    assert!(mux.stale_backends().is_empty());
    server.shutdown(&mux).await;
}
