//! `cargo xtask bench proxy`: muxd over HTTP against webdis, the HTTP front of Redis,
//! and muxd's embedded default against the library.
//!
//! A load generator in this bench (reqwest, one keep-alive pool) drives, at concurrency
//! 32 with 1 KiB values, in alternating rounds of one run:
//!
//! - muxd (release build, its own process) with one Redis route (`write = "one"`) and
//!   webdis (Debian's `webdis`, started here on its own port against the same Redis):
//!   `GET /v1/kv/KEY` vs `GET /GET/KEY`, `PUT /v1/kv/KEY` vs `PUT /SET/KEY`, with the
//!   CPU time Redis spent per request in each (`INFO cpu` before and after the round:
//!   `redis_cpu_us_per_*`), which shows how much of the difference is Redis's;
//! - muxd on the embedded default (fs + redb, `write = "all"`): PUTs vs GETs
//!   (`embedded_put_vs_get`), and the same PUTs made through a `Mux` built in this
//!   process over the same kinds of store, no HTTP (`muxd_embedded_vs_library`).
//!
//! `MUX_MUXD_BIN` is the muxd binary (`cargo xtask bench proxy` builds it);
//! `MUX_REDIS_URL` the Redis (default 127.0.0.1:6379). The bench fails, naming what is
//! missing, when webdis or muxd cannot start.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mux::{Bytes, Key, Mux, ReadPolicy, Role, RouteConfig, WriteConsistency};
use mux_tests::bench::{Row, measure, median, median_figure, print_header, print_row, write_json};

const CONCURRENCY: usize = 32;
const OPS: usize = 20_000;
/// Alternating rounds; `MUX_BENCH_ROUNDS` sets another number (more, to profile muxd).
const ROUNDS: usize = 5;
const KEYS: usize = 1_000;

/// A child process killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts muxd on `config` and returns it with its REST address.
fn muxd(dir: &Path, name: &str, config: &str) -> (Proc, SocketAddr) {
    let bin = std::env::var("MUX_MUXD_BIN")
        .expect("MUX_MUXD_BIN names the muxd binary (run this with `cargo xtask bench proxy`)");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn,muxd=info")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    // Both outputs are drained for the process's life, so it never blocks on a pipe.
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
    for stream in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(at) = line.find("muxd listening on http://") {
                    let rest = &line[at + "muxd listening on http://".len()..];
                    if let Some(Ok(addr)) = rest.split(' ').next().map(str::parse) {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
    }
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => (Proc(child), addr),
        Err(_) => panic!("muxd ({name}) did not say it listens within 30 s"),
    }
}

