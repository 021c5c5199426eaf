//! Data residency through muxd: a configuration that could place a restricted route's
//! or tenant's data outside its regions is refused with every violation named; with a
//! valid one, operator jobs and imports that would copy restricted data to the `us`
//! backend are refused before anything is written, and a tenant's writes stay in `eu`.

mod common;

use common::request;
use muxd::ServerConfig;

fn config(extra_route: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"

[auth]
mode = "off"

[[backends]]
name = "eu1"
kind = "memory"

[[backends]]
name = "eu2"
kind = "memory"

[[backends]]
name = "us"
kind = "memory"

[mux]
node_id = 1

[mux.regions]
eu1 = "eu"
eu2 = "eu"
us = "us"

[mux.tenant_regions]
acme = ["eu"]

[[mux.routes]]
prefix = "gdpr/"
backends = [{{ backend = "eu1", role = "primary" }}, {{ backend = "eu2", role = "replica" }}]
write = "all"
regions = ["eu"]

[[mux.routes]]
prefix = "public/"
backends = [{{ backend = "us", role = "primary" }}]

[[mux.routes]]
prefix = "public/"
tenant = "acme"
backends = [{{ backend = "eu1", role = "primary" }}]
{extra_route}
[mux.default]
backends = [{{ backend = "eu1", role = "primary" }}, {{ backend = "eu2", role = "replica" }}]
write = "all"
"#
    )
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_with_every_violation() {
    let bad = config(
        r#"
[[mux.routes]]
prefix = "gdpr/archive/"
backends = [{ backend = "eu1", role = "primary" }, { backend = "us", role = "replica" }]
regions = ["eu"]

[[mux.routes]]
prefix = "shared/"
backends = [{ backend = "us", role = "primary" }]
"#,
    );
    let config = ServerConfig::from_toml(&bad).unwrap();
    let e = muxd::build(&config).await.expect_err("refused");
    let text = e.to_string();
    for expected in [
        "route \"gdpr/archive/\" could place its data on backend \"us\" in region \"us\", outside {eu}",
        "route \"gdpr/archive/\" could place tenant acme's data (allowed: eu) on backend \"us\"",
        "route \"shared/\" could place tenant acme's data (allowed: eu) on backend \"us\" in region \"us\", outside {eu}",
    ] {
        assert!(text.contains(expected), "missing «{expected}» in:\n{text}");
    }
    assert!(
        !text.contains("route \"public/\" could place tenant acme"),
        "acme's own public/ route shadows the shared one:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_imports_never_copy_restricted_data_to_us() {
    let config = ServerConfig::from_toml(&config("")).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux();
    let server = muxd::serve(&config, state).await.unwrap();
    let a = server.addr;
    let r = request(a, "PUT", "/v1/kv/gdpr/ann", &[], b"personal").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A backfill of us from the gdpr/ stores, and a repair over eu1 and us: refused.
    for job in [
        r#"{"kind":"backfill","prefix":"gdpr","backends":["eu1","us"],"target":"us"}"#,
        r#"{"kind":"repair","prefix":"gdpr","backends":["eu1","us"]}"#,
    ] {
        let r = request(a, "POST", "/v1/admin/jobs", &[], job.as_bytes()).await;
        assert_eq!(r.status, 400, "{job}: {}", r.text());
        assert!(
            r.text()
                .contains("copying to backend \\\"us\\\" (region us)"),
            "{}",
            r.text()
        );
    }
    // A verify only reads: allowed.
    let r = request(
        a,
        "POST",
        "/v1/admin/jobs",
        &[],
        br#"{"kind":"verify","prefix":"gdpr","backends":["eu1","eu2"]}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    // An import straight into us: refused; into eu1: allowed.
    let export = request(a, "GET", "/v1/admin/export?prefix=gdpr", &[], b"").await;
    assert_eq!(export.status, 200);
    let r = request(a, "POST", "/v1/admin/import?backends=us", &[], &export.body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = request(
        a,
        "POST",
        "/v1/admin/import?backends=eu2",
        &[],
        &export.body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Nothing of gdpr/ reached us.
    let us = mux.backend("us").unwrap().clone();
    let listed = mux::BackendExt::list_all(&*us, &mux::Prefix::all())
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    server.shutdown(&mux).await;
}
