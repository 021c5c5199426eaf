//! muxd over the object stores: a route writes `paramconfig/` to S3 (the local moto
//! server, `MUX_S3_ENDPOINT`) next to an in-memory replica, and the object is there
//! when read with mux-s3 directly.

mod common;

use common::request;
use mux::{Backend, Key};
use muxd::ServerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_writes_through_to_s3() {
    let endpoint =
        std::env::var("MUX_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let bucket = format!("muxd-{}", std::process::id());
    let text = format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
[auth]
mode = "off"
[[backends]]
kind = "memory"
name = "memory"
[[backends]]
kind = "s3"
name = "s3"
bucket = "{bucket}"
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"
create_bucket = true
[mux]
node_id = 1
[[mux.routes]]
prefix = "paramconfig/"
backends = [{{ backend = "s3", role = "primary" }}, {{ backend = "memory", role = "replica" }}]
write = "all"
read = "primary"
[mux.default]
backends = [{{ backend = "memory", role = "primary" }}]
"#
    );
    let config = ServerConfig::from_toml(&text).unwrap();
    let shown = format!("{config:?}");
    assert!(
        shown.contains(r#"secret_access_key: Some("***")"#),
        "the secret must not show in Debug: {shown}"
    );
    let state = muxd::build(&config)
        .await
        .unwrap_or_else(|e| panic!("the S3 server at {endpoint} is required: {e}"));
    let mux = state.mux();
    let server = muxd::serve(&config, state).await.unwrap();
    let put = request(
        server.addr,
        "PUT",
        "/v1/kv/paramconfig/eu/timeout",
        &[("content-type", "text/plain")],
        b"30s",
    )
    .await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(
        put.json()["applied_on"],
        serde_json::json!(["s3", "memory"])
    );

    let direct = mux::s3::S3Backend::connect(
        "direct",
        mux::s3::S3Config::new(&bucket)
            .with_endpoint(&endpoint, true)
            .with_region("us-east-1")
            .with_static_credentials("test", "test"),
    )
    .await
    .unwrap();
    let record = direct
        .get(&Key::new("paramconfig/eu/timeout").unwrap())
        .await
        .unwrap()
        .expect("the record is in the bucket");
    assert_eq!(record.value().as_ref(), b"30s");
    assert_eq!(record.meta().content_type.as_deref(), Some("text/plain"));
    server.shutdown(&mux).await;
}
