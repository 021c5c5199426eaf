//! gRPC over a real socket: round trip, and a Watch stream that receives a change made
//! through REST and a configuration reload.

mod common;

use std::time::Duration;

use common::request;
use muxd::ServerConfig;
use muxd::grpc::pb;
use muxd::grpc::pb::store_client::StoreClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_round_trip_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::embedded_config(dir.path());
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let mut client = StoreClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap();

    let put = client
        .put(pb::PutRequest {
            key: "paramconfig/eu/timeout_ms".into(),
            value: b"1500".to_vec(),
            content_type: "text/plain".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.backends.len(), 2);
    assert!(put.backends.iter().all(|b| b.outcome == "applied"));
    let got = client
        .get(pb::GetRequest {
            key: "paramconfig/eu/timeout_ms".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.found);
    assert_eq!(
        (
            got.value.as_slice(),
            got.version.as_str(),
            got.content_type.as_str()
        ),
        (b"1500".as_slice(), put.version.as_str(), "text/plain")
    );
    let listed = client
        .list(pb::ListRequest {
            prefix: "paramconfig".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    client
        .delete(pb::DeleteRequest {
            key: "paramconfig/eu/timeout_ms".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let gone = client
        .get(pb::GetRequest {
            key: "paramconfig/eu/timeout_ms".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!gone.into_inner().found);
    let bad = client
        .get(pb::GetRequest {
            key: "a//b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("segment 2 is empty"), "{bad}");

    // Watch: a change made through REST is pushed, then a config reload.
    let mut watch = client
        .watch(pb::WatchRequest {
            prefix: "tenantconfig".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(50)).await;
    request(server.addr, "PUT", "/v1/kv/other/ignored", &[], b"x").await;
    let r = request(
        server.addr,
        "PUT",
        "/v1/kv/tenantconfig/acme/limits",
        &[],
        b"max=10",
    )
    .await;
    assert_eq!(r.status, 200);
    let version = r.json()["version"].as_str().unwrap().to_owned();
    let event = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match event.event {
        Some(pb::watch_event::Event::Change(c)) => {
            assert_eq!(
                (c.key.as_str(), c.version.as_str()),
                ("tenantconfig/acme/limits", version.as_str())
            );
            assert_eq!(c.op, pb::change::Op::Put as i32);
        }
        other => panic!("expected the change, got {other:?}"),
    }
    let r = request(
        server.addr,
        "POST",
        "/v1/admin/reload",
        &[],
        text.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let event = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(event.event, Some(pb::watch_event::Event::Config(_))),
        "{event:?}"
    );

    server.shutdown(&state.mux()).await;
}

/// With JWT auth, a tenant's Watch stream carries only its own changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_is_per_tenant() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";
    let token = |tenant: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let claims = serde_json::json!({"tenant": tenant, "scope": "read write", "exp": exp});
        format!(
            "Bearer {}",
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(SECRET.as_bytes())
            )
            .unwrap()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let text = common::embedded_config(dir.path()).replace(
        "[auth]\nmode = \"off\"",
        &format!("[auth]\nmode = \"jwt\"\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\""),
    );
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let mut client = StoreClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap();

    let unauthenticated = client.watch(pb::WatchRequest::default()).await.unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);

    let mut request_b = tonic::Request::new(pb::WatchRequest::default());
    request_b
        .metadata_mut()
        .insert("authorization", token("beta").parse().unwrap());
    let mut watch_b = client.watch(request_b).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = request(
        server.addr,
        "PUT",
        "/v1/kv/secret",
        &[("authorization", &token("acme"))],
        b"a",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = request(
        server.addr,
        "PUT",
        "/v1/kv/mine",
        &[("authorization", &token("beta"))],
        b"b",
    )
    .await;
    assert_eq!(r.status, 200);
    let event = tokio::time::timeout(Duration::from_secs(5), watch_b.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match event.event {
        Some(pb::watch_event::Event::Change(c)) => {
            assert_eq!(c.key, "mine", "B saw only its own change")
        }
        other => panic!("{other:?}"),
    }
    drop(watch_b);
    drop(client);
    server.shutdown(&state.mux()).await;
}

/// gRPC answers through the same service layer as REST: List carries tags and content
/// types, Delete says whether a live record existed, and inputs are checked the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_list_delete_and_checks_match_rest() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::embedded_config(dir.path());
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let mut client = StoreClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap();

    let put = client
        .put(pb::PutRequest {
            key: "docs/a".into(),
            value: b"x".to_vec(),
            content_type: "text/plain".into(),
            tags: [("class".to_owned(), "pii".to_owned())].into(),
            consistency: "one".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(put.found);
    assert_eq!(put.consistency, "one");
    assert!(!put.applied_on.is_empty());
    assert!(
        put.backends
            .iter()
            .all(|b| b.role == "primary" || b.role == "replica")
    );
    let listed = client
        .list(pb::ListRequest {
            prefix: "docs".into(),
            read_policy: "primary".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let entry = &listed.entries[0];
    assert_eq!(entry.content_type, "text/plain");
    assert_eq!(entry.tags.get("class").map(String::as_str), Some("pii"));
    assert_eq!(entry.version, put.version);

    let got = client
        .get(pb::GetRequest {
            key: "docs/a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.tags.get("class").map(String::as_str), Some("pii"));

    let deleted = client
        .delete(pb::DeleteRequest {
            key: "docs/a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.found, "a live record was deleted");
    let again = client
        .delete(pb::DeleteRequest {
            key: "docs/a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.found, "nothing left to delete");

    for (request, says) in [
        (
            pb::ListRequest {
                limit: 10_001,
                ..Default::default()
            },
            "use 1 to 10000",
        ),
        (
            pb::ListRequest {
                read_policy: "slowest".into(),
                ..Default::default()
            },
            "unknown read policy",
        ),
    ] {
        let e = client.list(request).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains(says), "{e}");
    }
    let e = client
        .put(pb::PutRequest {
            key: "docs/b".into(),
            consistency: "at_least:3".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("nothing was written"), "{e}");
    let e = client
        .put(pb::PutRequest {
            key: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("the key is empty"), "{e}");

    drop(client);
    server.shutdown(&state.mux()).await;
}
