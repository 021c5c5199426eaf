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

/// What axum would answer in plain text (or with an empty body) is the documented JSON
/// error body with the right status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_the_json_body() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;

    for (method, path, status, kind, says) in [
        ("GET", "/v1/kv?limit=ten", 400, "invalid_input", "limit"),
        ("GET", "/v1/kv?limit=-1", 400, "invalid_input", "limit"),
        (
            "GET",
            "/v1/kv?limit=0",
            400,
            "invalid_input",
            "use 1 to 10000",
        ),
        (
            "GET",
            "/v1/kv?limit=10001",
            400,
            "invalid_input",
            "use 1 to 10000",
        ),
        ("GET", "/v1/kv/a/%FF", 400, "invalid_input", "invalid path"),
        (
            "PUT",
            "/v1/kv/a/%C3%28",
            400,
            "invalid_input",
            "invalid path",
        ),
        ("GET", "/v1/kv/", 400, "invalid_input", "the key is empty"),
        ("PUT", "/v1/kv/", 400, "invalid_input", "the key is empty"),
        (
            "PATCH",
            "/v1/kv/a",
            405,
            "method_not_allowed",
            "does not serve PATCH",
        ),
        (
            "POST",
            "/v1/kv",
            405,
            "method_not_allowed",
            "does not serve POST",
        ),
        (
            "POST",
            "/openapi.json",
            405,
            "method_not_allowed",
            "does not serve",
        ),
        (
            "GET",
            "/v2/kv/a",
            404,
            "not_found",
            "no route serves /v2/kv/a",
        ),
        ("GET", "/", 404, "not_found", "/openapi.json"),
    ] {
        let r = request(a, method, path, &[], b"x").await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        let body = r.json();
        assert_eq!(body["error"]["kind"], kind, "{method} {path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{method} {path}: {message}");
    }
    let r = request(a, "PATCH", "/v1/kv/a", &[], b"").await;
    let allow = r.header("allow").unwrap_or_default().to_owned();
    for m in ["GET", "HEAD", "PUT", "DELETE"] {
        assert!(allow.contains(m), "Allow: {allow}");
    }
    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_return_tags_content_type_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;
    let put = request(
        a,
        "PUT",
        "/v1/kv/docs/readme",
        &[
            ("content-type", "text/markdown"),
            ("x-mux-tags", "class=pii, note=a%2Cb%3Dc%20d%C3%A9"),
        ],
        b"# hi",
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let version = put.json()["version"].as_str().unwrap().to_owned();
    for method in ["GET", "HEAD"] {
        let r = request(a, method, "/v1/kv/docs/readme", &[], b"").await;
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("content-type"), Some("text/markdown"), "{method}");
        assert_eq!(
            r.header("x-mux-version"),
            Some(version.as_str()),
            "{method}"
        );
        assert_eq!(
            r.header("etag"),
            Some(format!("\"{version}\"").as_str()),
            "{method}"
        );
        assert_eq!(
            r.header("x-mux-tags"),
            Some("class=pii,note=a%2Cb%3Dc%20d%C3%A9"),
            "{method}"
        );
        assert_eq!(r.header("content-length"), Some("4"), "{method}");
    }
    let listed = request(a, "GET", "/v1/kv?prefix=docs", &[], b"")
        .await
        .json();
    assert_eq!(
        listed["entries"][0]["tags"],
        serde_json::json!({"class": "pii", "note": "a,b=c dé"})
    );
    assert_eq!(listed["entries"][0]["content_type"], "text/markdown");
    // Untagged records have no X-Mux-Tags and the default content type.
    request(a, "PUT", "/v1/kv/docs/plain", &[], b"x").await;
    let r = request(a, "GET", "/v1/kv/docs/plain", &[], b"").await;
    assert_eq!(r.header("x-mux-tags"), None);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_limits_are_refused_with_the_limit_named() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;
    let many: Vec<String> = (0..33).map(|i| format!("t{i}=v")).collect();
    let long_name = format!("{}=v", "n".repeat(129));
    let long_value = format!("n={}", "v".repeat(513));
    let long_type = format!("text/{}", "x".repeat(260));
    for (headers, says) in [
        (vec![("x-mux-tags", many.join(","))], "the limit is 32"),
        (vec![("x-mux-tags", long_name)], "the limit is 128"),
        (vec![("x-mux-tags", long_value)], "the limit is 512"),
        (vec![("x-mux-tags", "=v".to_owned())], "empty name"),
        (
            vec![("x-mux-tags", "novalue".to_owned())],
            "is not name=value",
        ),
        (vec![("x-mux-tags", "a=%G1".to_owned())], "escape"),
        (vec![("content-type", long_type)], "the limit is 256"),
        (
            vec![("content-type", "text/\tplain".to_owned())],
            "printable ASCII",
        ),
        (
            vec![("x-mux-consistency", "at_least:3".to_owned())],
            "at_least:3 cannot be met",
        ),
        (
            vec![("x-mux-read-policy", "slowest".to_owned())],
            "unknown read policy",
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (method, path) in [("PUT", "/v1/kv/limits/k"), ("PUT", "/v1/kv/tenantconfig/k")] {
            let r = request(a, method, path, &headers, b"x").await;
            if says == "unknown read policy" {
                // Writes ignore the read policy.
                assert_eq!(r.status, 200, "{headers:?}: {}", r.text());
                continue;
            }
            assert_eq!(r.status, 400, "{method} {path} {headers:?}: {}", r.text());
            assert_eq!(r.json()["error"]["kind"], "invalid_input");
            let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
            assert!(message.contains(says), "{headers:?}: {message}");
        }
    }
    // Refused before anything was written.
    let r = request(a, "GET", "/v1/kv/tenantconfig/k", &[], b"").await;
    assert_eq!(r.status, 200, "written once, by the read-policy case");
    let r = request(
        a,
        "GET",
        "/v1/kv/limits/k",
        &[("x-mux-read-policy", "slowest")],
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("unknown read policy"), "{}", r.text());
    let r = request(a, "GET", "/v1/kv/x", &[("x-mux-tags", "a")], b"").await;
    assert_eq!(r.status, 400, "a malformed tag header on a read too");
    let r = request(
        a,
        "DELETE",
        "/v1/kv/limits/k",
        &[("x-mux-consistency", "at_least:3")],
        b"",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        request(a, "GET", "/v1/kv/limits/k", &[], b"").await.status,
        200,
        "the refused delete deleted nothing"
    );
    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_no_placeholder_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mux) = start(dir.path()).await;
    let a = server.addr;
    request(a, "PUT", "/v1/kv/m/x", &[], b"v").await;
    let text = request(a, "GET", "/metrics", &[], b"").await.text();
    assert!(text.contains("backend=\"fs\""), "{text}");
    assert!(!text.contains("placeholder"), "{text}");
    server.shutdown(&mux).await;
}
