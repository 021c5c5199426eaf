//! Several real `muxd` processes (the built binary, each with its own TOML file and
//! ports) sharing the local PostgreSQL and Redis, as `examples/cluster.toml` describes:
//!
//! - with a PostgreSQL change feed and intent log, a write through one node reaches a
//!   gRPC watcher on another node, and invalidates a third node's route cache within
//!   `max_staleness`; 200 concurrent writes through two nodes reach a third node's
//!   watcher exactly once each, in feed order, each key's versions in order; a watcher
//!   resuming on another node from its last position gets exactly the missed writes;
//! - with a Redis change feed that dies (SIGKILL), writes still succeed and no node's
//!   cache hides a write for longer than `max_staleness` (the caches are bypassed while
//!   the feed is not fresh); once the feed's server is back, the caches serve again and
//!   stay coherent; a feed that hangs (SIGSTOP) instead of dying is bounded the same way.
//!
//! Every table, Redis namespace and stream is named after a per-run id and removed at
//! the end; every child process is killed when its guard drops, even on a panic.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::Node;
use common::{next_change, node_config as config, redis_url, request};
use muxd::grpc::pb;
use pb::store_client::StoreClient;

/// One test at a time: both assert time bounds, and the machine may have few cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn postgres_url() -> String {
    std::env::var("MUX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A per-run id, usable as a PostgreSQL table prefix.
fn run_id() -> String {
    common::run_id("mxc")
}

/// Removes what a run left in the shared servers: its Redis keys and its tables.
struct Cleanup {
    run: String,
    tables: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("muxtest:{}*", self.run))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
        if self.tables.is_empty() {
            return;
        }
        let drop = format!("DROP TABLE IF EXISTS {} CASCADE", self.tables.join(", "));
        let status = Command::new("psql")
            .arg(postgres_url())
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", &drop])
            .stdout(Stdio::null())
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("cleanup: `{drop}` failed: {status:?}");
        }
    }
}

/// Nodes, their config directory and the run's cleanup, dropped in that order.
struct Cluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Cluster {
    fn start(cleanup: Cleanup, configs: &[String]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            dir,
            _cleanup: cleanup,
        };
        for (i, config) in configs.iter().enumerate() {
            let name = format!("node{}", i + 1);
            let node = Node::spawn(cluster.dir.path(), &name, config);
            cluster.nodes.push(node);
        }
        cluster
    }
}

/// PUTs `body` at `key`; the new version.
async fn put(addr: SocketAddr, key: &str, body: &[u8]) -> String {
    let r = request(addr, "PUT", &format!("/v1/kv/{key}"), &[], body).await;
    assert_eq!(r.status, 200, "PUT {key} on {addr}: {}", r.text());
    r.json()["version"].as_str().unwrap().to_owned()
}

async fn get(addr: SocketAddr, key: &str) -> Vec<u8> {
    let r = request(addr, "GET", &format!("/v1/kv/{key}"), &[], b"").await;
    assert_eq!(r.status, 200, "GET {key} on {addr}: {}", r.text());
    r.body
}

