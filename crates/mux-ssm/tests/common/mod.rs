//! What the integration tests share: a config for the moto server that
//! `cargo xtask services up` starts on 127.0.0.1:4566 (or `MUX_SSM_ENDPOINT`), under a
//! root path of the test's own, and connecting to it. SSM is a required backend: these
//! tests fail, not skip, when the server cannot be reached.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use mux_core::{Backend, BackendExt, Prefix, Version};
use mux_ssm::{SsmBackend, SsmConfig};

/// `name`, or its default.
pub fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// The test server's endpoint.
pub fn endpoint() -> String {
    var("MUX_SSM_ENDPOINT", "http://127.0.0.1:4566")
}

/// A config under a root path no other test or run uses.
pub fn config(test: &str) -> SsmConfig {
    static N: AtomicU32 = AtomicU32::new(0);
    SsmConfig::new()
        .with_root_path(format!(
            "/mux-test/{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
        .with_endpoint(endpoint())
        .with_region(var("MUX_SSM_REGION", "us-east-1"))
        .with_static_credentials(
            var("MUX_SSM_ACCESS_KEY_ID", "test"),
            var("MUX_SSM_SECRET_ACCESS_KEY", "test"),
        )
}

/// Connects, failing with the reason when the server is not there.
pub async fn connect(config: SsmConfig) -> SsmBackend {
    let endpoint = config.endpoint.clone().unwrap_or_default();
    SsmBackend::connect("ssm", config)
        .await
        .unwrap_or_else(|e| {
            panic!("the SSM server at {endpoint} is required (run `cargo xtask services up`): {e}")
        })
}

/// Purges every parameter mux wrote under the backend's root path.
pub async fn clean(backend: &SsmBackend) {
    let top = Version::new(u64::MAX, u32::MAX, u32::MAX);
    for entry in backend.list_all(&Prefix::all()).await.expect("list") {
        backend.purge(&entry.key, top).await.expect("purge");
    }
}
