//! muxd over the object stores: a route writes `paramconfig/` to S3 (the local moto
//! server, `MUX_S3_ENDPOINT`) or Azure Blob (Azurite, `MUX_AZURE_CONNECTION_STRING`) next
//! to an in-memory replica, and the record is in the store when read directly.

mod common;

use std::sync::Arc;

use common::request;
use mux::{Backend, Key};
use muxd::ServerConfig;

const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

/// Serves a config whose `paramconfig/` route writes to `store` (named `store` in the
/// TOML snippet) and memory, PUTs one record through REST, and returns it read from
/// `direct`.
async fn write_through(store_toml: &str, secret: &str, direct: Arc<dyn Backend>) {
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
name = "store"
{store_toml}
[mux]
node_id = 1
[[mux.routes]]
prefix = "paramconfig/"
backends = [{{ backend = "store", role = "primary" }}, {{ backend = "memory", role = "replica" }}]
write = "all"
read = "primary"
[mux.default]
backends = [{{ backend = "memory", role = "primary" }}]
"#
    );
    let config = ServerConfig::from_toml(&text).unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains(secret),
        "the secret must not show in Debug: {shown}"
    );
    let state = muxd::build(&config)
        .await
        .unwrap_or_else(|e| panic!("the store is required (`cargo xtask services up`): {e}"));
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
        serde_json::json!(["store", "memory"])
    );
    let record = direct
        .get(&Key::new("paramconfig/eu/timeout").unwrap())
        .await
        .unwrap()
        .expect("the record is in the store");
    assert_eq!(record.value().as_ref(), b"30s");
    assert_eq!(record.meta().content_type.as_deref(), Some("text/plain"));
    server.shutdown(&mux).await;
    assert!(direct.purge(record.key(), record.version()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_writes_through_to_s3() {
    let endpoint =
        std::env::var("MUX_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let bucket = format!("muxd-{}", std::process::id());
    let store = format!(
        r#"kind = "s3"
bucket = "{bucket}"
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "s3-secret-for-the-test"
create_bucket = true"#
    );
    let direct = mux::s3::S3Backend::connect(
        "direct",
        mux::s3::S3Config::new(&bucket)
            .with_endpoint(&endpoint, true)
            .with_region("us-east-1")
            .with_static_credentials("test", "test")
            .with_create_bucket(true),
    )
    .await
    .unwrap();
    write_through(&store, "s3-secret-for-the-test", Arc::new(direct)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_writes_through_to_azure() {
    let conn = std::env::var("MUX_AZURE_CONNECTION_STRING").unwrap_or_else(|_| AZURITE.into());
    let container = format!("muxd-{}", std::process::id());
    let store = format!(
        r#"kind = "azure"
container = "{container}"
prefix = "cfg"
connection_string = "{conn}"
create_container = true"#
    );
    let direct = mux::azure::AzureBackend::connect(
        "direct",
        mux::azure::AzureConfig::from_connection_string(&conn, &container)
            .unwrap()
            .with_prefix("cfg")
            .with_create_container(true),
    )
    .await
    .unwrap();
    let key = conn
        .split(';')
        .find_map(|p| p.strip_prefix("AccountKey="))
        .unwrap_or("AccountKey");
    write_through(&store, key, Arc::new(direct)).await;
}
