//! End-to-end tests of the REST API over real sockets (127.0.0.1, ephemeral ports).

use std::time::Duration;

use muxd::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // A body the server refuses may not be read at all: ignore write errors.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16)
            .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 4 + size..];
    }
}

async fn start(dir: &std::path::Path) -> (muxd::Server, mux::Mux) {
    let text = muxd::config::EMBEDDED
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("data/fs", &dir.join("fs").display().to_string())
        .replace("data/mux.redb", &dir.join("mux.redb").display().to_string())
        .replace("max_body_bytes = 8388608", "max_body_bytes = 1024");
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux.clone();
    (muxd::serve(&config, state).await.unwrap(), mux)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_round_trip_list_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;

    let put = request(
        a,
        "PUT",
        "/v1/kv/tenantconfig/acme/limits",
        &[("content-type", "text/plain")],
        b"max=10",
    )
    .await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let version = put.json()["version"].as_str().unwrap().to_owned();
    assert_eq!(put.header("etag"), Some(format!("\"{version}\"").as_str()));
    assert_eq!(put.json()["applied_on"], serde_json::json!(["redb", "fs"]));

    let get = request(a, "GET", "/v1/kv/tenantconfig/acme/limits", &[], b"").await;
    assert_eq!(get.status, 200);
    assert_eq!(get.body, b"max=10");
    assert_eq!(get.header("content-type"), Some("text/plain"));
    assert_eq!(get.header("etag"), Some(format!("\"{version}\"").as_str()));

    let head = request(a, "HEAD", "/v1/kv/tenantconfig/acme/limits", &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    for k in [
        "tenantconfig/acme/quota",
        "tenantconfig/globex/limits",
        "paramconfig/eu/x",
    ] {
        assert_eq!(
            request(
                a,
                "PUT",
                &format!("/v1/kv/{k}"),
                &[("x-mux-consistency", "one")],
                b"v"
            )
            .await
            .status,
            200
        );
    }
    let page = request(
        a,
        "GET",
        "/v1/kv?prefix=tenantconfig/acme&limit=10",
        &[],
        b"",
    )
    .await
    .json();
    let keys: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["tenantconfig/acme/limits", "tenantconfig/acme/quota"]
    );
    let first = request(a, "GET", "/v1/kv?limit=2", &[], b"").await.json();
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let rest = request(
        a,
        "GET",
        &format!("/v1/kv?limit=10&cursor={cursor}"),
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(rest["entries"].as_array().unwrap().len(), 2);

    let del = request(a, "DELETE", "/v1/kv/tenantconfig/acme/limits", &[], b"").await;
    assert_eq!(del.status, 200);
    let gone = request(a, "GET", "/v1/kv/tenantconfig/acme/limits", &[], b"").await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"]["kind"], "not_found");

    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;

    let r = request(a, "PUT", "/v1/kv/a//b", &[], b"x").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["kind"], "invalid_input");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("segment 2 is empty"),
        "{}",
        r.json()
    );
    let r = request(a, "GET", "/v1/kv/a/../b", &[], b"").await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let r = request(a, "PUT", "/v1/kv/a/%2E%2E/b", &[], b"x").await;
    assert_eq!(
        r.status,
        400,
        "encoded dots are still '..': {}",
        String::from_utf8_lossy(&r.body)
    );

    let big = vec![b'x'; 2048];
    let r = request(a, "PUT", "/v1/kv/big", &[], &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["kind"], "too_large");

    let r = request(a, "PUT", "/v1/kv/k", &[("x-mux-consistency", "most")], b"x").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown write consistency")
    );

    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;
    for i in 0..5 {
        request(a, "PUT", &format!("/v1/kv/m/{i}"), &[], b"v").await;
        request(a, "GET", &format!("/v1/kv/m/{i}"), &[], b"").await;
    }
    assert_eq!(request(a, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(request(a, "GET", "/readyz", &[], b"").await.status, 200);
    let metrics = request(a, "GET", "/metrics", &[], b"").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    // Prometheus text: every sample line is `name{labels} value`.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("mux_backend_request_duration_seconds")
                && l.contains("backend=\"redb\"")
                && l.contains("op=\"put\"")),
        "per-backend latency after traffic:\n{text}"
    );
    let health = request(a, "GET", "/v1/admin/health", &[], b"").await.json();
    assert_eq!(health.as_array().unwrap().len(), 2);
    assert_eq!(health[0]["circuit"], "closed");
    let dead = request(a, "GET", "/v1/admin/dead-letters", &[], b"")
        .await
        .json();
    assert_eq!(dead["dead_letters"], serde_json::json!([]));
    server.shutdown(&mux).await;
}
