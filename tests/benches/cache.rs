//! `cargo xtask bench cache`: the route cache and the change feed, against the local
//! Redis (the store and one feed) and PostgreSQL (the other feed), in one run.
//!
//! - `cached_read` / `uncached_read`: 20,000 reads of 100 hot keys at concurrency 64 on
//!   a Redis-backed route, through a `Mux` whose route has a cache and one whose route
//!   has none (alternating rounds, median of 3). Ratio `cached_vs_uncached_read`.
//! - `write_feed_off` / `write_feed_redis` / `write_feed_pg`: 6,000 writes of 1 KiB at
//!   concurrency 64 to a cached Redis-backed route with no feed, the Redis feed and the
//!   PostgreSQL feed (alternating rounds, median of 3). Each acknowledged write has been
//!   published. Ratios `feed_publish_overhead_redis`, `feed_publish_overhead_pg`, and
//!   `feed_publish_overhead`, the lower of the two.
//! - `invalidation_{redis,pg}`: two nodes (two `Mux`es, each with its own feed client on
//!   the same stream or table) share the store. 400 times: node B caches a key, node A
//!   writes it, and B reads it in a loop until B returns the new version. The time runs
//!   from the start of A's write, so it includes the write. Ratios
//!   `invalidation_p99_ms_redis` and `invalidation_p99_ms_pg`; the goals are ≤ 5 and ≤ 20.
//! - `miss_storm`: 10 cold keys, 1,000 concurrent readers each. The store answers `get`
//!   5 ms late, so every reader arrives while the first read is in flight. The store's own
//!   call counter (a `FaultyBackend` that injects nothing but the delay) counts the reads.
//!   Ratio `miss_storm_backend_reads`: store reads per key, the goal is 1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mux::feed::{ChangeFeed, Coalesced};
use mux::postgres::{PostgresFeed, PostgresFeedConfig};
use mux::redis::{RedisBackend, RedisConfig, RedisFeed, RedisFeedConfig};
use mux::testing::{FaultConfig, FaultyBackend};
use mux::{Backend, Bytes, CacheConfig, Key, Mux, Operation, Role, RouteConfig};
use mux_tests::bench::{Row, measure, median, print_header, print_row, write_json};

const READS: usize = 20_000;
const WRITES: usize = 6_000;
const ROUNDS: usize = 3;
const CONCURRENCY: usize = 64;
const HOT_KEYS: usize = 100;
const SAMPLES: usize = 400;
const STORM_KEYS: usize = 10;
const STORM_READERS: usize = 1_000;
const NAMESPACE: &str = "mux-bench-cache";
const PG_TABLE: &str = "mux_bench_feed";
const STREAM: &str = "mux-bench-cache:feed";

fn key(s: String) -> Key {
    Key::new(s).expect("a valid key")
}

fn cache() -> CacheConfig {
    CacheConfig::new(100_000, Duration::from_secs(600)).max_staleness(Duration::from_secs(2))
}

/// A `Mux` over `store` with route `prefix` (cached or not) and an optional feed.
fn node(
    store: Arc<dyn Backend>,
    prefix: &str,
    cached: bool,
    feed: Option<Arc<dyn ChangeFeed>>,
    id: u32,
) -> Mux {
    let name = store.info().name.to_string();
    let mut route = RouteConfig::new(prefix).backend(&name, Role::Primary);
    if cached {
        route = route.cache(cache());
    }
    let mut builder = Mux::builder()
        .backend(store)
        .node_id(id)
        .route(route)
        .default_route(RouteConfig::new("").backend(&name, Role::Primary));
    if let Some(feed) = feed {
        builder = builder.feed(feed);
    }
    builder.build().expect("a valid bench config")
}

async fn redis_store() -> Arc<RedisBackend> {
    Arc::new(
        RedisBackend::connect(
            "redis",
            RedisConfig::new(mux_tests::redis_url()).with_namespace(NAMESPACE),
        )
        .await
        .expect("Redis (cargo xtask services up)"),
    )
}

async fn redis_feed() -> Arc<dyn ChangeFeed> {
    redis_feed_on(STREAM).await
}

