//! Shared helpers for the end-to-end tests.
#![allow(dead_code)]

pub use muxd::client::Reply;

/// One request to a test server.
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    muxd::client::request(&addr.to_string(), method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A config for tests: the embedded default under `dir`, on ephemeral ports.
pub fn embedded_config(dir: &std::path::Path) -> String {
    muxd::config::EMBEDDED
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:50051", "127.0.0.1:0")
        .replace("data/fs", &dir.join("fs").display().to_string())
        .replace("data/mux.redb", &dir.join("mux.redb").display().to_string())
}
