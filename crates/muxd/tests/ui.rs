//! The live status page (`GET /ui`) and the JSON it polls (`GET /v1/admin/status`):
//!
//! - with JWT auth on, the status endpoint refuses a caller without a token (401) and a
//!   tenant token, even one with the `admin` scope (403: like `GET /v1/admin/health`,
//!   it is the operator's), and answers an operator token; the page itself is served
//!   without auth, and loads nothing from elsewhere (its CSP says so);
//! - a real `muxd` (the built binary, embedded stores only: fs, redb, memory and a
//!   broken fs replica that dead-letters its writes) serves traffic while headless
//!   Chromium loads `/ui#token=<operator token>`: the rendered DOM lists every backend,
//!   draws latency charts with data points, lists the dead letters with their buttons
//!   and the routes with their backends. A screenshot is saved as
//!   `<target dir>/ui-screenshot.png`.
//!
//! Chromium (`chromium` on PATH, Debian's package) is required: without it the test
//! fails and says to run `cargo xtask services up --install`. Every wait is bounded and
//! every process started here is killed when its guard drops.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Reply, request};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

const TENANT_SECRET: &str = "the-tenants-hs256-secret-of-32-bytes!!";
const OPERATOR_SECRET: &str = "the-operators-hs256-secret-32-bytes-long";
const BACKENDS: [&str; 4] = ["fs", "redb", "memory", "broken"];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(claims: serde_json::Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn tenant_token(tenant: &str, scope: &str) -> String {
    let claims = json!({"tenant": tenant, "scope": scope, "aud": "muxd", "exp": now() + 600});
    sign(claims, TENANT_SECRET)
}

fn operator_token() -> String {
    let claims = json!({"sub": "ops-ui", "aud": "muxd-operator", "exp": now() + 600});
    sign(claims, OPERATOR_SECRET)
}

/// JWT for tenants and operators; fs, redb, memory (cached route) and a `broken` fs
/// replica for `doomed/` keys; hints are given up after one attempt.
fn config(dir: &Path) -> String {
    let path = |p: &str| dir.join(p).display().to_string();
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
[auth]
mode = "jwt"
algorithm = "HS256"
secret = "{TENANT_SECRET}"
audience = "muxd"
[auth.operator]
algorithm = "HS256"
secret = "{OPERATOR_SECRET}"
audience = "muxd-operator"
[[backends]]
kind = "fs"
name = "fs"
path = "{fs}"
[[backends]]
kind = "redb"
name = "redb"
path = "{redb}"
[[backends]]
kind = "memory"
name = "memory"
[[backends]]
kind = "fs"
name = "broken"
path = "{broken}"
[mux]
node_id = 1
[[mux.routes]]
prefix = "tenantconfig/"
backends = [{{ backend = "redb", role = "primary" }}, {{ backend = "fs", role = "replica" }}]
write = "all"
read = "hedged"
[[mux.routes]]
prefix = "hot/"
backends = [{{ backend = "memory", role = "primary" }}]
cache = {{ capacity = 1000, ttl = "5m", max_staleness = "2s" }}
[[mux.routes]]
prefix = "doomed/"
backends = [{{ backend = "fs", role = "primary" }}, {{ backend = "broken", role = "replica" }}]
write = "primary"
read = "primary"
[mux.default]
backends = [{{ backend = "fs", role = "primary" }}, {{ backend = "redb", role = "replica" }}]
write = "all"
read = "first_healthy"
[mux.resilience.retry]
max_attempts = 1
"#,
        fs = path("fs"),
        redb = path("mux.redb"),
        broken = path("broken"),
    )
}

async fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: &[u8]) -> Reply {
    let auth = format!("Bearer {token}");
    let headers: Vec<(&str, &str)> = if token.is_empty() {
        vec![]
    } else {
        vec![("authorization", &auth)]
    };
    request(addr, method, path, &headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_is_the_operators_and_the_page_loads_nothing_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let config = muxd::ServerConfig::from_toml(&config(dir.path())).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux();
    let server = muxd::serve(&config, state).await.unwrap();
    let a = server.addr;

    let r = call(a, "GET", "/v1/admin/status", "", b"").await;
    assert_eq!(r.status, 401, "no token: {}", r.text());
    for scope in ["read write", "read write admin"] {
        let r = call(
            a,
            "GET",
            "/v1/admin/status",
            &tenant_token("acme", scope),
            b"",
        )
        .await;
        assert_eq!(r.status, 403, "a tenant token ({scope}): {}", r.text());
        assert_eq!(
            r.json()["error"]["kind"],
            "permission_denied",
            "{}",
            r.text()
        );
    }
    let r = call(a, "GET", "/v1/admin/status", &operator_token(), b"").await;
    assert_eq!(r.status, 200, "the operator: {}", r.text());
    let status = r.json();
    let names: Vec<&str> = status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BACKENDS, "{status}");
    assert_eq!(status["routes"].as_array().unwrap().len(), 4, "{status}");
    assert!(status["cache"].is_object(), "a route has a cache: {status}");

    // The page and its assets need no token, and may load only themselves.
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let r = call(a, "GET", path, "", b"").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    }
    server.shutdown(&mux).await;
}