/// The Redis feed as muxd opens it (`FeedSpec::open`: publishes coalesced).
async fn redis_feed_on(stream: &str) -> Arc<dyn ChangeFeed> {
    let feed = Arc::new(
        RedisFeed::open(
            RedisFeedConfig::new(mux_tests::redis_url())
                .with_stream(stream)
                .with_max_len(100_000),
        )
        .await
        .expect("the Redis feed (cargo xtask services up)"),
    );
    Arc::new(Coalesced::new(feed))
}

async fn pg_feed() -> Arc<dyn ChangeFeed> {
    Arc::new(
        PostgresFeed::open(
            PostgresFeedConfig::new(mux_tests::postgres_url())
                .with_table(PG_TABLE)
                .with_retention(100_000, Duration::from_secs(3600)),
        )
        .await
        .expect("the PostgreSQL feed (cargo xtask services up)"),
    )
}

/// Waits (at most 10 s) until `mux`'s caches follow their feed.
async fn fresh(mux: &Mux) {
    let start = Instant::now();
    while !mux.cache_is_fresh() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the cache never became fresh: is the feed reachable?"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn reads(name: &'static str, mux: &Mux, round: usize) -> Row {
    let mux = mux.clone();
    let per = READS / ROUNDS;
    measure(name, per, CONCURRENCY, move |i| {
        let mux = mux.clone();
        async move {
            let k = key(format!("hot/k{:03}", (round * per + i) % HOT_KEYS));
            let r = mux.get(&k).await.expect("a read").expect("a hot key");
            assert_eq!(r.value().len(), 1024);
        }
    })
    .await
}

async fn writes(name: &'static str, mux: &Mux, round: usize) -> Row {
    let mux = mux.clone();
    let per = WRITES / ROUNDS;
    let value = Bytes::from(vec![7u8; 1024]);
    measure(name, per, CONCURRENCY, move |i| {
        let (mux, value) = (mux.clone(), value.clone());
        async move {
            let k = key(format!("hot/w-{name}-{:05}", round * per + i));
            mux.put(k, value).await.expect("a write");
        }
    })
    .await
}

/// Write on `a`, read on `b` until it returns the write: one latency per sample.
async fn invalidation(name: &'static str, a: &Mux, b: &Mux) -> Row {
    fresh(a).await;
    fresh(b).await;
    let mut lat = Vec::with_capacity(SAMPLES);
    let started = Instant::now();
    for i in 0..SAMPLES {
        let k = key(format!("hot/inv-{name}-{:02}", i % 20));
        // B holds the key (the second read is a hit).
        b.get(&k).await.expect("a read");
        b.get(&k).await.expect("a read");
        let t0 = Instant::now();
        let written = a.put(k.clone(), format!("v{i}")).await.expect("a write");
        loop {
            let seen = b.get(&k).await.expect("a read").map(|r| r.version());
            if seen == Some(written.version) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{name}: node B never saw node A's write of {k}"
            );
            tokio::task::yield_now().await;
        }
        lat.push(t0.elapsed());
    }
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    let row = Row {
        name,
        ops_per_sec: SAMPLES as f64 / started.elapsed().as_secs_f64(),
        p50_us: pct(0.5).as_secs_f64() * 1e6,
        p99_us: pct(0.99).as_secs_f64() * 1e6,
    };
    print_row(&row);
    row
}

/// Store reads per key for `STORM_READERS` concurrent cold readers of each key.
async fn miss_storm(store: Arc<RedisBackend>, writer: &Mux) -> (Row, f64) {
    let slow = FaultyBackend::new(store, 1).with_config(FaultConfig {
        latency: Duration::from_millis(5),
        operations: vec![Operation::Get],
        ..Default::default()
    });
    let counted = Arc::new(slow);
    let mux = node(counted.clone(), "hot/", true, None, 9);
    let run = std::process::id();
    for k in 0..STORM_KEYS {
        writer
            .put(key(format!("hot/storm-{run}-{k}")), "cold")
            .await
            .expect("a write");
    }
    fresh(&mux).await;
    let before = counted.calls();
    let started = Instant::now();
    let mut lat = Vec::new();
    for k in 0..STORM_KEYS {
        let readers: Vec<_> = (0..STORM_READERS)
            .map(|_| {
                let (mux, k) = (mux.clone(), key(format!("hot/storm-{run}-{k}")));
                tokio::spawn(async move {
                    let t = Instant::now();
                    let r = mux.get(&k).await.expect("a read").expect("the key");
                    assert_eq!(r.value(), "cold".as_bytes());
                    t.elapsed()
                })
            })
            .collect();
        for r in readers {
            lat.push(r.await.expect("a reader"));
        }
    }
    let per_key = (counted.calls() - before) as f64 / STORM_KEYS as f64;
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    let row = Row {
        name: "miss_storm",
        ops_per_sec: lat.len() as f64 / started.elapsed().as_secs_f64(),
        p50_us: pct(0.5).as_secs_f64() * 1e6,
        p99_us: pct(0.99).as_secs_f64() * 1e6,
    };
    print_row(&row);
    (row, per_key)
}

