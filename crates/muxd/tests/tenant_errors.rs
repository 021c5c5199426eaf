//! With JWT tenants, error messages name the tenant's own keys, never the stored
//! `tenants/<tenant>/…` ones.

mod common;

use common::request;
use jsonwebtoken::{EncodingKey, Header, encode};
use muxd::ServerConfig;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn bearer(tenant: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"tenant": tenant, "scope": "read write", "exp": exp});
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_show_the_tenants_key_not_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::embedded_config(dir.path()).replace(
        "[auth]\nmode = \"off\"",
        &format!("[auth]\nmode = \"jwt\"\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\""),
    );
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux();
    let server = muxd::serve(&config, state).await.unwrap();
    let a = server.addr;
    let auth = bearer("acme");

    // Fits as the tenant's key, too long once stored under tenants/acme/.
    let long = format!("/v1/kv/{}", "k".repeat(1020));
    let missing = "/v1/kv/config/missing";
    for (method, path) in [
        ("PUT", long.as_str()),
        ("GET", missing),
        ("DELETE", missing),
    ] {
        let r = request(a, method, path, &[("authorization", &auth)], b"v").await;
        assert!(r.status >= 400, "{method}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(!message.contains("tenants/"), "{method}: {message}");
    }
    let r = request(a, "GET", missing, &[("authorization", &auth)], b"").await;
    assert!(
        r.text().contains("no record under config/missing"),
        "{}",
        r.text()
    );
    server.shutdown(&mux).await;
}
