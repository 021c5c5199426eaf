//! Corrupt replicas in real stores: records written through a `Mux` over PostgreSQL,
//! Redis and memory are damaged with each store's OWN client (SQL through
//! tokio-postgres, `APPEND` through the redis crate) so that their checksums fail. Reads
//! treat a corrupt copy as a stale one: `All` returns the good copy and repairs the
//! corrupt one, `Primary` fails over, a `Quorum` read never counts a corrupt copy toward
//! its majority, errors name the backends that returned corrupt data (and never say no
//! backend answered), and `MuxStats`/health reports count every corrupt read.
//!
//! The case seen when mux was tried as a new user would — an S3 server that stored an
//! object's metadata with an empty body — is made with boto3 (from the services venv)
//! against the local S3 server: the read fails over and the repair rewrites the object.
//!
//! PostgreSQL, Redis and the S3 server are required (`cargo xtask services up
//! --install`). Every run writes under a prefix of its own and removes what it wrote.

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

/// Damages the Redis string of `key` behind mux's back: bytes added to its value, the
/// old checksum.
async fn damage_in_redis(key: &Key) {
    let _: i64 = redis::cmd("APPEND")
        .arg(format!("{REDIS_NAMESPACE}:r:{key}"))
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

/// Rewrites an object with boto3, keeping its metadata and content type but with an
/// empty body.
const EMPTY_BODY: &str = r#"
import json, sys, boto3
endpoint, bucket, key = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
head = s3.head_object(Bucket=bucket, Key=key)
s3.put_object(Bucket=bucket, Key=key, Body=b"", Metadata=head["Metadata"],
              ContentType=head["ContentType"])
print(json.dumps({"metadata": head["Metadata"]}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_object_left_with_an_empty_body_is_read_around_and_repaired() {
    let bucket = format!("mux-corrupt-{}", std::process::id());
    let s3 = Arc::new(
        mux::s3::S3Backend::connect("s3", mux_tests::s3_config(&bucket))
            .await
            .expect("the S3 server is required (run `cargo xtask services up --install`)"),
    );
    let mux = Mux::builder()
        .backend(s3.clone())
        .backend(Arc::new(MemoryBackend::new("m1")))
        .backend(Arc::new(MemoryBackend::new("m2")))
        .default_route(
            RouteConfig::new("")
                .backend("s3", Role::Primary)
                .backend("m1", Role::Replica)
                .backend("m2", Role::Replica)
                .write(WriteConsistency::All)
                .read(ReadPolicy::Primary),
        )
        .build()
        .unwrap();
    let key = Key::new(format!("corrupt/{}/empty", std::process::id())).unwrap();
    let written = mux.put(key.clone(), "a value").await.unwrap().version;
    let object = s3.object_key(key.as_str());
    let seen = mux_tests::run_python(EMPTY_BODY, &[&mux_tests::s3_endpoint(), &bucket, &object]);
    assert!(
        seen["metadata"]["mux_version"].is_string(),
        "the object carried mux's metadata: {seen}"
    );
    let err = s3.get(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");

    // The primary's copy is corrupt: the read fails over, and repairs the object.
    let got = mux.get(&key).await.unwrap().expect("a good copy");
    assert_eq!(got.value(), b"a value".as_slice());
    mux.settle().await;
    let mended = s3
        .get(&key)
        .await
        .unwrap()
        .expect("the object was rewritten");
    assert_eq!(mended.value(), b"a value".as_slice());
    assert_eq!(mended.version(), written);
    assert_eq!(mux.stats().corrupt_reads, 1);
    assert!(s3.purge(&key, written).await.unwrap());
}
