//! muxd starts while a Redis backend is unreachable (a closed port): the routes on the
//! other stores serve, and `/readyz` answers 503 naming the route that cannot meet its
//! write consistency; once a Redis server comes up on that port (`redis-server`, started
//! and killed by the test), the backend connects and `/readyz` answers 200.

mod common;

use common::request;
use muxd::ServerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_redis_down_and_readyz_names_the_degraded_route() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
[auth]
mode = "off"
[[backends]]
name = "memory"
kind = "memory"
[[backends]]
name = "redis"
kind = "redis"
url = "redis://127.0.0.1:{port}"
[mux]
node_id = 1
[[mux.routes]]
prefix = "cache/"
backends = [{{ backend = "redis", role = "primary" }}, {{ backend = "memory", role = "replica" }}]
write = "all"
[mux.default]
backends = [{{ backend = "memory", role = "primary" }}]
write = "all"
# What the refused write owes Redis is dead-lettered quickly, so shutdown does not wait.
[mux.resilience.retry]
max_attempts = 2
initial_backoff = 10
max_backoff = 10
"#
    );
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config)
        .await
        .expect("an unreachable store does not stop the start");
    let mux = state.mux();
    let server = muxd::serve(&config, state).await.unwrap();
    let a = server.addr;

    // The default route serves.
    let put = request(a, "PUT", "/v1/kv/params/x", &[], b"1").await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let get = request(a, "GET", "/v1/kv/params/x", &[], b"").await;
    assert_eq!((get.status, get.body.as_ref()), (200, b"1".as_ref()));

    // The cache route cannot meet `all` without Redis.
    let ready = request(a, "GET", "/readyz", &[], b"").await;
    assert_eq!(
        ready.status,
        503,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    let body = ready.json();
    assert_eq!(body["ready"], false);
    let routes = body["routes"].as_array().unwrap();
    let cache = routes.iter().find(|r| r["prefix"] == "cache/").unwrap();
    assert_eq!(cache["ready"], false, "{body}");
    assert_eq!(cache["down"], serde_json::json!(["redis"]), "{body}");
    assert_eq!(cache["required"], 2, "{body}");
    let default = routes.iter().find(|r| r["prefix"] == "").unwrap();
    assert_eq!(default["ready"], true, "{body}");
    let redis = body["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "redis")
        .unwrap();
    assert_eq!(redis["up"], false);
    assert!(
        redis["error"]
            .as_str()
            .unwrap()
            .contains("last connect error"),
        "{body}"
    );

    // A write to the degraded route is refused as unavailable, not lost silently.
    let put = request(a, "PUT", "/v1/kv/cache/y", &[], b"2").await;
    assert_eq!(put.status, 503, "{}", String::from_utf8_lossy(&put.body));

    // Redis comes up on that port: the backend connects and every route is ready.
    let redis = RedisServer(
        std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is required for this test"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = request(a, "GET", "/readyz", &[], b"").await;
        if ready.status == 200 {
            assert_eq!(ready.json()["ready"], true);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still not ready: {}",
            String::from_utf8_lossy(&ready.body)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let put = request(a, "PUT", "/v1/kv/cache/z", &[], b"3").await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    server.shutdown(&mux).await;
    drop(redis);
}

/// Kills the Redis server when the test ends, passed or not.
struct RedisServer(std::process::Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Configuration errors still stop the start, every one reported at once.
#[test]
fn config_errors_name_the_backend_and_the_field() {
    let text = r#"
[auth]
mode = "off"
[[backends]]
name = "pg-eu"
kind = "postgres"
url = "postgres://db/x"
tabel = "t"
[[backends]]
name = "x"
kind = "nosuch"
[mux]
[mux.default]
backends = [{ backend = "pg-eu", role = "primary" }]
"#;
    let e = ServerConfig::from_toml(text).unwrap_err();
    let m = e.message();
    assert!(
        m.contains("backend \"pg-eu\": unknown field \"tabel\", expected one of"),
        "{m}"
    );
    assert!(m.contains("backend \"x\": unknown kind \"nosuch\""), "{m}");
}
