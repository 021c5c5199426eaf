//! `cargo xtask bench security`: what encryption at rest costs (issue 17).
//!
//! - `plain_put` / `encrypted_put`: 1 KiB writes through a `Mux` over the memory
//!   backend, a route without and a route with `encrypt` (keyring key set: a fresh data
//!   key per record, AES-256-GCM for the value and for the wrapped data key).
//! - `plain_get` / `encrypted_get`: reads of 1,000 such records.
//!
//! - `audit_off_put` / `audit_on_put`: 1 KiB PUTs over REST (reqwest, one keep-alive
//!   pool) to two in-process muxd on memory backends, one with `[audit] enabled` (the
//!   events routed to a memory store), one without.
//!
//! Alternating rounds, median of 5, concurrency 8. Ratios `encrypted_vs_plain_put`,
//! `encrypted_vs_plain_get` (encrypted throughput / plain; goal ≥ 0.7 each) and
//! `audit_on_vs_off` (goal ≥ 0.8).

use std::sync::Arc;

use mux::encrypt::{Envelope, Keyring};
use mux::{Bytes, Key, MemoryBackend, Mux, Role, RouteConfig};
use mux_tests::bench::{MakeOp, Op, alternate, runtime, write_json};

const PER: usize = 100_000;
const ROUNDS: usize = 5;
const CONCURRENCY: usize = 8;
const KEYS: usize = 1_000;

fn mux(encrypted: bool) -> Mux {
    let mut route = RouteConfig::new("").backend("mem", Role::Primary);
    let mut builder = Mux::builder().backend(Arc::new(MemoryBackend::new("mem")));
    if encrypted {
        let keys = Keyring::from_keys("k1", [("k1".to_owned(), [7u8; 32])]).expect("a keyring");
        builder = builder.sealer(Arc::new(Envelope::new("secrets", Arc::new(keys))));
        route = route.encrypt("secrets");
    }
    builder
        .default_route(route)
        .build()
        .expect("a valid bench config")
}

fn keys() -> Arc<Vec<Key>> {
    Arc::new(
        (0..KEYS)
            .map(|i| Key::new(format!("bench/{i:05}")).expect("a valid key"))
            .collect(),
    )
}

fn put(mux: Mux, keys: Arc<Vec<Key>>, value: Bytes) -> MakeOp {
    Box::new(move |_| {
        let (mux, keys, value) = (mux.clone(), keys.clone(), value.clone());
        let op: Op = Arc::new(move |i| {
            let (mux, key, value) = (mux.clone(), keys[i % KEYS].clone(), value.clone());
            Box::pin(async move {
                mux.put(key, value).await.expect("a put");
            })
        });
        op
    })
}

fn get(mux: Mux, keys: Arc<Vec<Key>>) -> MakeOp {
    Box::new(move |_| {
        let (mux, keys) = (mux.clone(), keys.clone());
        let op: Op = Arc::new(move |i| {
            let (mux, key) = (mux.clone(), keys[i % KEYS].clone());
            Box::pin(async move {
                assert!(mux.get(&key).await.expect("a get").is_some());
            })
        });
        op
    })
}

/// A muxd on memory backends, with or without the audit trail.
async fn muxd(audit: bool) -> (muxd::Server, muxd::AppState) {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
[auth]
mode = "off"
[audit]
enabled = {audit}
[[backends]]
name = "main"
kind = "memory"
[[backends]]
name = "trail"
kind = "memory"
[mux]
node_id = 1
[[mux.routes]]
prefix = "audit/"
backends = [{{ backend = "trail", role = "primary" }}]
[mux.default]
backends = [{{ backend = "main", role = "primary" }}]
"#
    );
    let config = muxd::ServerConfig::from_toml(&text).expect("a valid bench config");
    let state = muxd::build(&config).await.expect("muxd builds");
    let server = muxd::serve(&config, state.clone())
        .await
        .expect("muxd serves");
    (server, state)
}

fn rest_put(client: reqwest::Client, base: String, value: Bytes) -> MakeOp {
    Box::new(move |_| {
        let (client, base, value) = (client.clone(), base.clone(), value.clone());
        let op: Op = Arc::new(move |i| {
            let request = client
                .put(format!("{base}/v1/kv/bench/{:05}", i % KEYS))
                .body(value.clone());
            Box::pin(async move {
                let r = request.send().await.expect("a PUT");
                assert!(r.status().is_success(), "{}", r.status());
            })
        });
        op
    })
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime().block_on(async {
        let value = Bytes::from(vec![0x5a; 1024]);
        let (plain, sealed, keys) = (mux(false), mux(true), keys());
        for k in keys.iter() {
            plain.put(k.clone(), value.clone()).await.expect("a put");
            sealed.put(k.clone(), value.clone()).await.expect("a put");
        }
        let puts = alternate(
            &[
                ("plain_put", put(plain.clone(), keys.clone(), value.clone())),
                (
                    "encrypted_put",
                    put(sealed.clone(), keys.clone(), value.clone()),
                ),
            ],
            ROUNDS,
            PER,
            CONCURRENCY,
        )
        .await;
        let gets = alternate(
            &[
                ("plain_get", get(plain.clone(), keys.clone())),
                ("encrypted_get", get(sealed.clone(), keys.clone())),
            ],
            ROUNDS,
            PER,
            CONCURRENCY,
        )
        .await;
        let (off, off_state) = muxd(false).await;
        let (on, on_state) = muxd(true).await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .expect("a client");
        let audits = alternate(
            &[
                (
                    "audit_off_put",
                    rest_put(
                        client.clone(),
                        format!("http://{}", off.addr),
                        value.clone(),
                    ),
                ),
                (
                    "audit_on_put",
                    rest_put(client.clone(), format!("http://{}", on.addr), value.clone()),
                ),
            ],
            ROUNDS,
            PER / 10,
            CONCURRENCY,
        )
        .await;
        off.shutdown(&off_state.mux()).await;
        on.shutdown(&on_state.mux()).await;
        let ratio = |rows: &[mux_tests::bench::Row]| rows[1].ops_per_sec / rows[0].ops_per_sec;
        let rows: Vec<_> = puts
            .iter()
            .chain(gets.iter())
            .chain(audits.iter())
            .cloned()
            .collect();
        write_json(
            "security",
            &rows,
            &[
                ("encrypted_vs_plain_put", ratio(&puts)),
                ("encrypted_vs_plain_get", ratio(&gets)),
                ("audit_on_vs_off", ratio(&audits)),
            ],
        );
    });
}
