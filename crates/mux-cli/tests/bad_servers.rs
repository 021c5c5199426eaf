//! What `mux` says when the other end is not a well-behaved muxd, and what `--help`
//! says: a clear message and exit status, never a panic.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::time::Duration;

use common::mux;

/// A 127.0.0.1 server that answers each of the next `connections` requests with
/// `reply` (raw bytes, whatever they are). Returns its URL.
fn fake_server(reply: impl Into<Vec<u8>>, connections: usize) -> String {
    let reply = reply.into();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            // Read the request head (and whatever body came with it) before answering,
            // so the client sees the reply rather than a reset.
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(&reply);
            let _ = stream.shutdown(Shutdown::Write);
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    url
}

/// An HTTP/1.1 answer with `status` (e.g. "404 Not Found") and `body`.
fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut reply = format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(body);
    reply
}

/// Runs `mux --url <url> args…` and checks it failed with status 4 and no panic.
async fn fails_cleanly(url: &str, args: &[&str]) -> String {
    let mut all = vec!["--url", url];
    all.extend_from_slice(args);
    let r = mux(&all).await;
    assert_eq!(r.code, Some(4), "{r:?}");
    assert!(!r.err.contains("panicked"), "{r:?}");
    assert!(
        r.err.starts_with("mux: ") && r.err.lines().count() == 1,
        "{r:?}"
    );
    assert!(!r.err.contains("internal"), "{r:?}");
    r.err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_http_gives_a_clear_error() {
    let url = fake_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", 1);
    let err = fails_cleanly(&url, &["get", "k"]).await;
    assert!(err.contains("no valid HTTP answer"), "{err}");
    assert!(err.contains("is --url a muxd REST endpoint?"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_that_are_not_muxd_json_name_the_status() {
    let url = fake_server(
        answer(
            "502 Bad Gateway",
            "content-type: text/html\r\n",
            b"<html>oh no</html>\r\n",
        ),
        1,
    );
    let err = fails_cleanly(&url, &["get", "k"]).await;
    assert!(
        err.contains("502 Bad Gateway with the body \"<html>oh no</html>"),
        "{err}"
    );

    let url = fake_server(answer("404 Not Found", "", b""), 1);
    let err = fails_cleanly(&url, &["rm", "k"]).await;
    assert!(err.contains("404 Not Found with an empty body"), "{err}");

    let url = fake_server(answer("500 Internal Server Error", "", b"\xff\xfe\x00"), 1);
    let err = fails_cleanly(&url, &["put", "k", "v"]).await;
    assert!(
        err.contains("500 Internal Server Error with a body that is not UTF-8 text (3 bytes)"),
        "{err}"
    );

    let url = fake_server(
        answer(
            "503 Service Unavailable",
            "content-type: application/json\r\n",
            br#"{"error":{"kind":"unavailable","message":"backend 'redis' is unreachable"}}"#,
        ),
        1,
    );
    let err = fails_cleanly(&url, &["get", "k"]).await;
    assert!(
        err.contains("server error (503 Service Unavailable): backend 'redis' is unreachable"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_bodies_that_are_not_muxd_json_name_the_status() {
    let url = fake_server(answer("200 OK", "", b"hello"), 3);
    let err = fails_cleanly(&url, &["put", "k", "v"]).await;
    assert!(
        err.contains("200 OK with \"hello\", not a write reply"),
        "{err}"
    );
    let err = fails_cleanly(&url, &["ls"]).await;
    assert!(err.contains("not a page of keys"), "{err}");
    let err = fails_cleanly(&url, &["health"]).await;
    assert!(err.contains("not a health report"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_at_all_says_so() {
    // Bound then dropped: nothing listens there.
    let url = format!(
        "http://{}",
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    );
    let err = fails_cleanly(&url, &["get", "k"]).await;
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("set --url or MUX_URL"), "{err}");
    let r = mux(&["--grpc", &url, "watch"]).await;
    assert_eq!(r.code, Some(4), "{r:?}");
    assert!(r.err.contains("cannot reach the gRPC endpoint"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_describes_the_cli() {
    let r = mux(&["--help"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    for needle in [
        "The command line for a muxd server",
        "REST API (--url)",
        "MUX_URL",
        "MUX_GRPC",
        "MUX_TOKEN",
        "Examples:",
        "mux put --dir ./configs --prefix paramconfig",
        "Exit status:",
        "1  not found",
    ] {
        assert!(
            r.out.contains(needle),
            "{needle:?} missing from:\n{}",
            r.out
        );
    }
    assert!(!r.out.contains("storage proxy"), "{}", r.out);
    let r = mux(&["--url", "ftp://x", "get", "k"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.err.contains("not an http:// or https:// URL"), "{r:?}");
    let r = mux(&["get"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
}
