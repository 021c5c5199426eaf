//! The audit trail: an event for each mutation and admin action, hash-chained per node
//! in a store reached through routing; `GET /v1/admin/audit/verify` passes, then names
//! the event altered or removed in that store; a full queue refuses writes with 503
//! (nothing written) or, configured so, drops and counts events.

mod common;

use std::time::{Duration, Instant};

use common::request;
use mux::{Backend, Key, Record};
use muxd::ServerConfig;

fn config_text(audit: &str, sink: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"

[auth]
mode = "off"

[audit]
enabled = true
{audit}

[[backends]]
name = "main"
kind = "memory"

{sink}

[mux]
node_id = 3

[[mux.routes]]
prefix = "audit/"
backends = [{{ backend = "trail", role = "primary" }}]

[mux.default]
backends = [{{ backend = "main", role = "primary" }}]
"#
    )
}

const MEMORY_SINK: &str = "[[backends]]\nname = \"trail\"\nkind = \"memory\"\n";

async fn events(a: std::net::SocketAddr, at_least: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = request(a, "GET", "/v1/admin/audit", &[], b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if v["events"].as_array().unwrap().len() >= at_least || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_chained_and_tampering_is_found() {
    let text = config_text("", MEMORY_SINK);
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let a = server.addr;
    assert_eq!(
        request(a, "PUT", "/v1/kv/app/x", &[], b"1").await.status,
        200
    );
    assert_eq!(
        request(a, "PUT", "/v1/kv/app/y", &[], b"2").await.status,
        200
    );
    assert_eq!(
        request(a, "DELETE", "/v1/kv/app/x", &[], b"").await.status,
        200
    );
    // Only muxd writes under the audit prefix.
    let forged = request(
        a,
        "PUT",
        "/v1/kv/audit/0000000003/00000000000000000099",
        &[],
        b"{}",
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.text());
    state
        .reload(ServerConfig::from_toml(&text).unwrap())
        .await
        .unwrap();
    let job = r#"{"kind":"gc","prefix":"app","backends":["main"]}"#;
    assert_eq!(
        request(a, "POST", "/v1/admin/jobs", &[], job.as_bytes())
            .await
            .status,
        202
    );
    let export = request(a, "GET", "/v1/admin/export?prefix=app", &[], b"").await;
    assert_eq!(
        request(a, "POST", "/v1/admin/import", &[], &export.body)
            .await
            .status,
        200
    );

    let v = events(a, 6).await;
    let list = v["events"].as_array().unwrap();
    let actions: Vec<&str> = list.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["put", "put", "delete", "reload", "job:gc", "import"],
        "{v}"
    );
    assert_eq!(list[0]["key"], "app/x");
    assert_eq!(list[0]["outcome"], "ok");
    assert_eq!(list[0]["actor"], "operator");
    assert!(list[0]["version"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(list[4]["key"], "app");
    for (i, e) in list.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        assert_eq!(e["node"], 3);
    }
    let only_y = request(a, "GET", "/v1/admin/audit?key=app/y", &[], b"")
        .await
        .json();
    assert_eq!(only_y["events"].as_array().unwrap().len(), 1);

    let verify = |a| async move {
        request(a, "GET", "/v1/admin/audit/verify", &[], b"")
            .await
            .json()
    };
    let ok = verify(a).await;
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["events"], 6);

    // Someone with access to the sink store alters event 2 ...
    let trail = state.mux().backend("trail").unwrap().clone();
    let k2 = Key::new("audit/0000000003/00000000000000000002").unwrap();
    let stored = trail.get(&k2).await.unwrap().unwrap();
    let altered = String::from_utf8(stored.value().to_vec())
        .unwrap()
        .replace("app/y", "app/z");
    trail
        .put(&Record::new(k2.clone(), altered, state.mux().clock().now()))
        .await
        .unwrap();
    let broken = verify(a).await;
    assert_eq!(broken["ok"], false);
    assert!(
        broken.to_string().contains("node 3: event 2 was altered"),
        "{broken}"
    );
    trail
        .put(&stored.clone().with_version(state.mux().clock().now()))
        .await
        .unwrap();
    assert_eq!(verify(a).await["ok"], true, "restored");

    // ... removes event 4 from the middle, and the last one.
    let purge = |seq: u64| {
        let trail = trail.clone();
        async move {
            let k = Key::new(format!("audit/0000000003/{seq:020}")).unwrap();
            assert!(
                trail
                    .purge(&k, mux::Version::new(u64::MAX >> 16, 0, 0))
                    .await
                    .unwrap()
            );
        }
    };
    purge(4).await;
    let broken = verify(a).await;
    assert!(
        broken
            .to_string()
            .contains("node 3: events 4..4 are missing"),
        "{broken}"
    );
    purge(6).await;
    let broken = verify(a).await;
    assert!(
        broken
            .to_string()
            .contains("node 3: events 6..6 are missing (this node wrote 6)"),
        "{broken}"
    );
    server.shutdown(&state.mux()).await;
}

/// A sink that cannot be reached (nothing listens on port 1): the writer waits on it
/// and the queue fills.
const DEAD_SINK: &str =
    "[[backends]]\nname = \"trail\"\nkind = \"redis\"\nurl = \"redis://127.0.0.1:1\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_rejects_writes_or_drops_events_as_configured() {
    let config = ServerConfig::from_toml(&config_text("queue = 2", DEAD_SINK)).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let a = server.addr;
    let mut refused = None;
    for i in 0..20 {
        let r = request(a, "PUT", &format!("/v1/kv/app/k{i}"), &[], b"v").await;
        if r.status == 503 {
            assert!(r.text().contains("audit queue is full"), "{}", r.text());
            refused = Some(i);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let i = refused.expect("a write was refused once the queue was full");
    assert!(i <= 4, "refused only at write {i}");
    // Nothing of the refused write was done.
    let r = request(a, "GET", &format!("/v1/kv/app/k{i}"), &[], b"").await;
    assert_eq!(r.status, 404, "{}", r.text());
    server.shutdown(&state.mux()).await;

    let config =
        ServerConfig::from_toml(&config_text("queue = 2\nwhen_full = \"drop\"", DEAD_SINK))
            .unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let a = server.addr;
    for i in 0..10 {
        let r = request(a, "PUT", &format!("/v1/kv/app/k{i}"), &[], b"v").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let metrics = request(a, "GET", "/metrics", &[], b"").await.text();
    assert!(
        metrics.contains("muxd_audit_dropped_total"),
        "the drops are counted"
    );
    server.shutdown(&state.mux()).await;
}