fn webdis(dir: &Path, redis: (&str, u16)) -> (Proc, u16) {
    let port = free_port();
    let config = serde_json::json!({
        "redis_host": redis.0, "redis_port": redis.1,
        "http_host": "127.0.0.1", "http_port": port,
        "threads": 2, "pool_size": 32, "daemonize": false, "database": 0,
        "verbosity": 1, "logfile": dir.join("webdis.log"),
    });
    let path = dir.join("webdis.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let child = Command::new("webdis")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("webdis is not installed: run `cargo xtask services up --install`");
    wait_for_port(port, "webdis");
    (Proc(child), port)
}

async fn http_round(
    name: &'static str,
    client: &reqwest::Client,
    method: reqwest::Method,
    urls: &Arc<Vec<String>>,
    body: &Bytes,
) -> Row {
    let (c, u, b) = (client.clone(), urls.clone(), body.clone());
    measure(name, OPS, CONCURRENCY, move |i| {
        let (c, u, b, m) = (c.clone(), u.clone(), b.clone(), method.clone());
        async move {
            let mut req = c.request(m.clone(), &u[i % u.len()]);
            if m == reqwest::Method::PUT {
                req = req.body(b);
            }
            let r = req.send().await.expect("request");
            assert!(
                r.status().is_success(),
                "{m} {}: {}",
                u[i % u.len()],
                r.status()
            );
            r.bytes().await.expect("body");
        }
    })
    .await
}

/// The CPU time (user + system) Redis has used, in seconds, from `INFO cpu`.
async fn redis_cpu_seconds(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .expect("INFO cpu");
    info.lines()
        .filter_map(|l| {
            let (name, value) = l.trim().split_once(':')?;
            matches!(name, "used_cpu_user" | "used_cpu_sys").then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Runs `round` (OPS requests) and pushes to `cpu` the CPU µs Redis spent per request
/// meanwhile.
async fn redis_metered(
    conn: &mut redis::aio::MultiplexedConnection,
    cpu: &mut Vec<f64>,
    round: impl Future<Output = Row>,
) -> Row {
    let before = redis_cpu_seconds(conn).await;
    let row = round.await;
    cpu.push((redis_cpu_seconds(conn).await - before) * 1e6 / OPS as f64);
    row
}

fn urls(base: &str, run: &str) -> Arc<Vec<String>> {
    Arc::new((0..KEYS).map(|k| format!("{base}{run}k{k:04}")).collect())
}

fn main() {
    let redis_url =
        std::env::var("MUX_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let hostport = redis_url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let (rhost, rport) = hostport.split_once(':').unwrap_or((&hostport, "6379"));
    let rport: u16 = rport.parse().expect("a Redis port");
    let dir = tempfile::tempdir().unwrap();
    let run = format!("bp{}", std::process::id());
    let redis_config = format!(
        r#"listen = "127.0.0.1:{}"
grpc_listen = "127.0.0.1:{}"
[auth]
mode = "off"
[[backends]]
name = "redis"
kind = "redis"
url = "{redis_url}"
namespace = "{run}"
[mux]
node_id = 1
[mux.default]
backends = [{{ backend = "redis", role = "primary" }}]
write = "one"
read = "primary"
"#,
        free_port(),
        free_port()
    );
    let embedded_config = format!(
        r#"listen = "127.0.0.1:{}"
grpc_listen = "127.0.0.1:{}"
[auth]
mode = "off"
[[backends]]
kind = "fs"
name = "fs"
path = "data/fs"
[[backends]]
kind = "redb"
name = "redb"
path = "data/mux.redb"
[mux]
node_id = 1
[mux.default]
backends = [{{ backend = "redb", role = "primary" }}, {{ backend = "fs", role = "replica" }}]
write = "all"
read = "primary"
"#,
        free_port(),
        free_port()
    );
    let (_redis_muxd, redis_addr) = muxd(dir.path(), "redis", &redis_config);
    let (_webdis, webdis_port) = webdis(dir.path(), (rhost, rport));
    let (_embedded, embedded_addr) = muxd(dir.path(), "embedded", &embedded_config);

    let runtime = mux_tests::bench::runtime();
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .unwrap();
        let value = Bytes::from(vec![b'v'; 1024]);
        let mux_urls = urls(&format!("http://{redis_addr}/v1/kv/"), &format!("{run}/"));
        let webdis_get = urls(&format!("http://127.0.0.1:{webdis_port}/GET/"), &run);
        let webdis_set = urls(&format!("http://127.0.0.1:{webdis_port}/SET/"), &run);
        let emb_urls = urls(&format!("http://{embedded_addr}/v1/kv/"), "emb/");
        let lib_dir = dir.path().join("library");
        let library = library_mux(&lib_dir);
        let lib_keys: Arc<Vec<Key>> = Arc::new(
            (0..KEYS)
                .map(|k| Key::new(format!("lib/k{k:04}")).unwrap())
                .collect(),
        );
        use reqwest::Method;
        // Fill every key once so the GETs find values.
        http_round("fill", &client, Method::PUT, &mux_urls, &value).await;
        http_round("fill", &client, Method::PUT, &webdis_set, &value).await;
        http_round("fill", &client, Method::PUT, &emb_urls, &value).await;
        print_header();
        let mut rows: Vec<Vec<Row>> = (0..7).map(|_| Vec::new()).collect();
        // Redis's CPU µs per request in each round of the first four rows.
        let mut redis_cpu: [Vec<f64>; 4] = Default::default();
        let mut conn = mux_tests::redis_conn().await;
        let rounds = std::env::var("MUX_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(ROUNDS);
        // The rows behind which Redis works, in order: rows 0 to 3.
        let redis_rows = [
            ("muxd_get", Method::GET, &mux_urls),
            ("webdis_get", Method::GET, &webdis_get),
            ("muxd_put", Method::PUT, &mux_urls),
            ("webdis_put", Method::PUT, &webdis_set),
        ];
        for _ in 0..rounds {
            let mut r = Vec::with_capacity(7);
            for ((name, method, urls), cpu) in redis_rows.iter().zip(&mut redis_cpu) {
                let round = http_round(name, &client, method.clone(), urls, &value);
                r.push(redis_metered(&mut conn, cpu, round).await);
            }
            r.push(http_round("embedded_get", &client, Method::GET, &emb_urls, &value).await);
            r.push(http_round("embedded_put", &client, Method::PUT, &emb_urls, &value).await);
            r.push(library_round(&library, &lib_keys, &value).await);
            for (i, row) in r.into_iter().enumerate() {
                print_row(&row);
                rows[i].push(row);
            }
        }
        let m: Vec<Row> = rows.into_iter().map(median).collect();
        println!("medians over {rounds} alternating rounds:");
        for row in &m {
            print_row(row);
        }
        let ratio = |a: usize, b: usize| m[a].ops_per_sec / m[b].ops_per_sec;
        let ratios = [
            ("muxd_get_vs_webdis", ratio(0, 1)),
            ("muxd_put_vs_webdis", ratio(2, 3)),
            ("muxd_get_p99_ms", m[0].p99_us / 1000.0),
            ("muxd_put_p99_ms", m[2].p99_us / 1000.0),
            ("embedded_put_vs_get", ratio(5, 4)),
            ("muxd_embedded_vs_library", ratio(5, 6)),
            ("redis_cpu_us_per_muxd_get", median_figure(&redis_cpu[0])),
            ("redis_cpu_us_per_webdis_get", median_figure(&redis_cpu[1])),
            ("redis_cpu_us_per_muxd_put", median_figure(&redis_cpu[2])),
            ("redis_cpu_us_per_webdis_put", median_figure(&redis_cpu[3])),
        ];
        write_json("proxy", &m, &ratios);
    });
    // Remove this run's keys from the shared Redis.
    let _ = Command::new("redis-cli")
        .args(["-h", rhost, "-p", &rport.to_string(), "--scan", "--pattern"])
        .arg(format!("*{run}*"))
        .output()
        .map(|out| {
            let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            for chunk in keys.chunks(500) {
                let _ = Command::new("redis-cli")
                    .args(["-h", rhost, "-p", &rport.to_string(), "DEL"])
                    .args(chunk)
                    .output();
            }
        });
}

/// The embedded default as a library: redb primary, fs replica, `write = "all"`.
fn library_mux(dir: &Path) -> Mux {
    let redb = mux::redb::RedbBackend::open("redb", dir.join("mux.redb")).unwrap();
    let fs = mux::fs::FsBackend::open("fs", dir.join("fs")).unwrap();
    Mux::builder()
        .backend(Arc::new(redb))
        .backend(Arc::new(fs))
        .default_route(
            RouteConfig::new("")
                .backend("redb", Role::Primary)
                .backend("fs", Role::Replica)
                .write(WriteConsistency::All)
                .read(ReadPolicy::Primary),
        )
        .build()
        .unwrap()
}

async fn library_round(mux: &Mux, keys: &Arc<Vec<Key>>, value: &Bytes) -> Row {
    let (m, k, v) = (mux.clone(), keys.clone(), value.clone());
    measure("library_put", OPS, CONCURRENCY, move |i| {
        let (m, k, v) = (m.clone(), k.clone(), v.clone());
        async move {
            m.put(k[i % k.len()].clone(), v).await.expect("put");
        }
    })
    .await
}