/// The sum of a Prometheus counter's series in a node's `/metrics` (0 if absent).
async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let r = request(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `key` on `addr` every 10 ms until it reads `want`; how long that took.
async fn until_reads(addr: SocketAddr, key: &str, want: &[u8], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = get(addr, key).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{addr} still reads {key} = {:?} {:?} after the write, not {:?}",
            String::from_utf8_lossy(&got),
            start.elapsed(),
            String::from_utf8_lossy(want)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `key` on `addr` (always `want`) until two reads in a row raise the node's
/// cache hits: its feed is fresh and it serves `key` from its cache. At most 15 s.
async fn until_cache_hits(addr: SocketAddr, key: &str, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = metric(addr, "mux_cache_hits_total").await;
        for _ in 0..2 {
            assert_eq!(get(addr, key).await, want, "{addr} reads {key}");
        }
        if metric(addr, "mux_cache_hits_total").await > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} never served {key} from its cache within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn watch(grpc: SocketAddr) -> tonic::Streaming<pb::WatchEvent> {
    watch_from(grpc, "").await
}

/// A gRPC watch of `cfg` from `resume_from` (empty: from now).
async fn watch_from(grpc: SocketAddr, resume_from: &str) -> tonic::Streaming<pb::WatchEvent> {
    let mut client = StoreClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    client
        .watch(pb::WatchRequest {
            prefix: "cfg".into(),
            resume_from: resume_from.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_a_postgres_feed() {
    let _serial = SERIAL.lock().await;
    let (run, pg) = (run_id(), postgres_url());
    let tables = [
        "feed",
        "feed_meta",
        "intent_owed",
        "intents",
        "dead_letters",
    ];
    let cleanup = Cleanup {
        run: run.clone(),
        tables: tables.iter().map(|t| format!("{run}_{t}")).collect(),
    };
    let head = format!(r#"intent_log = {{ kind = "postgres", url = "{pg}", prefix = "{run}" }}"#);
    let feed = format!(
        "[feed]\nkind = \"postgres\"\nurl = \"{pg}\"\ntable = \"{run}_feed\"\n\
         [mux.resilience]\ndurability = \"log\""
    );
    let configs: Vec<_> = (1..=3)
        .map(|n| config(n, &run, &head, &feed, "2s"))
        .collect();
    let cluster = Cluster::start(cleanup, &configs);
    let [a, b, c] = [0, 1, 2].map(|i| &cluster.nodes[i]);
    let (a, b) = (a.addr, b.addr);
    let mut watch = watch(c.grpc).await;

    // A's write reaches C's watcher, then B's cache (filled with it first).
    let v1 = put(a, "cfg/limits", b"v1").await;
    let change = next_change(&mut watch).await;
    assert_eq!((change.key.as_str(), change.op), ("cfg/limits", 0));
    assert_eq!(change.version, v1, "C's watcher saw A's write");
    until_cache_hits(b, "cfg/limits", b"v1").await;
    let v2 = put(a, "cfg/limits", b"v2").await;
    let took = until_reads(b, "cfg/limits", b"v2", Duration::from_secs(5)).await;
    eprintln!("B read A's v2 {took:?} after A acknowledged it (max_staleness 2 s)");
    let change = next_change(&mut watch).await;
    assert_eq!(
        (change.key.as_str(), change.version.as_str()),
        ("cfg/limits", v2.as_str())
    );

    // Two writers, through A and through B, 100 writes each over their own 5 keys.
    let started = Instant::now();
    let writers: Vec<_> = [a, b]
        .into_iter()
        .enumerate()
        .map(|(w, addr)| {
            tokio::spawn(async move {
                let mut written = Vec::new();
                for i in 0..100 {
                    let key = format!("cfg/w{}", w * 5 + i % 5);
                    written.push((key.clone(), put(addr, &key, b"x").await));
                }
                written
            })
        })
        .collect();
    let mut want = Vec::new();
    for w in writers {
        want.extend(w.await.unwrap());
    }
    let mut seen = Vec::new();
    let mut positions = Vec::new();
    for _ in 0..200 {
        let c = next_change(&mut watch).await;
        positions.push(c.position.parse::<mux::feed::Position>().unwrap());
        seen.push((c.key, c.version));
    }
    eprintln!(
        "200 writes through A and B reached C in {:?}",
        started.elapsed()
    );
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "positions increase"
    );
    for key in (0..10).map(|k| format!("cfg/w{k}")) {
        let versions: Vec<_> = seen.iter().filter(|(k, _)| *k == key).collect();
        assert!(
            versions.windows(2).all(|v| v[0].1 < v[1].1),
            "{key}: versions in order: {versions:?}"
        );
    }
    let (mut got, mut expected) = (seen, want);
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "every write once, nothing else");

    // C's watcher disconnects; five writes through A; a watcher on B that resumes from
    // the last position C's watcher saw gets exactly those five, then nothing twice.
    let last = positions.last().unwrap().to_string();
    drop(watch);
    let mut missed = Vec::new();
    for i in 0..5 {
        let key = format!("cfg/missed{i}");
        missed.push((key.clone(), put(a, &key, b"x").await));
    }
    let mut resumed = watch_from(cluster.nodes[1].grpc, &last).await;
    for (key, version) in &missed {
        let c = next_change(&mut resumed).await;
        assert_eq!((&c.key, &c.version), (key, version), "resumed in order");
    }
    put(a, "cfg/after", b"x").await;
    assert_eq!(
        next_change(&mut resumed).await.key,
        "cfg/after",
        "none twice"
    );
}

/// A private `redis-server` on `port` (no persistence), SIGKILLed when stopped or dropped.
struct RedisServer(Child);

impl RedisServer {
    fn start(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required for this test");
        let server = RedisServer(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: a hung feed, not a dead one.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {signal} redis-server");
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_outage_never_hides_a_write_longer_than_the_bound() {
    let _serial = SERIAL.lock().await;
    let run = run_id();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut feed_server = RedisServer::start(port);
    let feed = format!(
        "[feed]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\nstream = \"muxtest:{run}:feed\"\nresponse_timeout_ms = 500"
    );
    let configs: Vec<_> = (1..=2).map(|n| config(n, &run, "", &feed, "1s")).collect();
    let cleanup = Cleanup {
        run: run.clone(),
        tables: Vec::new(),
    };
    let cluster = Cluster::start(cleanup, &configs);
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    let bound = Duration::from_secs(1) + Duration::from_secs(2);

    // B serves cfg/x from its cache; then the feed's server dies.
    put(a, "cfg/x", b"v1").await;
    until_cache_hits(b, "cfg/x", b"v1").await;
    let failures = metric(a, "mux_feed_publish_failures_total").await;
    let bypassed = metric(b, "mux_cache_bypassed_total").await;
    feed_server.stop();

    // A write still succeeds (the store is up; the publish fails and is retried), and
    // B stops trusting its cache within max_staleness.
    let put_started = Instant::now();
    put(a, "cfg/x", b"v2").await;
    let put_took = put_started.elapsed();
    let took = until_reads(b, "cfg/x", b"v2", bound).await;
    eprintln!("feed down: A's PUT took {put_took:?}; B read v2 {took:?} after it (bound 1 s)");
    assert!(
        metric(a, "mux_feed_publish_failures_total").await > failures,
        "A's publish failed while the feed was down"
    );
    assert!(
        metric(b, "mux_cache_bypassed_total").await > bypassed,
        "B bypassed its cache while the feed was down"
    );

    // The feed's server comes back (empty): both nodes read the feed again and serve
    // from their caches; a write through A reaches B's cache through the feed.
    feed_server = RedisServer::start(port);
    let back = Instant::now();
    until_cache_hits(a, "cfg/x", b"v2").await;
    until_cache_hits(b, "cfg/x", b"v2").await;
    eprintln!(
        "feed back: both caches serving again after {:?}",
        back.elapsed()
    );
    let failures = metric(a, "mux_feed_publish_failures_total").await;
    put(a, "cfg/x", b"v3").await;
    let took = until_reads(b, "cfg/x", b"v3", bound).await;
    eprintln!("feed back: B read v3 {took:?} after A acknowledged it");
    assert_eq!(
        metric(a, "mux_feed_publish_failures_total").await,
        failures,
        "v3 was published at once"
    );
    until_cache_hits(b, "cfg/x", b"v3").await;

    // The feed hangs instead (SIGSTOP: connections stay open, nothing answers). A's
    // publish times out (500 ms) and is retried; B hears nothing, so its cache stops
    // being trusted once it has not read the feed for max_staleness.
    feed_server.signal("-STOP");
    put(a, "cfg/x", b"v4").await;
    let took = until_reads(b, "cfg/x", b"v4", bound).await;
    eprintln!("feed hung: B read v4 {took:?} after A acknowledged it");
    feed_server.signal("-CONT");
    until_cache_hits(b, "cfg/x", b"v4").await;
    drop(cluster);
    drop(feed_server);
}