fn main() {
    let runtime = mux_tests::bench::runtime();
    runtime.block_on(async {
        let store = redis_store().await;
        let dynstore: Arc<dyn Backend> = store.clone();
        let (feed_redis, feed_pg) = (redis_feed().await, pg_feed().await);

        // Reads: the same hot keys through a cached and an uncached route.
        let plain = node(dynstore.clone(), "hot/", false, None, 1);
        let cached = node(dynstore.clone(), "hot/", true, Some(feed_redis.clone()), 2);
        let value = Bytes::from(vec![1u8; 1024]);
        for k in 0..HOT_KEYS {
            plain
                .put(key(format!("hot/k{k:03}")), value.clone())
                .await
                .expect("Redis");
        }
        fresh(&cached).await;

        // Writes: no feed, the Redis feed, the PostgreSQL feed (each its own node).
        let off = node(dynstore.clone(), "hot/", false, None, 3);
        let on_redis = node(dynstore.clone(), "hot/", true, Some(feed_redis.clone()), 4);
        let on_pg = node(dynstore.clone(), "hot/", true, Some(feed_pg.clone()), 5);
        // The publish alone: a feed no cache of this process reads.
        let publish_only = node(
            dynstore.clone(),
            "hot/",
            false,
            Some(redis_feed_on("mux-bench-cache:untailed").await),
            8,
        );
        fresh(&on_redis).await;
        fresh(&on_pg).await;

        print_header();
        let mut rounds: Vec<Vec<Row>> = vec![Vec::new(); 6];
        for round in 0..ROUNDS {
            rounds[0].push(reads("uncached_read", &plain, round).await);
            rounds[1].push(reads("cached_read", &cached, round).await);
            rounds[2].push(writes("write_feed_off", &off, round).await);
            rounds[3].push(writes("write_feed_redis", &on_redis, round).await);
            rounds[4].push(writes("write_feed_pg", &on_pg, round).await);
            rounds[5].push(writes("write_publish_only_redis", &publish_only, round).await);
        }
        let mut rows: Vec<Row> = rounds.into_iter().map(median).collect();
        println!("medians:");
        rows.iter().for_each(print_row);

        // Invalidation across two nodes, one feed client each.
        println!("invalidation (write on A → B reads it):");
        let a = node(dynstore.clone(), "hot/", true, Some(redis_feed().await), 6);
        let b = node(dynstore.clone(), "hot/", true, Some(redis_feed().await), 7);
        let inv_redis = invalidation("invalidation_redis", &a, &b).await;
        let a = node(dynstore.clone(), "hot/", true, Some(pg_feed().await), 6);
        let b = node(dynstore.clone(), "hot/", true, Some(pg_feed().await), 7);
        let inv_pg = invalidation("invalidation_pg", &a, &b).await;

        println!("miss storm ({STORM_KEYS} keys × {STORM_READERS} readers):");
        let (storm, per_key) = miss_storm(store.clone(), &plain).await;

        let ratio = |a: usize, b: usize| rows[a].ops_per_sec / rows[b].ops_per_sec;
        let (overhead_redis, overhead_pg) = (ratio(3, 2), ratio(4, 2));
        let ratios = [
            ("cached_vs_uncached_read", ratio(1, 0)),
            ("feed_publish_overhead", overhead_redis.min(overhead_pg)),
            ("feed_publish_overhead_redis", overhead_redis),
            ("feed_publish_overhead_pg", overhead_pg),
            ("invalidation_p99_ms_redis", inv_redis.p99_us / 1e3),
            ("invalidation_p99_ms_pg", inv_pg.p99_us / 1e3),
            ("miss_storm_backend_reads", per_key),
        ];
        rows.extend([inv_redis, inv_pg, storm]);
        write_json("cache", &rows, &ratios);
    });
}
