//! Two muxd servers sharing a Redis store and a Redis change feed (in one test
//! process): a write on A reaches a watcher on B and B's cached read; a watcher that
//! reconnects with its last position gets exactly the missed changes; a position out
//! of retention is refused with 410 / `OUT_OF_RANGE`. (`cluster.rs` runs real muxd
//! processes: 200 writes through two nodes reaching a third's watcher, feed outages.)

mod common;

use std::time::{Duration, Instant};

use common::{next_change, node_config, redis_url, request, run_id};
use muxd::ServerConfig;
use muxd::grpc::pb;
use pb::store_client::StoreClient;

fn config(node: u32, run: &str) -> ServerConfig {
    config_with(node, run, "")
}

/// `config` with `feed_extra` lines in its `[feed]` section.
fn config_with(node: u32, run: &str, feed_extra: &str) -> ServerConfig {
    let feed = format!(
        "[feed]\nkind = \"redis\"\nurl = \"{}\"\nstream = \"muxtest:{run}:feed\"\n{feed_extra}",
        redis_url()
    );
    ServerConfig::from_toml(&node_config(node, run, "", &feed, "1s")).unwrap()
}

/// A gRPC `Watch` of `prefix` on `addr`, from `resume_from` (empty: from now).
async fn watch(
    addr: std::net::SocketAddr,
    prefix: &str,
    resume_from: &str,
) -> Result<tonic::Streaming<pb::WatchEvent>, tonic::Status> {
    let mut client = StoreClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client
        .watch(pb::WatchRequest {
            prefix: prefix.into(),
            resume_from: resume_from.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("muxtest:{}*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_reaches_the_other_nodes_watchers_and_cache() {
    let run = run_id("reach");
    let _cleanup = Cleanup(run.clone());
    let (ca, cb) = (config(1, &run), config(2, &run));
    let (sa, sb) = (
        muxd::build(&ca).await.unwrap(),
        muxd::build(&cb).await.unwrap(),
    );
    let a = muxd::serve(&ca, sa.clone()).await.unwrap();
    let b = muxd::serve(&cb, sb.clone()).await.unwrap();
    let mut client = StoreClient::connect(format!("http://{}", b.grpc_addr))
        .await
        .unwrap();
    let mut watch = client
        .watch(pb::WatchRequest {
            prefix: "cfg".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // B caches v1; A writes v2; B's watcher and B's reads see it.
    let r = request(a.addr, "PUT", "/v1/kv/cfg/limits", &[], b"v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = next_change(&mut watch).await;
    assert_eq!((first.key.as_str(), first.op), ("cfg/limits", 0));
    for _ in 0..2 {
        assert_eq!(
            request(b.addr, "GET", "/v1/kv/cfg/limits", &[], b"")
                .await
                .body,
            b"v1"
        );
    }
    assert!(sb.mux().stats().cache.hits >= 1, "B served from its cache");
    let r = request(a.addr, "PUT", "/v1/kv/cfg/limits", &[], b"v2").await;
    let v2 = r.json()["version"].as_str().unwrap().to_owned();
    let change = next_change(&mut watch).await;
    assert_eq!(change.version, v2, "B's watcher saw A's write");
    let start = Instant::now();
    while request(b.addr, "GET", "/v1/kv/cfg/limits", &[], b"")
        .await
        .body
        != b"v2"
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B's cache kept v1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The watcher goes away; five writes happen; resuming gets exactly those five.
    drop(watch);
    let mut versions = Vec::new();
    for i in 0..5 {
        let r = request(a.addr, "PUT", &format!("/v1/kv/cfg/k{i}"), &[], b"x").await;
        versions.push(r.json()["version"].as_str().unwrap().to_owned());
    }
    let mut resumed = client
        .watch(pb::WatchRequest {
            prefix: "cfg".into(),
            resume_from: change.position.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    for (i, version) in versions.iter().enumerate() {
        let c = next_change(&mut resumed).await;
        assert_eq!((c.key.clone(), &c.version), (format!("cfg/k{i}"), version));
    }
    let r = request(a.addr, "PUT", "/v1/kv/cfg/after", &[], b"x").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        next_change(&mut resumed).await.key,
        "cfg/after",
        "none twice"
    );

    // A malformed position is refused before the stream starts.
    let bad = request(
        b.addr,
        "GET",
        "/v1/watch?prefix=cfg&resume_from=soon",
        &[],
        b"",
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("bad feed position"), "{}", bad.text());

    drop(resumed);
    drop(client);
    a.shutdown(&sa.mux()).await;
    b.shutdown(&sb.mux()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_out_of_retention_gets_410_and_out_of_range() {
    let run = run_id("gone");
    let _cleanup = Cleanup(run.clone());
    // `MAXLEN ~ 10` trims whole 100-entry stream nodes: after 400 more writes the first
    // write's event is surely gone.
    let c = config_with(1, &run, "max_len = 10");
    let state = muxd::build(&c).await.unwrap();
    let server = muxd::serve(&c, state.clone()).await.unwrap();
    let mut stream = watch(server.grpc_addr, "cfg", "").await.unwrap();
    let r = request(server.addr, "PUT", "/v1/kv/cfg/first", &[], b"x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = next_change(&mut stream).await;
    drop(stream);
    for i in 0..400 {
        let r = request(
            server.addr,
            "PUT",
            &format!("/v1/kv/cfg/k{}", i % 7),
            &[],
            b"x",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let status = watch(server.grpc_addr, "cfg", &first.position)
        .await
        .expect_err("a trimmed position is refused");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    let path = format!("/v1/watch?prefix=cfg&resume_from={}", first.position);
    // A request the server wrongly accepted would stream forever: bounded.
    let bounded = Duration::from_secs(10);
    let sse = tokio::time::timeout(bounded, request(server.addr, "GET", &path, &[], b""))
        .await
        .expect("the refusal comes at once");
    assert_eq!(sse.status, 410, "{}", sse.text());
    assert_eq!(sse.json()["error"]["kind"], "gone", "{}", sse.text());
    let header = [("last-event-id", first.position.as_str())];
    let resumed = tokio::time::timeout(
        bounded,
        request(server.addr, "GET", "/v1/watch?prefix=cfg", &header, b""),
    )
    .await
    .expect("the refusal comes at once");
    assert_eq!(resumed.status, 410, "Last-Event-ID too: {}", resumed.text());

    server.shutdown(&state.mux()).await;
}
