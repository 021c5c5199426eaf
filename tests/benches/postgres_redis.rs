//! `cargo xtask bench postgres-redis`: 20,000 writes of 1 KiB at concurrency 64 per row,
//! against the local PostgreSQL and Redis, in alternating rounds of one run.
//!
//! Rows: a direct tokio-postgres conditional upsert (a pool of the same size);
//! mux-postgres alone (its transparent batching); PostgreSQL + Redis through a `Mux` at
//! `All`; a hand-written `tokio::join!` of the two adapters; the two adapters one after
//! the other. Ratios: `mux_all_vs_join`, `mux_pg_vs_direct_pg`.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use mux::postgres::{PostgresBackend, PostgresConfig};
use mux::redis::{RedisBackend, RedisConfig};
use mux::{
    Backend, Bytes, Clock, Key, Mux, Record, Role, RouteConfig, WriteConsistency, WriteOptions,
};
use mux_tests::bench::{Op, Row, measure, median, print_header, print_row, write_json};

const WRITES: usize = 20_000;
const ROUNDS: usize = 3;
const CONCURRENCY: usize = 64;
const POOL: usize = 16;
const TABLE: &str = "mux_bench";

async fn run_row(name: &'static str, op: Op, round: usize) -> Row {
    let per = WRITES / ROUNDS;
    measure(name, per, CONCURRENCY, move |i| op(round * per + i)).await
}

fn main() {
    let runtime = mux_tests::bench::runtime();
    runtime.block_on(async {
        let pg_url = mux_tests::postgres_url();
        let pg = Arc::new(
            PostgresBackend::connect("postgres", PostgresConfig::new(&pg_url).with_table(TABLE).with_pool_size(POOL))
                .await
                .expect("PostgreSQL (cargo xtask services up)"),
        );
        let redis = Arc::new(
            RedisBackend::connect("redis", RedisConfig::new(mux_tests::redis_url()).with_namespace("mux-bench"))
                .await
                .expect("Redis (cargo xtask services up)"),
        );
        let mux = Mux::builder()
            .backend(pg.clone())
            .backend(redis.clone())
            .default_route(
                RouteConfig::new("")
                    .backend("postgres", Role::Primary)
                    .backend("redis", Role::Replica)
                    .write(WriteConsistency::All),
            )
            .build()
            .unwrap();
        // The baseline: plain tokio-postgres through a pool of the same size.
        let manager = Manager::from_config(
            pg_url.parse().unwrap(),
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager).max_size(POOL).build().unwrap();
        pool.get()
            .await
            .unwrap()
            .batch_execute(&format!("TRUNCATE {TABLE}"))
            .await
            .unwrap();
        let upsert = format!(
            "INSERT INTO {TABLE} AS t (key, value, version, tombstone, content_type, tags, checksum) \
             VALUES ($1, $2, $3, false, NULL, '{{}}', $4) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, \
             checksum = EXCLUDED.checksum, updated_at = now() WHERE t.version < EXCLUDED.version"
        );

        let value = Bytes::from(vec![7u8; 1024]);
        let clock = Arc::new(Clock::new(9));
        let key = |row: &str, i: usize| Key::new(format!("bench/{row}/k{i:05}")).unwrap();
        let record = {
            let (v, c) = (value.clone(), clock.clone());
            move |row: &str, i: usize| Record::new(key(row, i), v.clone(), c.now())
        };

        let direct: Op = {
            let (pool, upsert, record) = (pool.clone(), upsert.clone(), record.clone());
            Arc::new(move |i| {
                let (pool, upsert, r) = (pool.clone(), upsert.clone(), record("direct", i));
                Box::pin(async move {
                    let client = pool.get().await.unwrap();
                    let stmt = client.prepare_cached(&upsert).await.unwrap();
                    client
                        .execute(
                            &stmt,
                            &[&r.key().as_str(), &r.value().as_ref(), &r.version().to_string(), &i64::from(r.meta().checksum)],
                        )
                        .await
                        .unwrap();
                })
            })
        };
        let mux_pg: Op = {
            let (pg, record) = (pg.clone(), record.clone());
            Arc::new(move |i| {
                let (pg, r) = (pg.clone(), record("muxpg", i));
                Box::pin(async move {
                    pg.put(&r).await.unwrap();
                })
            })
        };
        let mux_all: Op = {
            let (m, v) = (mux.clone(), value.clone());
            let opts = Arc::new(WriteOptions::default());
            Arc::new(move |i| {
                let (m, v, o) = (m.clone(), v.clone(), opts.clone());
                Box::pin(async move {
                    m.write(key("muxall", i), v, &o).await.unwrap();
                })
            })
        };
        let join: Op = {
            let (pg, redis, record) = (pg.clone(), redis.clone(), record.clone());
            Arc::new(move |i| {
                let (pg, redis, r) = (pg.clone(), redis.clone(), record("join", i));
                Box::pin(async move {
                    let (a, b) = tokio::join!(pg.put(&r), redis.put(&r));
                    a.unwrap();
                    b.unwrap();
                })
            })
        };
        let sequential: Op = {
            let (pg, redis, record) = (pg.clone(), redis.clone(), record.clone());
            Arc::new(move |i| {
                let (pg, redis, r) = (pg.clone(), redis.clone(), record("seq", i));
                Box::pin(async move {
                    pg.put(&r).await.unwrap();
                    redis.put(&r).await.unwrap();
                })
            })
        };

        let rows: [(&'static str, Op); 5] = [
            ("direct_pg_upsert", direct),
            ("mux_postgres", mux_pg),
            ("mux_all_pg_redis", mux_all),
            ("join_pg_redis", join),
            ("sequential_pg_redis", sequential),
        ];
        print_header();
        let mut results: Vec<Vec<Row>> = vec![Vec::new(); rows.len()];
        for round in 0..ROUNDS {
            for (n, (name, op)) in rows.iter().enumerate() {
                results[n].push(run_row(name, op.clone(), round).await);
            }
        }
        println!("medians over {ROUNDS} alternating rounds:");
        let medians: Vec<Row> = results.into_iter().map(median).collect();
        for r in &medians {
            print_row(r);
        }
        let ratios = [
            ("mux_all_vs_join", medians[2].ops_per_sec / medians[3].ops_per_sec),
            ("mux_pg_vs_direct_pg", medians[1].ops_per_sec / medians[0].ops_per_sec),
            ("join_vs_sequential", medians[3].ops_per_sec / medians[4].ops_per_sec),
        ];
        write_json("postgres-redis", &medians, &ratios);
    });
}
