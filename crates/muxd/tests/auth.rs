//! Tenants by JWT: isolation and authentication failures, over real sockets.

mod common;

use common::request;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use muxd::ServerConfig;
use serde_json::json;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn config(dir: &std::path::Path) -> ServerConfig {
    let text = common::embedded_config(dir).replace(
        "[auth]\nmode = \"off\"",
        &format!("[auth]\nmode = \"jwt\"\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\naudience = \"muxd\""),
    );
    ServerConfig::from_toml(&text).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token_with(claims: serde_json::Value, alg: Algorithm, secret: &str) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn token(tenant: &str, scope: &str) -> String {
    token_with(
        json!({"tenant": tenant, "scope": scope, "aud": "muxd", "exp": now() + 600}),
        Algorithm::HS256,
        SECRET,
    )
}

fn b64url(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn start(dir: &std::path::Path) -> (muxd::Server, mux::Mux) {
    let config = config(dir);
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux();
    (muxd::serve(&config, state).await.unwrap(), mux)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_reach_each_other_whatever_the_key_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;
    let acme = format!("Bearer {}", token("acme", "read write"));
    let beta = format!("Bearer {}", token("beta", "read write"));
    let auth = |t: &str| [("authorization", t.to_owned())];

    let r = request(
        a,
        "PUT",
        "/v1/kv/config/secret",
        &[("authorization", &acme)],
        b"acme-only",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["key"],
        "config/secret",
        "the tenant sees its own key names"
    );

    // B cannot read, list or find A's key, however it is spelled.
    for path in [
        "/v1/kv/config/secret",
        "/v1/kv/tenants/acme/config/secret",
        "/v1/kv/../acme/config/secret",
        "/v1/kv/%2E%2E/acme/config/secret",
        "/v1/kv/..%2Facme%2Fconfig%2Fsecret",
        "/v1/kv/config%2Fsecret",
    ] {
        let [(k, v)] = auth(&beta);
        let r = request(a, "GET", path, &[(k, &v)], b"").await;
        assert!(
            r.status == 404 || r.status == 400,
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("acme-only"), "{path} leaked A's value");
    }
    for prefix in [
        "",
        "config",
        "tenants",
        "tenants/acme",
        "tenants/acme/config",
    ] {
        let r = request(
            a,
            "GET",
            &format!("/v1/kv?prefix={prefix}"),
            &[("authorization", &beta)],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.text());
        assert_eq!(
            r.json()["entries"],
            json!([]),
            "B listed A's keys under {prefix:?}"
        );
    }
    // B's write of the same name is B's own record; A's is untouched.
    let r = request(
        a,
        "PUT",
        "/v1/kv/config/secret",
        &[("authorization", &beta)],
        b"beta-value",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = request(
        a,
        "PUT",
        "/v1/kv/tenants/acme/config/secret",
        &[("authorization", &beta)],
        b"overwrite?",
    )
    .await;
    assert_eq!(r.status, 200, "stored under B's namespace");
    let r = request(
        a,
        "GET",
        "/v1/kv/config/secret",
        &[("authorization", &acme)],
        b"",
    )
    .await;
    assert_eq!(r.body, b"acme-only");
    let r = request(
        a,
        "GET",
        "/v1/kv/config/secret",
        &[("authorization", &beta)],
        b"",
    )
    .await;
    assert_eq!(r.body, b"beta-value");
    let listed = request(
        a,
        "GET",
        "/v1/kv?prefix=config",
        &[("authorization", &acme)],
        b"",
    )
    .await
    .json();
    assert_eq!(listed["entries"].as_array().unwrap().len(), 1);
    // Stored under each tenant's namespace.
    assert!(
        mux.get(&mux::Key::new("tenants/acme/config/secret").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        mux.get(&mux::Key::new("tenants/beta/tenants/acme/config/secret").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_are_401_and_missing_scopes_403() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;
    let get = |t: Option<String>| async move {
        let h = t.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = h.iter().map(|v| ("authorization", v.as_str())).collect();
        request(a, "GET", "/v1/kv/k", &headers, b"").await
    };
    let expired = token_with(
        json!({"tenant": "acme", "scope": "read", "aud": "muxd", "exp": now() - 3600}),
        Algorithm::HS256,
        SECRET,
    );
    let wrong_aud = token_with(
        json!({"tenant": "acme", "scope": "read", "aud": "other", "exp": now() + 600}),
        Algorithm::HS256,
        SECRET,
    );
    let not_yet = token_with(
        json!({"tenant": "acme", "scope": "read", "aud": "muxd", "exp": now() + 600, "nbf": now() + 3600}),
        Algorithm::HS256,
        SECRET,
    );
    let wrong_key = token_with(
        json!({"tenant": "acme", "scope": "read", "aud": "muxd", "exp": now() + 600}),
        Algorithm::HS256,
        "another-secret-that-is-also-32-bytes-long",
    );
    let other_alg = token_with(
        json!({"tenant": "acme", "scope": "read", "aud": "muxd", "exp": now() + 600}),
        Algorithm::HS384,
        SECRET,
    );
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(
            json!({"tenant": "acme", "scope": "read", "aud": "muxd", "exp": now() + 600})
                .to_string()
                .as_bytes()
        )
    );
    let no_tenant = token_with(
        json!({"scope": "read", "aud": "muxd", "exp": now() + 600}),
        Algorithm::HS256,
        SECRET,
    );
    let bad_tenant = token_with(
        json!({"tenant": "../x", "scope": "read", "aud": "muxd", "exp": now() + 600}),
        Algorithm::HS256,
        SECRET,
    );
    for (what, t) in [
        ("missing", None),
        ("garbage", Some("not-a-jwt".to_owned())),
        ("expired", Some(expired)),
        ("wrong audience", Some(wrong_aud)),
        ("not yet valid", Some(not_yet)),
        ("wrong key", Some(wrong_key)),
        ("another algorithm", Some(other_alg)),
        ("alg none", Some(none)),
        ("no tenant", Some(no_tenant)),
        ("bad tenant", Some(bad_tenant)),
    ] {
        let r = get(t).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(r.json()["error"]["kind"], "unauthenticated", "{what}");
    }
    assert_eq!(
        get(Some(token("acme", "read"))).await.status,
        404,
        "a valid token gets through"
    );

    let reader = format!("Bearer {}", token("acme", "read"));
    let r = request(a, "PUT", "/v1/kv/k", &[("authorization", &reader)], b"v").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("write scope")
    );
    let r = request(
        a,
        "GET",
        "/v1/admin/health",
        &[("authorization", &reader)],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    // A tenant's admin scope does not reach what affects every tenant (see
    // tests/operator.rs): health internals need an operator token.
    let admin = format!("Bearer {}", token("ops", "admin"));
    let r = request(
        a,
        "GET",
        "/v1/admin/health",
        &[("authorization", &admin)],
        b"",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["kind"], "permission_denied");
    server.shutdown(&mux).await;
}

#[tokio::test]
async fn auth_off_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    // (Plain TCP off loopback is allowed here, so that the auth rule is what refuses.)
    let text = format!(
        "allow_plaintext = true\n{}",
        common::embedded_config(dir.path()).replace("127.0.0.1:0", "0.0.0.0:0")
    );
    let err = muxd::build(&ServerConfig::from_toml(&text).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.message().contains("only on a loopback address"),
        "{err}"
    );
    let text = common::embedded_config(dir.path()).replace(
        "[auth]\nmode = \"off\"",
        "[auth]\nmode = \"jwt\"\nalgorithm = \"HS256\"\nsecret = \"short\"",
    );
    let err = muxd::build(&ServerConfig::from_toml(&text).unwrap())
        .await
        .unwrap_err();
    assert!(err.message().contains("at least 32 bytes"), "{err}");
}

/// ES256 with a PEM public key (a test-only key pair in `tests/keys/`), and the
/// algorithm-confusion attack: an HS256 token "signed" with the public key as secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_public_key_and_no_algorithm_confusion() {
    let dir = tempfile::tempdir().unwrap();
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let public = keys.join("es256-public.pem");
    let text = common::embedded_config(dir.path()).replace(
        "[auth]\nmode = \"off\"",
        &format!(
            "[auth]\nmode = \"jwt\"\nalgorithm = \"ES256\"\npublic_key_pem = \"{}\"",
            public.display()
        ),
    );
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let claims = json!({"tenant": "acme", "scope": "read write", "exp": now() + 600});

    let private = std::fs::read(keys.join("es256-private-pkcs8.pem")).unwrap();
    let good = encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(&private).unwrap(),
    )
    .unwrap();
    let r = request(
        server.addr,
        "PUT",
        "/v1/kv/k",
        &[("authorization", &format!("Bearer {good}"))],
        b"v",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let public_bytes = std::fs::read_to_string(&public).unwrap();
    let forged = token_with(claims, Algorithm::HS256, &public_bytes);
    let r = request(
        server.addr,
        "GET",
        "/v1/kv/k",
        &[("authorization", &format!("Bearer {forged}"))],
        b"",
    )
    .await;
    assert_eq!(
        r.status,
        401,
        "HS256 with the public key as secret must be refused: {}",
        r.text()
    );
    server.shutdown(&state.mux()).await;
}

/// ES256 keys from a JWKS file, chosen by `kid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_from_a_jwks_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let text = common::embedded_config(dir.path()).replace(
        "[auth]\nmode = \"off\"",
        &format!(
            "[auth]\nmode = \"jwt\"\nalgorithm = \"ES256\"\njwks = \"{}\"",
            keys.join("es256.jwks.json").display()
        ),
    );
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let private = std::fs::read(keys.join("es256-private-pkcs8.pem")).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("test-es256".into());
    let claims = json!({"tenant": "acme", "scope": "read", "exp": now() + 600});
    let good = encode(
        &header,
        &claims,
        &EncodingKey::from_ec_pem(&private).unwrap(),
    )
    .unwrap();
    let r = request(
        server.addr,
        "GET",
        "/v1/kv/k",
        &[("authorization", &format!("Bearer {good}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 404, "authenticated (no such key): {}", r.text());
    let forged = token_with(claims, Algorithm::HS256, SECRET);
    let r = request(
        server.addr,
        "GET",
        "/v1/kv/k",
        &[("authorization", &format!("Bearer {forged}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    server.shutdown(&state.mux()).await;
}

/// Issue 11's tenant model: the `tenantconfig/` route applies to every tenant's
/// `tenantconfig/…` keys, and storage keeps the tenants apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_write_the_same_key_on_the_tenantconfig_route() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;
    let tokens = [
        ("a", format!("Bearer {}", token("a", "read write"))),
        ("b", format!("Bearer {}", token("b", "read write"))),
    ];
    for (tenant, bearer) in &tokens {
        let value = format!("max={tenant}");
        let r = request(
            a,
            "PUT",
            "/v1/kv/tenantconfig/limits",
            &[("authorization", bearer)],
            value.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(body["key"], "tenantconfig/limits");
        // The tenantconfig/ route lists redb first; the default route lists fs first.
        assert_eq!(
            body["backends"][0]["backend"], "redb",
            "tenant {tenant}'s write took the tenantconfig/ route: {body}"
        );
    }
    for (tenant, bearer) in &tokens {
        let r = request(
            a,
            "GET",
            "/v1/kv/tenantconfig/limits",
            &[("authorization", bearer)],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            format!("max={tenant}"),
            "tenant {tenant} reads its own"
        );
        let r = request(
            a,
            "GET",
            "/v1/kv?prefix=",
            &[("authorization", bearer)],
            b"",
        )
        .await;
        let keys: Vec<String> = r.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            keys,
            ["tenantconfig/limits"],
            "tenant {tenant} lists its own only"
        );
        // Stored under the tenant's namespace, on the route's backends.
        let stored = mux::Key::new(format!("tenants/{tenant}/tenantconfig/limits")).unwrap();
        for backend in ["redb", "fs"] {
            let record = mux::Backend::get(mux.backend(backend).unwrap(), &stored)
                .await
                .unwrap();
            assert_eq!(
                record.unwrap().value(),
                format!("max={tenant}").as_bytes(),
                "{backend} holds tenant {tenant}'s record in its namespace"
            );
        }
    }
    server.shutdown(&mux).await;
}
