//! End-to-end tests of the REST API over real sockets (127.0.0.1, ephemeral ports).

mod common;

use common::request;
use muxd::ServerConfig;

async fn start(dir: &std::path::Path) -> (muxd::Server, mux::Mux) {
    let text =
        common::embedded_config(dir).replace("max_body_bytes = 8388608", "max_body_bytes = 1024");
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux();
    (muxd::serve(&config, state).await.unwrap(), mux)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_round_trip_list_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;

    let put = request(
        a,
        "PUT",
        "/v1/kv/tenantconfig/acme/limits",
        &[("content-type", "text/plain")],
        b"max=10",
    )
    .await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let version = put.json()["version"].as_str().unwrap().to_owned();
    assert_eq!(put.header("etag"), Some(format!("\"{version}\"").as_str()));
    assert_eq!(put.json()["applied_on"], serde_json::json!(["redb", "fs"]));

    let get = request(a, "GET", "/v1/kv/tenantconfig/acme/limits", &[], b"").await;
    assert_eq!(get.status, 200);
    assert_eq!(get.body, b"max=10");
    assert_eq!(get.header("content-type"), Some("text/plain"));
    assert_eq!(get.header("etag"), Some(format!("\"{version}\"").as_str()));

    let head = request(a, "HEAD", "/v1/kv/tenantconfig/acme/limits", &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    for k in [
        "tenantconfig/acme/quota",
        "tenantconfig/globex/limits",
        "paramconfig/eu/x",
    ] {
        assert_eq!(
            request(
                a,
                "PUT",
                &format!("/v1/kv/{k}"),
                &[("x-mux-consistency", "one")],
                b"v"
            )
            .await
            .status,
            200
        );
    }
    let page = request(
        a,
        "GET",
        "/v1/kv?prefix=tenantconfig/acme&limit=10",
        &[],
        b"",
    )
    .await
    .json();
    let keys: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["tenantconfig/acme/limits", "tenantconfig/acme/quota"]
    );
    let first = request(a, "GET", "/v1/kv?limit=2", &[], b"").await.json();
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let rest = request(
        a,
        "GET",
        &format!("/v1/kv?limit=10&cursor={cursor}"),
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(rest["entries"].as_array().unwrap().len(), 2);

    let del = request(a, "DELETE", "/v1/kv/tenantconfig/acme/limits", &[], b"").await;
    assert_eq!(del.status, 200);
    let gone = request(a, "GET", "/v1/kv/tenantconfig/acme/limits", &[], b"").await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"]["kind"], "not_found");
    let again = request(a, "DELETE", "/v1/kv/tenantconfig/acme/limits", &[], b"").await;
    assert_eq!(again.status, 404, "nothing left to delete");
    assert_eq!(again.json()["error"]["kind"], "not_found");
    let message = again.json()["error"]["message"].to_string();
    assert!(
        message.contains("no record under tenantconfig/acme/limits: nothing to delete"),
        "{message}"
    );

    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;

    let r = request(a, "PUT", "/v1/kv/a//b", &[], b"x").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["kind"], "invalid_input");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("segment 2 is empty"),
        "{}",
        r.json()
    );
    let r = request(a, "GET", "/v1/kv/a/../b", &[], b"").await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let r = request(a, "PUT", "/v1/kv/a/%2E%2E/b", &[], b"x").await;
    assert_eq!(
        r.status,
        400,
        "encoded dots are still '..': {}",
        String::from_utf8_lossy(&r.body)
    );

    let big = vec![b'x'; 2048];
    let r = request(a, "PUT", "/v1/kv/big", &[], &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["kind"], "too_large");

    let r = request(a, "PUT", "/v1/kv/k", &[("x-mux-consistency", "most")], b"x").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown write consistency")
    );

    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;
    for i in 0..5 {
        request(a, "PUT", &format!("/v1/kv/m/{i}"), &[], b"v").await;
        request(a, "GET", &format!("/v1/kv/m/{i}"), &[], b"").await;
    }
    assert_eq!(request(a, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(request(a, "GET", "/readyz", &[], b"").await.status, 200);
    let metrics = request(a, "GET", "/metrics", &[], b"").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    // Prometheus text: every sample line is `name{labels} value`.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
    }
    assert!(
        text.lines().any(
            |l| l.starts_with("mux_backend_request_duration_seconds_bucket")
                && l.contains("backend=\"redb\"")
                && l.contains("op=\"put\"")
        ),
        "per-backend latency after traffic:\n{text}"
    );
    for gauge in [
        "mux_circuit_state{backend=\"fs\"} 0",
        "mux_hints_pending{backend=\"redb\"} 0",
    ] {
        assert!(text.lines().any(|l| l == gauge), "{gauge} missing:\n{text}");
    }
    let health = request(a, "GET", "/v1/admin/health", &[], b"").await.json();
    assert_eq!(health.as_array().unwrap().len(), 2);
    assert_eq!(health[0]["circuit"], "closed");
    let dead = request(a, "GET", "/v1/admin/dead-letters", &[], b"")
        .await
        .json();
    assert_eq!(dead["dead_letters"], serde_json::json!([]));
    server.shutdown(&mux).await;
}
