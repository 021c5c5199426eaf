//! What the integration tests share: configs for fresh tables on the test server (the
//! moto server that `cargo xtask services up` starts on 127.0.0.1:4566, or whatever
//! `MUX_DYNAMODB_ENDPOINT` names), and dropping them afterwards. DynamoDB is a required
//! backend: the tests fail, not skip, when the server cannot be reached.
#![allow(dead_code)] // each test file uses its own part

use std::sync::atomic::{AtomicU32, Ordering};

use mux_dynamodb::{DynamoDbBackend, DynamoDbConfig};

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// The test server's endpoint.
pub fn endpoint() -> String {
    var("MUX_DYNAMODB_ENDPOINT", "http://127.0.0.1:4566")
}

/// A config for a fresh table (created at open) on the test server.
pub fn config(test: &str) -> DynamoDbConfig {
    static N: AtomicU32 = AtomicU32::new(0);
    let table = format!(
        "mux-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    DynamoDbConfig::new(table)
        .with_endpoint(endpoint())
        .with_region(var("MUX_DYNAMODB_REGION", "us-east-1"))
        .with_static_credentials(
            var("MUX_DYNAMODB_ACCESS_KEY_ID", "test"),
            var("MUX_DYNAMODB_SECRET_ACCESS_KEY", "test"),
        )
        .with_create_table(true)
}

/// Connects, failing with the fix when the server is not there.
pub async fn connect(config: DynamoDbConfig) -> DynamoDbBackend {
    DynamoDbBackend::connect("dynamodb", config)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the DynamoDB server at {} is required (run `cargo xtask services up`): {e}",
                endpoint()
            )
        })
}

/// Deletes the backend's table (the test server keeps everything in memory).
pub async fn drop_table(backend: &DynamoDbBackend) {
    backend
        .client()
        .delete_table()
        .table_name(&backend.config().table)
        .send()
        .await
        .expect("delete the test table");
}
