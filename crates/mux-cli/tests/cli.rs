//! The `mux` CLI against a real muxd: put, get, ls, rm, bulk put, watch, health, and
//! what it says when a key is absent or refused.

mod common;

use common::{Muxd, mux};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_ls_rm_and_bulk_put() {
    let server = Muxd::start().await;
    let url = server.url.as_str();

    let r = mux(&["--url", url, "put", "tenantconfig/acme/limits", "max=10"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.out.starts_with("tenantconfig/acme/limits = version "),
        "{r:?}"
    );
    let on = r.out.trim_end().rsplit(" on ").next().unwrap();
    let mut on: Vec<&str> = on.split(", ").collect();
    on.sort();
    assert_eq!(on, ["fs", "redb"], "{r:?}");
    let r = mux(&["--url", url, "get", "tenantconfig/acme/limits"]).await;
    assert_eq!((r.code, r.out.as_str()), (Some(0), "max=10"), "{r:?}");
    let r = mux(&["--url", url, "put", "odd keys/with space?#%", "v"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = mux(&["--url", url, "get", "odd keys/with space?#%"]).await;
    assert_eq!((r.code, r.out.as_str()), (Some(0), "v"), "{r:?}");

    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("bulk");
    std::fs::create_dir_all(files.join("eu")).unwrap();
    std::fs::write(files.join("eu/timeout_ms"), "1500").unwrap();
    std::fs::write(files.join("eu/retries"), "3").unwrap();
    std::fs::write(files.join("global"), "on").unwrap();
    let dir_arg = files.to_str().unwrap();
    let r = mux(&[
        "--url",
        url,
        "put",
        "--dir",
        dir_arg,
        "--prefix",
        "paramconfig",
    ])
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    // stderr is a pipe here, not a terminal: no progress bar, one summary line.
    let summary = format!("mux: put --dir {dir_arg}: 3 files written (7 bytes), 0 failed, in ");
    assert!(r.err.starts_with(&summary), "{r:?}");
    assert_eq!(r.err.lines().count(), 1, "only the summary: {r:?}");
    assert!(
        !r.err.contains('\r') && !r.err.contains('\x1b'),
        "no bar: {r:?}"
    );

    let r = mux(&["--url", url, "ls", "paramconfig"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let keys: Vec<&str> = r
        .out
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "paramconfig/eu/retries",
            "paramconfig/eu/timeout_ms",
            "paramconfig/global"
        ]
    );
    assert_eq!(r.err, "3 keys\n");

    let r = mux(&["--url", url, "rm", "tenantconfig/acme/limits"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.out
            .starts_with("tenantconfig/acme/limits deleted at version "),
        "{r:?}"
    );
    let r = mux(&["--url", url, "health"]).await;
    assert!(r.code == Some(0) && r.out.contains("\"circuit\""), "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_keys_are_not_found_with_exit_status_1() {
    let server = Muxd::start().await;
    let url = server.url.as_str();

    let r = mux(&["--url", url, "get", "tenantconfig/nobody"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.err, "mux: not found: tenantconfig/nobody\n");
    assert!(r.out.is_empty(), "{r:?}");

    let r = mux(&["--url", url, "rm", "tenantconfig/nobody"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.err,
        "mux: not found: tenantconfig/nobody (nothing to delete)\n"
    );

    // A key that existed once: the second rm finds nothing.
    assert_eq!(mux(&["--url", url, "put", "k", "v"]).await.code, Some(0));
    assert_eq!(mux(&["--url", url, "rm", "k"]).await.code, Some(0));
    let r = mux(&["--url", url, "rm", "k"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.err, "mux: not found: k (nothing to delete)\n");
    let r = mux(&["--url", url, "get", "k"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_shows_the_servers_message_with_exit_status_3() {
    let server = Muxd::start().await;
    let url = server.url.as_str();

    let r = mux(&["--url", url, "put", "a//b", "x"]).await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.err.contains("segment 2 is empty"), "{r:?}");
    assert!(!r.err.contains("internal"), "{r:?}");
    // URLs would drop a '..' segment, so mux refuses it before sending.
    let r = mux(&["--url", url, "get", "a/../b"]).await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.err.contains("segment 2 is '..'"), "{r:?}");
    let r = mux(&["--url", url, "put", "k", "v", "--consistency", "sometimes"]).await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.err.contains("sometimes"), "{r:?}");

    // A bulk load goes on after a file the server refuses, and says so.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good"), "1").unwrap();
    std::fs::create_dir(dir.path().join("x")).unwrap();
    std::fs::write(dir.path().join("x").join("tab\there"), "2").unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let r = mux(&["--url", url, "put", "--dir", dir_arg]).await;
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(
        r.err.contains(": 1 files written (1 bytes), 1 failed, in "),
        "{r:?}"
    );
    assert!(r.err.contains("control character U+0009"), "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_changes() {
    let server = Muxd::start().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mux"))
        .args(["--grpc", &server.grpc, "watch", "w"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .collect::<Result<Vec<_>, _>>()
    });
    // Writes until the watcher has seen two (it may subscribe after the first ones).
    let url = server.url.as_str();
    for i in 0..100 {
        if lines.is_finished() {
            break;
        }
        assert_eq!(mux(&["--url", url, "put", "w/k", "v"]).await.code, Some(0));
        assert_eq!(
            mux(&["--url", url, "put", "other/k", "v"]).await.code,
            Some(0)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50 + i)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let lines = lines.join().unwrap().unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in lines {
        assert!(line.starts_with("put\tw/k\t"), "{line}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_no_panic() {
    let server = Muxd::start().await;
    let url = server.url.as_str();
    for i in 0..3 {
        let key = format!("p/{i}");
        assert_eq!(mux(&["--url", url, "put", &key, "v"]).await.code, Some(0));
    }
    for args in [["ls", "p"], ["get", "p/1"]] {
        let url = url.to_owned();
        let (code, err) = tokio::task::spawn_blocking(move || {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mux"))
                .arg("--url")
                .arg(url)
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // As `mux ls | head -0`: the reader is gone before mux writes.
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .unwrap();
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_as_of() {
    // The embedded config with a history-keeping replica on tenantconfig/.
    let server = Muxd::start_with(|text| {
        let edited = text
            .replace(
                r#"{ backend = "fs", role = "replica" }]
write = "all"
read = "hedged""#,
                r#"{ backend = "fs", role = "replica" }, { backend = "versions", role = "replica" }]
write = "all"
read = "hedged""#,
            )
            .replace(
                "[mux]\n",
                "[[backends]]\nkind = \"memory\"\nname = \"versions\"\nhistory = true\n\n[mux]\n",
            );
        assert!(
            edited.contains(r#"backend = "versions""#),
            "the route edit missed"
        );
        edited
    })
    .await;
    let url = server.url.as_str();
    let key = "tenantconfig/acme/limits";
    let mut versions = Vec::new();
    for value in ["max=10", "max=20"] {
        let r = mux(&["--url", url, "put", key, value]).await;
        assert_eq!(r.code, Some(0), "{r:?}");
        let version = r.out.split("version ").nth(1).unwrap().split(' ').next();
        versions.push(version.unwrap().to_owned());
    }
    let r = mux(&["--url", url, "rm", key]).await;
    assert_eq!(r.code, Some(0), "{r:?}");

    let r = mux(&["--url", url, "history", key]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let lines: Vec<Vec<&str>> = r.out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert_eq!(lines[0][2], "(deleted)");
    assert_eq!(lines[1][1..], [versions[1].as_str(), "max=20"]);
    assert_eq!(lines[2][1..], [versions[0].as_str(), "max=10"]);
    assert!(lines[2][0].ends_with('Z'), "{r:?}");

    let r = mux(&["--url", url, "get", key, "--as-of", &versions[0]]).await;
    assert_eq!((r.code, r.out.as_str()), (Some(0), "max=10"), "{r:?}");
    let r = mux(&["--url", url, "get", key]).await;
    assert_eq!(r.code, Some(1), "deleted now: {r:?}");

    // A route without history: the server's reason, not a stack trace.
    let r = mux(&["--url", url, "history", "paramconfig/x"]).await;
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(r.err.contains("keeps history"), "{r:?}");
}
