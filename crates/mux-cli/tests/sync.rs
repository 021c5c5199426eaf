//! `mux verify`, `repair`, `backfill`, `gc`, `export` and `import` against a real muxd
//! over memory stores: summaries, exit statuses, and an export imported elsewhere.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::mux;
use mux::{Key, Record};

/// Memory stores `a` (primary) and `b` (replica) under every key, and an fs store
/// `broken` in no route (its data directory is replaced by a file once muxd runs).
fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"

[auth]
mode = "off"

[[backends]]
name = "a"
kind = "memory"

[[backends]]
name = "b"
kind = "memory"

[[backends]]
name = "broken"
kind = "fs"
path = "{}"

[mux]
node_id = 1

[mux.default]
backends = [{{ backend = "a", role = "primary" }}, {{ backend = "b", role = "replica" }}]
write = "all"
"#,
        dir.join("broken").display()
    )
}

struct Server {
    url: String,
    server: muxd::Server,
    mux: mux::Mux,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = muxd::ServerConfig::from_toml(&config(dir.path())).unwrap();
        let state = muxd::build(&config).await.unwrap();
        let mux = state.mux();
        let server = muxd::serve(&config, state).await.unwrap();
        Server {
            url: format!("http://{}", server.addr),
            server,
            mux,
            dir,
        }
    }

    fn store(&self, name: &str) -> std::sync::Arc<dyn mux::Backend> {
        self.mux.backend(name).unwrap().clone()
    }

    async fn stop(self) {
        self.server.shutdown(&self.mux).await;
    }
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// `mux` with `input` on its stdin.
async fn mux_with_stdin(args: &[&str], input: Vec<u8>) -> common::Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mux"))
            .env_remove("MUX_URL")
            .env_remove("MUX_TOKEN")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        common::Run {
            code: out.status.code(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_repair_backfill_and_gc() {
    let server = Server::start().await;
    let url = server.url.as_str();
    for i in 0..20 {
        server
            .mux
            .put(key(&format!("app/k{i:02}")), format!("v{i}"))
            .await
            .unwrap();
    }
    let (a, b) = (server.store("a"), server.store("b"));
    let clock = server.mux.clock();
    b.put(&Record::new(key("app/k01"), "drifted", clock.now()))
        .await
        .unwrap();
    b.put(&Record::tombstone(key("app/k02"), clock.now()))
        .await
        .unwrap();
    a.put(&Record::new(key("app/new"), "only on a", clock.now()))
        .await
        .unwrap();

    let r = mux(&["--url", url, "verify", "--prefix", "app"]).await;
    assert_eq!(r.code, Some(1), "divergent keys: exit status 1: {r:?}");
    let mut out = r.out.lines();
    assert_eq!(
        out.next(),
        Some(
            "verify app on a, b: 21 keys checked, 3 divergent (1 missing, 1 tombstoned on one side, 1 at different versions)"
        ),
        "{r:?}"
    );
    let sample: Vec<&str> = out.collect();
    assert_eq!(sample.len(), 3, "{r:?}");
    assert!(
        sample[0].starts_with("  app/k01\tversion_differs\ta: "),
        "{r:?}"
    );
    assert!(
        sample[1].contains("tombstone_one_side") && sample[1].contains("b: deleted at "),
        "{r:?}"
    );
    assert!(
        sample[2].starts_with("  app/new\tmissing\ta: ") && sample[2].ends_with("b: missing"),
        "{r:?}"
    );
    assert_eq!(
        r.err,
        "mux: 3 divergent keys under app: `mux repair` writes the highest version to the stale stores\n"
    );

    let r = mux(&["--url", url, "repair", "--prefix", "app", "--rate", "1000"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.out
            .starts_with("repair app on a, b: 21 keys checked, 3 divergent"),
        "{r:?}"
    );
    assert!(
        r.out
            .lines()
            .next()
            .unwrap()
            .ends_with(", 3 repaired, 0 failed"),
        "{r:?}"
    );

    let r = mux(&[
        "--url",
        url,
        "verify",
        "--prefix",
        "app",
        "--backends",
        "b,a",
        "--checkpoint",
    ])
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.out,
        "verify app on b, a: 21 keys checked, 0 divergent (0 missing, 0 tombstoned on one side, 0 at different versions)\n"
    );
    assert!(r.err.is_empty(), "stderr is no terminal: no bar: {r:?}");

    let r = mux(&["--url", url, "verify", "--prefix", "app", "--json"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let job: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(job["state"], "done");
    assert_eq!(job["report"]["checked"], 21);

    // b joined empty for fill/: backfill copies what a holds.
    for i in 0..30 {
        a.put(&Record::new(
            key(&format!("fill/k{i:02}")),
            "v",
            clock.now(),
        ))
        .await
        .unwrap();
    }
    let r = mux(&[
        "--url", url, "backfill", "--target", "b", "--prefix", "fill",
    ])
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.out,
        "backfill b from a under fill: 30 keys considered, 30 copied, 0 skipped, 0 failed\n"
    );

    server
        .mux
        .delete(&key("fill/k00"), &mux::WriteOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let r = mux(&["--url", url, "gc", "--prefix", "fill", "--grace", "5ms"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.out,
        "gc fill on a, b: 1 tombstone, 1 purged, 0 held back (not the same tombstone on every store), 0 within the grace period\n"
    );
    assert!(b.get(&key("fill/k00")).await.unwrap().is_none());

    // Refused before starting: exit status 3 with the server's reason.
    let r = mux(&[
        "--url",
        url,
        "verify",
        "--prefix",
        "app",
        "--backends",
        "a,zz",
    ])
    .await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.err.contains("no backend is called \"zz\""), "{r:?}");
    let r = mux(&["--url", url, "verify"]).await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.err.contains("empty prefix"), "{r:?}");

    // A job that fails (a store that cannot be read): exit status 1, with the reason.
    let data = server.dir.path().join("broken").join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    let r = mux(&[
        "--url",
        url,
        "verify",
        "--prefix",
        "app",
        "--backends",
        "a,broken",
    ])
    .await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.err.starts_with("mux: verify app failed (job "), "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_into_another_muxd() {
    let source = Server::start().await;
    for i in 0..40 {
        source
            .mux
            .put(key(&format!("app/k{i:02}")), vec![i as u8, 0, 255])
            .await
            .unwrap();
    }
    source
        .mux
        .delete(&key("app/k03"), &mux::WriteOptions::default())
        .await
        .unwrap();
    let r = mux(&["--url", &source.url, "export", "--prefix", "app"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.err, "40 records exported under app\n");
    let export = r.out;
    assert_eq!(export.lines().count(), 42, "header, 40 records, end");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.jsonl");
    std::fs::write(&file, &export).unwrap();
    let target = Server::start().await;
    let r = mux(&["--url", &target.url, "import", file.to_str().unwrap()]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.out,
        "imported 40 records (export of app) into mux: 40 applied, 0 already current\n"
    );
    let r = mux(&["--url", &target.url, "export", "--prefix", "app"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let lines: Vec<&str> = export.lines().collect();
    let copied: Vec<&str> = r.out.lines().collect();
    assert_eq!(copied[1..], lines[1..], "every record byte for byte");

    // From stdin, into one store: already there.
    let r = mux_with_stdin(
        &[
            "--url",
            &target.url,
            "import",
            "-",
            "--backends",
            "b",
            "--json",
        ],
        export.clone().into_bytes(),
    )
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let report: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(report["superseded"], 40, "{r:?}");
    assert_eq!(report["targets"], serde_json::json!(["b"]));

    // A cut file: refused with the reason (exit status 3).
    let cut = &export[..export.rfind("{\"end\"").unwrap()];
    let r = mux_with_stdin(
        &["--url", &target.url, "import", "-"],
        cut.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.err.contains("cut short"), "{r:?}");
    let r = mux(&["--url", &target.url, "import", "/nonexistent/file"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");

    // An export that stops part-way (as of a time the stores keep no history for) says
    // so: exit status 4, and the output has no end line.
    let r = mux(&[
        "--url",
        &source.url,
        "export",
        "--prefix",
        "app",
        "--as-of",
        "1",
    ])
    .await;
    assert_eq!(r.code, Some(4), "{r:?}");
    assert!(r.err.contains("incomplete"), "{r:?}");
    assert!(!r.out.contains("\"end\""), "{r:?}");
    source.stop().await;
    target.stop().await;
}
