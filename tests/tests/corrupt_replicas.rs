//! Corrupt replicas in real stores: records written through a `Mux` over PostgreSQL,
//! Redis and memory are damaged with each store's OWN client (SQL through
//! tokio-postgres, `HSET` through the redis crate) so that their checksums fail. Reads
//! treat a corrupt copy as a stale one: `All` returns the good copy and repairs the
//! corrupt one, `Primary` fails over, a `Quorum` read never counts a corrupt copy toward
//! its majority, errors name the backends that returned corrupt data (and never say no
//! backend answered), and `MuxStats`/health reports count every corrupt read.
//!
//! PostgreSQL and Redis are required (`cargo xtask services up`). Every run writes under
//! a prefix of its own and removes what it wrote.

use std::sync::Arc;

use mux::postgres::{PostgresBackend, PostgresConfig};
use mux::redis::{RedisBackend, RedisConfig};
use mux::{
    Backend, ErrorKind, Key, MemoryBackend, Mux, ReadOptions, ReadPolicy, Role, RouteConfig,
    WriteConsistency,
};

const PG_TABLE: &str = "mux_corrupt_replicas";
const REDIS_NAMESPACE: &str = "mux-corrupt-replicas";

/// Damages the PostgreSQL row of `key` behind mux's back: a new value, the old checksum.
async fn damage_in_postgres(key: &Key) {
    let n = mux_tests::pg_client()
        .await
        .execute(
            &format!("UPDATE {PG_TABLE} SET value = 'damaged'::bytea WHERE key = $1"),
            &[&key.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(n, 1, "the row of {key} exists");
}

/// Damages the Redis hash of `key` behind mux's back: a new value, the old checksum.
async fn damage_in_redis(key: &Key) {
    let _: i64 = redis::cmd("HSET")
        .arg(format!("{REDIS_NAMESPACE}:r:{key}"))
        .arg("val")
        .arg("damaged")
        .query_async(&mut mux_tests::redis_conn().await)
        .await
        .unwrap();
}

async fn cleanup(prefix: &str, redis: &RedisBackend, keys: &[Key]) {
    mux_tests::pg_client()
        .await
        .execute(
            &format!("DELETE FROM {PG_TABLE} WHERE starts_with(key, $1)"),
            &[&format!("{prefix}/")],
        )
        .await
        .expect("remove the run's rows");
    for key in keys {
        redis
            .purge(key, mux::Version::new(u64::MAX, u32::MAX, u32::MAX))
            .await
            .expect("remove the run's Redis records");
    }
}

fn with(policy: ReadPolicy) -> ReadOptions {
    ReadOptions {
        policy: Some(policy),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_copies_in_real_stores_are_stale_copies_and_get_repaired() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("corrupt/{}-{nanos}", std::process::id());
    let pg = Arc::new(
        PostgresBackend::connect(
            "postgres",
            PostgresConfig::new(mux_tests::postgres_url()).with_table(PG_TABLE),
        )
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required (cargo xtask services up): {e}")),
    );
    let redis = Arc::new(
        RedisBackend::connect(
            "redis",
            RedisConfig::new(mux_tests::redis_url()).with_namespace(REDIS_NAMESPACE),
        )
        .await
        .unwrap_or_else(|e| panic!("Redis is required (cargo xtask services up): {e}")),
    );
    let memory = Arc::new(MemoryBackend::new("memory"));
    let mux = Mux::builder()
        .backend(pg.clone())
        .backend(redis.clone())
        .backend(memory)
        .default_route(
            RouteConfig::new("")
                .backend("postgres", Role::Primary)
                .backend("redis", Role::Replica)
                .backend("memory", Role::Replica)
                .write(WriteConsistency::All)
                .read(ReadPolicy::All),
        )
        .build()
        .unwrap();
    let keys: Vec<Key> = (0..3)
        .map(|i| Key::new(format!("{prefix}/k{i}")).unwrap())
        .collect();
    let body = {
        let (pg, redis, keys) = (pg.clone(), redis.clone(), keys.clone());
        async move {
            for (i, key) in keys.iter().enumerate() {
                mux.put(key.clone(), format!("good {i}")).await.unwrap();
            }
            let good = |i: usize| format!("good {i}").into_bytes();

            // Redis's copy of k0 damaged: an `All` read returns the good copy, and the
            // repair (a purge, then the good copy) leaves Redis's copy readable again.
            damage_in_redis(&keys[0]).await;
            let err = redis.get(&keys[0]).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            let got = mux.get(&keys[0]).await.unwrap().unwrap();
            assert_eq!(got.value(), good(0).as_slice());
            mux.settle().await;
            let mended = redis.get(&keys[0]).await.unwrap().expect("repaired");
            assert_eq!(mended.value(), good(0).as_slice());
            assert_eq!(mended.version(), got.version());

            // The primary's (PostgreSQL's) copy of k1 damaged: `Primary` fails over.
            damage_in_postgres(&keys[1]).await;
            let got = mux
                .get_with(&keys[1], &with(ReadPolicy::Primary))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.value(), good(1).as_slice());
            mux.settle().await;
            let mended = pg.get(&keys[1]).await.unwrap().expect("repaired");
            assert_eq!(mended.value(), good(1).as_slice());

            // k2 damaged in PostgreSQL and Redis: one good copy (memory) is no majority.
            damage_in_postgres(&keys[2]).await;
            damage_in_redis(&keys[2]).await;
            let err = mux
                .get_with(&keys[2], &with(ReadPolicy::Quorum))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConsistencyNotMet, "{err}");
            let text = err.to_string();
            assert!(text.contains("got 1 usable and 2 corrupt copies"), "{text}");
            assert!(
                text.contains("backend 'postgres'") && text.contains("backend 'redis'"),
                "{text}"
            );
            assert!(!text.contains("no backend"), "{text}");
            // `FirstHealthy` reads the good copy and repairs both corrupt ones.
            let got = mux
                .get_with(&keys[2], &with(ReadPolicy::FirstHealthy))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.value(), good(2).as_slice());
            mux.settle().await;
            let again = mux
                .get_with(&keys[2], &with(ReadPolicy::Quorum))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(again.value(), good(2).as_slice());

            // Counted: k0 once (redis), k1 once (postgres), k2 twice per store (the
            // quorum read and the first-healthy one each met both damaged copies).
            let stats = mux.stats();
            assert_eq!(stats.corrupt_reads, 6, "{stats:?}");
            let report = mux.health_report().await.unwrap();
            let of = |name: &str| {
                report
                    .iter()
                    .find(|r| r.backend == name)
                    .unwrap()
                    .corrupt_reads
            };
            assert_eq!((of("postgres"), of("redis"), of("memory")), (3, 3, 0));
        }
    };
    let outcome = tokio::spawn(body).await;
    cleanup(&prefix, &redis, &keys).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
