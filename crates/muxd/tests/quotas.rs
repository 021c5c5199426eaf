//! Per-tenant quotas: a tenant over its write rate gets 429 with `Retry-After` while
//! another tenant's writes all pass; a write that would cross a byte or key quota is
//! refused and nothing of it is written; usage (requests, bytes, per backend) is
//! reported by `GET /v1/admin/tenants/{t}/usage`.

mod common;

use common::request;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use muxd::ServerConfig;
use serde_json::{Value, json};

const TENANT_SECRET: &str = "tenant-secret-for-quota-tests-0123456789";
const OPERATOR_SECRET: &str = "operator-secret-for-quota-tests-012345678";

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"

[auth]
mode = "jwt"
algorithm = "HS256"
secret = "tenant-secret-for-quota-tests-0123456789"
audience = "muxd"

[auth.operator]
algorithm = "HS256"
secret = "operator-secret-for-quota-tests-012345678"
audience = "muxd-operator"

[quotas]
writes_per_second = 1000

[quotas.tenants.slow]
writes_per_second = 2

[quotas.tenants.acme]
max_bytes = 100
max_keys = 3

[[backends]]
name = "main"
kind = "memory"

[mux]
node_id = 1

[mux.default]
backends = [{ backend = "main", role = "primary" }]
"#;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn bearer(claims: Value, secret: &str) -> String {
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
}

fn tenant(t: &str) -> String {
    bearer(
        json!({"tenant": t, "scope": "read write", "aud": "muxd", "exp": now() + 600}),
        TENANT_SECRET,
    )
}

fn operator() -> String {
    bearer(
        json!({"sub": "ops", "aud": "muxd-operator", "exp": now() + 600}),
        OPERATOR_SECRET,
    )
}

async fn start() -> (muxd::Server, muxd::AppState) {
    let config = ServerConfig::from_toml(CONFIG).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    (server, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_gets_429_and_others_pass() {
    let (server, state) = start().await;
    let a = server.addr;
    let (slow, other) = (tenant("slow"), tenant("other"));
    // Ten writes at once from a tenant allowed 2 per second: most are refused.
    let started = std::time::Instant::now();
    let replies = futures_util::future::join_all((0..10).map(|i| {
        let slow = slow.clone();
        async move {
            request(
                a,
                "PUT",
                &format!("/v1/kv/k{i}"),
                &[("authorization", &slow)],
                b"v",
            )
            .await
        }
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut throttled = 0;
    for r in &replies {
        match r.status {
            200 => {}
            429 => {
                throttled += 1;
                let wait: u64 = r
                    .header("retry-after")
                    .expect("a Retry-After")
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&wait), "Retry-After {wait}");
                assert!(r.text().contains("quota_exceeded"), "{}", r.text());
                assert!(
                    r.text().contains("over its quota of 2 writes per second"),
                    "{}",
                    r.text()
                );
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    // The bucket holds 2 and refills 2 per second, however slow this machine is.
    let allowed = 10 - throttled;
    assert!(throttled >= 1, "no write was throttled");
    assert!(
        f64::from(allowed) <= 2.0 + 2.0 * elapsed.ceil(),
        "{allowed} writes passed in {elapsed:.2} s at 2/s"
    );
    // Another tenant is not limited by the first one's bucket.
    for i in 0..10 {
        let r = request(
            a,
            "PUT",
            &format!("/v1/kv/k{i}"),
            &[("authorization", &other)],
            b"v",
        )
        .await;
        assert_eq!(r.status, 200, "another tenant is not limited: {}", r.text());
    }
    server.shutdown(&state.mux()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_and_key_quotas_refuse_the_write_that_crosses_them() {
    let (server, state) = start().await;
    let a = server.addr;
    let acme = tenant("acme");
    let auth = [("authorization", acme.as_str())];
    let put = |path: &'static str, len: usize| async move {
        request(a, "PUT", path, &auth, &vec![b'x'; len]).await
    };
    assert_eq!(put("/v1/kv/a", 60).await.status, 200);
    let r = put("/v1/kv/b", 60).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_none());
    assert!(
        r.text()
            .contains("would make it 120, over its quota of 100"),
        "{}",
        r.text()
    );
    assert_eq!(
        request(a, "GET", "/v1/kv/b", &auth, b"").await.status,
        404,
        "nothing written"
    );
    // Growing a key counts only the difference.
    assert_eq!(put("/v1/kv/a", 90).await.status, 200);
    // Deleting frees its bytes; then three keys fit, a fourth does not.
    assert_eq!(
        request(a, "DELETE", "/v1/kv/a", &auth, b"").await.status,
        200
    );
    for p in ["/v1/kv/k1", "/v1/kv/k2", "/v1/kv/k3"] {
        assert_eq!(put(p, 10).await.status, 200);
    }
    let r = put("/v1/kv/k4", 10).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("has 3 keys, its quota"), "{}", r.text());

    let usage = request(
        a,
        "GET",
        "/v1/admin/tenants/acme/usage",
        &[("authorization", &operator())],
        b"",
    )
    .await;
    assert_eq!(usage.status, 200, "{}", usage.text());
    let u = usage.json();
    assert_eq!(u["bytes_stored"], 30, "{u}");
    assert_eq!(u["keys_stored"], 3, "{u}");
    assert_eq!(u["bytes_written"], 60 + 90 + 30, "{u}");
    assert_eq!(u["bytes_written_by_backend"]["main"], 180, "{u}");
    assert_eq!(u["requests"]["write"], 8, "{u}");
    assert_eq!(u["bytes_read"], 0, "{u}");
    assert_eq!(u["limits"]["max_bytes"], 100, "{u}");
    let denied = request(a, "GET", "/v1/admin/tenants/acme/usage", &auth, b"").await;
    assert_eq!(denied.status, 403, "a tenant token is not an operator's");
    server.shutdown(&state.mux()).await;
}
