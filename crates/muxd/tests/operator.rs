//! Operators are not tenants (issue 11): what affects every tenant needs an operator
//! token; a tenant's `admin` scope reaches only its own dead letters. Over real sockets.

mod common;

use std::time::Duration;

use common::{Reply, request};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use muxd::ServerConfig;
use muxd::grpc::pb;
use muxd::grpc::pb::store_client::StoreClient;
use serde_json::{Value, json};

const TENANT_SECRET: &str = "the-tenants-hs256-secret-32-bytes-long";
const OPERATOR_SECRET: &str = "the-operators-hs256-secret-32-bytes-long";
const ATTACKER_SECRET: &str = "a-secret-the-attacker-chose-32-bytes-long";

fn auth_section(tenant_secret: &str, operator: Option<(&str, &str)>) -> String {
    let mut auth = format!(
        "[auth]\nmode = \"jwt\"\nalgorithm = \"HS256\"\nsecret = \"{tenant_secret}\"\naudience = \"muxd\"\n"
    );
    if let Some((secret, audience)) = operator {
        auth.push_str(&format!(
            "\n[auth.operator]\nalgorithm = \"HS256\"\nsecret = \"{secret}\"\naudience = \"{audience}\"\n"
        ));
    }
    auth
}

/// The embedded config with `auth`, plus a `broken` fs replica for `doomed/` keys (its
/// data directory is replaced by a file once muxd runs, so every write to it fails
/// permanently and lands in the dead-letter queue, even as root).
fn config_text(dir: &std::path::Path, auth: &str) -> String {
    let mut text = common::embedded_config(dir).replace("[auth]\nmode = \"off\"", auth);
    text.push_str(&format!(
        "\n[[backends]]\nkind = \"fs\"\nname = \"broken\"\npath = \"{}\"\n\
         \n[[mux.routes]]\nprefix = \"doomed/\"\nwrite = \"primary\"\nread = \"primary\"\n\
         backends = [{{ backend = \"fs\", role = \"primary\" }}, {{ backend = \"broken\", role = \"replica\" }}]\n\
         \n[mux.resilience.retry]\nmax_attempts = 1\n",
        dir.join("broken").display()
    ));
    text
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(header: &Header, claims: Value, secret: &str) -> String {
    encode(
        header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn tenant_token(tenant: &str, scope: &str, secret: &str) -> String {
    let claims = json!({"tenant": tenant, "scope": scope, "aud": "muxd", "exp": now() + 600});
    sign(&Header::new(Algorithm::HS256), claims, secret)
}

fn operator_token() -> String {
    let claims = json!({"sub": "ops-alice", "aud": "muxd-operator", "exp": now() + 600});
    sign(&Header::new(Algorithm::HS256), claims, OPERATOR_SECRET)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn call(a: std::net::SocketAddr, method: &str, path: &str, auth: &str, body: &[u8]) -> Reply {
    request(a, method, path, &[("authorization", auth)], body).await
}

fn assert_error(r: &Reply, status: u16, kind: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.json()["error"]["kind"], kind, "{what}: {}", r.text());
}

async fn start(text: &str) -> (muxd::Server, muxd::AppState) {
    let config = ServerConfig::from_toml(text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    (muxd::serve(&config, state.clone()).await.unwrap(), state)
}

/// Breaks the `broken` replica, then has `acme` and `beta` each write a `doomed/` key;
/// returns once both writes are in the dead-letter queue.
async fn two_tenants_dead_letters(dir: &std::path::Path, server: &muxd::Server, mux: &mux::Mux) {
    let data = dir.join("broken").join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    for tenant in ["acme", "beta"] {
        let token = bearer(&tenant_token(tenant, "read write", TENANT_SECRET));
        let path = format!("/v1/kv/doomed/{tenant}-key");
        let r = call(server.addr, "PUT", &path, &token, b"v").await;
        assert_eq!(r.status, 200, "the primary took it: {}", r.text());
    }
    mux.settle().await;
    let dead = mux.dead_letters().await.unwrap();
    let keys: Vec<&str> = dead.iter().map(|d| d.record.key().as_str()).collect();
    assert_eq!(
        keys,
        [
            "tenants/acme/doomed/acme-key",
            "tenants/beta/doomed/beta-key"
        ],
        "both writes to the broken replica were dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_cannot_take_over_and_sees_only_its_own_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_section(TENANT_SECRET, Some((OPERATOR_SECRET, "muxd-operator")));
    let text = config_text(dir.path(), &auth);
    let (server, state) = start(&text).await;
    let (a, mux) = (server.addr, state.mux());
    let acme_admin = bearer(&tenant_token("acme", "read write admin", TENANT_SECRET));

    // The takeover: install the attacker's own secret, then forge tokens for beta.
    let hostile = config_text(dir.path(), &auth_section(ATTACKER_SECRET, None));
    let r = call(
        a,
        "POST",
        "/v1/admin/reload",
        &acme_admin,
        hostile.as_bytes(),
    )
    .await;
    assert_error(&r, 403, "permission_denied", "a tenant admin reloads");
    assert!(r.text().contains("operator token"), "{}", r.text());
    assert_eq!(
        state.live().config.auth.secret.as_deref(),
        Some(TENANT_SECRET),
        "the configuration is unchanged"
    );
    let forged = bearer(&tenant_token("beta", "read write admin", ATTACKER_SECRET));
    let r = call(a, "GET", "/v1/kv/anything", &forged, b"").await;
    assert_error(
        &r,
        401,
        "unauthenticated",
        "a token forged with the attacker's secret",
    );
    let r = call(a, "GET", "/v1/kv/anything", &acme_admin, b"").await;
    assert_eq!(
        r.status,
        404,
        "the real tenant secret still rules: {}",
        r.text()
    );

    // Health internals are the operator's.
    let r = call(a, "GET", "/v1/admin/health", &acme_admin, b"").await;
    assert_error(&r, 403, "permission_denied", "a tenant admin reads health");

    // Dead letters: each tenant sees its own, under its own key names.
    two_tenants_dead_letters(dir.path(), &server, &mux).await;
    let r = call(a, "GET", "/v1/admin/dead-letters", &acme_admin, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mine = r.json()["dead_letters"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1, "acme sees only its own: {}", r.text());
    assert_eq!(mine[0]["key"], "doomed/acme-key");
    assert_eq!(mine[0]["tenant"], "acme");
    assert!(
        !r.text().contains("tenants/"),
        "no stored key leaks: {}",
        r.text()
    );
    assert!(
        !r.text().contains("beta"),
        "nothing of beta leaks: {}",
        r.text()
    );
    let reader = bearer(&tenant_token("acme", "read write", TENANT_SECRET));
    let r = call(a, "GET", "/v1/admin/dead-letters", &reader, b"").await;
    assert_error(
        &r,
        403,
        "permission_denied",
        "a tenant without admin lists dead letters",
    );

    let all = mux.dead_letters().await.unwrap();
    let beta_id = all
        .iter()
        .find(|d| d.record.key().as_str().contains("beta"))
        .unwrap()
        .id;
    for (method, path, absent_path) in [
        (
            "POST",
            format!("/v1/admin/dead-letters/{beta_id}/replay"),
            "/v1/admin/dead-letters/999999/replay",
        ),
        (
            "DELETE",
            format!("/v1/admin/dead-letters/{beta_id}"),
            "/v1/admin/dead-letters/999999",
        ),
    ] {
        let r = call(a, method, &path, &acme_admin, b"").await;
        assert_error(&r, 404, "not_found", &format!("acme's {method} {path}"));
        let absent = call(a, method, absent_path, &acme_admin, b"").await;
        assert_eq!(
            r.text(),
            absent.text().replace("999999", &beta_id.to_string()),
            "the same answer as for an absent id"
        );
    }
    assert_eq!(
        mux.dead_letters().await.unwrap().len(),
        2,
        "beta's is still there"
    );
    let r = call(
        a,
        "DELETE",
        &format!("/v1/admin/dead-letters/{}", mine[0]["id"]),
        &acme_admin,
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "acme discards its own: {}", r.text());

    // The operator lists every tenant's, under the stored keys, and may reload.
    let operator = bearer(&operator_token());
    let r = call(a, "GET", "/v1/admin/dead-letters", &operator, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = r.json()["dead_letters"].clone();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["key"], "tenants/beta/doomed/beta-key");
    assert_eq!(listed[0]["tenant"], "beta");
    let r = call(a, "GET", "/v1/admin/health", &operator, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        a,
        "POST",
        &format!("/v1/admin/dead-letters/{beta_id}/replay"),
        &operator,
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(a, "POST", "/v1/admin/reload", &operator, text.as_bytes()).await;
    assert_eq!(r.status, 200, "the operator reloads: {}", r.text());
    // An operator names no tenant: it has no keys.
    let r = call(a, "GET", "/v1/kv/doomed/acme-key", &operator, b"").await;
    assert_error(&r, 403, "permission_denied", "an operator token on /v1/kv");
    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_never_passes_as_an_operator_token() {
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_section(TENANT_SECRET, Some((OPERATOR_SECRET, "muxd-operator")));
    let text = config_text(dir.path(), &auth);
    let (server, state) = start(&text).await;
    let a = server.addr;
    let h = Header::new(Algorithm::HS256);
    let exp = now() + 600;
    let as_operator = [
        (
            "operator-ish claims and scopes",
            json!({"tenant": "acme", "scope": "admin operator", "role": "operator", "operator": true, "aud": "muxd", "exp": exp}),
            TENANT_SECRET,
            403,
        ),
        (
            "the operator audience, signed with the tenant secret",
            json!({"tenant": "acme", "scope": "admin", "aud": "muxd-operator", "exp": exp}),
            TENANT_SECRET,
            401,
        ),
        (
            "both audiences, signed with the tenant secret",
            json!({"tenant": "acme", "scope": "admin", "aud": ["muxd", "muxd-operator"], "exp": exp}),
            TENANT_SECRET,
            401,
        ),
        (
            "the operator key without the operator audience",
            json!({"sub": "x", "aud": "muxd", "exp": exp}),
            OPERATOR_SECRET,
            401,
        ),
        (
            "the operator key without any audience",
            json!({"sub": "x", "exp": exp}),
            OPERATOR_SECRET,
            401,
        ),
    ];
    for (what, claims, secret, status) in as_operator {
        let token = bearer(&sign(&h, claims, secret));
        let r = call(a, "POST", "/v1/admin/reload", &token, text.as_bytes()).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let r = call(a, "GET", "/v1/admin/health", &token, b"").await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
    }
    server.shutdown(&state.mux()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_operator_section_all_tenant_actions_are_refused_over_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), &auth_section(TENANT_SECRET, None));
    let (server, state) = start(&text).await;
    let admin = bearer(&tenant_token("acme", "read write admin", TENANT_SECRET));
    for (method, path) in [("POST", "/v1/admin/reload"), ("GET", "/v1/admin/health")] {
        let r = call(server.addr, method, path, &admin, text.as_bytes()).await;
        assert_error(&r, 403, "permission_denied", path);
        assert!(
            r.text().contains("[auth.operator]"),
            "names what to configure: {}",
            r.text()
        );
    }
    // The tenant's own dead letters stay within its reach.
    let r = call(server.addr, "GET", "/v1/admin/dead-letters", &admin, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The host can still reload (what SIGHUP does).
    state
        .reload(ServerConfig::from_toml(&text).unwrap())
        .await
        .unwrap();
    server.shutdown(&state.mux()).await;
}

#[tokio::test]
async fn operator_keys_must_differ_from_the_tenants() {
    let dir = tempfile::tempdir().unwrap();
    for (operator, expected) in [
        ((TENANT_SECRET, "muxd-operator"), "equals the tenant secret"),
        ((OPERATOR_SECRET, "muxd"), "also the tenant audience"),
        (
            ("short", "muxd-operator"),
            "[auth.operator] configuration: the HS256 secret must be at least 32 bytes",
        ),
    ] {
        let text = config_text(dir.path(), &auth_section(TENANT_SECRET, Some(operator)));
        let err = muxd::build(&ServerConfig::from_toml(&text).unwrap())
            .await
            .unwrap_err();
        assert!(err.message().contains(expected), "{expected}: {err}");
    }
    let text = config_text(
        dir.path(),
        &auth_section(TENANT_SECRET, Some((OPERATOR_SECRET, "x"))),
    )
    .replace("audience = \"x\"\n", "");
    let err = muxd::build(&ServerConfig::from_toml(&text).unwrap())
        .await
        .unwrap_err();
    assert!(err.message().contains("set audience"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_crit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_section(TENANT_SECRET, Some((OPERATOR_SECRET, "muxd-operator")));
    let (server, state) = start(&config_text(dir.path(), &auth)).await;
    let a = server.addr;
    let token = tenant_token("acme", "read write", TENANT_SECRET);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = call(a, "PUT", "/v1/kv/k", &format!("{scheme} {token}"), b"v").await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }
    let op = operator_token();
    let r = call(a, "GET", "/v1/admin/health", &format!("bearer {op}"), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());

    let mut grpc = StoreClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap();
    for scheme in ["bearer", "BEARER"] {
        let mut req = tonic::Request::new(pb::GetRequest {
            key: "k".into(),
            ..Default::default()
        });
        req.metadata_mut().insert(
            "authorization",
            format!("{scheme} {token}").parse().unwrap(),
        );
        let got = grpc.get(req).await.unwrap().into_inner();
        assert!(got.found, "gRPC with {scheme}");
    }

    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".into()]);
    let claims = json!({"tenant": "acme", "scope": "read", "aud": "muxd", "exp": now() + 600});
    let critical = sign(&header, claims, TENANT_SECRET);
    let r = call(a, "GET", "/v1/kv/k", &bearer(&critical), b"").await;
    assert_error(&r, 401, "unauthenticated", "a tenant token with crit");
    assert!(r.text().contains("crit"), "{}", r.text());
    let op_claims = json!({"sub": "ops", "aud": "muxd-operator", "exp": now() + 600});
    let critical_op = sign(&header, op_claims, OPERATOR_SECRET);
    let r = call(a, "GET", "/v1/admin/health", &bearer(&critical_op), b"").await;
    assert_error(&r, 401, "unauthenticated", "an operator token with crit");
    let mut req = tonic::Request::new(pb::GetRequest {
        key: "k".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", bearer(&critical).parse().unwrap());
    let status = grpc.get(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    tokio::time::timeout(Duration::from_secs(10), server.shutdown(&state.mux()))
        .await
        .unwrap();
}