/// A child process (muxd or Chromium) in its own process group; the group is killed
/// (and the child reaped) when this drops.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child }
    }

    /// Waits at most `limit` for the process to exit (then kills it and panics).
    fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!("{} did not finish within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // The whole group: Chromium's helper processes too.
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Starts `muxd --config <dir>/muxd.toml` and waits (at most 20 s) for its address.
fn start_muxd(dir: &Path) -> (Proc, SocketAddr) {
    let path = dir.join("muxd.toml");
    std::fs::write(&path, config(dir)).unwrap();
    let mut proc = Proc::spawn(
        "muxd",
        Command::new(env!("CARGO_BIN_EXE_muxd"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (tx, rx) = mpsc::channel::<String>();
    let out = BufReader::new(proc.child.stdout.take().unwrap());
    let err = BufReader::new(proc.child.stderr.take().unwrap());
    for lines in [
        Box::new(out.lines()) as Box<dyn Iterator<Item = std::io::Result<String>> + Send>,
        Box::new(err.lines()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("[muxd] {line}");
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                // `muxd listening on http://A (gRPC http://B)`, maybe within a log line.
                let marker = "muxd listening on http://";
                let addr = line
                    .find(marker)
                    .map(|at| &line[at + marker.len()..])
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse().ok());
                match addr {
                    Some(addr) => return (proc, addr),
                    None => seen.push(line),
                }
            }
            Err(e) => panic!("muxd did not say where it listens within 20 s ({e:?}): {seen:?}"),
        }
    }
}

/// Chromium, or a failure that says how to install it.
fn chromium() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is needed for the status page's browser test but \
                 `chromium` is not installed: run `cargo xtask services up --install`"
            )
        })
}

/// Runs headless Chromium on `url` with `extra` arguments (at most 90 s); its stdout.
fn run_chromium(profile: &Path, url: &str, extra: &[&str]) -> String {
    let out = profile.join(format!("out-{}.txt", extra.len()));
    let file = std::fs::File::create(&out).unwrap();
    let status = Proc::spawn(
        "chromium",
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--virtual-time-budget=8000",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .stdout(file)
            .stderr(Stdio::null()),
    )
    .wait(Duration::from_secs(90));
    assert!(status.success(), "chromium failed: {status}");
    std::fs::read_to_string(out).unwrap()
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR`, or the workspace's `target/`.
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// The numbers in every `name="…"` attribute of `html`.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!("{name}=\"");
    html.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_backend_with_live_charts_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (muxd, a) = start_muxd(dir.path());
    let operator = operator_token();
    let writer = tenant_token("acme", "read write");

    // Break the `broken` replica: what `doomed/` writes owe it is dead-lettered.
    let data = dir.path().join("broken").join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    for i in 0..3 {
        let r = call(a, "PUT", &format!("/v1/kv/doomed/k{i}"), &writer, b"v").await;
        assert_eq!(r.status, 200, "the primary took it: {}", r.text());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = call(a, "GET", "/v1/admin/status", &operator, b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.json()["dead_letters_total"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no dead letters: {}", r.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Traffic on every route while the browser watches.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (stop, writer) = (stop.clone(), writer.clone());
        async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for prefix in ["tenantconfig", "hot", "plain"] {
                    let path = format!("/v1/kv/{prefix}/k{}", i % 20);
                    let r = call(a, "PUT", &path, &writer, format!("v{i}").as_bytes()).await;
                    assert_eq!(r.status, 200, "{path}: {}", r.text());
                    for _ in 0..3 {
                        let r = call(a, "GET", &path, &writer, b"").await;
                        assert_eq!(r.status, 200, "{path}: {}", r.text());
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            i
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let url = format!("http://{a}/ui#token={operator}");
    let profile = dir.path().join("chromium");
    std::fs::create_dir_all(&profile).unwrap();
    let (dom, shot) = tokio::task::spawn_blocking({
        let (profile, url) = (profile.clone(), url.clone());
        move || {
            let dom = run_chromium(&profile, &url, &["--dump-dom"]);
            let shot = profile.join("ui-screenshot.png");
            run_chromium(
                &profile,
                &url,
                &[&format!("--screenshot={}", shot.display())],
            );
            (dom, shot)
        }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let rounds = tokio::time::timeout(Duration::from_secs(30), traffic)
        .await
        .expect("the traffic stops within 30 s")
        .unwrap();
    assert!(rounds > 0);

    let saved = target_dir().join("ui-screenshot.png");
    std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
    std::fs::copy(&shot, &saved).unwrap_or_else(|e| panic!("no screenshot at {shot:?}: {e}"));
    eprintln!("screenshot: {}", saved.display());

    assert!(!dom.contains("id=\"banner\" class=\"banner\">"), "{dom}");
    let listed = attribute_values(&dom, "data-backend");
    for name in BACKENDS {
        assert!(
            listed.contains(&name),
            "backend {name} not listed: {listed:?}\n{dom}"
        );
    }
    let most = attribute_values(&dom, "data-points")
        .iter()
        .filter_map(|n| n.parse::<usize>().ok())
        .max();
    assert!(most >= Some(2), "a chart with ≥ 2 points: {most:?}\n{dom}");
    let drawn = attribute_values(&dom, "points")
        .iter()
        .map(|p| p.split_whitespace().count())
        .max();
    assert!(
        drawn >= Some(2),
        "a polyline with ≥ 2 points: {drawn:?}\n{dom}"
    );
    for prefix in ["tenantconfig/", "hot/", "doomed/"] {
        assert!(
            dom.contains(&format!("data-route=\"{prefix}\"")),
            "{prefix}\n{dom}"
        );
    }
    assert_eq!(attribute_values(&dom, "data-dead-letter").len(), 3, "{dom}");
    assert_eq!(
        dom.matches("data-action=\"replay\"").count(),
        3,
        "a replay button per dead letter"
    );
    assert!(
        dom.contains("Route cache") && dom.contains("hit ratio"),
        "{dom}"
    );
    drop(muxd);
}
