//! Reloads during an outage hand over what is owed. A muxd node (`muxd::build`, its
//! `AppState`) writes at `quorum` to two memory stores and a Redis replica — its own
//! `redis-server`, reached through the network fault proxy (`mux_tests::netfault`).
//! The proxy cuts Redis off (open connections reset, new ones refused); 20 writes
//! succeed and leave 20 hints in the durable intent log; the configuration is reloaded
//! 5 times, the way `POST /v1/admin/reload` and SIGHUP do. Each reload's `Mux` takes
//! over from the one before: no second replay of the log, no second delivery task, the
//! circuit still open. Once the proxy lets Redis through again, each hint is applied
//! exactly once — counted by Redis itself: every run of mux's compare-and-set script
//! makes one `HGET`, and the test's server serves no one else.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mux::resilience::CircuitState;
use mux::{Backend, Key};
use mux_tests::netfault::FaultProxy;
use muxd::ServerConfig;

/// A redis-server on a free port, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required for this test (cargo xtask services up --install)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisServer { child, port }
    }

    /// How many times the server ran mux-redis's put script since it started: each run
    /// makes one `GETRANGE` (listings do too, but this test reads Redis only at the end,
    /// after the last count).
    fn script_runs(&self) -> u64 {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "INFO", "commandstats"])
            .output()
            .expect("redis-cli is required for this test");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_getrange:calls="))
            .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `done` holds, naming `what` if it never does.
async fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_during_an_outage_apply_each_hint_once() {
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", redis.port))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
intent_log = "{log}"
[auth]
mode = "off"
[[backends]]
name = "m1"
kind = "memory"
[[backends]]
name = "m2"
kind = "memory"
[[backends]]
name = "redis"
kind = "redis"
url = "redis://{proxy}"
namespace = "reload-outage"
[mux]
node_id = 1
[mux.default]
backends = [{{ backend = "m1", role = "primary" }}, {{ backend = "m2", role = "replica" }}, {{ backend = "redis", role = "replica" }}]
write = "quorum"
read = "first_healthy"
[mux.resilience]
durability = "log"
health_interval = 0
[mux.resilience.retry]
max_attempts = 100000
max_age = 600000
initial_backoff = 20
max_backoff = 200
"#,
        log = dir.path().join("log").display(),
        proxy = proxy.authority(),
    );
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    assert!(
        state
            .mux()
            .put(Key::new("before").unwrap(), "x")
            .await
            .is_ok()
    );
    state.mux().settle().await;
    let before = redis.script_runs();
    assert_eq!(before, 1, "one script run for the first write");

    // Redis is cut off; writes at quorum go on and owe Redis a hint each.
    proxy.refuse(true);
    proxy.reset_all();
    for i in 0..20 {
        let key = Key::new(format!("owed/k{i:02}")).unwrap();
        state.mux().put(key, "v").await.unwrap();
    }
    wait_until("the circuit opens and 20 hints are owed", 30, || {
        let mux = state.mux();
        mux.circuit("redis") != Some(CircuitState::Closed) && mux.hints_pending() == 20
    })
    .await;

    // Five reloads while it is cut off.
    for n in 0..5 {
        state.reload(config.clone()).await.unwrap();
        let mux = state.mux();
        assert_eq!(
            mux.hints_pending(),
            20,
            "reload {n}: each hint is owed once"
        );
        assert_ne!(
            mux.circuit("redis"),
            Some(CircuitState::Closed),
            "reload {n}: the new circuit forgot the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        redis.script_runs(),
        before,
        "nothing reached Redis while cut off"
    );

    // Redis is back: every hint lands, each once.
    proxy.refuse(false);
    wait_until("the hints drain", 60, || state.mux().hints_pending() == 0).await;
    state.mux().settle().await;
    assert_eq!(
        redis.script_runs() - before,
        20,
        "each owed write ran the script once"
    );
    let store = state.mux().backend("redis").unwrap().clone();
    for i in 0..20 {
        let key = Key::new(format!("owed/k{i:02}")).unwrap();
        let got = store.get(&key).await.unwrap();
        assert_eq!(
            got.map(|r| r.value().to_vec()),
            Some(b"v".to_vec()),
            "{key}"
        );
    }
    assert!(state.mux().dead_letters().await.unwrap().is_empty());
    let stats = proxy.stats();
    assert!(stats.resets >= 1, "{stats:?}");
}
