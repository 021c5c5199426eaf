//! `cargo xtask bench security`: what encryption at rest costs (issue 17).
//!
//! - `plain_put` / `encrypted_put`: 1 KiB writes through a `Mux` over the memory
//!   backend, a route without and a route with `encrypt` (keyring key set: a fresh data
//!   key per record, AES-256-GCM for the value and for the wrapped data key).
//! - `plain_get` / `encrypted_get`: reads of 1,000 such records (the envelope's data
//!   key cache, on by default, holds all 1,000 data keys after the warm-up).
//!
//! - `audit_off_put` / `audit_on_put`: 1 KiB PUTs over REST (reqwest, one keep-alive
//!   pool) to two in-process muxd on memory backends, one with `[audit] enabled` (the
//!   events routed to a memory store), one without.
//!
//! - `quiet_get_unloaded` / `quiet_get_under_flood`: one tenant's 1 KiB GETs over REST
//!   (JWT, concurrency 2) to a muxd with `[quotas]`, alone and while another tenant,
//!   limited to 50 writes per second, sends 2,000 PUTs per second (40× its quota, from
//!   4 connections; almost all answered 429). The flood is paced: on these 2-core
//!   machines its client shares the cores with muxd, so an unpaced one measures the
//!   machine's CPU, not the quota's isolation. Alternating rounds; `quota_isolation_p99`
//!   is the median loaded p99 over the median unloaded p99 (issue 17's quota test:
//!   goal ≤ 2).
//!
//! - `aes_gcm_seal_1k` / `aes_gcm_open_1k`: AES-256-GCM alone, the least per-record
//!   encryption adds: for a put, a fresh data key expanded, 1 KiB sealed and the data
//!   key wrapped; for a get (its data key cached), 1 KiB opened; `harness_noop`, an empty
//!   operation, is the harness's own cost, taken off them. `encrypted_*_bound_by_cipher`
//!   is the best ratio an encrypted row could reach on this machine in this run: plain
//!   time per operation over plain time + cipher time.
//!
//! Alternating rounds, median of 5, concurrency 8. Ratios `encrypted_vs_plain_put`,
//! `encrypted_vs_plain_get` (encrypted throughput / plain; goal ≥ 0.7 each),
//! `audit_on_vs_off` (goal ≥ 0.8) and `quota_isolation_p99` (goal ≤ 2).
//! `MUX_BENCH_ONLY=encryption,audit,quota` (any of them) runs some parts only.

use std::sync::Arc;

/// The allocator the muxd binary ships with (its in-process servers here are muxd).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mux::encrypt::{Envelope, Keyring};
use mux::{Bytes, Key, MemoryBackend, Mux, Role, RouteConfig};
use mux_tests::bench::{MakeOp, Op, alternate, runtime, write_json};

const PER: usize = 100_000;
/// Operations per round on the memory backend (a few hundred ms each: shorter rounds
/// measured the machine's noise more than the encryption).
const MEMORY_PER: usize = 500_000;
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

/// An in-process muxd on the configuration `text`.
async fn serve(text: &str) -> (muxd::Server, muxd::AppState) {
    let config = muxd::ServerConfig::from_toml(text).expect("a valid bench config");
    let state = muxd::build(&config).await.expect("muxd builds");
    let server = muxd::serve(&config, state.clone())
        .await
        .expect("muxd serves");
    (server, state)
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
    serve(&text).await
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

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn token(tenant: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"tenant": tenant, "scope": "read write", "aud": "muxd", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token")
}

/// A muxd with JWT tenants and `[quotas]`: the tenant `flood` may write 50 times a
/// second, every other tenant 100,000.
async fn quota_muxd() -> (muxd::Server, muxd::AppState) {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
[auth]
mode = "jwt"
algorithm = "HS256"
secret = "{SECRET}"
audience = "muxd"
[quotas]
reads_per_second = 100000
writes_per_second = 100000
[quotas.tenants.flood]
writes_per_second = 50
[[backends]]
name = "main"
kind = "memory"
[mux]
node_id = 1
[mux.default]
backends = [{{ backend = "main", role = "primary" }}]
"#
    );
    serve(&text).await
}

