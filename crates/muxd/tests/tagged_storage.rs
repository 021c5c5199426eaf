//! The README's tagged-storage session, run against `examples/tagged-storage.toml` as
//! shipped (only the listen addresses are changed, to free ports): DynamoDB, Parameter
//! Store and PostgreSQL on the servers `cargo xtask services up` runs. They are
//! required backends: without them this test fails.
//!
//! Two tenants write and read their settings, a parameter keeps its history, and an
//! as-of read answers the value a parameter had.

mod common;

use std::time::Duration;

use common::{Reply, request};
use mux::{BackendExt, Prefix, Version};
use muxd::ServerConfig;
use muxd::token::{TokenRequest, mint};

const EXAMPLE: &str = include_str!("../examples/tagged-storage.toml");

fn config() -> ServerConfig {
    let text = EXAMPLE
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "grpc_listen = \"127.0.0.1:50051\"",
            "grpc_listen = \"127.0.0.1:0\"",
        );
    assert_ne!(text, EXAMPLE, "the example's listen addresses changed");
    ServerConfig::from_toml(&text).expect("the example parses")
}

fn bearer(config: &ServerConfig, tenant: &str) -> String {
    let token = mint(
        &config.auth,
        &TokenRequest {
            tenant: Some(tenant.to_owned()),
            scopes: vec!["read".into(), "write".into()],
            ttl: Duration::from_secs(600),
            operator: false,
            subject: None,
        },
    )
    .expect("the example's [auth] signs tokens");
    format!("Bearer {token}")
}

async fn call(server: &muxd::Server, auth: &str, method: &str, path: &str, body: &str) -> Reply {
    let headers = [("authorization", auth), ("content-type", "text/plain")];
    request(server.addr, method, path, &headers, body.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_their_settings_and_a_parameters_history() {
    let config = config();
    let state = muxd::build(&config).await.expect("the example builds");
    let mux = state.mux();
    let server = muxd::serve(&config, state).await.expect("muxd serves");
    // Tenants of this run only, so an earlier run's records cannot interfere.
    let run = std::process::id();
    let (acme, globex) = (format!("acme-{run}"), format!("globex-{run}"));
    let (a, g) = (bearer(&config, &acme), bearer(&config, &globex));

    // Each tenant writes the same logical key; each reads its own.
    let path = "/v1/kv/tenantconfig/limits";
    for (auth, value) in [(&a, "max_requests=100"), (&g, "max_requests=5")] {
        let put = call(&server, auth, "PUT", path, value).await;
        assert_eq!(put.status, 200, "{}", put.text());
        assert_eq!(
            put.json()["applied_on"],
            serde_json::json!(["tenantconfig"])
        );
    }
    // Read twice each: the second read is served by the route cache, per tenant.
    let hits = mux.stats().cache.hits;
    for _ in 0..2 {
        for (auth, value) in [(&a, "max_requests=100"), (&g, "max_requests=5")] {
            let got = call(&server, auth, "GET", path, "").await;
            assert_eq!((got.status, got.text().as_str()), (200, value));
        }
    }
    assert!(
        mux.stats().cache.hits >= hits + 2,
        "tenantconfig/ reads come from the cache: {:?}",
        mux.stats().cache
    );
    // A new value through this node replaces the cached one at once.
    let put = call(&server, &a, "PUT", path, "max_requests=150").await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        call(&server, &a, "GET", path, "").await.text(),
        "max_requests=150"
    );
    let listed = call(&server, &g, "GET", "/v1/kv?prefix=tenantconfig", "").await;
    let entries = listed.json()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "{}", listed.text());
    assert_eq!(entries[0]["key"], "tenantconfig/limits");
    // Stored under the tenant's namespace, in DynamoDB.
    let stored = mux::Key::new(format!("tenants/{acme}/tenantconfig/limits")).unwrap();
    let ddb = mux.backend("tenantconfig").unwrap();
    assert_eq!(
        ddb.get(&stored).await.unwrap().unwrap().value(),
        "max_requests=150"
    );

    // A parameter written three times: Parameter Store and the PostgreSQL replica.
    let param = "/v1/kv/paramconfig/db/timeout_ms";
    let mut versions = Vec::new();
    for value in ["1000", "1500", "2000"] {
        let put = call(&server, &a, "PUT", param, value).await;
        assert_eq!(put.status, 200, "{}", put.text());
        let body = put.json();
        assert_eq!(body["applied_on"].as_array().unwrap().len(), 2, "{body}");
        versions.push(body["version"].as_str().unwrap().to_owned());
    }
    let got = call(&server, &a, "GET", param, "").await;
    assert_eq!(got.text(), "2000");
    // The other tenant has no such parameter.
    assert_eq!(call(&server, &g, "GET", param, "").await.status, 404);

    let history = call(
        &server,
        &a,
        "GET",
        "/v1/history/paramconfig/db/timeout_ms",
        "",
    )
    .await;
    assert_eq!(history.status, 200, "{}", history.text());
    let body = history.json();
    let values: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["2000", "1500", "1000"], "{body}");

    let as_of = format!("{param}?as_of={}", versions[0]);
    let old = call(&server, &a, "GET", &as_of, "").await;
    assert_eq!((old.status, old.text().as_str()), (200, "1000"));
    let as_of = format!("{param}?as_of={}", versions[1]);
    assert_eq!(call(&server, &a, "GET", &as_of, "").await.text(), "1500");

    // Without a token nothing is served.
    let anonymous = request(server.addr, "GET", param, &[], b"").await;
    assert_eq!(anonymous.status, 401);

    server.shutdown(&mux).await;
    // What this run stored, removed from every store.
    let top = Version::new(u64::MAX, u32::MAX, u32::MAX);
    for name in ["tenantconfig", "params", "pg"] {
        let backend = mux.backend(name).unwrap();
        for tenant in [&acme, &globex] {
            let prefix = Prefix::new(format!("tenants/{tenant}")).unwrap();
            for entry in backend.list_all(&prefix).await.unwrap() {
                backend.purge(&entry.key, top).await.unwrap();
            }
        }
    }
}
