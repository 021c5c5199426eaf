//! A Redis that is down when the `Mux` starts: the start succeeds, the Redis backend is
//! unavailable (writes owed to it are kept as hints), and once a Redis server comes up
//! on that port the backend connects and the hint lands.
//!
//! Needs `redis-server` on the PATH (`cargo xtask services up --install` installs it).
#![cfg(feature = "redis")]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mux::{Backend, BackendSpec, Key, MemoryBackend, Mux, Role, RouteConfig, WriteConsistency};

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_at_start_connects_when_it_comes_up() {
    let port = free_port();
    let spec = BackendSpec::new("redis", "redis")
        .with("url", format!("redis://127.0.0.1:{port}"))
        .with("namespace", "mux-deferred");
    let redis = mux::open(&spec)
        .await
        .expect("only config errors fail open");
    let e = redis.health().await.unwrap_err();
    assert_eq!(e.kind(), mux::ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("last connect error"), "{e}");

    let mux = Mux::builder()
        .backend(redis.clone())
        .backend(Arc::new(MemoryBackend::new("memory")))
        .route(
            RouteConfig::new("cache/")
                .backend("memory", Role::Primary)
                .backend("redis", Role::Replica)
                .write(WriteConsistency::One),
        )
        .default_route(RouteConfig::new("").backend("memory", Role::Primary))
        .build()
        .expect("the Mux starts with Redis down");
    let key = Key::new("cache/late").unwrap();
    let report = mux.put(key.clone(), "v1").await.unwrap();
    assert_eq!(report.applied_on(), ["memory"]);

    let server = Server(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required for this test"),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let landed = loop {
        if let Ok(Some(r)) = redis.get(&key).await {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the hint did not reach Redis: {:?}",
            redis.health().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(landed.value().as_ref(), b"v1");
    redis.health().await.unwrap();
    assert!(redis.purge(&key, landed.version()).await.unwrap());
    drop(server);
}