/// The quiet tenant's p99 alone and under another tenant's flood, in alternating
/// rounds; returns the two median rows (by p99) and how many flood requests got 429.
async fn quota_isolation(value: Bytes) -> (Vec<mux_tests::bench::Row>, u64, u64) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const QUIET: usize = 4_000;
    let (server, state) = quota_muxd().await;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .expect("a client");
    let quiet = format!("Bearer {}", token("quiet"));
    for i in 0..100 {
        let r = client
            .put(format!("{base}/v1/kv/bench/{i:05}"))
            .header("authorization", &quiet)
            .body(value.clone())
            .send()
            .await
            .expect("a PUT");
        assert!(r.status().is_success(), "{}", r.status());
    }
    let quiet_get = |name: &'static str| {
        let (client, base, quiet) = (client.clone(), base.clone(), quiet.clone());
        mux_tests::bench::measure(name, QUIET, 2, move |i| {
            let request = client
                .get(format!("{base}/v1/kv/bench/{:05}", i % 100))
                .header("authorization", &quiet);
            async move {
                let r = request.send().await.expect("a GET");
                assert!(r.status().is_success(), "{}", r.status());
            }
        })
    };
    let (limited, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (mut alone, mut loaded) = (Vec::new(), Vec::new());
    let mut flood_secs = 0.0;
    for round in 0..=ROUNDS {
        let flooding = Arc::new(AtomicBool::new(true));
        let measure_alone = || quiet_get("quiet_get_unloaded");
        if round % 2 == 0 {
            alone.push(measure_alone().await);
        }
        let flood: Vec<_> = (0..4)
            .map(|_| {
                let (client, base, flooding) = (client.clone(), base.clone(), flooding.clone());
                let (limited, sent, value) = (limited.clone(), sent.clone(), value.clone());
                let auth = format!("Bearer {}", token("flood"));
                tokio::spawn(async move {
                    let mut i = 0u64;
                    // 500 a second from each of the 4 tasks.
                    let mut pace = tokio::time::interval(std::time::Duration::from_millis(2));
                    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while flooding.load(Ordering::Relaxed) {
                        pace.tick().await;
                        i += 1;
                        let r = client
                            .put(format!("{base}/v1/kv/flood/{:05}", i % 100))
                            .header("authorization", &auth)
                            .body(value.clone())
                            .send()
                            .await
                            .expect("a flood PUT");
                        sent.fetch_add(1, Ordering::Relaxed);
                        if r.status() == 429 {
                            limited.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        // Let the flood reach its pace before measuring.
        let started = std::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        loaded.push(quiet_get("quiet_get_under_flood").await);
        flooding.store(false, Ordering::Relaxed);
        flood_secs += started.elapsed().as_secs_f64();
        for task in flood {
            task.await.expect("a flood task");
        }
        if round % 2 == 1 {
            alone.push(measure_alone().await);
        }
    }
    // Round 0 warmed up the pools.
    let by_p99 = |mut rows: Vec<mux_tests::bench::Row>| {
        rows.remove(0);
        rows.sort_by(|a, b| a.p99_us.total_cmp(&b.p99_us));
        rows.swap_remove(rows.len() / 2)
    };
    let rows = vec![by_p99(alone), by_p99(loaded)];
    server.shutdown(&state.mux()).await;
    let sent = sent.load(Ordering::Relaxed);
    println!(
        "flood: {:.0} PUTs per second while it ran",
        sent as f64 / flood_secs
    );
    (rows, limited.load(Ordering::Relaxed), sent)
}

/// AES-256-GCM alone over a 1 KiB value. `open = false`: what a put must do at least
/// with a fresh data key per record — expand a data key, seal the value into a new
/// buffer, seal the 32-byte data key under an expanded key encryption key. `open =
/// true`: what a get must do at least with its data key cached — open a copy of the
/// sealed value. Every encrypted operation does this on top of the plain one, so a
/// plain row's time plus this row's bounds what an encrypted row can reach. (Fixed
/// keys and nonce: this measures the cipher's cost, nothing here is secret.)
fn aes_gcm(open: bool) -> MakeOp {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let expand = |bytes: &[u8; 32]| {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte key"))
    };
    Box::new(move |_| {
        let (dek, kek) = ([9; 32], Arc::new(expand(&[8; 32])));
        let nonce = || Nonce::assume_unique_for_key([3; 12]);
        let mut sealed = vec![0x5a; 1024];
        expand(&dek)
            .seal_in_place_append_tag(nonce(), Aad::empty(), &mut sealed)
            .expect("a seal");
        let (opener, sealed) = (Arc::new(expand(&dek)), Arc::new(sealed));
        let op: Op = Arc::new(move |_| {
            let (kek, opener, sealed) = (kek.clone(), opener.clone(), sealed.clone());
            Box::pin(async move {
                if open {
                    let mut buf = sealed.to_vec();
                    let plain = opener.open_in_place(nonce(), Aad::empty(), &mut buf);
                    assert_eq!(plain.expect("an open").len(), 1024);
                    std::hint::black_box(buf);
                } else {
                    let mut buf = Vec::with_capacity(1024 + 16);
                    buf.extend_from_slice(&sealed[..1024]);
                    expand(&dek)
                        .seal_in_place_append_tag(nonce(), Aad::empty(), &mut buf)
                        .expect("a seal");
                    let mut wrapped = dek;
                    let tag = kek
                        .seal_in_place_separate_tag(nonce(), Aad::empty(), &mut wrapped)
                        .expect("a wrap");
                    let _ = std::hint::black_box((buf, wrapped, tag));
                }
            })
        });
        op
    })
}

/// An operation that does nothing: what the harness itself costs per operation,
/// taken off the cipher rows.
fn noop() -> MakeOp {
    Box::new(|_| {
        let op: Op = Arc::new(|i| {
            Box::pin(async move {
                std::hint::black_box(i);
            })
        });
        op
    })
}

/// What a part of the bench measured.
type Part = (Vec<mux_tests::bench::Row>, Vec<(&'static str, f64)>);

fn ratio(rows: &[mux_tests::bench::Row], a: usize, b: usize) -> f64 {
    rows[a].ops_per_sec / rows[b].ops_per_sec
}

/// Encryption at rest: plain and encrypted puts and gets through a `Mux`, and the
/// cipher alone (the bound).
async fn encryption(value: &Bytes) -> Part {
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
            ("aes_gcm_seal_1k", aes_gcm(false)),
            ("harness_noop", noop()),
        ],
        ROUNDS,
        MEMORY_PER,
        CONCURRENCY,
    )
    .await;
    let gets = alternate(
        &[
            ("plain_get", get(plain.clone(), keys.clone())),
            ("encrypted_get", get(sealed.clone(), keys.clone())),
            ("aes_gcm_open_1k", aes_gcm(true)),
        ],
        ROUNDS,
        MEMORY_PER,
        CONCURRENCY,
    )
    .await;
    // An encrypted operation costs at least the plain one plus the cipher's pass (the
    // cipher row less the harness's own cost per operation): that time per operation
    // gives the best ratio any per-record encryption could reach here.
    let noop = 1.0 / puts[3].ops_per_sec;
    let bound = |rows: &[mux_tests::bench::Row]| {
        let plain = 1.0 / rows[0].ops_per_sec;
        let cipher = (1.0 / rows[2].ops_per_sec - noop).max(0.0);
        plain / (plain + cipher)
    };
    let ratios = vec![
        ("encrypted_vs_plain_put", ratio(&puts, 1, 0)),
        ("encrypted_vs_plain_get", ratio(&gets, 1, 0)),
        ("encrypted_put_bound_by_cipher", bound(&puts)),
        ("encrypted_get_bound_by_cipher", bound(&gets)),
    ];
    (puts.into_iter().chain(gets).collect(), ratios)
}

/// The audit trail: REST PUTs to a muxd without and with `[audit]`.
async fn audit(value: &Bytes) -> Part {
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
    let ratios = vec![("audit_on_vs_off", ratio(&audits, 1, 0))];
    (audits, ratios)
}

/// Quotas: the quiet tenant's p99 alone and under the flood.
async fn quota(value: &Bytes) -> Part {
    println!("\nquota isolation (p99 medians of {ROUNDS} rounds):");
    let (quota, limited, sent) = quota_isolation(value.clone()).await;
    println!("flood: {limited} of {sent} PUTs answered 429");
    assert!(
        limited * 2 > sent,
        "the flooding tenant was not held to its quota ({limited} of {sent} limited)"
    );
    let ratios = vec![("quota_isolation_p99", quota[1].p99_us / quota[0].p99_us)];
    (quota, ratios)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime().block_on(async {
        let value = Bytes::from(vec![0x5a; 1024]);
        // `MUX_BENCH_ONLY=encryption,audit,quota` (any of them) runs some parts only
        // (to profile one).
        let only = std::env::var("MUX_BENCH_ONLY").unwrap_or_default();
        let on = |part: &str| only.is_empty() || only.split(',').any(|s| s.trim() == part);
        let (mut rows, mut ratios) = (Vec::new(), Vec::new());
        let mut take = |(r, q): Part| {
            rows.extend(r);
            ratios.extend(q);
        };
        if on("encryption") {
            take(encryption(&value).await);
        }
        if on("audit") {
            take(audit(&value).await);
        }
        if on("quota") {
            take(quota(&value).await);
        }
        write_json("security", &rows, &ratios);
    });
}
