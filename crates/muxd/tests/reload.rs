//! Hot config reload: swapped atomically under load without losing a request; an
//! invalid config is refused with its errors and the old one keeps serving.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::request;
use muxd::ServerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::embedded_config(dir.path());
    let config = ServerConfig::from_toml(&text).unwrap();
    let state = muxd::build(&config).await.unwrap();
    let server = muxd::serve(&config, state.clone()).await.unwrap();
    let a = server.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/v1/kv/load/w{w}/k{i}");
                    let put = request(a, "PUT", &path, &[], format!("{w}-{i}").as_bytes()).await;
                    let get = request(a, "GET", &path, &[], b"").await;
                    if put.status == 200
                        && get.status == 200
                        && get.body == format!("{w}-{i}").as_bytes()
                    {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "{path}: put {} get {} {}",
                            put.status,
                            get.status,
                            get.text()
                        );
                    }
                    i += 1;
                }
            })
        })
        .collect();

    // Alternate between two valid configurations while the workers run.
    let quorum = text.replace(
        "write = \"all\"\nread = \"first_healthy\"",
        "write = \"quorum\"\nread = \"all\"",
    );
    assert_ne!(quorum, text);
    for n in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        let body = if n % 2 == 0 { &quorum } else { &text };
        let r = request(a, "POST", "/v1/admin/reload", &[], body.as_bytes()).await;
        assert_eq!(r.status, 200, "reload {n}: {}", r.text());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests lost during reloads"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 50,
        "the load ran: {}",
        ok.load(Ordering::Relaxed)
    );

    // Invalid configurations are refused, each naming its problem; the old one serves on.
    for (bad, expect) in [
        ("this is not toml".to_owned(), "invalid muxd configuration"),
        (
            text.replace(
                "{ backend = \"fs\", role = \"primary\" }",
                "{ backend = \"nope\", role = \"primary\" }",
            ),
            "unknown backend \"nope\"",
        ),
        (
            text.replace("127.0.0.1:0", "127.0.0.1:9"),
            "listen cannot change",
        ),
        (
            text.replace(
                "write = \"all\"\nread = \"first_healthy\"",
                "write = \"at_least:5\"\nread = \"first_healthy\"",
            ),
            "at_least:5 needs 5 voters",
        ),
    ] {
        let r = request(a, "POST", "/v1/admin/reload", &[], bad.as_bytes()).await;
        assert_eq!(r.status, 400, "{expect}: {}", r.text());
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(expect),
            "{expect}: {}",
            r.text()
        );
    }
    let r = request(a, "GET", "/v1/kv/load/w0/k0", &[], b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, b"0-0".as_slice()));
    assert_eq!(
        request(a, "PUT", "/v1/kv/after", &[], b"x").await.status,
        200
    );
    server.shutdown(&state.mux()).await;
}
