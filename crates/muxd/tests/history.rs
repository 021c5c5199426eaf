//! Temporal reads through muxd: `GET /v1/history/{key}`, `GET /v1/kv/{key}?as_of=…` and
//! their gRPC forms, served by the route's history-keeping store; 400 (kind `unsupported`) where the route
//! has none.

mod common;

use common::request;
use muxd::ServerConfig;
use muxd::grpc::pb;
use muxd::grpc::pb::store_client::StoreClient;

/// `paramconfig/` on a plain store with a history-keeping replica; the rest on `main`.
const CONFIG: &str = r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"

[auth]
mode = "off"

[[backends]]
name = "kv"
kind = "memory"

[[backends]]
name = "versions"
kind = "memory"
history = true

[[backends]]
name = "main"
kind = "memory"

[mux]
node_id = 1

[[mux.routes]]
prefix = "paramconfig/"
backends = [{ backend = "kv", role = "primary" }, { backend = "versions", role = "replica" }]
write = "all"

[mux.default]
backends = [{ backend = "main", role = "primary" }]
"#;

async fn start() -> (muxd::Server, mux::Mux) {
    let config = ServerConfig::from_toml(CONFIG).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let mux = state.mux();
    (muxd::serve(&config, state).await.unwrap(), mux)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_as_of_over_rest() {
    let (server, mux) = start().await;
    let a = server.addr;
    let path = "/v1/kv/paramconfig/eu/timeout_ms";
    let mut versions = Vec::new();
    for value in ["1000", "1500", "2000"] {
        let put = request(
            a,
            "PUT",
            path,
            &[("content-type", "text/plain")],
            value.as_bytes(),
        )
        .await;
        assert_eq!(put.status, 200, "{}", put.text());
        versions.push(put.json()["version"].as_str().unwrap().to_owned());
    }
    assert_eq!(request(a, "DELETE", path, &[], b"").await.status, 200);

    let history = request(a, "GET", "/v1/history/paramconfig/eu/timeout_ms", &[], b"").await;
    assert_eq!(history.status, 200, "{}", history.text());
    let body = history.json();
    assert_eq!(body["key"], "paramconfig/eu/timeout_ms");
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{body}");
    assert_eq!(entries[0]["deleted"], true);
    assert!(entries[0].get("value").is_none(), "{body}");
    let values: Vec<&str> = entries[1..]
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["2000", "1500", "1000"]);
    assert_eq!(entries[3]["version"], versions[0].as_str());
    assert_eq!(entries[1]["content_type"], "text/plain");
    assert!(
        entries[1]["time"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
    assert!(body["next_cursor"].is_null());

    // Pages of two: the cursor continues with older versions, none repeated.
    let first = request(
        a,
        "GET",
        "/v1/history/paramconfig/eu/timeout_ms?limit=2",
        &[],
        b"",
    )
    .await
    .json();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = request(
        a,
        "GET",
        &format!("/v1/history/paramconfig/eu/timeout_ms?limit=2&cursor={cursor}"),
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(second["entries"][0]["value"], "1500");
    assert_eq!(second["entries"][1]["value"], "1000");
    assert!(second["next_cursor"].is_null());

    // As of the second write, and as of a time before the first.
    let as_of = request(a, "GET", &format!("{path}?as_of={}", versions[1]), &[], b"").await;
    assert_eq!(as_of.status, 200, "{}", as_of.text());
    assert_eq!(as_of.body, b"1500");
    assert_eq!(as_of.header("x-mux-version"), Some(versions[1].as_str()));
    let before = request(
        a,
        "GET",
        &format!("{path}?as_of=1970-01-01T00:00:00Z"),
        &[],
        b"",
    )
    .await;
    assert_eq!(before.status, 404, "{}", before.text());
    assert!(
        before.text().contains("as of 1970-01-01T00:00:00Z"),
        "{}",
        before.text()
    );
    // Now the key is deleted: the live read is 404 too.
    assert_eq!(request(a, "GET", path, &[], b"").await.status, 404);

    // Bad input is named.
    let bad = request(a, "GET", &format!("{path}?as_of=yesterday"), &[], b"").await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("RFC 3339"), "{}", bad.text());
    let bad = request(
        a,
        "GET",
        "/v1/history/paramconfig/eu/timeout_ms?limit=0",
        &[],
        b"",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("use 1 to 1000"), "{}", bad.text());
    let bad = request(
        a,
        "GET",
        "/v1/history/paramconfig/eu/timeout_ms?cursor=x",
        &[],
        b"",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("next_cursor"), "{}", bad.text());

    // A route without a history-keeping store says so.
    assert_eq!(
        request(a, "PUT", "/v1/kv/other/x", &[], b"1").await.status,
        200
    );
    let none = request(a, "GET", "/v1/history/other/x", &[], b"").await;
    assert_eq!(none.status, 400, "{}", none.text());
    assert_eq!(none.json()["error"]["kind"], "unsupported");
    assert!(none.text().contains("keeps history"), "{}", none.text());
    let none = request(a, "GET", "/v1/kv/other/x?as_of=0", &[], b"").await;
    assert_eq!(none.status, 400, "{}", none.text());
    server.shutdown(&mux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_as_of_over_grpc() {
    let (server, mux) = start().await;
    let mut client = StoreClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap();
    let key = "paramconfig/eu/retries";
    let mut versions = Vec::new();
    for value in ["1", "2"] {
        let put = client
            .put(pb::PutRequest {
                key: key.into(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        versions.push(put.version);
    }
    let history = client
        .history(pb::HistoryRequest {
            key: key.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(&str, &[u8])> = history
        .entries
        .iter()
        .map(|e| (e.version.as_str(), e.value.as_slice()))
        .collect();
    assert_eq!(
        got,
        [
            (versions[1].as_str(), &b"2"[..]),
            (versions[0].as_str(), &b"1"[..])
        ]
    );
    assert!(history.next_cursor.is_empty());

    let old = client
        .get(pb::GetRequest {
            key: key.into(),
            as_of: versions[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(old.found);
    assert_eq!(old.value, b"1");

    let err = client
        .history(pb::HistoryRequest {
            key: "other/x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");
    server.shutdown(&mux).await;
}
