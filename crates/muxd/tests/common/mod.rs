//! Shared helpers for the end-to-end tests.
#![allow(dead_code)]

pub mod process;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request to a test server, on its own connection. The path is sent as
/// written (no `..` normalisation), so tests can try what a hostile client would.
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let what = format!("{method} http://{addr}{path}");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let response = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        sender.send_request(request).await
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no answer within 60 s"))
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{what}: body: {e}"))
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// A config for tests: the embedded default under `dir`, on ephemeral ports.
pub fn embedded_config(dir: &std::path::Path) -> String {
    muxd::config::EMBEDDED
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:50051", "127.0.0.1:0")
        .replace("data/fs", &dir.join("fs").display().to_string())
        .replace("data/mux.redb", &dir.join("mux.redb").display().to_string())
}

/// The next change on a watch stream (config events skipped), within 10 s.
pub async fn next_change(
    stream: &mut tonic::Streaming<muxd::grpc::pb::WatchEvent>,
) -> muxd::grpc::pb::Change {
    use muxd::grpc::pb::watch_event::Event;
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("a change within 10 s")
            .expect("the stream stays open")
            .expect("the stream has more");
        if let Some(Event::Change(c)) = event.event {
            return c;
        }
    }
}

/// The Redis the tests share (`MUX_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("MUX_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `<what>_<pid>_<nanos>`: a run id no earlier or concurrent run shares (usable as a
/// PostgreSQL table prefix when `what` is).
pub fn run_id(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}_{}_{nanos}", std::process::id())
}

/// A node's config: a Redis store under the run's namespace, `cfg/` cached with
/// `max_staleness`; `head` holds top-level keys, `feed` the `[feed]` table and more.
pub fn node_config(node: u32, run: &str, head: &str, feed: &str, staleness: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
{head}
[auth]
mode = "off"
{feed}
[[backends]]
name = "kv"
kind = "redis"
url = "{redis}"
namespace = "muxtest:{run}"
[mux]
node_id = {node}
[[mux.routes]]
prefix = "cfg/"
backends = [{{ backend = "kv", role = "primary" }}]
cache = {{ capacity = 1000, ttl = "10m", max_staleness = "{staleness}" }}
[mux.default]
backends = [{{ backend = "kv", role = "primary" }}]
"#,
        redis = redis_url()
    )
}
